use gossip_ha_proto::api::{NodeLiveness, NodeStatus, ReplicationLag, StatusReport};
use gossip_ha_proto::db::{DbAnnouncement, DbRole};
use gossip_ha_proto::gossip::Role;

use super::{own_host, rows_from, same_but_for_moving, short_version, HaRow};

fn node(name: &str, advertise: &str, role: DbRole, state: NodeLiveness) -> NodeStatus {
    NodeStatus {
        name: name.into(),
        addr: "127.0.0.1:7946".into(),
        roles: vec![Role::Db],
        master: 0,
        state,
        last_contact_ms: 0,
        generation: 1,
        threshold_ms: 1_000,
        is_self: false,
        db: Some(DbAnnouncement {
            role,
            reachable: true,
            io_running: Some(role == DbRole::Replica),
            sql_running: Some(role == DbRole::Replica),
            advertise: advertise.into(),
            version: Some("10.11.6-MariaDB-0+deb12u1-log".into()),
            ..DbAnnouncement::default()
        }),
        db_warnings: Vec::new(),
        replication: None,
    }
}

fn report(nodes: Vec<NodeStatus>, primary: &str) -> StatusReport {
    StatusReport {
        self_name: "db1".into(),
        cluster_id: "test".into(),
        server_master: None,
        db_primary: Some(primary.into()),
        threshold_ms: 1_000,
        uptime_ms: 0,
        nodes,
        rewrites: Vec::new(),
        db_reach: Vec::new(),
    }
}

/// host, label, db_port, status, db_status, replication_status, replication_delay, master.
type Summary<'a> = (&'a str, &'a str, u16, u8, u8, u8, i64, u8);

fn ha_hosts(entries: &[&str]) -> Vec<String> {
    entries.iter().map(|entry| entry.to_string()).collect()
}

#[test]
fn one_row_per_entry_matched_by_address_on_a_shared_host() {
    let mut lagging = node("db2", "127.0.0.1:3308", DbRole::Replica, NodeLiveness::Alive);
    lagging.replication = Some(ReplicationLag {
        lag_ms: Some(4_500),
        ..ReplicationLag::default()
    });
    let nodes = vec![
        node("db1", "127.0.0.1:3307", DbRole::Primary, NodeLiveness::Alive),
        lagging,
        node("db3", "127.0.0.1:3309", DbRole::Unreachable, NodeLiveness::Down),
    ];
    let hosts = ha_hosts(&["127.0.0.1:3307", "127.0.0.1:3308", "127.0.0.1:3309", "10.0.0.9"]);
    let rows = rows_from(&report(nodes, "db1"), &hosts);
    let summary: Vec<Summary> = rows
        .iter()
        .map(|row: &HaRow| {
            (
                row.host.as_str(),
                row.label.as_str(),
                row.db_port,
                row.status,
                row.db_status,
                row.replication_status,
                row.replication_delay_seconds,
                row.master,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("127.0.0.1:3307", "db1", 3307, 1, 1, 1, 0, 1),
            ("127.0.0.1:3308", "db2", 3308, 1, 1, 1, 4, 0),
            ("127.0.0.1:3309", "db3", 3309, 0, 0, 0, 0, 0),
            ("10.0.0.9", "", 3306, 0, 0, 0, 0, 0),
        ]
    );
    assert_eq!(rows[0].mysql_version, "10.11.6");
    assert!(rows[3].last_error.contains("no gossip-ha agent"));
}

#[test]
fn entries_without_ports_match_by_host_and_names_match_exactly() {
    let nodes = vec![
        node("pandora-db1", "10.0.0.1:3306", DbRole::Replica, NodeLiveness::Alive),
        node("pandora-db2", "10.0.0.2:3306", DbRole::Primary, NodeLiveness::Alive),
    ];
    let hosts = ha_hosts(&["10.0.0.1", "pandora-db2"]);
    let rows = rows_from(&report(nodes, "pandora-db2"), &hosts);
    assert_eq!(rows[0].label, "pandora-db1");
    assert_eq!(rows[0].master, 0);
    assert_eq!(rows[1].label, "pandora-db2");
    assert_eq!(rows[1].master, 1);
}

#[test]
fn without_ha_hosts_each_db_node_is_a_row_under_its_address() {
    let nodes = vec![node("db1", "10.0.0.1:3306", DbRole::Primary, NodeLiveness::Alive)];
    let rows = rows_from(&report(nodes, "db1"), &[]);
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].host.as_str(), rows[0].label.as_str()),
        ("10.0.0.1:3306", "db1")
    );
}

#[test]
fn own_row_is_the_exact_entry_then_a_unique_host() {
    let shared = ha_hosts(&["127.0.0.1:3307", "127.0.0.1:3308"]);
    assert_eq!(own_host(&shared, "db2", "127.0.0.1:3308"), "127.0.0.1:3308");
    assert_eq!(
        own_host(&ha_hosts(&["10.0.0.1", "10.0.0.2"]), "db2", "10.0.0.2:3306"),
        "10.0.0.2"
    );
    assert_eq!(own_host(&ha_hosts(&["db1", "db2"]), "db2", "10.0.0.2:3306"), "db2");
    assert_eq!(own_host(&[], "db2", "10.0.0.2:3306"), "10.0.0.2:3306");
}

#[test]
fn versions_fit_pandoras_column() {
    assert_eq!(short_version("10.11.6-MariaDB-0+deb12u1-log"), "10.11.6");
    assert_eq!(short_version("8.0.36"), "8.0.36");
    assert_eq!(short_version("12345678901234"), "1234567890");
}

#[test]
fn a_moving_lag_or_error_text_alone_is_no_change_to_write() {
    let row = HaRow {
        host: "198.18.0.2:3306".into(),
        label: "db2".into(),
        db_port: 3306,
        status: 1,
        db_status: 1,
        replication_status: 1,
        replication_delay_seconds: 3,
        master: 0,
        mysql_version: "10.11.6".into(),
        last_error: String::new(),
    };
    let lagging_more = HaRow {
        replication_delay_seconds: 4,
        last_error: "reconnecting".into(),
        ..row.clone()
    };
    assert!(same_but_for_moving(std::slice::from_ref(&row), &[lagging_more]));
    let stopped = HaRow {
        replication_status: 0,
        ..row.clone()
    };
    assert!(!same_but_for_moving(std::slice::from_ref(&row), &[stopped]));
    assert!(!same_but_for_moving(std::slice::from_ref(&row), &[]));
}
