//! Failover time against real MariaDB servers (issue #3's benchmark mode):
//!
//!     cargo bench --bench failover -- [--runs N]
//!
//! Each run forms a fresh three-node cluster, writes, SIGKILLs the primary's mysqld, and times
//! from the kill until a surviving node accepts a write. Target: median ≤ 2 × threshold + 1 s.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::db_cluster::{formed, insert, write_and_replicate, THRESHOLD};

fn main() {
    let runs = common::runs_arg(5);
    let mut samples = Vec::with_capacity(runs);
    for run in 1..=runs {
        let mut cluster = formed(3, false);
        write_and_replicate(&cluster, "db1", 1..=10, &["db2", "db3"]);
        let killed_at = Instant::now();
        cluster.db_mut("db1").kill();
        let elapsed = loop {
            if ["db2", "db3"]
                .iter()
                .any(|name| insert(cluster.db(name), 10_000).is_ok())
            {
                break killed_at.elapsed();
            }
            assert!(killed_at.elapsed() < Duration::from_secs(60), "no failover within 60 s");
            std::thread::sleep(Duration::from_millis(10));
        };
        println!(
            "run {run}: new primary accepted a write {:.3} s after the kill",
            elapsed.as_secs_f64()
        );
        samples.push(elapsed);
    }
    samples.sort();
    let median = samples[samples.len() / 2];
    let max = samples[samples.len() - 1];
    println!(
        "failover over {runs} runs, server_threshold {THRESHOLD} s: median {:.3} s, max {:.3} s (target: median <= {:.1} s)",
        median.as_secs_f64(),
        max.as_secs_f64(),
        2.0 * THRESHOLD + 1.0
    );
}
