//! What `status` and `events` say about databases is true (issue #14): a replica's lag is read
//! from GTIDs (Seconds_Behind_Master says 0 while it is 100 transactions behind), a stopped IO
//! thread is flagged, a node whose agent is DOWN reads as last known, and an asymmetric cut —
//! an agent that cannot reach a DB host while gossip still relays around it — is in status and
//! in events. Real agents and real MariaDB; the cut in network namespaces.
//!
//! New fields are read from `status --json` as plain JSON and the table as text, so the very
//! same tests run against an agent built before these fields existed (and fail there).

mod common;

use std::time::Duration;

use common::db_cluster::{create_schema, formed, insert, wait_formed, Cluster};
use common::{cli, state_of};
use gossip_ha_proto::api::NodeLiveness;
use serde_json::Value;

fn status_json(cluster: &Cluster, observer: &str) -> Value {
    let socket = cluster.agent(observer).socket.display().to_string();
    let output = cli(&["status", "--json", "--socket", &socket]);
    serde_json::from_slice(&output.stdout).unwrap_or(Value::Null)
}

fn status_table(cluster: &Cluster, observer: &str) -> String {
    let socket = cluster.agent(observer).socket.display().to_string();
    String::from_utf8_lossy(&cli(&["status", "--socket", &socket]).stdout).into_owned()
}

/// The row of `name` in the database table (after the "Database primary: …" line).
fn database_row(table: &str, name: &str) -> String {
    let after = table.split("Database primary:").nth(1).unwrap_or_default();
    after
        .lines()
        .skip(1)
        .find(|line| line.split_whitespace().next() == Some(name))
        .unwrap_or_default()
        .to_string()
}

/// A table row's cells: columns are at least two spaces apart, cells hold single spaces.
fn cells(row: &str) -> Vec<String> {
    row.split("  ")
        .map(str::trim)
        .filter(|cell| !cell.is_empty())
        .map(str::to_string)
        .collect()
}

/// `nodes[name].replication` of `observer`'s status, or null.
fn replication(cluster: &Cluster, observer: &str, name: &str) -> Value {
    let report = status_json(cluster, observer);
    report["nodes"]
        .as_array()
        .and_then(|nodes| nodes.iter().find(|node| node["name"] == name))
        .map(|node| node["replication"].clone())
        .unwrap_or(Value::Null)
}

#[test]
fn a_held_back_replica_shows_transactions_behind_and_a_stopped_io_thread_is_stalled() {
    let cluster = formed(2, true);
    let (db1, db2) = (cluster.db("db1"), cluster.db("db2"));
    db2.admin(&["STOP SLAVE SQL_THREAD"]);
    for id in 1..=100 {
        insert(db1, id).unwrap_or_else(|err| panic!("write {id} on db1: {err}"));
    }
    // Seconds_Behind_Master reads NULL or 0 here; the GTIDs say at least the 100 writes.
    let mut lag = Value::Null;
    cluster.wait("srv to see db2 100 transactions behind", Duration::from_secs(20), |c| {
        lag = replication(c, "srv", "db2");
        lag["transactions_behind"].as_u64().is_some_and(|behind| behind >= 100)
    });
    cluster.wait("the held-back time to show", Duration::from_secs(10), |c| {
        replication(c, "srv", "db2")["lag_ms"]
            .as_u64()
            .is_some_and(|lag_ms| lag_ms > 0)
    });
    let row = cells(&database_row(&status_table(&cluster, "srv"), "db2"));
    assert!(
        row[4].contains(" trx, "),
        "the table shows the lag in transactions: {row:?}\n{lag}"
    );
    assert_eq!(row[2], "IO Yes / SQL No", "{row:?}");

    db2.admin(&["START SLAVE SQL_THREAD"]);
    cluster.wait("db2 caught up in srv's status", Duration::from_secs(20), |c| {
        let lag = replication(c, "srv", "db2");
        lag["transactions_behind"] == 0 && lag["lag_ms"] == 0
    });
    let row = cells(&database_row(&status_table(&cluster, "srv"), "db2"));
    assert_eq!(row[2..5], ["IO Yes / SQL Yes", "replica", "0"], "{row:?}");

    db2.admin(&["STOP SLAVE IO_THREAD"]);
    cluster.wait("db2's stopped IO thread flagged", Duration::from_secs(20), |c| {
        replication(c, "db1", "db2")["stalled"] == "io_stopped"
    });
    let row = cells(&database_row(&status_table(&cluster, "db1"), "db2"));
    assert_eq!(row[2], "IO No / SQL Yes, STALLED (IO stopped)", "{row:?}");
}

