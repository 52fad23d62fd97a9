//! `cargo run --release -p simulations -- [--seeds N | --seed N | --scenario NAME|all] [--report]`
//!
//! Many agents in one process — the agent's real chitchat gossip and real pure core — over an
//! in-memory network, with a model database behind the real `DbBackend` trait, on tokio's paused
//! clock. Every run prints its seed; the invariants are checked on every run. A seed replays bit
//! for bit: every run ends with a hash, and `--replay-check` runs each seed twice to compare.

mod model_db;
mod network;
mod node;
mod replay;
mod report;
mod scenario;
mod world;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use clap::Parser;

use crate::scenario::Scenario;
use crate::world::Outcome;

#[derive(Debug, Parser)]
#[command(about = "Deterministic partition simulations of gossip-ha")]
struct Args {
    /// Run this many random schedules (seeds first-seed, first-seed + 1, …).
    #[arg(long)]
    seeds: Option<u64>,
    #[arg(long, default_value_t = 0)]
    first_seed: u64,
    /// Replay one random schedule and print its whole timeline.
    #[arg(long)]
    seed: Option<u64>,
    /// Run a named scenario, or `all`.
    #[arg(long)]
    scenario: Option<String>,
    /// Measure convergence and gossip cost at 10, 100 and 1000 nodes, and failover times, and
    /// write the plot.
    #[arg(long)]
    report: bool,
    /// Cluster sizes the report measures convergence and gossip cost at.
    #[arg(long, value_delimiter = ',', default_values_t = [10, 100, 1000])]
    report_nodes: Vec<usize>,
    /// Where the report's SVG plot goes.
    #[arg(long, default_value = "simulations/report.svg")]
    plot: std::path::PathBuf,
    /// Worker threads, each with its own simulated clock.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Run every seed twice and fail when the two runs' hashes differ.
    #[arg(long)]
    replay_check: bool,
    /// Pick gossip partners with an OS-seeded RNG, as chitchat's own loop does: runs no longer
    /// replay, and `--replay-check` must say so.
    #[arg(long)]
    inject_nondeterminism: bool,
}

pub fn simulate<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a simulation runtime")
        .block_on(future)
}

fn show_failure(outcome: &Outcome, scenario: &Scenario, seed: u64) {
    println!(
        "\nFAILED {} (seed {seed}): {}",
        outcome.name,
        outcome.violations.join("; ")
    );
    println!("schedule:");
    for op in &scenario.ops {
        println!("  {op}");
    }
    let first = outcome
        .timeline
        .iter()
        .position(|line| line.contains("VIOLATION"))
        .unwrap_or(outcome.timeline.len());
    let start = first.saturating_sub(60);
    println!("timeline before the first violation (replay: --seed {seed}):");
    for line in &outcome.timeline[start..(first + 1).min(outcome.timeline.len())] {
        println!("  {line}");
    }
}

/// Long runs say how far they are on stderr, a line per tenth.
const PROGRESS_FROM_RUNS: usize = 100;

/// A seed whose two runs ended with different hashes.
struct Divergence {
    name: String,
    seed: u64,
    hashes: (u64, u64),
}

fn run_many(jobs: Vec<(Scenario, u64)>, threads: usize, replay_check: bool) -> (Vec<(Outcome, u64)>, Vec<Divergence>) {
    let next = AtomicU64::new(0);
    let results = Mutex::new(Vec::new());
    let divergences = Mutex::new(Vec::new());
    let jobs = &jobs;
    let started = Instant::now();
    let tenth = (jobs.len() / 10).max(1);
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some((scenario, seed)) = jobs.get(index) else { break };
                let outcome = simulate(world::run(scenario, *seed));
                if replay_check {
                    let again = simulate(world::run(scenario, *seed)).hash;
                    if again != outcome.hash {
                        divergences.lock().unwrap().push(Divergence {
                            name: outcome.name.clone(),
                            seed: *seed,
                            hashes: (outcome.hash, again),
                        });
                    }
                }
                if !outcome.violations.is_empty() {
                    show_failure(&outcome, scenario, *seed);
                }
                let mut results = results.lock().unwrap();
                results.push((outcome, *seed));
                let done = results.len();
                if jobs.len() >= PROGRESS_FROM_RUNS && done % tenth == 0 && done < jobs.len() {
                    let failed = results
                        .iter()
                        .filter(|(outcome, _)| !outcome.violations.is_empty())
                        .count();
                    eprintln!(
                        "  {done}/{} runs, {failed} failed, {:.0} s",
                        jobs.len(),
                        started.elapsed().as_secs_f64()
                    );
                }
            });
        }
    });
    let mut divergences = divergences.into_inner().unwrap();
    divergences.sort_by_key(|divergence| (divergence.seed, divergence.name.clone()));
    (results.into_inner().unwrap(), divergences)
}

