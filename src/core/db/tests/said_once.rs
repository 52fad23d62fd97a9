//! What the core says is true and said once (issue "What status and events say is true"): a
//! wait is noted once whatever its running numbers, a switchover is no split-brain, a
//! split-brain has one verdict, and a failover is one change of primary.

use super::*;

/// Every decision of the whole core (not only the DB ones) for `peers` over `[from_ms, to_ms]`.
fn all_decisions(core: &mut Core, from_ms: u64, to_ms: u64, peers: &[Peer], local: &LocalDb) -> Vec<Decision> {
    decisions_seen(core, from_ms, to_ms, peers, Some(local))
}

/// As `all_decisions`, with no local database for a node without one.
fn decisions_seen(core: &mut Core, from_ms: u64, to_ms: u64, peers: &[Peer], local: Option<&LocalDb>) -> Vec<Decision> {
    (from_ms..=to_ms)
        .step_by(100)
        .flat_map(|now| {
            let seen: Vec<Observation> = peers.iter().map(|peer| observe(peer, now + 1)).collect();
            core.step(MonoMs(now), seen, local)
        })
        .collect()
}

fn split_verdicts(decided: &[DbDecision]) -> Vec<&str> {
    decided
        .iter()
        .filter_map(|decision| match decision {
            DbDecision::SplitBrain { reason } => Some(reason.as_str()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_cool_down_is_noted_once_not_on_every_step() {
    // db1 loses a split-brain and steps down: its cool-down starts.
    let winner = split_primary("db2", 2, 2, "0-2-150", "0-1-100");
    let mut db1 = resumed_primary("db1", 3);
    let decided = run(
        &mut db1,
        0,
        0,
        std::slice::from_ref(&winner),
        &[],
        &probe(false, "0-1-120", None),
    );
    assert_eq!(actions(&decided), [DbAction::StepDown], "{decided:?}");

    // db2 stops claiming: no primary, and db1 waits out its cool-down for 6 s (60 steps).
    let no_claim = replica_peer("db2", 2, "0-2-150");
    let decided = run(&mut db1, 100, 6_000, &[no_claim], &[], &probe(true, "0-1-120", None));
    let said = notes(&decided);
    assert_eq!(said.matches("cool-down").count(), 1, "{said}");
    assert!(actions(&decided).is_empty(), "{decided:?}");
}

#[test]
fn the_gossiped_refusal_names_the_one_reason() {
    let winner = split_primary("db2", 2, 2, "0-2-150", "0-1-100");
    let mut db1 = resumed_primary("db1", 3);
    run(
        &mut db1,
        0,
        0,
        std::slice::from_ref(&winner),
        &[],
        &probe(false, "0-1-120", None),
    );
    run(&mut db1, 100, 200, &[winner], &[], &probe(true, "0-1-120", None));
    let announced = db1.self_db().expect("a DB node announces its database");
    assert!(!announced.promotable);
    let why = announced.not_promotable.as_deref().unwrap_or_default();
    assert!(why.contains("cool-down") && !why.contains("maintenance"), "{why}");

    let mut db3 = db_node("db3", 1);
    db3.set_db_maintenance(true);
    run(&mut db3, 0, 0, &[], &[], &probe(true, "0-1-120", None));
    let why = db3
        .self_db()
        .and_then(|db| db.not_promotable.clone())
        .unwrap_or_default();
    assert_eq!(why, "in maintenance");
}

#[test]
fn a_switchover_is_a_switchover_everywhere_never_a_split_brain() {
    let handing_over = Peer {
        handover: Some(("db2", "0-1-50")),
        ..primary_peer("db1", 3, 1)
    };
    let target_replica = following("db2", 2, "0-1-50", "127.0.0.1:3303");
    let target_promoted = Peer {
        fork: Some("0-1-50"),
        ..primary_peer("db2", 2, 2)
    };
    let mut db3 = db_node("db3", 1);
    let local = probe(true, "0-1-50", Some(replica_of("127.0.0.1:3303")));
    let before = all_decisions(&mut db3, 0, 500, &[handing_over.clone(), target_replica], &local);
    assert_eq!(db3.db_primary(), Some("db1"), "{before:?}");

    let after = all_decisions(&mut db3, 600, 1_500, &[handing_over, target_promoted], &local);
    let changes: Vec<&Decision> = after
        .iter()
        .filter(|decision| matches!(decision, Decision::DbPrimaryChanged { .. }))
        .collect();
    assert_eq!(changes.len(), 1, "{after:?}");
    let Decision::DbPrimaryChanged {
        from,
        to,
        reason,
        switchover,
    } = changes[0]
    else {
        unreachable!()
    };
    assert!(*switchover, "{reason}");
    assert_eq!((from.as_deref(), to.as_deref()), (Some("db1"), Some("db2")));
    assert!(reason.starts_with("switchover: db1 handed over to db2"), "{reason}");
    assert!(!reason.contains("split-brain"), "{reason}");
}

#[test]
fn a_switchover_seen_a_step_late_is_still_a_switchover() {
    // srv hears db1's step-down and db2's claim in the same round: it never sees db1 yield.
    let mut srv = Core::new("srv", "127.0.0.1:7100", 1, announcement(&[Role::Server]));
    let old = primary_peer("db1", 3, 1);
    let replica = following("db2", 2, "0-1-50", "127.0.0.1:3303");
    decisions_seen(&mut srv, 0, 500, &[old, replica], None);
    assert_eq!(srv.db_primary(), Some("db1"));

    let stepped_down = following("db1", 3, "0-1-50", "127.0.0.1:3302");
    let took_over = Peer {
        fork: Some("0-1-50"),
        switchover_from: Some("db1"),
        ..primary_peer("db2", 2, 2)
    };
    let after = decisions_seen(&mut srv, 600, 1_000, &[stepped_down, took_over], None);
    let switchovers = after
        .iter()
        .filter(|decision| matches!(decision, Decision::DbPrimaryChanged { switchover: true, .. }))
        .count();
    assert_eq!(switchovers, 1, "{after:?}");
}

/// db2 promoted at 0-1-100 and took 50 writes; db1, cut off, kept taking writes.
fn split_winner_core() -> Core {
    let db = DbCore::new(policy(2), 2).with_promotion_record(Some("0-1-100".into()), None);
    Core::new("db2", "127.0.0.1:7000", 2, announcement(&[Role::Db])).with_db(db)
}

#[test]
fn no_split_brain_verdict_from_a_position_older_than_the_fork() {
    let mut db2 = split_winner_core();
    let local = probe(false, "0-2-150", None);
    // db1's first gossip after the heal still carries a position from before the fork: it
    // would count none of db1's writes.
    let stale = split_primary("db1", 3, 1, "0-1-90", "0-1-1");
    let decided = run(&mut db2, 0, 500, &[Peer { fork: None, ..stale }], &[], &local);
    assert!(split_verdicts(&decided).is_empty(), "{decided:?}");
    assert!(actions(&decided).is_empty(), "{decided:?}");
    assert!(
        notes(&decided).contains("not every position gossiped is past the fork"),
        "{decided:?}"
    );

    // Its current position: 90 writes since the fork against db2's 50. One verdict, db1's.
    let current = Peer {
        fork: None,
        ..split_primary("db1", 3, 1, "0-1-190", "0-1-1")
    };
    let decided = run(&mut db2, 600, 600, &[current], &[], &local);
    let verdicts = split_verdicts(&decided);
    assert_eq!(verdicts.len(), 1, "{decided:?}");
    assert!(verdicts[0].contains("db1 stays primary"), "{}", verdicts[0]);
    assert_eq!(actions(&decided), [DbAction::StepDown], "{decided:?}");
}

#[test]
fn a_position_that_stays_older_than_the_fork_delays_the_verdict_one_threshold_at_most() {
    let mut db2 = split_winner_core();
    let local = probe(false, "0-2-150", None);
    let stale = Peer {
        fork: None,
        ..split_primary("db1", 3, 1, "0-1-90", "0-1-1")
    };
    let decided = run(&mut db2, 0, 1_500, &[stale], &[], &local);
    let verdicts = split_verdicts(&decided);
    assert_eq!(verdicts.len(), 1, "{decided:?}");
    assert!(verdicts[0].contains("judged on what is known"), "{}", verdicts[0]);
}

#[test]
fn a_failover_is_one_change_of_primary_for_hooks() {
    let mut db3 = db_node("db3", 1);
    let local = probe(true, "0-1-50", Some(replica_of("127.0.0.1:3303")));
    let old = primary_peer("db1", 3, 1);
    all_decisions(&mut db3, 0, 500, std::slice::from_ref(&old), &local);
    assert_eq!(db3.db_primary(), Some("db1"));
    // db1 falls silent: its claim lapses after 2 × threshold, then db2 promotes.
    let replica = replica_peer("db2", 2, "0-1-50");
    let gap: Vec<Decision> = (600..=3_500)
        .step_by(100)
        .flat_map(|now| {
            let seen = vec![observe(&old, 1), observe(&replica, now + 1)];
            db3.step(MonoMs(now), seen, Some(&local))
        })
        .collect();
    assert!(
        gap.iter()
            .any(|decision| matches!(decision, Decision::DbPrimaryChanged { to: None, .. })),
        "{gap:?}"
    );
    let promoted = Peer {
        fork: Some("0-1-50"),
        ..primary_peer("db2", 2, 2)
    };
    let after: Vec<Decision> = db3.step(
        MonoMs(3_600),
        vec![observe(&old, 1), observe(&promoted, 3_601)],
        Some(&local),
    );
    let change = after
        .iter()
        .find_map(|decision| match decision {
            Decision::DbPrimaryChanged { from, to, .. } => Some((from.clone(), to.clone())),
            _ => None,
        })
        .expect("db2's claim is a change of primary");
    assert_eq!(change, (Some("db1".into()), Some("db2".into())), "{after:?}");

    // db2's claim lapses and it comes back: no change of primary, `from` says so.
    let back: Vec<Decision> = (3_700..=7_000)
        .step_by(100)
        .flat_map(|now| {
            let heartbeat = if now < 6_500 { 3_601 } else { now };
            db3.step(
                MonoMs(now),
                vec![observe(&old, 1), observe(&promoted, heartbeat)],
                Some(&local),
            )
        })
        .collect();
    let changes: Vec<(Option<String>, Option<String>)> = back
        .iter()
        .filter_map(|decision| match decision {
            Decision::DbPrimaryChanged { from, to, .. } => Some((from.clone(), to.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        changes,
        [(Some("db2".into()), None), (Some("db2".into()), Some("db2".into()))],
        "{back:?}"
    );
}

#[test]
fn the_new_primary_of_a_switchover_reports_no_split_brain() {
    let handing_over = Peer {
        handover: Some(("db2", "0-1-50")),
        gtid: "0-1-50",
        ..primary_peer("db1", 3, 1)
    };
    let mut db2 = db_node("db2", 2);
    let caught_up = probe(true, "0-1-50", Some(replica_of("127.0.0.1:3303")));
    let decided = run(&mut db2, 0, 3_000, std::slice::from_ref(&handing_over), &[], &caught_up);
    assert_eq!(actions(&decided), [promote(2)], "{decided:?}");
    // Promoted and writable while db1 still claims for a moment, read-only and yielding.
    let decided = run(
        &mut db2,
        3_100,
        5_000,
        &[handing_over],
        &[],
        &probe(false, "0-1-50", None),
    );
    assert!(split_verdicts(&decided).is_empty(), "{decided:?}");
    assert!(actions(&decided).is_empty(), "{decided:?}");
}

#[test]
fn a_witness_does_not_flip_the_primary_on_a_position_older_than_the_fork() {
    // db3 heard db1 as primary at 0-1-90 before it lost touch; db2 promoted at 0-1-100 meanwhile.
    let mut db3 = db_node("db3", 1);
    let local = probe(true, "0-1-90", None);
    let before_fork = Peer {
        fork: None,
        ..split_primary("db1", 3, 1, "0-1-90", "0-1-1")
    };
    all_decisions(&mut db3, 0, 500, std::slice::from_ref(&before_fork), &local);
    assert_eq!(db3.db_primary(), Some("db1"));

    let db2 = split_primary("db2", 2, 2, "0-2-150", "0-1-100");
    let stale = all_decisions(&mut db3, 600, 1_000, &[before_fork, db2.clone()], &local);
    let current = Peer {
        fork: None,
        ..split_primary("db1", 3, 1, "0-1-190", "0-1-1")
    };
    let settled = all_decisions(&mut db3, 1_100, 2_000, &[current, db2], &local);
    let changes: Vec<&Decision> = stale
        .iter()
        .chain(&settled)
        .filter(|decision| matches!(decision, Decision::DbPrimaryChanged { .. }))
        .collect();
    assert!(
        changes.is_empty(),
        "db1 took more writes since the fork all along: {changes:?}"
    );
    assert_eq!(db3.db_primary(), Some("db1"));
}

#[test]
fn a_split_brain_healing_towards_a_former_switchover_target_is_no_switchover() {
    // db2 once took over from db1 by switchover; later db2 was cut off and db1 promoted. The cut
    // heals and db2, with more writes since the fork, wins: a split-brain, not a switchover.
    let mut srv = Core::new("srv", "127.0.0.1:7100", 1, announcement(&[Role::Server]));
    let db1 = split_primary("db1", 3, 3, "0-1-120", "0-2-100");
    decisions_seen(&mut srv, 0, 500, std::slice::from_ref(&db1), None);
    assert_eq!(srv.db_primary(), Some("db1"));
    let db2 = Peer {
        switchover_from: Some("db1"),
        ..split_primary("db2", 2, 2, "0-2-190", "0-1-50")
    };
    let after = decisions_seen(&mut srv, 600, 2_000, &[db1, db2], None);
    let changes: Vec<&Decision> = after
        .iter()
        .filter(|decision| matches!(decision, Decision::DbPrimaryChanged { .. }))
        .collect();
    assert_eq!(srv.db_primary(), Some("db2"), "{after:?}");
    assert!(
        !changes.is_empty()
            && changes
                .iter()
                .all(|decision| matches!(decision, Decision::DbPrimaryChanged { switchover: false, .. })),
        "{changes:?}"
    );
}
