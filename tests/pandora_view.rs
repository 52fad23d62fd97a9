//! Pandora's HA view (issue #17) against real agents and MariaDB servers: the primary's agent
//! keeps `tdatabase` matching `gossip-ha status` through a failover and a switchover, a replica
//! the console disabled is never promoted, and a database without the table is no error.

mod common;

use std::time::Duration;

use common::db_cluster::*;
use common::mariadb::{sql, MariaDb, PANDORA_TABLES};
use common::*;
use gossip_ha_proto::api::{EventKind, NodeLiveness, StatusReport};

/// Pandora's own `tdatabase` definition, from the fixture.
fn tdatabase_definition() -> &'static str {
    let start = PANDORA_TABLES.find("CREATE TABLE IF NOT EXISTS `tdatabase`").unwrap();
    let length = PANDORA_TABLES[start..].find(';').unwrap() + 1;
    &PANDORA_TABLES[start..start + length]
}

/// Three DB hosts listed in `ha_hosts` by their addresses (as `pandora_server.conf` lists
/// them), a witness, formed around db1, with `tdatabase` in place when `with_table`.
fn cluster(with_table: bool) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let dbs: Vec<MariaDb> = (1..=3)
        .map(|index| MariaDb::install(dir.path(), &format!("db{index}"), index))
        .collect();
    let hosts: Vec<String> = dbs.iter().map(|db| format!("{:?}", db.advertise())).collect();
    let toml = format!("[db]\nha_hosts = [{}]\n", hosts.join(", "));
    let cluster = wait_formed(Cluster::start_on(dir, dbs, true, |_| toml.clone()));
    create_schema(cluster.db("db1"));
    if with_table {
        cluster.db("db1").admin_script("pandora", tdatabase_definition());
    }
    cluster
}

/// (host, label, master, status, db_status) of each row, by host, as `db` holds them.
fn rows(db: &MariaDb) -> Vec<(String, String, String, String, String)> {
    let rows = sql(
        &db.admin_url(),
        &["SELECT host, label, master, status, db_status FROM pandora.tdatabase ORDER BY host"],
    )
    .unwrap_or_default();
    rows.into_iter()
        .map(|row| {
            let field = |index: usize| row[index].clone().unwrap_or_default();
            (field(0), field(1), field(2), field(3), field(4))
        })
        .collect()
}

/// The rows `status` implies: one per DB host, the primary marked, liveness and reachability.
fn expected(cluster: &Cluster, report: &StatusReport) -> Vec<(String, String, String, String, String)> {
    let mut expected: Vec<_> = cluster
        .dbs
        .iter()
        .map(|db| {
            let node = report.nodes.iter().find(|node| node.name == db.name).unwrap();
            let alive = node.state == NodeLiveness::Alive;
            let answers = alive && node.db.as_ref().is_some_and(|db| db.reachable);
            let flag = |on: bool| u8::from(on).to_string();
            (
                db.advertise(),
                db.name.clone(),
                flag(report.db_primary.as_deref() == Some(db.name.as_str())),
                flag(alive),
                flag(answers),
            )
        })
        .collect();
    expected.sort();
    expected
}

fn wait_rows_match(cluster: &Cluster, primary: &str, what: &str) {
    cluster.wait(what, Duration::from_secs(30), |c| {
        let report = c.agent("srv").status();
        report.db_primary.as_deref() == Some(primary) && rows(c.db(primary)) == expected(c, &report)
    });
}

#[test]
fn tdatabase_matches_status_after_a_failover_and_a_switchover() {
    let mut cluster = cluster(true);
    wait_rows_match(&cluster, "db1", "tdatabase to show db1 as master");

    cluster.db_mut("db1").kill();
    cluster.wait("db2 promoted", Duration::from_secs(20), |c| {
        c.all_see_primary(&["srv", "db2", "db3"], "db2")
    });
    wait_rows_match(&cluster, "db2", "tdatabase to follow the failover to db2");
    let db1_row = rows(cluster.db("db2")).into_iter().find(|row| row.1 == "db1").unwrap();
    assert_eq!((db1_row.2.as_str(), db1_row.4.as_str()), ("0", "0"), "{db1_row:?}");

    let socket = cluster.agent("db2").socket.display().to_string();
    let output = cli(&["switchover", "--to", "db3", "--socket", &socket]);
    assert!(output.status.success(), "{output:?}\n{}", cluster.logs());
    wait_rows_match(&cluster, "db3", "tdatabase to follow the switchover to db3");
}

#[test]
fn a_replica_disabled_from_the_console_is_not_promoted() {
    let mut cluster = cluster(true);
    wait_rows_match(&cluster, "db1", "tdatabase filled");
    let db2_host = cluster.db("db2").advertise();
    sql(
        &cluster.db("db1").admin_url(),
        &[&format!(
            "UPDATE pandora.tdatabase SET disabled = 1 WHERE host = '{db2_host}'"
        )],
    )
    .unwrap();
    // db2 may have looked for the table before the test made it: it looks again every 10 s.
    cluster.wait("db2 in maintenance", Duration::from_secs(30), |c| {
        db_of(&c.agent("srv").status(), "db2").is_some_and(|db| db.maintenance && !db.promotable)
    });
    assert!(has_event(
        cluster.agent("db2"),
        EventKind::AdminCommand,
        "tdatabase.disabled = 1"
    ));

    cluster.db_mut("db1").kill();
    cluster.wait("db3 promoted instead of db2", Duration::from_secs(20), |c| {
        c.all_see_primary(&["srv", "db2", "db3"], "db3")
    });
    assert!(insert(cluster.db("db2"), 10).is_err(), "the disabled db2 is writable");
}

#[test]
fn without_tdatabase_the_agents_run_and_say_so_once() {
    let cluster = cluster(false);
    write_and_replicate(&cluster, "db1", 1..=3, &["db2", "db3"]);
    std::thread::sleep(Duration::from_secs(3));
    for name in ["db1", "db2", "db3"] {
        let notes = cluster
            .agent(name)
            .events()
            .into_iter()
            .filter(|event| event.kind == EventKind::DbNote && event.reason.contains("no table pandora.tdatabase"))
            .count();
        assert_eq!(notes, 1, "{name}: {}", cluster.logs());
    }
    assert_eq!(cluster.agent("srv").status().db_primary.as_deref(), Some("db1"));
}
