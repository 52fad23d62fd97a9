//! Soak (issue #14): what `status` and `events` say over a long, eventful run.
//!
//!     cargo bench --bench soak -- [--failovers N] [--switchovers N] [--partitions N] [--keep DIR]
//!
//! Three DB hosts, each in its own network namespace with real MariaDB and a real agent gossiping
//! over mutual TLS (no non-DB host: with three DB hosts the two left by a cut are each other's
//! witness), under a steady write load (one client thread inserting numbered rows into Pandora's
//! `tagente_datos`, each into the next database that takes it, over the bench's own link, which
//! no cut touches: during a partition both sides' primaries take rows, as Pandora servers beside
//! each would), taken through N
//! failovers (kill -9 of the primary's mysqld, a new primary, the killed one started again and
//! back as a replica), N switchovers (`gossip-ha switchover --to …`) and N partitions (the
//! primary's host cut off from the others both ways past the DOWN window, healed, the split-brain
//! repaired); defaults 10, 2 and 3, interleaved. Every agent's `gossip-ha events --json` is read
//! every few seconds (the log keeps 1,000) and at the end. It prints the run time; per event kind
//! the count per agent and per hour; the longest run of identical consecutive events (kind, node,
//! reason) per agent and overall; `db_note` events per agent; the time each step took; and the
//! acknowledged writes, with whether every one is on the final primary, once (exit status 1 if
//! not). `--keep DIR` copies the agents' logs and the events read into DIR.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::db_cluster::{db_of, replicating_from, wait_formed, Cluster, THRESHOLD};
use common::mariadb::{sql, PANDORA_TABLES};
use common::{cli, state_of};
use gossip_ha::core::db::announced_history;
use gossip_ha::core::gtid::Relation;
use gossip_ha_proto::api::{Event, NodeLiveness, StatusReport};

/// The module id the writer's rows carry; `datos` holds the row's number.
const SOAK_MODULE: u32 = 14;
/// The writer starts a write at most this often (20 writes a second).
const WRITE_PACE: Duration = Duration::from_millis(50);
/// Steady load between two steps.
const STEADY: Duration = Duration::from_secs(5);
/// How long a partition stays after the cut-off side has a new primary: both sides take writes.
const HOLD_AFTER_PROMOTION: Duration = Duration::from_secs(5);
/// How often every agent's event log is read (it keeps the newest 1,000).
const COLLECT_EVERY: Duration = Duration::from_secs(3);
/// Bounds of the waits: a new primary, and a cluster back to one primary with every other node
/// replicating (a split-brain repair merges and rebuilds; a failed step is retried after
/// 10 × threshold).
const NEW_PRIMARY_WITHIN: Duration = Duration::from_secs(30);
const SETTLED_WITHIN: Duration = Duration::from_secs(240);

struct Options {
    failovers: usize,
    switchovers: usize,
    partitions: usize,
    /// Where to copy the agents' logs and events at the end (`--keep DIR`), to look into a run.
    keep: Option<PathBuf>,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str, default: usize| {
        args.iter().position(|arg| arg == name).map_or(default, |index| {
            args.get(index + 1)
                .and_then(|value| value.parse().ok())
                .unwrap_or_else(|| panic!("{name} N"))
        })
    };
    Options {
        failovers: value("--failovers", 10),
        switchovers: value("--switchovers", 2),
        partitions: value("--partitions", 3),
        keep: args
            .iter()
            .position(|arg| arg == "--keep")
            .map(|index| PathBuf::from(args.get(index + 1).expect("--keep DIR"))),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Failover,
    Switchover,
    Partition,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::Failover => "failover (kill -9 of the primary's mysqld, restarted)",
            Step::Switchover => "switchover (`gossip-ha switchover --to …`)",
            Step::Partition => "partition (primary's host cut off both ways, healed)",
        }
    }
}

/// One of each kind still to do, in turn, until none is left: the kinds are spread over the run.
fn schedule(options: &Options) -> Vec<Step> {
    let mut left = [
        (Step::Failover, options.failovers),
        (Step::Switchover, options.switchovers),
        (Step::Partition, options.partitions),
    ];
    let mut steps = Vec::new();
    while left.iter().any(|(_, count)| *count > 0) {
        for (step, count) in left.iter_mut().filter(|(_, count)| *count > 0) {
            steps.push(*step);
            *count -= 1;
        }
    }
    steps
}

// ---- the write load ----

