use gossip_ha_proto::api::{NodeLiveness, ReplicationLag, Stall};

use super::*;

fn db(role: DbRole, read_only: bool, source: Option<&str>, advertise: &str) -> DbAnnouncement {
    DbAnnouncement {
        role,
        reachable: true,
        read_only: Some(read_only),
        io_running: source.map(|_| true),
        sql_running: source.map(|_| true),
        source: source.map(str::to_string),
        advertise: advertise.into(),
        ..DbAnnouncement::default()
    }
}

fn node(name: &str, is_self: bool, db: Option<DbAnnouncement>, lag: Option<ReplicationLag>) -> NodeStatus {
    NodeStatus {
        name: name.into(),
        addr: "127.0.0.1:1".into(),
        roles: vec![],
        master: 0,
        state: NodeLiveness::Alive,
        last_contact_ms: 0,
        generation: 1,
        threshold_ms: 1_000,
        is_self,
        db,
        db_warnings: vec![],
        replication: lag,
    }
}

/// db1 primary at :1, db2 replicating from it, seen by `me`; db2 `behind` transactions and
/// `lag_ms` behind.
fn cluster(me: &str, behind: u64, lag_ms: u64) -> StatusReport {
    let lag = ReplicationLag {
        transactions_behind: Some(behind),
        lag_ms: Some(lag_ms),
        ..ReplicationLag::default()
    };
    StatusReport {
        self_name: me.into(),
        cluster_id: "c".into(),
        server_master: None,
        db_primary: Some("db1".into()),
        threshold_ms: 1_000,
        uptime_ms: 1,
        nodes: vec![
            node("db1", me == "db1", Some(db(DbRole::Primary, false, None, "h:1")), None),
            node(
                "db2",
                me == "db2",
                Some(db(DbRole::Replica, true, Some("h:1"), "h:2")),
                Some(lag),
            ),
            node("srv", me == "srv", None, None),
        ],
        rewrites: vec![],
        db_reach: vec![],
    }
}

fn codes(report: &StatusReport, limit: Option<LagLimit>) -> [bool; 4] {
    [
        primary(report).ok,
        replica(report, limit).ok,
        read_only(report).ok,
        health(report).ok,
    ]
}

#[test]
fn each_node_answers_as_patroni_would() {
    assert_eq!(codes(&cluster("db1", 0, 0), None), [true, false, true, true]);
    assert_eq!(codes(&cluster("db2", 0, 0), None), [false, true, true, true]);
    assert_eq!(codes(&cluster("srv", 0, 0), None), [false, false, false, false]);
    let behind = cluster("db2", 100, 4_000);
    assert!(replica(&behind, Some(LagLimit::Transactions(100))).ok);
    assert!(!replica(&behind, Some(LagLimit::Transactions(99))).ok);
    assert!(replica(&behind, Some(LagLimit::Seconds(4))).ok);
    let over = replica(&behind, Some(LagLimit::Seconds(3)));
    assert!(!over.ok && over.reason.contains("over 3 s"), "{over:?}");
}

#[test]
fn a_writable_database_is_not_primary_unless_elected_and_a_read_only_primary_is_not_yet() {
    let mut report = cluster("db1", 0, 0);
    report.nodes[0].db.as_mut().unwrap().read_only = Some(true);
    let answer = primary(&report);
    assert!(!answer.ok && answer.reason.contains("not writable"), "{answer:?}");
    let mut report = cluster("db2", 0, 0);
    report.nodes[1].db.as_mut().unwrap().read_only = Some(false);
    assert!(!primary(&report).ok);
    report.db_primary = None;
    assert_eq!(primary(&report).reason, "no DB primary is elected");
}

#[test]
fn a_replica_stopped_stalled_or_following_another_source_is_not_a_replica() {
    let mut report = cluster("db2", 0, 0);
    report.nodes[1].db.as_mut().unwrap().sql_running = Some(false);
    assert_eq!(
        replica(&report, None).reason,
        "replication is not running (IO Yes / SQL No)"
    );
    let mut report = cluster("db2", 0, 0);
    report.nodes[1].db.as_mut().unwrap().source = Some("h:9".into());
    assert!(!replica(&report, None).ok);
    let mut report = cluster("db2", 0, 0);
    report.nodes[1].replication.as_mut().unwrap().stalled = Some(Stall::NoProgress);
    assert!(!replica(&report, None).ok);
    let mut report = cluster("db2", 0, 0);
    let own = report.nodes[1].db.as_mut().unwrap();
    own.reachable = false;
    own.last_error = Some("connection refused".into());
    let answer = health(&report);
    assert!(!answer.ok && answer.reason.contains("connection refused"), "{answer:?}");
}

#[test]
fn lag_limits_parse_as_seconds_or_transactions() {
    assert_eq!(lag_limit(Some("lag=10")), Ok(Some(LagLimit::Seconds(10))));
    assert_eq!(lag_limit(Some("x=1&lag=5s")), Ok(Some(LagLimit::Seconds(5))));
    assert_eq!(lag_limit(Some("lag=100trx")), Ok(Some(LagLimit::Transactions(100))));
    assert_eq!(lag_limit(None), Ok(None));
    assert!(lag_limit(Some("lag=10MB")).is_err());
}
