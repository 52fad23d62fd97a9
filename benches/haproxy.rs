//! Writes across a failover, through HAProxy or by following the rewritten files (issue #17's
//! bench mode):
//!
//!     cargo bench --bench haproxy -- [--runs N]
//!
//! Each run forms a fresh three-node cluster on loopback (real MariaDB, real agents serving
//! `/primary`, a witness) with HAProxy in front (`tests/common/haproxy.rs`: checks every 200 ms,
//! as the test does), and starts two clients writing one row per short-lived connection, as
//! Pandora's servers connect: one through HAProxy, one to the `host:port` that db2's agent
//! rewrites into a file when the primary changes (read again after every failed write). It
//! kills db1's mysqld, waits until each client has 20 writes acknowledged after the kill, and
//! prints the longest time without an acknowledged write for each.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::db_cluster::{create_schema, wait_formed, Cluster};
use common::free_port;
use common::haproxy::HaProxy;
use common::mariadb::{MariaDb, APP_PASSWORD, APP_USER};

/// Writes acknowledged after the kill before a client stops.
const AFTER_KILL: usize = 20;
/// A client that has not got them by then has failed the run.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// A three-node cluster whose DB agents serve HTTP and write the primary's `host:port` to
/// `<dir>/<node>-primary.txt`; the HTTP ports by node name.
fn cluster() -> (Cluster, HashMap<String, u16>) {
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("primary.tmpl");
    std::fs::write(&template, "{{db_primary_host}}:{{db_primary_port}}").unwrap();
    let dbs: Vec<MariaDb> = (1..=3)
        .map(|index| MariaDb::install(dir.path(), &format!("db{index}"), index))
        .collect();
    let ports: HashMap<String, u16> = dbs.iter().map(|db| (db.name.clone(), free_port())).collect();
    let files = dir.path().to_path_buf();
    let by_name = ports.clone();
    let config = move |db: &MariaDb| {
        format!(
            "http_listen = \"127.0.0.1:{}\"\n\n[[rewrite]]\nkind = \"template\"\npath = \"{}\"\ntemplate = \"{}\"\nfollows = \"db_primary\"\n",
            by_name[&db.name],
            files.join(format!("{}-primary.txt", db.name)).display(),
            template.display()
        )
    };
    let cluster = wait_formed(Cluster::start_on(dir, dbs, true, config));
    create_schema(cluster.db("db1"));
    (cluster, ports)
}

/// Writes rows from `first` on until `stop`, then until `AFTER_KILL` were acknowledged after
/// `killed` was set; each row on a new connection to `target()`. The longest time between two
/// acknowledged writes.
fn write(target: impl Fn() -> Option<String>, first: u32, killed: &AtomicBool, started: Instant) -> Option<Duration> {
    let (mut id, mut last_ack, mut longest_gap, mut after_kill) = (first, Instant::now(), Duration::ZERO, 0);
    while after_kill < AFTER_KILL {
        if started.elapsed() > RUN_TIMEOUT {
            return None;
        }
        let statement = format!("INSERT INTO pandora.tagente_datos VALUES ({id}, 1.5, UNIX_TIMESTAMP())");
        let acknowledged = target().is_some_and(|url| common::mariadb::sql(&url, &[&statement]).is_ok());
        if acknowledged {
            longest_gap = longest_gap.max(last_ack.elapsed());
            last_ack = Instant::now();
            after_kill += usize::from(killed.load(Ordering::SeqCst));
        } else {
            std::thread::sleep(Duration::from_millis(20));
        }
        id += 1;
    }
    Some(longest_gap)
}

/// The URL of the primary named in a rewritten file, as a client re-reading it would use.
fn from_file(path: &Path) -> Option<String> {
    let address = std::fs::read_to_string(path).ok()?;
    let address = address.trim();
    (!address.is_empty()).then(|| format!("mysql://{APP_USER}:{APP_PASSWORD}@{address}/"))
}

fn one_run() -> (Duration, Duration) {
    let (mut cluster, ports) = cluster();
    let haproxy = HaProxy::start(&cluster, &ports);
    let file = cluster.dir.path().join("db2-primary.txt");
    cluster.wait("db2's file to name the primary", Duration::from_secs(20), |_| {
        from_file(&file).is_some()
    });
    let killed = AtomicBool::new(false);
    let started = Instant::now();
    let url = haproxy.url();
    let (through_haproxy, following_files) = std::thread::scope(|scope| {
        let proxied = scope.spawn(|| write(|| Some(url.clone()), 1, &killed, started));
        let direct = scope.spawn(|| write(|| from_file(&file), 1_000_000, &killed, started));
        std::thread::sleep(Duration::from_secs(1));
        cluster.db_mut("db1").kill();
        killed.store(true, Ordering::SeqCst);
        (proxied.join().unwrap(), direct.join().unwrap())
    });
    let failed = |what: &str| -> Duration {
        panic!(
            "the client {what} did not get {AFTER_KILL} writes acknowledged within {RUN_TIMEOUT:?}\n{}",
            cluster.logs()
        )
    };
    (
        through_haproxy.unwrap_or_else(|| failed("writing through HAProxy")),
        following_files.unwrap_or_else(|| failed("following the rewritten file")),
    )
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let runs = common::runs_arg(3);
    let (mut proxied, mut direct) = (Vec::new(), Vec::new());
    println!("| run | through HAProxy (`/primary` checks) | following the rewritten file |");
    println!("|---:|---:|---:|");
    for run in 1..=runs {
        let (through_haproxy, following_files) = one_run();
        println!(
            "| {run} | {:.3} s | {:.3} s |",
            through_haproxy.as_secs_f64(),
            following_files.as_secs_f64()
        );
        proxied.push(through_haproxy);
        direct.push(following_files);
    }
    println!(
        "| median | {:.3} s | {:.3} s |",
        median(&mut proxied).as_secs_f64(),
        median(&mut direct).as_secs_f64()
    );
    println!("longest time without an acknowledged write across a kill -9 of the primary's mysqld, {runs} run(s), server_threshold {} s", common::db_cluster::THRESHOLD);
}
