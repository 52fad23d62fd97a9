//! Latency and footprint under idle floods without any certificate, with the real binary on
//! loopback (the floods of `tests/floods.rs`, from `tests/common/flood.rs`):
//!
//!     cargo bench --bench floods -- [--quick] [--samples N] [--restarts N]
//!
//! For each flood — 1,100 idle connections to a DB agent's transfer port (the agent under
//! systemd's default 1,024 descriptors), 1,000 connections to a TLS gossip port from 250 loopback
//! addresses (one byte each, reopened when closed), 72 idle socket connections from eight reader
//! uids — the wall time of `gossip-ha status` (the CLI process, start to exit; root's for the
//! socket flood), median and p99, and the agent's RSS and open descriptors, idle and the largest
//! seen under the flood. For the gossip flood also the time from starting a killed TLS peer again
//! until the flooded agent shows its new generation alive, and until the peer sees the flooded
//! agent, idle and under the flood. `--quick`: 10 status calls and 3 restarts per case.

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::flood::*;
use common::procfs::{open_files, rss_kib};
use common::*;
use gossip_ha_proto::api::NodeLiveness;

/// Longest a `status` call may take before it is killed and counted as failed.
const STATUS_TIMEOUT: Duration = Duration::from_secs(20);
/// The agent closes a socket connection that sends no request within 5 s: the socket flood is
/// opened again before that, so every sample is taken while it holds its connections.
const SOCKET_FLOOD_BATCH: Duration = Duration::from_secs(4);

struct Options {
    samples: usize,
    restarts: usize,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|arg| arg == "--quick");
    let mut options = if quick {
        Options {
            samples: 10,
            restarts: 3,
        }
    } else {
        Options {
            samples: 50,
            restarts: 5,
        }
    };
    let value = |name: &str| {
        let index = args.iter().position(|arg| arg == name)?;
        Some(
            args.get(index + 1)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} N")),
        )
    };
    options.samples = value("--samples").unwrap_or(options.samples).max(1);
    options.restarts = value("--restarts").unwrap_or(options.restarts).max(1);
    options
}

/// `gossip-ha status` against `socket` as this process's user: its wall time, and whether it
/// succeeded. Killed after `STATUS_TIMEOUT`.
fn timed_status(socket: &Path) -> (Duration, bool) {
    let started = Instant::now();
    let mut child = Command::new(BINARY)
        .args(["status", "--socket", socket.to_str().unwrap()])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start gossip-ha status");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (done, finished) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let status = child.wait();
        let _ = done.send(());
        status
    });
    let in_time = finished.recv_timeout(STATUS_TIMEOUT).is_ok();
    let took = started.elapsed();
    if !in_time {
        // Not reaped yet (the waiter has not returned): the pid is still this child's.
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    }
    let status = waiter.join().unwrap();
    (took, in_time && status.is_ok_and(|status| status.success()))
}

/// What one case measured of one agent.
#[derive(Default)]
struct Measure {
    latencies: Vec<Duration>,
    failures: usize,
    peak_rss_kib: u64,
    peak_fds: usize,
}

impl Measure {
    fn footprint(&mut self, pid: u32) {
        self.peak_rss_kib = self.peak_rss_kib.max(rss_kib(pid));
        self.peak_fds = self.peak_fds.max(open_files(pid));
    }

    /// One `status` call, then the agent's footprint.
    fn status_call(&mut self, agent: &Agent) {
        let (took, succeeded) = timed_status(&agent.socket);
        self.latencies.push(took);
        self.failures += usize::from(!succeeded);
        self.footprint(agent.pid());
    }

    fn status_calls(mut self, agent: &Agent, samples: usize) -> Measure {
        self.footprint(agent.pid());
        for _ in 0..samples {
            self.status_call(agent);
        }
        self
    }
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * fraction).round() as usize]
}

fn ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}

