//! Planned switchover under a steady write load (issue #7), asked on a witness host and carried
//! to the primary by gossip, and maintenance of another node. Real agents, real MariaDB.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::db_cluster::{db_of, formed, has_event, insert, replicating_from, Cluster};
use common::mariadb::scalar;
use gossip_ha_proto::api::EventKind;

/// What the writer saw: acknowledged ids and the longest time without an acknowledged write.
struct Load {
    acked: Vec<u32>,
    longest_gap: Duration,
}

/// Writes ids 1, 2, … to whichever database takes them (the application follows the primary),
/// until `stop`.
fn write_until(cluster: &Cluster, stop: &AtomicBool) -> Load {
    let names = ["db1", "db2", "db3"];
    let mut current = 0;
    let mut acked = Vec::new();
    let mut last_ack = Instant::now();
    let mut longest_gap = Duration::ZERO;
    let mut id = 0;
    while !stop.load(Ordering::SeqCst) {
        id += 1;
        for attempt in 0..names.len() {
            let name = names[(current + attempt) % names.len()];
            if insert(cluster.db(name), id).is_ok() {
                current = (current + attempt) % names.len();
                longest_gap = longest_gap.max(last_ack.elapsed());
                last_ack = Instant::now();
                acked.push(id);
                break;
            }
        }
    }
    Load { acked, longest_gap }
}

#[test]
fn a_switchover_under_load_loses_no_acknowledged_write() {
    let cluster = formed(3, true);
    let stop = Arc::new(AtomicBool::new(false));
    let load = std::thread::scope(|scope| {
        let writer = scope.spawn(|| write_until(&cluster, &stop));
        std::thread::sleep(Duration::from_secs(1));
        let socket = cluster.agent("srv").socket.display().to_string();
        let asked = Instant::now();
        let output = common::cli(&["switchover", "--to", "db2", "--socket", &socket]);
        let answer = String::from_utf8_lossy(&output.stdout).to_string();
        assert!(
            output.status.success() && answer.contains("switchover done: db2 is the DB primary"),
            "{answer}{}\n{}",
            String::from_utf8_lossy(&output.stderr),
            cluster.logs()
        );
        eprintln!("switchover answered after {} ms", asked.elapsed().as_millis());
        std::thread::sleep(Duration::from_secs(1));
        stop.store(true, Ordering::SeqCst);
        writer.join().unwrap()
    });
    eprintln!(
        "switchover under load: {} writes acknowledged, longest time without a writable primary {} ms",
        load.acked.len(),
        load.longest_gap.as_millis()
    );
    let db2 = cluster.db("db2");
    cluster.wait("db1 and db3 to follow db2", Duration::from_secs(20), |c| {
        let report = c.agent("srv").status();
        replicating_from(&report, "db1", db2) && replicating_from(&report, "db3", db2)
    });
    let ids: Vec<String> = load.acked.iter().map(u32::to_string).collect();
    let present = scalar(
        &db2.admin_url(),
        &format!(
            "SELECT COUNT(*) FROM pandora.tagente_datos WHERE id IN ({})",
            ids.join(",")
        ),
    );
    assert_eq!(
        present,
        Some(load.acked.len().to_string()),
        "every acknowledged write is on db2"
    );
    assert!(has_event(
        cluster.agent("db1"),
        EventKind::DbAction,
        "switchover: db2 has promoted"
    ));
    assert!(has_event(
        cluster.agent("db2"),
        EventKind::DbAction,
        "switchover from db1"
    ));
    // A planned move is a switchover on every host, never a split-brain anyone is paged for.
    for name in ["db1", "db2", "db3", "srv"] {
        let events = cluster.agent(name).events();
        let split: Vec<&str> = events
            .iter()
            .filter(|event| event.kind == EventKind::SplitBrain || event.reason.contains("split-brain"))
            .map(|event| event.reason.as_str())
            .collect();
        assert!(split.is_empty(), "{name} calls the switchover a split-brain: {split:?}");
        assert!(
            has_event(
                cluster.agent(name),
                EventKind::Switchover,
                "switchover: db1 handed over to db2"
            ),
            "{name} has no switchover event: {events:#?}"
        );
    }
}

#[test]
fn maintenance_of_another_node_is_carried_there_and_confirmed() {
    let cluster = formed(2, true);
    let socket = cluster.agent("srv").socket.display().to_string();
    let output = common::cli(&["maintenance", "on", "db2", "--socket", &socket]);
    let answer = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && answer.contains("db2 is in maintenance"),
        "{answer}"
    );
    cluster.wait("db1 to see db2 in maintenance", Duration::from_secs(5), |c| {
        db_of(&c.agent("db1").status(), "db2").is_some_and(|db| db.maintenance)
    });
    // A switchover to a node in maintenance is refused, the asking CLI hears the primary's
    // reason (not a timeout), and the primary keeps writing.
    let output = common::cli(&["switchover", "--to", "db2", "--socket", &socket]);
    let refusal = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        refusal.contains("db1 refused: db2 cannot be promoted (in maintenance)"),
        "the refusal is not the primary's: {refusal}"
    );
    assert!(
        has_event(cluster.agent("db1"), EventKind::AdminCommand, "cannot be promoted"),
        "{}",
        cluster.logs()
    );
    assert!(insert(cluster.db("db1"), 1).is_ok());

    let output = common::cli(&["maintenance", "on", "ghost", "--socket", &socket]);
    let refusal = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && refusal.contains("no node named ghost is known"),
        "{refusal}"
    );

    let output = common::cli(&["maintenance", "off", "db2", "--socket", &socket]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(has_event(
        cluster.agent("db2"),
        EventKind::AdminCommand,
        "may be promoted again (asked on srv)"
    ));
}