/// What the writer saw.
#[derive(Default)]
struct Load {
    /// Row numbers whose insert was acknowledged, with the database that acknowledged each.
    acked: Vec<(u64, String)>,
    /// The longest time without an acknowledged write.
    longest_gap: Duration,
}

/// Inserts rows 1, 2, … until stopped; stopped and joined on drop, so a panic leaves no writer.
struct Writer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Load>>,
}

impl Writer {
    /// `targets`: each database's name and application URL.
    fn start(targets: Vec<(String, String)>) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || write_until(&targets, &stopped));
        Writer {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Load {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().expect("the writer panicked")
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Each row goes to the next database, in turn, that takes it: outside a partition only the
/// primary does; during one, both sides' primaries get rows (a Pandora server beside each), so the
/// split-brain has rows of both sides to keep. Every insert is a fresh connection, bounded (5 s).
fn write_until(targets: &[(String, String)], stop: &AtomicBool) -> Load {
    let mut load = Load::default();
    let mut next = 0;
    let mut last_ack = Instant::now();
    let mut number = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let started = Instant::now();
        number += 1;
        let statement = format!(
            "INSERT INTO pandora.tagente_datos (id_agente_modulo, datos, utimestamp) VALUES ({SOAK_MODULE}, {number}, UNIX_TIMESTAMP())"
        );
        let taken = (0..targets.len())
            .map(|attempt| (next + attempt) % targets.len())
            .find(|&index| sql(&targets[index].1, &[&statement]).is_ok());
        if let Some(index) = taken {
            next = (index + 1) % targets.len();
            load.acked.push((number, targets[index].0.clone()));
            load.longest_gap = load.longest_gap.max(last_ack.elapsed());
            last_ack = Instant::now();
        }
        std::thread::sleep(WRITE_PACE.saturating_sub(started.elapsed()));
    }
    load
}

// ---- the events ----

/// Every event read from each agent, by sequence number.
#[derive(Default)]
struct Collected {
    per_agent: BTreeMap<String, BTreeMap<u64, Event>>,
}

impl Collected {
    /// `gossip-ha events --json` of each agent (bounded by the harness's 20 s), merged in.
    fn read(&mut self, sockets: &[(String, PathBuf)]) {
        for (name, socket) in sockets {
            let output = cli(&["events", "--json", "--socket", socket.to_str().unwrap()]);
            assert!(
                output.status.success(),
                "events of {name}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            let events: Vec<Event> =
                serde_json::from_slice(&output.stdout).unwrap_or_else(|err| panic!("events --json of {name}: {err}"));
            let kept = self.per_agent.entry(name.clone()).or_default();
            kept.extend(events.into_iter().map(|event| (event.seq, event)));
        }
    }
}

/// Reads every agent's events every `COLLECT_EVERY` until stopped (joined on drop), so nothing
/// falls out of the 1,000-entry log unread.
struct Collector {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Collected>>,
}

impl Collector {
    fn start(sockets: Vec<(String, PathBuf)>) -> Collector {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut collected = Collected::default();
            while !stopped.load(Ordering::SeqCst) {
                collected.read(&sockets);
                let read_at = Instant::now();
                while read_at.elapsed() < COLLECT_EVERY && !stopped.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            collected
        });
        Collector {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Collected {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .unwrap()
            .join()
            .expect("the event collector panicked")
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

// ---- the cluster's state ----

/// Every agent's status, or `None` while one does not answer.
fn reports(cluster: &Cluster) -> Option<Vec<(String, StatusReport)>> {
    cluster
        .agents
        .iter()
        .map(|agent| Some((agent.name.clone(), agent.try_status()?)))
        .collect()
}

/// The primary every agent names, once it is writable and every other DB node replicates from
/// it, alive, with a history inside the primary's and nothing left to repair (as its own agent
/// sees them).
fn settled_primary(cluster: &Cluster) -> Option<String> {
    let reports = reports(cluster)?;
    let primary = reports[0].1.db_primary.clone()?;
    if reports
        .iter()
        .any(|(_, report)| report.db_primary.as_ref() != Some(&primary))
    {
        return None;
    }
    let view = &reports.iter().find(|(name, _)| *name == primary)?.1;
    let own = db_of(view, &primary)?;
    let history = announced_history(&own)?;
    let source = cluster.db(&primary);
    let follows = |name: &str| {
        let Some(replica) = db_of(view, name) else {
            return false;
        };
        let inside = announced_history(&replica)
            .is_some_and(|mine| matches!(mine.relation(&history), Relation::Behind | Relation::Equal));
        inside
            && replica.repair.is_none()
            && state_of(view, name) == Some(NodeLiveness::Alive)
            && replicating_from(view, name, source)
    };
    let all_follow = cluster
        .dbs
        .iter()
        .filter(|db| db.name != primary)
        .all(|db| follows(&db.name));
    (own.read_only == Some(false) && all_follow).then_some(primary)
}

/// A writable primary other than `old` that every agent in `observers` names.
fn new_primary(cluster: &Cluster, observers: &[&str], old: &str) -> Option<String> {
    let reports: Vec<StatusReport> = observers
        .iter()
        .map(|name| cluster.agent(name).try_status())
        .collect::<Option<_>>()?;
    let primary = reports[0].db_primary.clone().filter(|primary| primary != old)?;
    let agreed = reports
        .iter()
        .all(|report| report.db_primary.as_ref() == Some(&primary));
    let writable = db_of(&reports[0], &primary).is_some_and(|db| db.read_only == Some(false));
    (agreed && writable).then_some(primary)
}

fn wait_settled(cluster: &Cluster, what: &str) -> String {
    let mut primary = None;
    cluster.wait(what, SETTLED_WITHIN, |c| {
        primary = settled_primary(c);
        primary.is_some()
    });
    primary.unwrap()
}

fn wait_new_primary(cluster: &Cluster, observers: &[&str], old: &str) -> String {
    let mut primary = None;
    cluster.wait(&format!("a primary other than {old}"), NEW_PRIMARY_WITHIN, |c| {
        primary = new_primary(c, observers, old);
        primary.is_some()
    });
    primary.unwrap()
}

// ---- the steps ----

/// What one step took: until a new primary (none for a switchover, whose command waits for
/// it), and until the cluster was settled again.
struct Timing {
    step: Step,
    to_primary: Option<Duration>,
    to_settled: Duration,
}

fn other_dbs<'a>(cluster: &'a Cluster, primary: &str) -> Vec<&'a str> {
    cluster
        .dbs
        .iter()
        .map(|db| db.name.as_str())
        .filter(|name| *name != primary)
        .collect()
}

fn failover(cluster: &mut Cluster, primary: &str) -> (String, Timing) {
    let started = Instant::now();
    cluster.db_mut(primary).kill();
    let observers = other_dbs(cluster, primary);
    let new = wait_new_primary(cluster, &observers, primary);
    let to_primary = started.elapsed();
    cluster.db_mut(primary).start();
    let settled = wait_settled(cluster, &format!("{primary} back as a replica of {new}"));
    let timing = Timing {
        step: Step::Failover,
        to_primary: Some(to_primary),
        to_settled: started.elapsed(),
    };
    (settled, timing)
}

fn switchover(cluster: &Cluster, primary: &str) -> (String, Timing) {
    let target = other_dbs(cluster, primary)[0].to_string();
    let socket = cluster.agent(primary).socket.display().to_string();
    let started = Instant::now();
    let output = cli(&["switchover", "--to", &target, "--socket", &socket]);
    assert!(
        output.status.success(),
        "switchover to {target}: {}{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        cluster.logs()
    );
    let settled = wait_settled(cluster, &format!("the others to follow {target}"));
    let timing = Timing {
        step: Step::Switchover,
        to_primary: None,
        to_settled: started.elapsed(),
    };
    (settled, timing)
}

fn partition(cluster: &Cluster, primary: &str) -> (String, Timing) {
    let started = Instant::now();
    cluster.lab().isolate(primary);
    let observers = other_dbs(cluster, primary);
    let new = wait_new_primary(cluster, &observers, primary);
    let to_primary = started.elapsed();
    // The cut lasts past the DOWN window whatever the promotion took, and both sides take rows.
    let down_window = Duration::from_secs_f64(2.0 * THRESHOLD);
    std::thread::sleep(HOLD_AFTER_PROMOTION.max(down_window.saturating_sub(to_primary)));
    cluster.lab().heal();
    let settled = wait_settled(cluster, &format!("the split-brain of {primary} and {new} repaired"));
    let timing = Timing {
        step: Step::Partition,
        to_primary: Some(to_primary),
        to_settled: started.elapsed(),
    };
    (settled, timing)
}

// ---- the run ----

/// The acknowledged rows against the final primary's.
struct RowCheck {
    primary: String,
    /// Acknowledged rows (number, the database that took it) not there, and there more than once.
    missing: Vec<(u64, String)>,
    duplicated: Vec<(u64, String)>,
    unacknowledged_present: usize,
}

struct Outcome {
    run_time: Duration,
    steps: Vec<Timing>,
    load: Load,
    rows: RowCheck,
    events: Collected,
}

/// The Pandora tables on the primary, on every replica before the load starts.
fn load_schema(cluster: &Cluster, primary: &str) {
    let db = cluster.db(primary);
    db.admin(&["CREATE DATABASE IF NOT EXISTS pandora"]);
    db.admin_script("pandora", PANDORA_TABLES);
    cluster.wait("the Pandora tables on every server", Duration::from_secs(20), |c| {
        c.dbs
            .iter()
            .all(|db| sql(&db.app_url(), &["SELECT COUNT(*) FROM pandora.tagente_datos"]).is_ok())
    });
}

fn check_rows(cluster: &Cluster, primary: &str, acked: &[(u64, String)]) -> RowCheck {
    let query =
        format!("SELECT CAST(datos AS UNSIGNED) FROM pandora.tagente_datos WHERE id_agente_modulo = {SOAK_MODULE}");
    let rows = sql(&cluster.db(primary).admin_url(), &[&query])
        .unwrap_or_else(|err| panic!("reading the rows on {primary}: {err}"));
    let mut present: HashMap<u64, usize> = HashMap::new();
    for number in rows.iter().filter_map(|row| row[0].as_deref()?.parse().ok()) {
        *present.entry(number).or_default() += 1;
    }
    let with_count = |wanted: fn(usize) -> bool| -> Vec<(u64, String)> {
        let count = |number: &u64| present.get(number).copied().unwrap_or(0);
        acked
            .iter()
            .filter(|(number, _)| wanted(count(number)))
            .cloned()
            .collect()
    };
    let acked_set: std::collections::HashSet<u64> = acked.iter().map(|(number, _)| *number).collect();
    RowCheck {
        primary: primary.to_string(),
        missing: with_count(|count| count == 0),
        duplicated: with_count(|count| count > 1),
        unacknowledged_present: present.keys().filter(|number| !acked_set.contains(number)).count(),
    }
}

/// Wall-clock time as the events carry it, to place the steps among them.
fn unix_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis())
}

/// Copies each agent's log and the events read from it into `dir`.
fn keep(cluster: &Cluster, events: &Collected, dir: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap_or_else(|err| panic!("{}: {err}", dir.display()));
    for agent in &cluster.agents {
        let _ = std::fs::copy(&agent.log, dir.join(format!("{}.log", agent.name)));
        let read: Vec<&Event> = events
            .per_agent
            .get(&agent.name)
            .into_iter()
            .flat_map(|log| log.values())
            .collect();
        let json = serde_json::to_string_pretty(&read).unwrap();
        std::fs::write(dir.join(format!("{}.events.json", agent.name)), json).unwrap();
    }
    eprintln!("logs and events kept in {}", dir.display());
}

/// Everything it starts (namespaces, servers, agents, the writer and the collector) stops when
/// this returns or panics: the guards drop in reverse order of creation.
fn soak(options: &Options) -> Outcome {
    let started = Instant::now();
    let mut cluster = wait_formed(Cluster::start_in_lab(3, false));
    let mut primary = "db1".to_string();
    load_schema(&cluster, &primary);
    let sockets: Vec<(String, PathBuf)> = cluster
        .agents
        .iter()
        .map(|agent| (agent.name.clone(), agent.socket.clone()))
        .collect();
    let collector = Collector::start(sockets.clone());
    let targets = cluster.dbs.iter().map(|db| (db.name.clone(), db.app_url())).collect();
    let writer = Writer::start(targets);
    let mut steps = Vec::new();
    for (index, step) in schedule(options).into_iter().enumerate() {
        std::thread::sleep(STEADY);
        eprintln!(
            "[{:>6.0} s, unix_ms {}] step {}: {}, primary {primary}",
            started.elapsed().as_secs_f64(),
            unix_ms(),
            index + 1,
            step.name()
        );
        let (settled, timing) = match step {
            Step::Failover => failover(&mut cluster, &primary),
            Step::Switchover => switchover(&cluster, &primary),
            Step::Partition => partition(&cluster, &primary),
        };
        eprintln!(
            "[{:>6.0} s, unix_ms {}] settled: {settled} primary, after {}",
            started.elapsed().as_secs_f64(),
            unix_ms(),
            seconds(timing.to_settled)
        );
        primary = settled;
        steps.push(timing);
    }
    std::thread::sleep(STEADY);
    let load = writer.finish();
    let primary = wait_settled(&cluster, "the cluster settled at the end");
    let rows = check_rows(&cluster, &primary, &load.acked);
    let mut events = collector.finish();
    events.read(&sockets);
    if let Some(dir) = &options.keep {
        keep(&cluster, &events, dir);
    }
    Outcome {
        run_time: started.elapsed(),
        steps,
        load,
        rows,
        events,
    }
}

// ---- the report ----

fn kind_name(event: &Event) -> String {
    serde_json::to_value(event.kind)
        .ok()
        .and_then(|value| value.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{:?}", event.kind))
}

/// A table cell: one line, no column separators.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn per_hour(count: usize, run_time: Duration) -> f64 {
    count as f64 * 3600.0 / run_time.as_secs_f64()
}

fn print_kinds(events: &Collected, run_time: Duration) {
    let agents: Vec<&String> = events.per_agent.keys().collect();
    let mut counts: BTreeMap<String, BTreeMap<&str, usize>> = BTreeMap::new();
    for (agent, log) in &events.per_agent {
        for event in log.values() {
            *counts.entry(kind_name(event)).or_default().entry(agent).or_default() += 1;
        }
    }
    let header: Vec<&str> = agents.iter().map(|agent| agent.as_str()).collect();
    println!("| event kind | {} | all | per hour (all) |", header.join(" | "));
    println!("|---|{}---|---|", "---|".repeat(agents.len()));
    for (kind, by_agent) in &counts {
        let cells: Vec<String> = agents
            .iter()
            .map(|agent| by_agent.get(agent.as_str()).copied().unwrap_or(0).to_string())
            .collect();
        let all: usize = by_agent.values().sum();
        println!(
            "| {kind} | {} | {all} | {:.0} |",
            cells.join(" | "),
            per_hour(all, run_time)
        );
    }
}

/// The longest run of consecutive events (no sequence number skipped) with the same kind, node
/// and reason: its length and its first and last event.
fn longest_run(log: &BTreeMap<u64, Event>) -> Option<(usize, &Event, &Event)> {
    let same =
        |a: &Event, b: &Event| a.seq + 1 == b.seq && a.kind == b.kind && a.node == b.node && a.reason == b.reason;
    let events: Vec<&Event> = log.values().collect();
    let mut best: Option<(usize, &Event, &Event)> = None;
    let mut start = 0;
    for index in 0..events.len() {
        if index > 0 && !same(events[index - 1], events[index]) {
            start = index;
        }
        let length = index - start + 1;
        if best.is_none_or(|(longest, _, _)| length > longest) {
            best = Some((length, events[start], events[index]));
        }
    }
    best
}

/// One agent's line: what was read, what fell out of its log unread, and its longest run.
fn print_run_row(agent: &str, log: &BTreeMap<u64, Event>, run: Option<(usize, &Event, &Event)>) {
    let newest = log.keys().next_back().copied().unwrap_or(0);
    let lost = newest as usize - log.len();
    let described = match run {
        Some((length, first, last)) if length > 1 => format!(
            "{length} | {:.1} s | {} | {} | {}",
            last.unix_ms.saturating_sub(first.unix_ms) as f64 / 1000.0,
            kind_name(first),
            first.node.as_deref().unwrap_or("-"),
            cell(&first.reason)
        ),
        _ => "1 (no event repeated) | – | – | – | –".into(),
    };
    println!("| {agent} | {} | {lost} | {described} |", log.len());
}

fn print_runs(events: &Collected) {
    println!("| agent | events read | lost unread (log of 1,000) | longest run of identical consecutive events | over | kind | node | reason |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut overall: Option<(usize, &str, &Event)> = None;
    for (agent, log) in &events.per_agent {
        let run = longest_run(log);
        print_run_row(agent, log, run);
        if let Some((length, first, _)) =
            run.filter(|(length, ..)| overall.is_none_or(|(longest, ..)| *length > longest))
        {
            overall = Some((length, agent.as_str(), first));
        }
    }
    println!();
    match overall {
        Some((length, agent, first)) if length > 1 => println!(
            "Longest run of identical consecutive events overall: {length} on {agent}: {} {}: {}",
            kind_name(first),
            first.node.as_deref().unwrap_or("-"),
            first.reason
        ),
        _ => println!("Longest run of identical consecutive events overall: 1 (no agent repeated an event)."),
    }
}

fn print_db_notes(events: &Collected) {
    let notes: Vec<String> = events
        .per_agent
        .iter()
        .map(|(agent, log)| {
            let count = log.values().filter(|event| kind_name(event) == "db_note").count();
            format!("{agent} {count}")
        })
        .collect();
    println!("db_note events per agent: {}", notes.join(", "));
}

fn seconds(duration: Duration) -> String {
    format!("{:.3} s", duration.as_secs_f64())
}

fn median_and_max(mut samples: Vec<Duration>) -> String {
    if samples.is_empty() {
        return "– | –".into();
    }
    samples.sort();
    format!(
        "{} | {}",
        seconds(samples[samples.len() / 2]),
        seconds(samples[samples.len() - 1])
    )
}

fn print_steps(steps: &[Timing]) {
    println!("| step | runs | to a new primary, median | max | until one primary and every other node replicating, median | max |");
    println!("|---|---|---|---|---|---|");
    for kind in [Step::Failover, Step::Switchover, Step::Partition] {
        let of_kind: Vec<&Timing> = steps.iter().filter(|timing| timing.step == kind).collect();
        if of_kind.is_empty() {
            continue;
        }
        let to_primary = of_kind.iter().filter_map(|timing| timing.to_primary).collect();
        let to_settled = of_kind.iter().map(|timing| timing.to_settled).collect();
        println!(
            "| {} | {} | {} | {} |",
            kind.name(),
            of_kind.len(),
            median_and_max(to_primary),
            median_and_max(to_settled)
        );
    }
}

/// `rows` (in increasing order) as runs of consecutive numbers taken by one database:
/// "101–140 (db2)".
fn ranges(rows: &[(u64, String)]) -> String {
    let mut runs: Vec<(u64, u64, &str)> = Vec::new();
    for (number, db) in rows {
        match runs.last_mut() {
            Some((_, last, taken_by)) if *last + 1 == *number && *taken_by == db.as_str() => *last = *number,
            _ => runs.push((*number, *number, db)),
        }
    }
    let shown: Vec<String> = runs
        .iter()
        .take(12)
        .map(|(first, last, db)| format!("{first}–{last} ({db})"))
        .collect();
    let more = if runs.len() > 12 { ", …" } else { "" };
    format!("{}{more}", shown.join(", "))
}

/// Says whether every acknowledged row is on the final primary, once; loudly when not.
fn print_rows(load: &Load, rows: &RowCheck) -> bool {
    println!(
        "Acknowledged writes: {} (longest time without one: {}); on the final primary {}: {} missing, {} present more than once, {} present whose acknowledgement was lost.",
        load.acked.len(),
        seconds(load.longest_gap),
        rows.primary,
        rows.missing.len(),
        rows.duplicated.len(),
        rows.unacknowledged_present
    );
    if rows.missing.is_empty() && rows.duplicated.is_empty() {
        println!("Every acknowledged row is on {}, once.", rows.primary);
        return true;
    }
    println!();
    println!(
        "!!!!!!!! ACKNOWLEDGED WRITES LOST OR DOUBLED ON THE FINAL PRIMARY {} !!!!!!!!",
        rows.primary
    );
    for (what, list) in [("MISSING", &rows.missing), ("MORE THAN ONCE", &rows.duplicated)] {
        if !list.is_empty() {
            println!("!!!!!!!! {what}: {} rows: {}", list.len(), ranges(list));
        }
    }
    false
}

fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).filter(|arg| arg != "--bench").collect();
    if args.is_empty() {
        "cargo bench --bench soak".to_string()
    } else {
        format!("cargo bench --bench soak -- {}", args.join(" "))
    }
}

fn main() {
    let options = options();
    let outcome = soak(&options);
    let cores = std::thread::available_parallelism().map_or(0, |cores| cores.get());
    println!();
    println!(
        "`{}` ({cores} cores, server_threshold {THRESHOLD} s): run time {:.0} s ({:.2} h)",
        command_line(),
        outcome.run_time.as_secs_f64(),
        outcome.run_time.as_secs_f64() / 3600.0
    );
    println!();
    print_steps(&outcome.steps);
    println!();
    print_kinds(&outcome.events, outcome.run_time);
    println!();
    print_runs(&outcome.events);
    println!();
    print_db_notes(&outcome.events);
    println!();
    if !print_rows(&outcome.load, &outcome.rows) {
        std::process::exit(1);
    }
}
