//! Reports: failover times per scenario; convergence and gossip cost by cluster size; an SVG plot
//! a person can look at.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use gossip_ha_proto::gossip::Role;

use crate::model_db::ModelCluster;
use crate::network::SimNetwork;
use crate::node::SimAgent;
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

/// Prints failover times per scenario (when there were runs) and returns them, sorted.
pub fn failover_table(outcomes: &[(Outcome, u64)]) -> BTreeMap<String, Vec<u64>> {
    let mut by_family: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (outcome, _) in outcomes {
        by_family
            .entry(family(&outcome.name).to_string())
            .or_default()
            .extend(&outcome.failovers_ms);
    }
    if outcomes.is_empty() {
        return by_family;
    }
    let width = by_family
        .keys()
        .map(String::len)
        .max()
        .unwrap_or(0)
        .max("scenario".len());
    println!("\n{:<width$}  failovers  median     p99        max", "scenario");
    for (name, samples) in by_family.iter_mut() {
        samples.sort_unstable();
        if samples.is_empty() {
            println!("{name:<width$}  {:>9}  -", 0);
            continue;
        }
        println!(
            "{name:<width$}  {:>9}  {:>6.2} s  {:>6.2} s  {:>6.2} s",
            samples.len(),
            percentile(samples, 0.5) as f64 / 1000.0,
            percentile(samples, 0.99) as f64 / 1000.0,
            *samples.last().unwrap() as f64 / 1000.0
        );
    }
    by_family
}

pub struct Convergence {
    pub nodes: usize,
    /// From a new node's start until every node holds it alive.
    pub join_ms: u64,
    pub bytes_per_node_per_s: f64,
}

/// `nodes` server agents converge; then one more joins, and the time until all of them see it
/// is what a change takes to reach every node. Gossip bytes are counted over a quiet window.
pub async fn convergence(nodes: usize) -> Convergence {
    const TICK: Duration = Duration::from_millis(100);
    let network = SimNetwork::new(nodes as u64);
    let models = ModelCluster::new(network.clone());
    let mut agents: Vec<SimAgent> = (0..=nodes)
        .map(|index| SimAgent::new(&format!("n{index:04}"), &[Role::Server], index, 0, 0, &models))
        .collect();
    let seeds: Vec<_> = agents.iter().take(3).map(|agent| agent.addr).collect();
    for agent in agents.iter_mut().take(nodes) {
        agent.start(&network, &seeds).await;
    }
    let everyone_sees =
        |agents: &[SimAgent], count: usize, name: &str| agents.iter().take(count).all(|agent| agent.sees_alive(name));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while !agents.iter().take(nodes).all(|agent| agent.alive_count() == nodes) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{nodes} nodes did not converge in 120 simulated s"
        );
        network.run_for(TICK).await;
        for agent in agents.iter_mut() {
            agent.step().await;
        }
    }
    let quiet_start = tokio::time::Instant::now();
    let bytes_before: u64 = network.bytes_sent().values().sum();
    for _ in 0..50 {
        network.run_for(TICK).await;
        for agent in agents.iter_mut() {
            agent.step().await;
        }
    }
    let window_s = quiet_start.elapsed().as_secs_f64();
    let bytes: u64 = network.bytes_sent().values().sum::<u64>() - bytes_before;
    let newcomer = agents[nodes].name.clone();
    agents[nodes].start(&network, &seeds).await;
    let joined_at = tokio::time::Instant::now();
    while !everyone_sees(&agents, nodes, &newcomer) {
        assert!(
            tokio::time::Instant::now() < deadline + Duration::from_secs(120),
            "the newcomer never reached everyone"
        );
        network.run_for(TICK).await;
        for agent in agents.iter_mut() {
            agent.step().await;
        }
    }
    let join_ms = joined_at.elapsed().as_millis() as u64;
    for agent in agents.iter_mut() {
        agent.crash().await;
    }
    Convergence {
        nodes,
        join_ms,
        bytes_per_node_per_s: bytes as f64 / nodes as f64 / window_s,
    }
}

