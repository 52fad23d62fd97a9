//! Detection-time and footprint benchmark with real agent processes on loopback.
//!
//!     cargo bench --bench detection -- [--kills N] [--thresholds 1,2] [--idle-seconds S]
//!
//! For each threshold: three agents; repeatedly SIGKILL one, time until both others mark it
//! DOWN, restart it. Then the idle RSS and CPU of each agent over a quiet window.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::procfs::{cpu_ticks, rss_kib, ticks_per_second};
use common::*;
use gossip_ha_proto::api::NodeLiveness;

struct Options {
    kills: usize,
    thresholds: Vec<f64>,
    idle_seconds: f64,
}

fn options() -> Options {
    let mut options = Options {
        kills: 10,
        thresholds: vec![1.0, 2.0],
        idle_seconds: 10.0,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut index = 0;
    while index < args.len() {
        let value = args.get(index + 1).cloned().unwrap_or_default();
        match args[index].as_str() {
            "--kills" => options.kills = value.parse().expect("--kills N"),
            "--thresholds" => {
                options.thresholds = value.split(',').map(|t| t.parse().expect("--thresholds 1,2")).collect()
            }
            "--idle-seconds" => options.idle_seconds = value.parse().expect("--idle-seconds S"),
            _ => {
                index += 1; // cargo passes `--bench`; ignore what is not ours
                continue;
            }
        }
        index += 2;
    }
    options
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * fraction).round() as usize]
}

fn main() {
    let options = options();
    println!("threshold  kills  detection median  detection max  (down rule: > 2 × threshold)");
    for &threshold in &options.thresholds {
        let dir = tempfile::tempdir().unwrap();
        let a = AgentSpec::new("a", 1, threshold);
        let mut b = AgentSpec::new("b", 2, threshold);
        let mut c = AgentSpec::new("c", 3, threshold);
        b.seeds = vec![a.port];
        c.seeds = vec![a.port, b.port];
        let agent_a = Agent::start(dir.path(), &a);
        let agent_b = Agent::start(dir.path(), &b);
        let mut agent_c = Agent::start(dir.path(), &c);
        let watchers = [&agent_a, &agent_b];
        let mut samples = Vec::new();
        for _ in 0..options.kills {
            for watcher in watchers {
                wait_until("c alive everywhere", Duration::from_secs(20), || {
                    state_of(&watcher.status(), "c") == Some(NodeLiveness::Alive)
                });
            }
            // Let c heartbeat steadily before the kill, as a long-running node would.
            std::thread::sleep(Duration::from_secs_f64(threshold));
            let killed_at = Instant::now();
            agent_c.kill();
            for watcher in watchers {
                wait_until("c down", Duration::from_secs_f64(2.0 * threshold + 10.0), || {
                    state_of(&watcher.status(), "c") == Some(NodeLiveness::Down)
                });
                samples.push(killed_at.elapsed());
            }
            agent_c = Agent::start(dir.path(), &c);
        }
        samples.sort();
        println!(
            "{:>7.1} s  {:>5}  {:>14.3} s  {:>11.3} s",
            threshold,
            options.kills,
            percentile(&samples, 0.5).as_secs_f64(),
            samples.last().unwrap().as_secs_f64()
        );

        let agents = [&agent_a, &agent_b, &agent_c];
        std::thread::sleep(Duration::from_secs(2));
        let ticks_per_second = ticks_per_second();
        let before: Vec<u64> = agents.iter().map(|agent| cpu_ticks(agent.pid())).collect();
        let started = Instant::now();
        std::thread::sleep(Duration::from_secs_f64(options.idle_seconds));
        let window = started.elapsed().as_secs_f64();
        for (agent, before) in agents.iter().zip(before) {
            let cpu_seconds = (cpu_ticks(agent.pid()) - before) as f64 / ticks_per_second;
            println!(
                "           idle agent {}: RSS {} KiB, CPU {:.2} % of one core over {:.0} s",
                agent.name,
                rss_kib(agent.pid()),
                100.0 * cpu_seconds / window,
                window
            );
        }
    }
}