#[test]
fn a_db_node_whose_agent_is_down_reads_as_last_known() {
    let mut cluster = formed(2, true);
    // The agent only: its mysqld stays up, so nothing about the database itself changes.
    cluster.agent_mut("db2").kill();
    cluster.wait("srv to hold db2 DOWN", Duration::from_secs(10), |c| {
        state_of(&c.agent("srv").status(), "db2") == Some(NodeLiveness::Down)
    });
    let table = status_table(&cluster, "srv");
    let row = cells(&database_row(&table, "db2"));
    assert!(row[1].starts_with("unknown (agent down "), "{table}");
    assert!(row[3].starts_with("replica? (last seen "), "{table}");
    assert!(!row.contains(&"up".to_string()), "nothing reads as current: {table}");
    // The others' rows are current.
    assert_eq!(cells(&database_row(&table, "db1"))[1], "up", "{table}");
}

fn has_reach_problem(report: &Value, observer: &str, node: &str) -> bool {
    report["db_reach"]
        .as_array()
        .is_some_and(|problems| problems.iter().any(|p| p["observer"] == observer && p["node"] == node))
}

fn reach_events(cluster: &Cluster, observer: &str, fragment: &str) -> usize {
    let socket = cluster.agent(observer).socket.display().to_string();
    let output = cli(&["events", "--json", "--socket", &socket]);
    let events: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    events
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter(|event| event["kind"] == "db_reach")
                .filter(|event| event["reason"].as_str().is_some_and(|reason| reason.contains(fragment)))
                .count()
        })
        .unwrap_or(0)
}

/// The primary's host cut off from the other DB host and from the Pandora server, while the
/// third DB host still relays gossip: nobody fails over (by design), and everyone can see it.
#[test]
fn an_asymmetric_cut_shows_in_status_and_in_events_until_it_heals() {
    let cluster = wait_formed(Cluster::start_in_lab(3, true));
    create_schema(cluster.db("db1"));
    let lab = cluster.lab();
    lab.set_cuts(&[("db1", "db2"), ("db2", "db1"), ("db1", "srv"), ("srv", "db1")]);
    // Each agent's own checks, as srv hears them (db1's and db2's through db3).
    cluster.wait(
        "srv's status to say who cannot reach db1",
        Duration::from_secs(20),
        |c| {
            let report = status_json(c, "srv");
            [("srv", "db1"), ("db2", "db1"), ("db1", "db2")]
                .iter()
                .all(|(observer, node)| has_reach_problem(&report, observer, node))
        },
    );
    let report = status_json(&cluster, "srv");
    assert!(
        !has_reach_problem(&report, "db3", "db1"),
        "db3 still reaches db1: {report}"
    );
    let srv = cluster.agent("srv").status();
    assert_eq!(
        state_of(&srv, "db1"),
        Some(NodeLiveness::Alive),
        "db3 relays db1's gossip"
    );
    assert_eq!(srv.db_primary.as_deref(), Some("db1"), "no failover");
    let table = status_table(&cluster, "srv");
    let expected = format!("srv cannot reach db1 ({}:", lab.ip("db1"));
    assert!(
        table.contains("Database reach:") && table.contains(&expected),
        "{table}"
    );

    // Writes db2 does not get: its replication is stalled (TCP has not noticed the cut yet,
    // so its IO thread still says Yes) and srv sees it behind.
    for id in 1..=10 {
        insert(cluster.db("db1"), id).unwrap_or_else(|err| panic!("write {id} on db1: {err}"));
    }
    cluster.wait("db2 stalled and behind in srv's status", Duration::from_secs(20), |c| {
        let lag = replication(c, "srv", "db2");
        lag["transactions_behind"].as_u64().is_some_and(|behind| behind >= 10) && lag["stalled"].is_string()
    });

    let lost = "srv can no longer reach db1's host";
    cluster.wait("the reach event on srv", Duration::from_secs(10), |c| {
        reach_events(c, "srv", lost) == 1
    });
    lab.heal();
    cluster.wait("the reaches-again event on srv", Duration::from_secs(20), |c| {
        reach_events(c, "srv", "srv reaches db1's host") == 1
    });
    cluster.wait("no reach problem left", Duration::from_secs(20), |c| {
        status_json(c, "srv")["db_reach"].as_array().is_some_and(Vec::is_empty)
    });
    assert_eq!(
        reach_events(&cluster, "srv", lost),
        1,
        "one event per change, not per tick"
    );
    assert!(!status_table(&cluster, "srv").contains("Database reach:"));
}
