//! Real servers have histories (issue "Real servers have histories"): unrelated servers, empty
//! and setup-only replicas, replicas behind purged logs, and a restarted agent that hears nobody.

use super::*;

/// The local database with `databases` and waypoints `history`.
fn holding_local(
    read_only: bool,
    gtid: &str,
    history: &str,
    databases: &[&str],
    replica: Option<ReplicaProbe>,
) -> LocalDb {
    let mut local = probe(read_only, gtid, replica);
    if let Ok(probe) = local.probe.as_mut() {
        probe.gtid_history = history.into();
        // "empty:NAME" is a database without rows (a deploy script's CREATE DATABASE).
        probe.databases = databases
            .iter()
            .map(|name| match name.strip_prefix("empty:") {
                Some(name) => DatabaseContent {
                    approx_rows: 0,
                    ..holding(name)
                },
                None => holding(name),
            })
            .collect();
    }
    local
}

fn refused_by(source: &str, message: &str) -> Option<ReplicaProbe> {
    Some(ReplicaProbe {
        io_state: "No".into(),
        io_errno: ER_SOURCE_FATAL_READING_BINLOG,
        last_error: Some(message.into()),
        ..replica_of(source)
    })
}

#[test]
fn an_unrelated_server_is_never_preferred_by_its_sequence_numbers() {
    // x1 (first of ha_hosts) holds Pandora at 0-1-235; x2 ran 308 statements of its own in a
    // scratch database. Different servers wrote them: x1 must be the one to promote.
    let x1 = Peer {
        databases: &["pandora"],
        ..replica_peer("x1", 3, "0-1-235")
    };
    let mut x2 = db_node("x2", 2);
    let local = holding_local(true, "0-2-308", "", &["scratch"], None);
    let decided = run(&mut x2, 0, 5_000, &[x1.clone(), witness("srv", None)], &[], &local);
    assert!(actions(&decided).is_empty(), "{decided:?}");
    assert!(
        notes(&decided).contains("x1 (priority 3) is the best candidate"),
        "{}",
        notes(&decided)
    );

    let mut first = db_node("x1", 3);
    let x2_peer = Peer {
        databases: &["scratch"],
        ..replica_peer("x2", 2, "0-2-308")
    };
    let local = holding_local(true, "0-1-235", "", &["pandora"], None);
    let decided = run(&mut first, 0, 5_000, &[x2_peer, witness("srv", None)], &[], &local);
    assert_eq!(actions(&decided), [promote(1)]);
    let reason = decided
        .iter()
        .find_map(|d| match d {
            DbDecision::Act { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .unwrap();
    assert!(reason.contains("histories are unrelated"), "{reason}");
    assert!(reason.contains("scratch (4 tables, ~1000 rows)"), "{reason}");
}

#[test]
fn a_server_holding_no_user_database_never_wins_over_one_that_does() {
    // The empty or setup-only server is first of ha_hosts: the data must win anyway.
    for (first_gtid, why) in [("", "empty"), ("0-1-4", "setup only: users and grants")] {
        let mut first = db_node("x1", 3);
        let data = replica_peer("x2", 2, "0-2-308");
        let local = holding_local(true, first_gtid, "", &[], None);
        let decided = run(&mut first, 0, 5_000, &[data, witness("srv", None)], &[], &local);
        assert!(actions(&decided).is_empty(), "{why}: {decided:?}");
        assert!(
            notes(&decided).contains("x2 (priority 2) is the best candidate"),
            "{why}: {}",
            notes(&decided)
        );

        let mut second = db_node("x2", 2);
        let empty = Peer {
            databases: &[],
            ..replica_peer("x1", 3, first_gtid)
        };
        let local = holding_local(true, "0-2-308", "", &["pandora"], None);
        let decided = run(&mut second, 0, 5_000, &[empty, witness("srv", None)], &[], &local);
        assert_eq!(actions(&decided), [promote(1)], "{why}");
    }
}

#[test]
fn a_replica_with_errant_setup_transactions_is_stale_when_it_misses_the_primary_s() {
    // Both replicas of the dead db1 (server 1) created users of their own; db3 received 20
    // fewer of db1's transactions. db3 has the higher priority but must not promote.
    let db2 = Peer {
        history: "0-1-500,0-2-2",
        ..replica_peer("db2", 2, "0-1-500")
    };
    let mut db3 = db_node("db3", 3);
    let local = holding_local(true, "0-4-490", "0-1-480,0-4-490", &["pandora"], None);
    let decided = run(&mut db3, 0, 5_000, &[db2, witness("srv", None)], &[], &local);
    assert!(actions(&decided).is_empty(), "{decided:?}");
    assert!(notes(&decided).contains("this node is behind"), "{}", notes(&decided));
}

/// The next actions a refused replica takes: the first step, then one more.
fn after_refusal(local: LocalDb, primary: Peer) -> (Vec<DbDecision>, Vec<DbDecision>, Core) {
    let mut replica = db_node("db2", 2);
    let first = run(&mut replica, 0, 0, std::slice::from_ref(&primary), &[], &local);
    let stopped = match &local.probe {
        Ok(probe) => LocalDb {
            probe: Ok(DbProbe {
                replica: None,
                ..probe.clone()
            }),
            ..local.clone()
        },
        Err(_) => local.clone(),
    };
    let next = run(&mut replica, 100, 1_000, &[primary], &[], &stopped);
    (first, next, replica)
}

fn needs_resync_reason(decided: &[DbDecision]) -> String {
    decided
        .iter()
        .find_map(|d| match d {
            DbDecision::NeedsResync { reason } => Some(reason.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

/// (this node's GTID, its databases, what the server said, the next action, in the reason)
type RefusalCase = (
    &'static str,
    &'static [&'static str],
    &'static str,
    Option<DbAction>,
    &'static str,
);

#[test]
fn a_refused_replica_is_cloned_merged_or_kept_by_how_the_histories_relate() {
    let primary = Peer {
        history: "0-1-235",
        ..primary_peer("db1", 3, 1)
    };
    let primary = Peer {
        gtid: "0-1-235",
        ..primary
    };
    let clone = |save_first| DbAction::Resync {
        node: "db1".into(),
        addr: "127.0.0.1:3303".into(),
        transfer: None,
        save_first,
    };
    let purged = "Could not find GTID state requested by slave in any binlog files. Probably the slave state is too old and required binlog files have been purged.";
    let cases: &[RefusalCase] = &[
        (
            "",
            &[],
            purged,
            Some(clone(SaveFirst::Nothing)),
            "holds nothing db1 lacks",
        ),
        (
            "0-1-100",
            &["pandora"],
            purged,
            Some(clone(SaveFirst::Nothing)),
            "no longer has the binary logs",
        ),
        // The history db1 announces, refused all the same: db1's announcement is stale (an
        // operator replaced its server), so the data here is saved before any clone.
        (
            "0-1-235",
            &["pandora"],
            "requested to start from GTID 0-1-235, which is not in the master's binlog",
            Some(clone(SaveFirst::BinlogAndDump)),
            "its announcement is stale",
        ),
        (
            "0-2-4",
            &[],
            "requested to start from GTID 0-2-4, which is not in the master's binlog",
            Some(clone(SaveFirst::BinlogAndDump)),
            "setup only",
        ),
        (
            "0-2-4",
            &["empty:pandora"],
            "requested to start from GTID 0-2-4, which is not in the master's binlog",
            Some(clone(SaveFirst::BinlogAndDump)),
            "setup only",
        ),
        (
            "0-2-40",
            &["pandora"],
            "requested to start from GTID 0-2-40, which is not in the master's binlog",
            None,
            "user data of its own: pandora (4 tables, ~1000 rows)",
        ),
        (
            "0-2-308",
            &["scratch"],
            "requested to start from GTID 0-2-308, which is not in the master's binlog",
            None,
            "scratch (4 tables, ~1000 rows)",
        ),
    ];
    for (gtid, databases, said, next, explained) in cases {
        let local = holding_local(true, gtid, "", databases, refused_by("127.0.0.1:3303", said));
        let (first, then, replica) = after_refusal(local, primary.clone());
        assert_eq!(actions(&first), [DbAction::StopReplication], "{gtid}: {first:?}");
        let reason = needs_resync_reason(&first);
        assert!(reason.contains(explained), "{gtid}: {reason}");
        assert!(!reason.contains("GTID ;"), "an empty GTID is said as (none): {reason}");
        assert_eq!(
            actions(&then),
            next.iter().cloned().collect::<Vec<_>>(),
            "{gtid}: {then:?}"
        );
        let repair = replica.self_db().unwrap().repair.clone().unwrap();
        match next {
            Some(_) => assert_eq!(repair.kind, RepairKind::Clone, "{gtid}"),
            None => {
                assert_eq!(repair.kind, RepairKind::Unrelated, "{gtid}");
                assert_eq!(repair.stage, RepairStage::WaitingForOperator);
            }
        }
    }
}

#[test]
fn an_unrelated_replica_with_data_waits_until_the_operator_asks_then_everything_is_saved() {
    let primary = Peer {
        gtid: "0-1-235",
        ..primary_peer("db1", 3, 1)
    };
    // Never even asked to replicate: its data is another cluster's.
    let local = holding_local(true, "0-2-308", "", &["scratch"], None);
    let mut replica = db_node("db2", 2);
    let decided = run(&mut replica, 0, 5_000, std::slice::from_ref(&primary), &[], &local);
    assert_eq!(actions(&decided), [DbAction::StopReplication], "{decided:?}");
    let decided = run(&mut replica, 5_100, 30_000, std::slice::from_ref(&primary), &[], &local);
    assert!(actions(&decided).is_empty(), "never rebuilt by itself: {decided:?}");
    assert_eq!(replica.self_db().unwrap().role, DbRole::NeedsResync);

    let answer = replica.request_resync().unwrap();
    assert!(answer.contains("saving"), "{answer}");
    let decided = run(&mut replica, 30_100, 30_100, &[primary], &[], &local);
    assert_eq!(
        actions(&decided),
        [DbAction::Resync {
            node: "db1".into(),
            addr: "127.0.0.1:3303".into(),
            transfer: None,
            save_first: SaveFirst::BinlogAndDump,
        }]
    );
}

#[test]
fn a_forked_replica_is_repaired_as_a_split_brain_loser() {
    let primary = Peer {
        gtid: "0-2-150",
        history: "0-1-100,0-2-150",
        fork: Some("0-1-100"),
        ..primary_peer("db1", 3, 2)
    };
    let local = holding_local(
        true,
        "0-1-130",
        "",
        &["pandora"],
        refused_by("127.0.0.1:3303", "not in the master's binlog"),
    );
    let (first, then, replica) = after_refusal(local, primary);
    assert!(needs_resync_reason(&first).contains("forked"), "{first:?}");
    assert!(matches!(actions(&then).as_slice(), [DbAction::Merge(_)]), "{then:?}");
    assert_eq!(
        replica.self_db().unwrap().repair.as_ref().unwrap().kind,
        RepairKind::SplitBrain
    );
}

#[test]
fn a_restarted_agent_that_hears_nobody_remembers_its_cluster_and_stays_isolated() {
    // Two DB hosts in ha_hosts, a Pandora server and a console: four nodes. db2's agent restarts
    // while it reaches nobody. Without memory it would take itself for a fresh two-node cluster.
    let two_hosts = |remember: bool| {
        let mut core = Core::new("db2", "127.0.0.1:7000", 1, announcement(&[Role::Db])).with_db(DbCore::new(
            DbPolicy {
                ha_hosts_count: 2,
                ..policy(2)
            },
            0,
        ));
        if remember {
            core.remember_cluster(["db1", "db2", "srv", "console"].map(String::from), Some("db1".into()));
        }
        core
    };
    let local = holding_local(true, "0-1-235", "", &["pandora"], None);
    let mut forgetful = two_hosts(false);
    let decided = run(&mut forgetful, 0, 10_000, &[], &[], &local);
    assert_eq!(
        actions(&decided),
        [promote(1)],
        "the two-node rule, as before: {decided:?}"
    );

    let mut remembering = two_hosts(true);
    let decided = run(&mut remembering, 0, 30_000, &[], &[], &local);
    assert!(actions(&decided).is_empty(), "{decided:?}");
    assert!(
        notes(&decided).contains("isolated, not bereaved"),
        "{}",
        notes(&decided)
    );
    let (nodes, primary) = remembering.cluster_memory();
    assert_eq!(nodes, ["console", "db1", "srv"]);
    assert_eq!(primary.as_deref(), Some("db1"));
}

#[test]
fn a_replica_whose_sql_thread_stops_on_its_own_users_is_cloned() {
    let primary = Peer {
        gtid: "0-1-235",
        ..primary_peer("db1", 3, 1)
    };
    let collided = Some(ReplicaProbe {
        sql_running: false,
        sql_errno: 1396,
        last_error: Some("Error 'Operation CREATE USER failed for 'gha'@'127.0.0.1''".into()),
        ..replica_of("127.0.0.1:3303")
    });
    let (first, then, _) = after_refusal(holding_local(true, "", "", &[], collided), primary.clone());
    assert!(needs_resync_reason(&first).contains("CREATE USER"), "{first:?}");
    assert!(
        matches!(
            actions(&then).as_slice(),
            [DbAction::Resync {
                save_first: SaveFirst::Nothing,
                ..
            }]
        ),
        "{then:?}"
    );
    // One holding data its GTIDs do not show (rows written with the binary log off) saves it
    // all before the clone.
    let collided_with_rows = Some(ReplicaProbe {
        sql_running: false,
        sql_errno: 1062,
        last_error: Some("Duplicate entry '7' for key 'PRIMARY'".into()),
        ..replica_of("127.0.0.1:3303")
    });
    let (_, then, _) = after_refusal(
        holding_local(true, "0-1-200", "", &["pandora"], collided_with_rows),
        primary.clone(),
    );
    assert!(
        matches!(
            actions(&then).as_slice(),
            [DbAction::Resync {
                save_first: SaveFirst::BinlogAndDump,
                ..
            }]
        ),
        "{then:?}"
    );
    // An operator's STOP SLAVE (no error) is left as it is.
    let stopped = Some(ReplicaProbe {
        sql_running: false,
        ..replica_of("127.0.0.1:3303")
    });
    let (first, _, _) = after_refusal(holding_local(true, "0-1-200", "", &["pandora"], stopped), primary);
    assert!(actions(&first).is_empty(), "{first:?}");
}

#[test]
fn two_unrelated_primaries_are_no_split_brain_and_the_one_without_data_steps_down() {
    // x2 (priority 3) runs writable with nothing but its own setup; x1 holds Pandora. Both
    // claim primary when they first see each other.
    let x1 = Peer {
        gtid: "0-1-235",
        ..primary_peer("x1", 2, 1)
    };
    let mut x2 = resumed_primary("x2", 3);
    let local = holding_local(false, "0-2-4", "", &[], None);
    let decided = run(&mut x2, 0, 3_000, &[x1], &[], &local);
    assert!(
        !decided.iter().any(|d| matches!(d, DbDecision::SplitBrain { .. })),
        "{decided:?}"
    );
    assert!(
        notes(&decided).contains("unrelated, no split-brain"),
        "{}",
        notes(&decided)
    );
    assert_eq!(actions(&decided), [DbAction::StepDown], "{decided:?}");
}