fn svg(failovers: &BTreeMap<String, Vec<u64>>, convergence: &[Convergence]) -> String {
    let mut out = String::new();
    let (width, height) = (900, 420);
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">"
    );
    let _ = writeln!(out, "<rect width=\"{width}\" height=\"{height}\" fill=\"white\"/>");
    // Left: failover time distribution, one row per scenario (median bar, p99 tick, max tick).
    let _ = writeln!(
        out,
        "<text x=\"20\" y=\"24\" font-size=\"15\">Failover time per scenario (simulated, threshold 1 s)</text>"
    );
    let rows: Vec<(&String, &Vec<u64>)> = failovers.iter().filter(|(_, samples)| !samples.is_empty()).collect();
    let scale_max_ms = rows
        .iter()
        .map(|(_, s)| *s.last().unwrap())
        .max()
        .unwrap_or(1)
        .max(4_000) as f64;
    let (left, bar_width) = (190.0, 230.0);
    for (index, (name, samples)) in rows.iter().enumerate() {
        let y = 50.0 + index as f64 * 34.0;
        let x = |ms: u64| left + bar_width * ms as f64 / scale_max_ms;
        let (median, p99, max) = (
            percentile(samples, 0.5),
            percentile(samples, 0.99),
            *samples.last().unwrap(),
        );
        let _ = writeln!(
            out,
            "<text x=\"20\" y=\"{:.0}\">{name} (n={})</text>",
            y + 14.0,
            samples.len()
        );
        let _ = writeln!(
            out,
            "<rect x=\"{left}\" y=\"{y:.0}\" width=\"{:.1}\" height=\"18\" fill=\"#4a90d9\"/>",
            x(median) - left
        );
        let _ = writeln!(
            out,
            "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{1:.0}\" y2=\"{2:.0}\" stroke=\"#d94a4a\" stroke-width=\"2\"/>",
            x(p99),
            y - 2.0,
            y + 20.0
        );
        let _ = writeln!(
            out,
            "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{1:.0}\" y2=\"{2:.0}\" stroke=\"#333\" stroke-dasharray=\"3,2\"/>",
            x(max),
            y - 2.0,
            y + 20.0
        );
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.0}\">median {:.2} s</text>",
            x(max) + 6.0,
            y + 14.0,
            median as f64 / 1000.0
        );
    }
    let axis_y = 50.0 + rows.len() as f64 * 34.0 + 6.0;
    let _ = writeln!(
        out,
        "<line x1=\"{left}\" x2=\"{:.0}\" y1=\"{axis_y:.0}\" y2=\"{axis_y:.0}\" stroke=\"#333\"/>",
        left + bar_width
    );
    for seconds in 0..=(scale_max_ms / 1000.0).ceil() as u64 {
        let x = left + bar_width * (seconds * 1000) as f64 / scale_max_ms;
        if x <= left + bar_width + 0.5 {
            let _ = writeln!(
                out,
                "<text x=\"{x:.0}\" y=\"{:.0}\" text-anchor=\"middle\">{seconds}s</text>",
                axis_y + 14.0
            );
        }
    }
    let _ = writeln!(
        out,
        "<text x=\"20\" y=\"{:.0}\">bar: median; red: p99; dashed: max</text>",
        axis_y + 34.0
    );
    // Right: time for a change to reach every node, and gossip bytes per node, by cluster size.
    let origin = 520.0;
    let _ = writeln!(
        out,
        "<text x=\"{origin}\" y=\"24\" font-size=\"15\">A change reaching every node</text>"
    );
    let max_join = convergence.iter().map(|c| c.join_ms).max().unwrap_or(1).max(1) as f64;
    for (index, point) in convergence.iter().enumerate() {
        let x = origin + 20.0 + index as f64 * 110.0;
        let bar = 250.0 * point.join_ms as f64 / max_join;
        let _ = writeln!(
            out,
            "<rect x=\"{x:.0}\" y=\"{:.0}\" width=\"60\" height=\"{bar:.0}\" fill=\"#5cb85c\"/>",
            330.0 - bar
        );
        let _ = writeln!(
            out,
            "<text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"middle\">{:.2} s</text>",
            x + 30.0,
            325.0 - bar,
            point.join_ms as f64 / 1000.0
        );
        let _ = writeln!(
            out,
            "<text x=\"{:.0}\" y=\"350\" text-anchor=\"middle\">{} nodes</text>",
            x + 30.0,
            point.nodes
        );
        let _ = writeln!(
            out,
            "<text x=\"{:.0}\" y=\"368\" text-anchor=\"middle\">{:.1} KB/s/node</text>",
            x + 30.0,
            point.bytes_per_node_per_s / 1000.0
        );
    }
    let _ = writeln!(
        out,
        "<line x1=\"{origin}\" x2=\"{:.0}\" y1=\"330\" y2=\"330\" stroke=\"#333\"/>",
        origin + 360.0
    );
    out.push_str("</svg>\n");
    out
}

pub fn full(failovers: &BTreeMap<String, Vec<u64>>, plot: &std::path::Path, sizes: &[usize]) {
    println!("\nnodes  change reaches every node  gossip bytes per node per second");
    let mut points = Vec::new();
    for &nodes in sizes {
        let started = std::time::Instant::now();
        let point = crate::simulate(convergence(nodes));
        println!(
            "{:>5}  {:>24.2} s  {:>32.0}   ({:.1} s of real time)",
            point.nodes,
            point.join_ms as f64 / 1000.0,
            point.bytes_per_node_per_s,
            started.elapsed().as_secs_f64()
        );
        points.push(point);
    }
    match std::fs::write(plot, svg(failovers, &points)) {
        Ok(()) => println!("plot written to {}", plot.display()),
        Err(err) => eprintln!("cannot write the plot to {}: {err}", plot.display()),
    }
}
