//! Gossip cost over mutual TLS against plain UDP, with real agents on loopback:
//!
//!     cargo bench --bench gossip -- [--nodes 3,20] [--seconds 10]
//!
//! For each transport and cluster size: start the agents (threshold 1 s, so gossip every
//! 100 ms), wait until every agent sees every other alive, then measure each agent over a quiet
//! window: the loopback interface's transmitted bytes (/proc/net/dev, IP and TCP/UDP headers
//! included, so both transports are counted alike) divided by the number of agents, and each
//! agent's CPU time (/proc/PID/stat). Run it on an otherwise quiet machine.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::procfs::{cpu_ticks, rss_kib, ticks_per_second};
use common::*;
use gossip_ha::tls::certs::init_ca;

fn option(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|arg| arg == name)
        .and_then(|index| args.get(index + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

fn loopback_tx_bytes() -> u64 {
    std::fs::read_to_string("/proc/net/dev")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.trim_start().strip_prefix("lo:"))
        .and_then(|counters| counters.split_whitespace().nth(8)?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let sizes: Vec<usize> = option("--nodes", "3,20")
        .split(',')
        .map(|n| n.parse().expect("--nodes 3,20"))
        .collect();
    let window = Duration::from_secs_f64(option("--seconds", "10").parse().expect("--seconds S"));
    let ticks_per_second = ticks_per_second();
    println!("transport  nodes  bytes/s per node (loopback, with headers)  CPU per agent (mean, % of one core)  RSS per agent (mean)");
    for tls in [false, true] {
        for &nodes in &sizes {
            let dir = tempfile::tempdir().unwrap();
            let ca = dir.path().join("ca");
            init_ca(&ca, "bench", false).unwrap();
            let mut specs: Vec<AgentSpec> = (0..nodes)
                .map(|index| {
                    let name = format!("n{index:02}");
                    let spec = AgentSpec::new(&name, 1, 1.0);
                    if tls {
                        spec.with_tls(dir.path(), &ca)
                    } else {
                        spec
                    }
                })
                .collect();
            let seeds: Vec<u16> = specs.iter().take(3).map(|spec| spec.port).collect();
            for spec in specs.iter_mut() {
                spec.seeds = seeds.iter().copied().filter(|port| *port != spec.port).collect();
            }
            let agents: Vec<Agent> = specs.iter().map(|spec| Agent::start(dir.path(), spec)).collect();
            for agent in &agents {
                wait_until("the cluster to converge", Duration::from_secs(60), || {
                    alive_names(&agent.status()).len() == nodes
                });
            }
            std::thread::sleep(Duration::from_secs(2));
            let before: Vec<u64> = agents.iter().map(|agent| cpu_ticks(agent.pid())).collect();
            let lo_before = loopback_tx_bytes();
            let started = Instant::now();
            std::thread::sleep(window);
            let elapsed = started.elapsed().as_secs_f64();
            let bytes = (loopback_tx_bytes() - lo_before) as f64 / elapsed;
            let (mut cpu, mut rss) = (0.0, 0.0);
            for (agent, ticks) in agents.iter().zip(before) {
                cpu += 100.0 * (cpu_ticks(agent.pid()) - ticks) as f64 / ticks_per_second / elapsed;
                rss += rss_kib(agent.pid()) as f64;
            }
            let count = agents.len() as f64;
            println!(
                "{:<9}  {nodes:>5}  {:>41.0}  {:>36.2}  {:>17.1} MiB",
                if tls { "tls" } else { "udp" },
                bytes / count,
                cpu / count,
                rss / count / 1024.0
            );
        }
    }
}