/// `1100` as `1,100`.
fn thousands(count: usize) -> String {
    let digits = count.to_string();
    let mut grouped = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

fn seconds(duration: Duration) -> String {
    format!("{:.3} s", duration.as_secs_f64())
}

struct Row {
    case: String,
    measure: Measure,
}

fn row(case: impl Into<String>, measure: Measure) -> Row {
    let case = case.into();
    eprintln!("measured: {case}");
    Row { case, measure }
}

fn transfer_flood(options: &Options, rows: &mut Vec<Row>) {
    let (dir, ca) = tls_dir();
    let transfer_port = free_port();
    let agent = Agent::start(dir.path(), &transfer_agent(dir.path(), &ca, transfer_port));
    // As under systemd without LimitNOFILE: the agent has 1,024 descriptors in all.
    limit_open_files(agent.pid(), SYSTEMD_DEFAULT_NOFILE);
    let idle = Measure::default().status_calls(&agent, options.samples);
    rows.push(row("DB agent over TLS, 1,024-descriptor limit: idle", idle));
    let flood = idle_connections(SocketAddr::from(([127, 0, 0, 1], transfer_port)), 1_100);
    let flooded = Measure::default().status_calls(&agent, options.samples);
    rows.push(row(
        format!(
            "… {} idle connections held to its transfer port",
            thousands(flood.len())
        ),
        flooded,
    ));
}

/// Restart times of `b`, as seen by `a` and by `b`.
#[derive(Default)]
struct Restarts {
    a_hears_b: Vec<Duration>,
    b_hears_a: Vec<Duration>,
}

/// Kills `b`, waits until `a` no longer shows it alive, starts it again and times until `a` shows
/// its new generation alive and `b` shows `a` alive.
fn restart(dir: &Path, b: &AgentSpec, agent_b: &mut Agent, agent_a: &Agent, restarts: &mut Restarts) {
    let generation = generation_of(&agent_a.status(), "b");
    agent_b.kill();
    wait_until("a to see b down", Duration::from_secs(15), || {
        state_of(&agent_a.status(), "b") != Some(NodeLiveness::Alive)
    });
    let started = Instant::now();
    *agent_b = Agent::start(dir, b);
    wait_until("a to hear the restarted b", Duration::from_secs(20), || {
        let report = agent_a.status();
        state_of(&report, "b") == Some(NodeLiveness::Alive) && generation_of(&report, "b") > generation
    });
    restarts.a_hears_b.push(started.elapsed());
    wait_until("b to hear a", Duration::from_secs(20), || {
        alive_names(&agent_b.status()) == ["a", "b"]
    });
    restarts.b_hears_a.push(started.elapsed());
}

fn gossip_flood(options: &Options, rows: &mut Vec<Row>) -> [(String, Restarts); 2] {
    let (dir, ca) = tls_dir();
    let (a, b, agent_a, mut agent_b) = start_seeded_pair(dir.path(), &ca);
    let idle = Measure::default().status_calls(&agent_a, options.samples);
    rows.push(row("server agent over TLS with one peer: idle", idle));
    let mut idle_restarts = Restarts::default();
    for _ in 0..options.restarts {
        restart(dir.path(), &b, &mut agent_b, &agent_a, &mut idle_restarts);
    }

    let _flood = GossipFlood::start(a.port, 1_000, 250);
    wait_for_gossip_flood_refused(&agent_a);
    let mut flooded = Measure::default().status_calls(&agent_a, options.samples);
    let mut flooded_restarts = Restarts::default();
    for _ in 0..options.restarts {
        restart(dir.path(), &b, &mut agent_b, &agent_a, &mut flooded_restarts);
        flooded.footprint(agent_a.pid());
    }
    rows.push(row(
        "… 1,000 connections to its gossip port from 127.0.0.2–251, one byte each, reopened when closed",
        flooded,
    ));
    [
        ("idle".into(), idle_restarts),
        ("under the 1,000-connection gossip flood".into(), flooded_restarts),
    ]
}

fn socket_flood(options: &Options, rows: &mut Vec<Row>) {
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(dir.path(), &socket_agent(dir.path()));
    let idle = Measure::default().status_calls(&agent, options.samples);
    rows.push(row("agent with socket_group readers: idle (root's status)", idle));
    let mut flooded = Measure::default();
    while flooded.latencies.len() < options.samples {
        let opened = Instant::now();
        let _idle = readers_holding(&agent.socket);
        flooded.footprint(agent.pid());
        while flooded.latencies.len() < options.samples && opened.elapsed() < SOCKET_FLOOD_BATCH {
            flooded.status_call(&agent);
        }
    }
    rows.push(row(
        "… 72 idle socket connections from 8 reader uids (root's status)",
        flooded,
    ));
}

fn main() {
    let options = options();
    raise_own_open_files();
    let args: Vec<String> = std::env::args().skip(1).filter(|arg| arg != "--bench").collect();
    let command = if args.is_empty() {
        "cargo bench --bench floods".to_string()
    } else {
        format!("cargo bench --bench floods -- {}", args.join(" "))
    };
    let started = Instant::now();

    let mut rows = Vec::new();
    transfer_flood(&options, &mut rows);
    let restarts = gossip_flood(&options, &mut rows);
    if nix::unistd::geteuid().is_root() {
        socket_flood(&options, &mut rows);
    } else {
        eprintln!("socket flood skipped: it needs root to act as other users");
    }

    let cores = std::thread::available_parallelism().map_or(0, |cores| cores.get());
    println!();
    println!("`{command}` ({cores} cores, {:.0} s)", started.elapsed().as_secs_f64());
    println!();
    println!("| agent, flood | `status` calls | median | p99 | failed | RSS | open descriptors |");
    println!("|---|---|---|---|---|---|---|");
    for Row { case, mut measure } in rows {
        measure.latencies.sort();
        println!(
            "| {case} | {} | {} | {} | {} | {:.1} MiB | {} |",
            measure.latencies.len(),
            ms(percentile(&measure.latencies, 0.5)),
            ms(percentile(&measure.latencies, 0.99)),
            measure.failures,
            measure.peak_rss_kib as f64 / 1024.0,
            measure.peak_fds
        );
    }
    println!();
    println!("| TLS peer b killed, seen down, started again | runs | a shows b's new generation alive, median | max | b shows a alive, median | max |");
    println!("|---|---|---|---|---|---|");
    for (case, mut restarts) in restarts {
        restarts.a_hears_b.sort();
        restarts.b_hears_a.sort();
        println!(
            "| {case} | {} | {} | {} | {} | {} |",
            restarts.a_hears_b.len(),
            seconds(percentile(&restarts.a_hears_b, 0.5)),
            seconds(*restarts.a_hears_b.last().unwrap()),
            seconds(percentile(&restarts.b_hears_a, 0.5)),
            seconds(*restarts.b_hears_a.last().unwrap()),
        );
    }
}