/// One hash for many runs, whatever order the threads finished them in.
fn combined_hash(outcomes: &[(Outcome, u64)]) -> u64 {
    let mut runs: Vec<(u64, &str, u64)> = outcomes
        .iter()
        .map(|(outcome, seed)| (*seed, outcome.name.as_str(), outcome.hash))
        .collect();
    runs.sort_unstable();
    let mut hash = replay::Fnv64::default();
    for (seed, name, run) in runs {
        hash.write(format!("{seed} {name} {run:016x}").as_bytes());
    }
    hash.finish()
}

/// Says which seeds did not replay; true when all did.
fn report_replay(runs: usize, divergences: &[Divergence]) -> bool {
    if divergences.is_empty() {
        println!("replay check: {runs} runs each run twice, every hash equal");
        return true;
    }
    println!("replay check: {} of {runs} runs did not replay:", divergences.len());
    for divergence in divergences {
        let (first, second) = divergence.hashes;
        println!(
            "  {} (seed {}): {first:016x} then {second:016x}",
            divergence.name, divergence.seed
        );
    }
    false
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let started = Instant::now();
    if args.inject_nondeterminism {
        replay::inject_os_randomness();
    }
    if let Some(seed) = args.seed {
        let scenario = scenario::random(seed);
        let outcome = simulate(world::run(&scenario, seed));
        for line in &outcome.timeline {
            println!("{line}");
        }
        let verdict = if outcome.violations.is_empty() {
            "1 passed, 0 failed"
        } else {
            "0 passed, 1 failed"
        };
        println!("seed {seed}: {}", outcome.violations.join("; "));
        println!("hash {:016x}", outcome.hash);
        let replayed = !args.replay_check || {
            let again = simulate(world::run(&scenario, seed)).hash;
            let divergence = (again != outcome.hash).then(|| Divergence {
                name: outcome.name.clone(),
                seed,
                hashes: (outcome.hash, again),
            });
            report_replay(1, &Vec::from_iter(divergence))
        };
        println!("{verdict}");
        return exit(outcome.violations.is_empty() && replayed);
    }
    let mut jobs: Vec<(Scenario, u64)> = Vec::new();
    match args.scenario.as_deref() {
        None => {}
        Some("all") => jobs.extend(
            scenario::named()
                .into_iter()
                .map(|scenario| (scenario, args.first_seed)),
        ),
        Some(name) => match scenario::named().into_iter().find(|scenario| scenario.name == name) {
            Some(scenario) => jobs.push((scenario, args.first_seed)),
            None => {
                let names: Vec<String> = scenario::named().into_iter().map(|s| s.name).collect();
                eprintln!("no scenario `{name}`; known: {}", names.join(", "));
                return std::process::ExitCode::from(2);
            }
        },
    }
    if let Some(count) = args.seeds {
        println!(
            "random schedules with seeds {} to {} (replay one with --seed N)",
            args.first_seed,
            args.first_seed + count.saturating_sub(1)
        );
        jobs.extend((args.first_seed..args.first_seed + count).map(|seed| (scenario::random(seed), seed)));
    }
    if jobs.is_empty() && !args.report {
        eprintln!("nothing to run: give --seeds N, --seed N, --scenario NAME|all or --report");
        return std::process::ExitCode::from(2);
    }
    let single = jobs.len() == 1 && args.seeds.is_none();
    let (outcomes, divergences) = run_many(jobs, args.threads, args.replay_check);
    if single {
        for line in &outcomes[0].0.timeline {
            println!("{line}");
        }
        println!("hash {:016x}", outcomes[0].0.hash);
    }
    let failed = outcomes
        .iter()
        .filter(|(outcome, _)| !outcome.violations.is_empty())
        .count();
    let simulated_s: f64 = outcomes
        .iter()
        .map(|(outcome, _)| outcome.simulated_ms as f64 / 1000.0)
        .sum();
    let failovers = report::failover_table(&outcomes);
    if !outcomes.is_empty() {
        println!(
            "{} runs, {:.0} simulated seconds in {:.1} s of real time ({:.0}× real time), {} acknowledged writes checked",
            outcomes.len(),
            simulated_s,
            started.elapsed().as_secs_f64(),
            simulated_s / started.elapsed().as_secs_f64().max(0.001),
            outcomes.iter().map(|(outcome, _)| outcome.acknowledged_writes).sum::<usize>()
        );
    }
    if outcomes.len() > 1 {
        println!("hash of the {} runs {:016x}", outcomes.len(), combined_hash(&outcomes));
    }
    let replayed = !args.replay_check || report_replay(outcomes.len(), &divergences);
    if args.report {
        report::full(&failovers, &args.plot, &args.report_nodes);
    }
    println!("{} passed, {} failed", outcomes.len() - failed, failed);
    exit(failed == 0 && replayed)
}

fn exit(ok: bool) -> std::process::ExitCode {
    if ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    }
}
