//! The DB rules of DESIGN §2, driven through `Core` with hand-made gossip.

use std::collections::BTreeSet;

use gossip_ha_proto::db::{DbAnnouncement, DbRole, RepairStage};
use gossip_ha_proto::gossip::{Announcement, ClusterRequest, ClusterRequestKind, Role};

use super::*;
use crate::core::{Core, Decision, Input, Observation};

const THRESHOLD_MS: u64 = 1_000;

fn announcement(roles: &[Role]) -> Announcement {
    Announcement {
        roles: roles.iter().copied().collect::<BTreeSet<_>>(),
        master: 1,
        threshold_ms: THRESHOLD_MS,
        started_unix_ms: 0,
    }
}

fn policy(priority: u8) -> DbPolicy {
    DbPolicy {
        priority,
        advertise: format!("127.0.0.1:{}", 3300 + priority as u16),
        ha_hosts_count: 3,
        maintenance: false,
        promotion_cooldown_ms: 10 * THRESHOLD_MS,
        catchup_timeout_ms: 5 * THRESHOLD_MS,
        splitbrain_autofix: true,
        splitbrain_lookback_ms: 300_000,
        switchover_timeout_ms: 10 * THRESHOLD_MS,
        transfer: None,
    }
}

fn db_node(name: &str, priority: u8) -> Core {
    Core::new(name, "127.0.0.1:7000", 1, announcement(&[Role::Db])).with_db(DbCore::new(policy(priority), 0))
}

fn probe(read_only: bool, gtid: &str, replica: Option<ReplicaProbe>) -> LocalDb {
    LocalDb {
        probe: Ok(DbProbe {
            read_only,
            binlog_enabled: true,
            binlog_format: BinlogFormat::Row,
            binlog_row_image: BinlogRowImage::Full,
            version: "10.11.19-MariaDB".into(),
            gtid: gtid.into(),
            gtid_history: String::new(),
            databases: pandora(),
            replica,
        }),
        unreachable_for_ms: 0,
        action_in_flight: false,
    }
}

/// What a node holding Pandora's database announces of it.
fn pandora() -> Vec<DatabaseContent> {
    vec![holding("pandora")]
}

fn holding(name: &str) -> DatabaseContent {
    DatabaseContent {
        name: name.into(),
        tables: 4,
        approx_rows: 1_000,
    }
}

fn replica_of(source: &str) -> ReplicaProbe {
    ReplicaProbe {
        source: source.into(),
        io_state: "Yes".into(),
        sql_running: true,
        lag_seconds: Some(0),
        relay_applied: true,
        io_errno: 0,
        sql_errno: 0,
        last_error: None,
    }
}

#[derive(Clone)]
struct Peer {
    name: &'static str,
    priority: u8,
    claims_primary: bool,
    reachable: bool,
    unreachable_for_ms: u64,
    epoch: u64,
    gtid: &'static str,
    promotable: bool,
    db_primary: Option<&'static str>,
    roles: &'static [Role],
    /// GTID at the peer's promotion.
    fork: Option<&'static str>,
    /// A switchover this primary peer is carrying out: (to, read-only at GTID).
    handover: Option<(&'static str, &'static str)>,
    /// The primary this peer took over from in a switchover.
    switchover_from: Option<&'static str>,
    request: Option<ClusterRequest>,
    /// host:port it replicates from (IO thread running).
    source: Option<&'static str>,
    /// DB nodes whose database port it reaches.
    reaches: &'static [&'static str],
    /// Its history's waypoints (`gtid_history`).
    history: &'static str,
    /// The user databases it holds (each announced with 1,000 rows).
    databases: &'static [&'static str],
}

fn replica_peer(name: &'static str, priority: u8, gtid: &'static str) -> Peer {
    Peer {
        name,
        priority,
        claims_primary: false,
        reachable: true,
        unreachable_for_ms: 0,
        epoch: 0,
        gtid,
        promotable: true,
        db_primary: None,
        roles: &[Role::Db],
        fork: None,
        handover: None,
        switchover_from: None,
        request: None,
        source: None,
        reaches: &[],
        history: "",
        databases: &["pandora"],
    }
}

fn primary_peer(name: &'static str, priority: u8, epoch: u64) -> Peer {
    Peer {
        claims_primary: true,
        epoch,
        promotable: false,
        db_primary: Some(name),
        ..replica_peer(name, priority, "0-1-10")
    }
}

fn witness(name: &'static str, db_primary: Option<&'static str>) -> Peer {
    Peer {
        db_primary,
        roles: &[Role::Server],
        ..replica_peer(name, 0, "")
    }
}

fn observe(peer: &Peer, heartbeat: u64) -> Observation {
    let db = peer.roles.contains(&Role::Db).then(|| DbAnnouncement {
        role: if peer.claims_primary {
            DbRole::Primary
        } else {
            DbRole::Replica
        },
        claims_primary: peer.claims_primary,
        reachable: peer.reachable,
        unreachable_for_ms: peer.unreachable_for_ms,
        read_only: Some(!peer.claims_primary),
        io_running: peer.source.map(|_| true),
        sql_running: None,
        io_state: None,
        lag_seconds: None,
        source: peer.source.map(str::to_string),
        gtid: peer.gtid.into(),
        gtid_history: peer.history.into(),
        databases: peer.databases.iter().map(|name| holding(name)).collect(),
        epoch: peer.epoch,
        priority: peer.priority,
        maintenance: false,
        promotable: peer.promotable,
        not_promotable: (!peer.promotable).then(|| "in maintenance".to_string()),
        advertise: format!("127.0.0.1:{}", 3300 + peer.priority as u16),
        version: None,
        last_error: None,
        promoted_from_gtid: peer.fork.map(str::to_string),
        promoted_unix_ms: peer.fork.map(|_| 1_800_000_000_000),
        repair: None,
        handover_to: peer.handover.map(|(to, _)| to.to_string()),
        switchover_from: peer.switchover_from.map(str::to_string),
        handover_gtid: peer.handover.map(|(_, gtid)| gtid.to_string()),
        transfer: peer.fork.map(|_| "127.0.0.1:7947".to_string()),
    });
    Observation {
        name: peer.name.into(),
        generation: 1,
        heartbeat,
        addr: "127.0.0.1:7001".into(),
        announcement: announcement(peer.roles),
        db,
        db_primary: peer.db_primary.map(str::to_string),
        request: peer.request.clone(),
        answers: Vec::new(),
        db_reach: peer.reaches.iter().map(|name| name.to_string()).collect(),
    }
}

/// Steps `core` every 100 ms from `from_ms` to `to_ms`; `alive` peers heartbeat, the rest are
/// silent. Returns the DB actions and notes decided on the way. Stops after the first step that
/// acts: the agent would then hold off until the action is done and the database re-probed.
fn run(core: &mut Core, from_ms: u64, to_ms: u64, alive: &[Peer], silent: &[Peer], local: &LocalDb) -> Vec<DbDecision> {
    let mut decided = Vec::new();
    let mut now = from_ms;
    while now <= to_ms {
        let observations = alive
            .iter()
            .map(|peer| observe(peer, now + 1))
            .chain(silent.iter().map(|peer| observe(peer, 1)));
        let mut acted = false;
        for decision in core.step(MonoMs(now), observations.collect::<Vec<_>>(), Some(local)) {
            if let Decision::Db(db) = decision {
                acted |= matches!(db, DbDecision::Act { .. });
                decided.push(db);
            }
        }
        if acted {
            break;
        }
        now += 100;
    }
    decided
}

fn actions(decided: &[DbDecision]) -> Vec<DbAction> {
    decided
        .iter()
        .filter_map(|decision| match decision {
            // Where a promotion forks from is checked by its own tests.
            DbDecision::Act {
                action: DbAction::Promote { epoch, .. },
                ..
            } => Some(promote(*epoch)),
            DbDecision::Act { action, .. } => Some(action.clone()),
            _ => None,
        })
        .collect()
}

/// db2's fence of the old primary db1 at its advertised address.
fn fence_db1(host_reached: bool) -> DbAction {
    DbAction::Fence {
        node: "db1".into(),
        addr: "127.0.0.1:3303".into(),
        host_reached,
    }
}

fn promote(epoch: u64) -> DbAction {
    DbAction::Promote {
        epoch,
        from_gtid: String::new(),
    }
}

fn notes(decided: &[DbDecision]) -> String {
    decided
        .iter()
        .filter_map(|decision| match decision {
            DbDecision::Note { reason } => Some(reason.as_str()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

#[test]
fn fresh_cluster_promotes_the_highest_priority_after_the_grace() {
    let local = probe(true, "", None);
    let mut first = db_node("db1", 3);
    let peers = [replica_peer("db2", 2, ""), witness("srv", None)];
    let early = run(&mut first, 0, 2_000, &peers, &[], &local);
    assert!(actions(&early).is_empty(), "{early:?}");
    assert!(notes(&early).contains("start-up grace"));
    let later = run(&mut first, 2_100, 2_100, &peers, &[], &local);
    assert_eq!(actions(&later), [promote(1)]);
    assert_eq!(first.db_primary(), Some("db1"), "its own claim counts at once");

    let mut second = db_node("db2", 2);
    let peers = [replica_peer("db1", 3, ""), witness("srv", None)];
    let decided = run(&mut second, 0, 3_000, &peers, &[], &local);
    assert!(actions(&decided).is_empty());
    assert!(
        notes(&decided).contains("db1 (priority 3) is the best candidate"),
        "{}",
        notes(&decided)
    );
}

#[test]
fn a_replica_follows_the_primary_and_repoints_when_it_changes() {
    let mut replica = db_node("db2", 2);
    let local = probe(true, "0-1-10", None);
    let decided = run(&mut replica, 0, 0, &[primary_peer("db1", 3, 1)], &[], &local);
    assert_eq!(
        actions(&decided),
        [DbAction::ReplicateFrom {
            node: "db1".into(),
            addr: "127.0.0.1:3303".into()
        }]
    );
    let following = probe(true, "0-1-10", Some(replica_of("127.0.0.1:3303")));
    assert!(actions(&run(
        &mut replica,
        100,
        2_000,
        &[primary_peer("db1", 3, 1)],
        &[],
        &following
    ))
    .is_empty());
    // A new primary with a higher epoch appears: re-point to it.
    let peers = [primary_peer("db1", 3, 1), primary_peer("db3", 1, 2)];
    let decided = run(&mut replica, 2_100, 2_100, &peers, &[], &following);
    assert_eq!(
        actions(&decided),
        [DbAction::ReplicateFrom {
            node: "db3".into(),
            addr: "127.0.0.1:3301".into()
        }]
    );
}

#[test]
fn promotion_after_the_primary_dies_needs_a_witness_when_there_are_others() {
    let local = probe(true, "0-1-10", Some(replica_of("127.0.0.1:3303")));
    let primary = primary_peer("db1", 3, 1);

    // The witness still sees db1 as primary: no promotion (asymmetric partition).
    let mut replica = db_node("db2", 2);
    run(
        &mut replica,
        0,
        500,
        &[primary.clone(), witness("srv", Some("db1"))],
        &[],
        &local,
    );
    let decided = run(
        &mut replica,
        600,
        4_000,
        &[witness("srv", Some("db1"))],
        std::slice::from_ref(&primary),
        &local,
    );
    assert!(actions(&decided).is_empty(), "{decided:?}");
    assert!(
        notes(&decided).contains("srv still sees db1 as primary"),
        "{}",
        notes(&decided)
    );

    // The witness agrees that there is no primary: promote with the next epoch.
    let decided = run(
        &mut replica,
        4_100,
        4_100,
        &[witness("srv", None)],
        std::slice::from_ref(&primary),
        &local,
    );
    assert_eq!(actions(&decided), [fence_db1(false), promote(2)]);
    let DbDecision::Act { reason, .. } = &decided
        .iter()
        .find(|d| {
            matches!(
                d,
                DbDecision::Act {
                    action: DbAction::Promote { .. },
                    ..
                }
            )
        })
        .unwrap()
    else {
        unreachable!()
    };
    assert!(reason.contains("primary db1 is down"), "{reason}");
}

#[test]
fn an_isolated_replica_never_promotes() {
    let local = probe(true, "0-1-10", Some(replica_of("127.0.0.1:3303")));
    let mut replica = db_node("db2", 2);
    let everyone = [primary_peer("db1", 3, 1), witness("srv", Some("db1"))];
    run(&mut replica, 0, 500, &everyone, &[], &local);
    let decided = run(&mut replica, 600, 20_000, &[], &everyone, &local);
    assert!(actions(&decided).is_empty(), "{decided:?}");
    assert!(
        notes(&decided).contains("isolated, not bereaved"),
        "{}",
        notes(&decided)
    );
}

#[test]
fn two_nodes_alone_keep_the_two_node_behaviour() {
    let local = probe(true, "0-1-10", Some(replica_of("127.0.0.1:3303")));
    let mut replica = Core::new("db2", "127.0.0.1:7000", 1, announcement(&[Role::Db])).with_db(DbCore::new(
        DbPolicy {
            ha_hosts_count: 2,
            ..policy(2)
        },
        1,
    ));
    let primary = primary_peer("db1", 3, 1);
    run(&mut replica, 0, 500, std::slice::from_ref(&primary), &[], &local);
    let decided = run(&mut replica, 600, 3_000, &[], std::slice::from_ref(&primary), &local);
    assert_eq!(actions(&decided), [fence_db1(false), promote(2)]);
}

#[test]
fn a_stale_replica_is_not_promoted_while_an_up_to_date_one_exists() {
    let primary = primary_peer("db1", 3, 1);
    let witness = witness("srv", None);
    // db3 has the higher priority but is behind db2.
    let mut stale = db_node("db3", 5);
    let behind = probe(true, "0-1-8", Some(replica_of("127.0.0.1:3303")));
    let peers = [replica_peer("db2", 2, "0-1-10"), witness.clone()];
    run(
        &mut stale,
        0,
        500,
        &[primary.clone(), peers[0].clone(), witness.clone()],
        &[],
        &behind,
    );
    let decided = run(&mut stale, 600, 5_000, &peers, std::slice::from_ref(&primary), &behind);
    assert!(actions(&decided).is_empty(), "{decided:?}");
    assert!(notes(&decided).contains("this node is behind"), "{}", notes(&decided));

    let mut fresh = db_node("db2", 2);
    let current = probe(true, "0-1-10", Some(replica_of("127.0.0.1:3303")));
    let peers = [replica_peer("db3", 5, "0-1-8"), witness.clone()];
    run(
        &mut fresh,
        0,
        500,
        &[primary.clone(), peers[0].clone(), witness],
        &[],
        &current,
    );
    let decided = run(&mut fresh, 600, 3_000, &peers, std::slice::from_ref(&primary), &current);
    assert_eq!(actions(&decided), [fence_db1(false), promote(2)]);
}

#[test]
fn the_best_candidate_waits_bounded_for_its_relay_log() {
    let primary = primary_peer("db1", 3, 1);
    let witness = witness("srv", None);
    let mut replica = db_node("db2", 2);
    let applying = probe(
        true,
        "0-1-9",
        Some(ReplicaProbe {
            relay_applied: false,
            io_state: "Connecting".into(),
            lag_seconds: Some(3),
            ..replica_of("127.0.0.1:3303")
        }),
    );
    run(
        &mut replica,
        0,
        500,
        &[primary.clone(), witness.clone()],
        &[],
        &applying,
    );
    let waiting = run(
        &mut replica,
        600,
        6_000,
        std::slice::from_ref(&witness),
        std::slice::from_ref(&primary),
        &applying,
    );
    assert!(actions(&waiting).is_empty());
    assert!(notes(&waiting).contains("applying the relay log"));
    let decided = run(
        &mut replica,
        6_100,
        8_000,
        &[witness],
        std::slice::from_ref(&primary),
        &applying,
    );
    assert_eq!(actions(&decided), [fence_db1(false), promote(2)]);
}

#[test]
fn a_primary_claim_survives_a_short_database_outage_but_not_a_long_one() {
    // The source's database is down: the IO thread can only be reconnecting.
    let local = probe(
        true,
        "0-1-10",
        Some(ReplicaProbe {
            io_state: "Connecting".into(),
            ..replica_of("127.0.0.1:3303")
        }),
    );
    let mut replica = db_node("db2", 2);
    let witness = witness("srv", None);
    let restarting = Peer {
        reachable: false,
        unreachable_for_ms: 1_500,
        ..primary_peer("db1", 3, 1)
    };
    let decided = run(
        &mut replica,
        0,
        4_000,
        &[restarting.clone(), witness.clone()],
        &[],
        &local,
    );
    assert!(actions(&decided).is_empty(), "{decided:?}");
    assert_eq!(replica.db_primary(), Some("db1"));
    let dead = Peer {
        unreachable_for_ms: 2_100,
        db_primary: None,
        ..restarting
    };
    let decided = run(&mut replica, 4_100, 4_100, &[dead, witness], &[], &local);
    // Its agent cannot say whether mysqld still takes writes: fenced first, harmless if down.
    assert_eq!(actions(&decided), [fence_db1(false), promote(2)]);
}

/// The simulations' seed `descriptors_exhausted_primary`: the primary's agent ran out of
/// descriptors, so its probes failed and its claim lapsed, while its mysqld ran on writable.
/// Promoting without fencing it left two writable primaries.
#[test]
fn an_old_primary_is_fenced_before_promotion_whenever_its_agent_cannot_vouch_for_it() {
    let local = probe(true, "0-1-10", Some(replica_of("127.0.0.1:3303")));
    let lapsed = Peer {
        reachable: false,
        unreachable_for_ms: 2_100,
        db_primary: None,
        reaches: &["db2"],
        ..primary_peer("db1", 3, 1)
    };
    let cases: [(&str, &[Peer], &[Peer]); 2] = [
        (
            "agent alive, its database unreachable to it",
            std::slice::from_ref(&lapsed),
            &[],
        ),
        ("agent silent", &[], std::slice::from_ref(&lapsed)),
    ];
    for (case, alive, silent) in cases {
        let mut replica = db_node("db2", 2);
        let primary = primary_peer("db1", 3, 1);
        run(
            &mut replica,
            0,
            500,
            &[primary, witness("srv", Some("db1"))],
            &[],
            &local,
        );
        let alive: Vec<Peer> = alive.iter().cloned().chain([witness("srv", None)]).collect();
        let decided = run(&mut replica, 600, 6_000, &alive, silent, &local);
        assert_eq!(
            actions(&decided),
            [fence_db1(false), promote(2)],
            "{case}: {}",
            notes(&decided)
        );
    }
}

/// db1's agent could not reach its database (descriptors ran out): db2 fenced it, its host in
/// reach, and promoted. db1's claim from before the fence (epoch 1, a higher priority) then
/// arrives: it is no rival while its agent has not seen the fence (2 × threshold), or db2 would
/// hand the primacy back to a read-only database and both would step down. Beyond that the
/// fence missed and the split-brain rule decides.
#[test]
fn the_old_primary_fenced_at_promotion_is_no_rival_while_its_claim_is_from_before_the_fence() {
    let replica = probe(true, "0-1-10", Some(replica_of("127.0.0.1:3303")));
    let mut db2 = db_node("db2", 2);
    db2.input(Input::DbReach(vec!["db1".into()]));
    let before = [primary_peer("db1", 3, 1), witness("srv", Some("db1"))];
    run(&mut db2, 0, 500, &before, &[], &replica);
    let lapsed = Peer {
        reachable: false,
        unreachable_for_ms: 2_100,
        db_primary: None,
        ..primary_peer("db1", 3, 1)
    };
    let lapsed = [lapsed, witness("srv", None)];
    let (promoted_at, acted) = (600..6_000)
        .step_by(100)
        .map(|now| (now, actions(&run(&mut db2, now, now, &lapsed, &[], &replica))))
        .find(|(_, acted)| !acted.is_empty())
        .expect("db2 promotes over the lapsed primary");
    assert_eq!(acted, [fence_db1(true), promote(2)]);
    let writable = probe(false, "0-1-10", None);
    let back = [primary_peer("db1", 3, 1), witness("srv", Some("db1"))];
    let window_end = promoted_at + 2_000;
    let decided = run(&mut db2, promoted_at + 100, window_end - 100, &back, &[], &writable);
    assert_eq!(actions(&decided), [], "{}", notes(&decided));
    assert!(
        notes(&decided).contains("from before this node fenced it"),
        "{}",
        notes(&decided)
    );
    assert_eq!(db2.db_primary(), Some("db2"));
    let decided = run(&mut db2, window_end, window_end + 3_000, &back, &[], &writable);
    assert_eq!(actions(&decided), [DbAction::StepDown], "{}", notes(&decided));
}

/// An operator reinstalled db1's server (empty, a history of its own) while db2, which holds
/// Pandora's data, cannot be promoted for now (a cool-down, say): the empty server is not
/// promoted over it, and once db2 may be promoted it is the best candidate.
#[test]
fn an_empty_server_never_promotes_over_a_peer_holding_the_data_that_cannot_be_promoted_yet() {
    let mut empty = probe(true, "101-101-2", None);
    if let Ok(probe) = empty.probe.as_mut() {
        probe.databases.clear();
    }
    let mut db1 = db_node("db1", 2);
    let cooling = Peer {
        promotable: false,
        ..replica_peer("db2", 1, "0-1-55")
    };
    let decided = run(&mut db1, 0, 6_000, &[cooling], &[], &empty);
    assert_eq!(actions(&decided), [], "{}", notes(&decided));
    assert!(
        notes(&decided).contains("db2 holds what this node lacks"),
        "{}",
        notes(&decided)
    );
    let decided = run(
        &mut db1,
        6_100,
        12_000,
        &[replica_peer("db2", 1, "0-1-55")],
        &[],
        &empty,
    );
    assert_eq!(actions(&decided), [], "{}", notes(&decided));
    assert!(
        notes(&decided).contains("db2 (priority 1) is the best candidate"),
        "{}",
        notes(&decided)
    );
}

#[test]
fn an_outranked_primary_steps_down_read_only_first_then_rejoins() {
    let mut old = Core::new("db1", "127.0.0.1:7000", 1, announcement(&[Role::Db])).with_db(DbCore::new(policy(3), 0));
    let writable = probe(false, "0-1-10", None);
    // Writable but never promoted by this agent (epoch 0): read-only until elected.
    let decided = run(&mut old, 0, 2_100, &[witness("srv", None)], &[], &writable);
    assert_eq!(
        actions(&decided),
        [DbAction::SetReadOnly],
        "writable before it is elected"
    );
    let read_only = probe(true, "0-1-10", None);
    let decided = run(&mut old, 2_200, 2_200, &[witness("srv", None)], &[], &read_only);
    assert_eq!(actions(&decided), [promote(1)]);

    let newer = primary_peer("db2", 2, 5);
    let decided = run(&mut old, 2_300, 2_300, std::slice::from_ref(&newer), &[], &writable);
    assert_eq!(actions(&decided), [DbAction::StepDown]);
    let decided = run(&mut old, 2_400, 2_400, std::slice::from_ref(&newer), &[], &read_only);
    assert_eq!(
        actions(&decided),
        [DbAction::ReplicateFrom {
            node: "db2".into(),
            addr: "127.0.0.1:3302".into()
        }]
    );
    // It cannot be promoted again during the cool-down.
    let ann = old.self_db().unwrap();
    assert!(!ann.promotable && !ann.claims_primary);
}

#[test]
fn without_autofix_a_diverged_node_stops_and_waits_for_a_resync_never_rejoining() {
    let diverged = probe(
        true,
        "0-1-15",
        Some(ReplicaProbe {
            io_state: "No".into(),
            io_errno: ER_SOURCE_FATAL_READING_BINLOG,
            last_error: Some(
                "connecting slave requested to start from GTID 0-1-15, which is not in the master's binlog".into(),
            ),
            ..replica_of("127.0.0.1:3302")
        }),
    );
    let mut old = Core::new("db1", "127.0.0.1:7000", 1, announcement(&[Role::Db])).with_db(DbCore::new(
        DbPolicy {
            splitbrain_autofix: false,
            ..policy(3)
        },
        0,
    ));
    let decided = run(&mut old, 0, 0, &[primary_peer("db2", 2, 5)], &[], &diverged);
    assert!(
        decided.iter().any(|d| matches!(d, DbDecision::NeedsResync { .. })),
        "{decided:?}"
    );
    assert!(format!("{decided:?}").contains("`gossip-ha resync`"), "{decided:?}");
    assert_eq!(actions(&decided), [DbAction::StopReplication]);
    let stopped = probe(true, "0-1-15", None);
    let decided = run(&mut old, 100, 5_000, &[primary_peer("db2", 2, 5)], &[], &stopped);
    assert!(actions(&decided).is_empty(), "never rejoins: {decided:?}");
    assert_eq!(old.self_db().unwrap().role, DbRole::NeedsResync);
    let decided = run(
        &mut old,
        5_100,
        5_100,
        &[primary_peer("db2", 2, 5)],
        &[],
        &probe(false, "0-1-15", None),
    );
    assert_eq!(actions(&decided), [DbAction::SetReadOnly]);
}

#[test]
fn maintenance_and_broken_nodes_are_never_promoted() {
    let primary = primary_peer("db1", 3, 1);
    let witness = witness("srv", None);
    let local = probe(true, "0-1-10", Some(replica_of("127.0.0.1:3303")));
    let mut standby = Core::new("db2", "127.0.0.1:7000", 1, announcement(&[Role::Db])).with_db(DbCore::new(
        DbPolicy {
            maintenance: true,
            ..policy(2)
        },
        0,
    ));
    run(&mut standby, 0, 500, &[primary.clone(), witness.clone()], &[], &local);
    let decided = run(
        &mut standby,
        600,
        5_000,
        std::slice::from_ref(&witness),
        std::slice::from_ref(&primary),
        &local,
    );
    assert!(actions(&decided).is_empty());
    assert!(notes(&decided).contains("in maintenance"), "{}", notes(&decided));

    let mut no_binlog = db_node("db2", 2);
    let mut broken = local.clone();
    if let Ok(probe) = broken.probe.as_mut() {
        probe.binlog_enabled = false;
    }
    run(
        &mut no_binlog,
        0,
        500,
        &[primary.clone(), witness.clone()],
        &[],
        &broken,
    );
    let decided = run(
        &mut no_binlog,
        600,
        5_000,
        &[witness],
        std::slice::from_ref(&primary),
        &broken,
    );
    assert!(actions(&decided).is_empty());
    assert!(notes(&decided).contains("binary log disabled"), "{}", notes(&decided));
}

#[test]
fn an_unreachable_database_is_reported_once_and_nothing_is_decided_for_it() {
    let mut node = db_node("db2", 2);
    let unreachable = LocalDb {
        probe: Err("Access denied for user 'gha'@'127.0.0.1'".into()),
        unreachable_for_ms: 0,
        action_in_flight: false,
    };
    let decided = run(&mut node, 0, 10_000, &[witness("srv", None)], &[], &unreachable);
    let reports: Vec<_> = decided
        .iter()
        .filter(|d| matches!(d, DbDecision::Unreachable { .. }))
        .collect();
    assert_eq!(reports.len(), 1, "{decided:?}");
    assert!(actions(&decided).is_empty());
    let ann = node.self_db().unwrap();
    assert_eq!(
        (ann.role, ann.reachable, ann.promotable),
        (DbRole::Unreachable, false, false)
    );
    assert!(ann.last_error.as_deref().unwrap().contains("Access denied"));
}

#[test]
fn every_agent_elects_the_same_primary_from_the_same_claims() {
    let mut server = Core::new("srv", "127.0.0.1:7000", 1, announcement(&[Role::Server]));
    let peers = [
        primary_peer("db1", 3, 1),
        primary_peer("db2", 2, 2),
        primary_peer("db3", 2, 2),
    ];
    run(&mut server, 0, 0, &peers, &[], &probe(true, "", None));
    assert_eq!(
        server.db_primary(),
        Some("db2"),
        "highest epoch, then priority, then the smaller name"
    );
}

#[test]
fn a_restarted_agent_resumes_its_primary_without_a_failover() {
    // The agent restarts (new core, epoch 1 from its state file); its database kept running
    // writable. It claims primary from its first step: peers see no gap, nothing is set read-only.
    let mut restarted =
        Core::new("db1", "127.0.0.1:7000", 2, announcement(&[Role::Db])).with_db(DbCore::new(policy(3), 1));
    let writable = probe(false, "0-1-10", None);
    let decided = run(
        &mut restarted,
        0,
        3_000,
        &[replica_peer("db2", 2, "0-1-10"), witness("srv", Some("db1"))],
        &[],
        &writable,
    );
    assert!(actions(&decided).is_empty(), "{decided:?}");
    assert!(notes(&decided).contains("resuming as primary with epoch 1"));
    assert_eq!(restarted.db_primary(), Some("db1"));
    assert!(restarted.self_db().unwrap().claims_primary);

    // Restarted after a failover it missed: a better claim makes it step down at once.
    let mut late = Core::new("db1", "127.0.0.1:7000", 2, announcement(&[Role::Db])).with_db(DbCore::new(policy(3), 1));
    let decided = run(&mut late, 0, 0, &[primary_peer("db2", 2, 2)], &[], &writable);
    assert_eq!(actions(&decided), [DbAction::StepDown]);
}

#[test]
fn a_replica_connected_to_a_live_source_never_promotes_over_it() {
    // db1 was just promoted and took writes that db2 already replicated, but db1's claim has not
    // reached db2 yet: db2 looks "ahead" of db1's gossip. Its connected IO thread says otherwise.
    let mut replica = db_node("db2", 2);
    let source = Peer {
        gtid: "0-1-351",
        ..replica_peer("db1", 3, "0-1-351")
    };
    let following = probe(true, "0-1-354", Some(replica_of("127.0.0.1:3303")));
    let decided = run(&mut replica, 0, 5_000, &[source, witness("srv", None)], &[], &following);
    assert!(actions(&decided).is_empty(), "{decided:?}");
    assert!(
        notes(&decided).contains("db1 (priority 3) is the best candidate"),
        "{}",
        notes(&decided)
    );
}

#[test]
fn a_replica_of_a_read_only_source_still_promotes_when_it_is_the_best() {
    // Both databases just restarted read-only; db1 (priority 3) replicates from db2. Nobody is
    // primary: db1 must promote, not wait on its own source.
    let mut replica = db_node("db1", 3);
    let source = replica_peer("db2", 2, "0-1-40");
    let following = probe(true, "0-1-40", Some(replica_of("127.0.0.1:3302")));
    let decided = run(&mut replica, 0, 5_000, &[source, witness("srv", None)], &[], &following);
    assert_eq!(actions(&decided), [promote(1)]);
}

fn claim<'a>(name: &'a str, epoch: u64, priority: u8, gtid: &'a str, fork: Option<&'a str>) -> Claim<'a> {
    Claim {
        name,
        epoch,
        priority,
        gtid,
        history: "",
        holds_data: true,
        fork_gtid: fork,
        yields_to: None,
    }
}

#[test]
fn split_brain_winner_is_the_side_with_more_writes_since_the_fork() {
    // (claims, winner): db2 promoted with epoch 2 at 0-1-100, where the histories parted.
    let cases: &[(&[Claim], &str)] = &[
        // db2 took 50 writes, db1 (the old primary, cut off with some clients) took 20.
        (
            &[
                claim("db1", 1, 3, "0-1-120", None),
                claim("db2", 2, 2, "0-2-150", Some("0-1-100")),
            ],
            "db2",
        ),
        // db1 took more: it stays, whatever the epochs say.
        (
            &[
                claim("db1", 1, 3, "0-1-190", None),
                claim("db2", 2, 2, "0-2-150", Some("0-1-100")),
            ],
            "db1",
        ),
        // A tie goes to the higher priority, then the smaller name.
        (
            &[
                claim("db1", 1, 2, "0-1-110", None),
                claim("db2", 2, 3, "0-2-110", Some("0-1-100")),
            ],
            "db2",
        ),
        (
            &[
                claim("db1", 1, 3, "0-1-110", None),
                claim("db2", 2, 3, "0-2-110", Some("0-1-100")),
            ],
            "db1",
        ),
        // No fork known (an older agent): the newest claim wins, as before.
        (
            &[
                claim("db1", 1, 3, "0-1-190", None),
                Claim {
                    history: "0-1-100,0-2-150",
                    ..claim("db2", 2, 2, "0-2-150", None)
                },
            ],
            "db2",
        ),
        // Unrelated histories (no transaction in common) are no split-brain: the one holding
        // user databases wins, then priority, whatever the epochs or the sequence numbers.
        (
            &[claim("x1", 1, 3, "0-1-235", None), claim("x2", 2, 2, "0-2-308", None)],
            "x1",
        ),
        (
            &[
                Claim {
                    holds_data: false,
                    ..claim("x1", 1, 3, "0-1-235", None)
                },
                claim("x2", 1, 2, "0-2-308", None),
            ],
            "x2",
        ),
        // A single claim is the primary.
        (&[claim("db1", 4, 1, "garbage", None)], "db1"),
    ];
    for (claims, winner) in cases {
        let elected = elect_db_primary(claims.iter().copied()).map(|claim| claim.name);
        assert_eq!(elected, Some(*winner), "{claims:?}");
    }
}

fn split_primary(name: &'static str, priority: u8, epoch: u64, gtid: &'static str, fork: &'static str) -> Peer {
    Peer {
        gtid,
        fork: Some(fork),
        ..primary_peer(name, priority, epoch)
    }
}

#[test]
fn on_heal_the_primary_with_fewer_writes_steps_down_and_the_other_stays() {
    // db1 (epoch 1, resumed) kept a few clients during the cut; db2 promoted at 0-1-100.
    let other = split_primary("db2", 2, 2, "0-2-150", "0-1-100");
    let mut loser = Core::new("db1", "127.0.0.1:7000", 2, announcement(&[Role::Db])).with_db(DbCore::new(policy(3), 1));
    let decided = run(
        &mut loser,
        0,
        0,
        std::slice::from_ref(&other),
        &[],
        &probe(false, "0-1-120", None),
    );
    assert_eq!(actions(&decided), [DbAction::StepDown], "{decided:?}");
    assert!(
        decided.iter().any(|d| matches!(d, DbDecision::SplitBrain { .. })),
        "{decided:?}"
    );

    // Had db1 taken more writes, it would stay, and say so once.
    let mut winner =
        Core::new("db1", "127.0.0.1:7000", 2, announcement(&[Role::Db])).with_db(DbCore::new(policy(3), 1));
    let decided = run(&mut winner, 0, 1_500, &[other], &[], &probe(false, "0-1-190", None));
    assert!(actions(&decided).is_empty(), "{decided:?}");
    let split_reports = decided
        .iter()
        .filter(|d| matches!(d, DbDecision::SplitBrain { .. }))
        .count();
    assert_eq!(split_reports, 1, "{decided:?}");
}

#[test]
fn two_primaries_that_both_think_they_win_resolve_by_priority_within_two_thresholds() {
    // Each reads the other's count late: db1 sees db2 behind it, and db2 (elsewhere) sees db1
    // behind. db1 has the lower priority, so it yields after 2 × threshold anyway.
    let other = split_primary("db2", 3, 2, "0-2-110", "0-1-100");
    let mut stubborn =
        Core::new("db1", "127.0.0.1:7000", 2, announcement(&[Role::Db])).with_db(DbCore::new(policy(2), 1));
    let decided = run(&mut stubborn, 0, 5_000, &[other], &[], &probe(false, "0-1-120", None));
    assert_eq!(actions(&decided), [DbAction::StepDown], "{decided:?}");
    let reason = format!("{decided:?}");
    assert!(reason.contains("both claimed primary for over 2.000 s"), "{reason}");

    // The higher-priority side never yields on that ground.
    let other = split_primary("db1", 2, 1, "0-1-110", "0-1-50");
    let mut kept = Core::new("db2", "127.0.0.1:7000", 2, announcement(&[Role::Db]))
        .with_db(DbCore::new(policy(3), 2).with_promotion_record(Some("0-1-100".into()), Some(1)));
    let decided = run(&mut kept, 0, 5_000, &[other], &[], &probe(false, "0-2-120", None));
    assert!(actions(&decided).is_empty(), "{decided:?}");
}

fn diverged_from(source: &str) -> LocalDb {
    probe(
        true,
        "0-1-120",
        Some(ReplicaProbe {
            io_state: "No".into(),
            io_errno: ER_SOURCE_FATAL_READING_BINLOG,
            last_error: Some("GTID 0-1-120 is not in the master's binlog".into()),
            ..replica_of(source)
        }),
    )
}

/// db1 (autofix on) whose rejoin `winner` refuses: it stops replicating.
fn refused_by(winner: &Peer) -> (Core, Vec<DbDecision>) {
    let mut loser = db_node("db1", 3);
    let decided = run(
        &mut loser,
        0,
        0,
        std::slice::from_ref(winner),
        &[],
        &diverged_from("127.0.0.1:3302"),
    );
    assert_eq!(actions(&decided), [DbAction::StopReplication]);
    (loser, decided)
}

#[test]
fn with_autofix_a_loser_whose_fork_is_unknown_is_left_to_an_operator() {
    // The winner announces no promotion point (a lying peer, or one that lost its state file):
    // which transactions diverged cannot be told, so nothing is merged or rebuilt by itself.
    let winner = primary_peer("db2", 2, 5);
    let (mut loser, decided) = refused_by(&winner);
    assert!(format!("{decided:?}").contains("the fork is unknown"), "{decided:?}");
    let stopped = probe(true, "0-1-120", None);
    let decided = run(&mut loser, 100, 60_000, &[winner], &[], &stopped);
    assert!(actions(&decided).is_empty(), "acted on an unknown fork: {decided:?}");
    let repair = loser.self_db().unwrap().repair.clone().unwrap();
    assert_eq!(repair.stage, RepairStage::WaitingForOperator);
}

#[test]
fn with_autofix_the_loser_merges_then_resyncs_then_rejoins() {
    let winner = split_primary("db2", 2, 2, "0-2-150", "0-1-100");
    let (mut loser, _) = refused_by(&winner);
    let stopped = probe(true, "0-1-120", None);
    let decided = run(&mut loser, 100, 1_000, std::slice::from_ref(&winner), &[], &stopped);
    let plan = MergePlan {
        winner: "db2".into(),
        winner_addr: "127.0.0.1:3302".into(),
        fork_gtid: "0-1-100".into(),
        // The winner promoted at unix ms 1.8e12; the window opens the lookback before.
        window_start_unix_ms: 1_800_000_000_000 - 300_000,
    };
    assert_eq!(actions(&decided), [DbAction::Merge(plan.clone())]);
    let repair = loser.self_db().unwrap().repair.clone().unwrap();
    assert_eq!(repair.stage, RepairStage::Merging);

    // While the merge runs nothing else is asked for; once done, the rebuild.
    let decided = run(&mut loser, 1_100, 2_000, std::slice::from_ref(&winner), &[], &stopped);
    assert!(actions(&decided).is_empty(), "{decided:?}");
    loser.db_mut().unwrap().repair_finished(&DbAction::Merge(plan), Ok(()));
    let decided = run(&mut loser, 2_100, 2_100, std::slice::from_ref(&winner), &[], &stopped);
    // The winner offers its transfer service: the rebuild is a physical copy from it.
    let resync = DbAction::Resync {
        node: "db2".into(),
        addr: "127.0.0.1:3302".into(),
        transfer: Some("127.0.0.1:7947".into()),
        save_first: SaveFirst::Nothing,
    };
    assert_eq!(actions(&decided), std::slice::from_ref(&resync));
    assert_eq!(
        loser.self_db().unwrap().repair.as_ref().unwrap().stage,
        RepairStage::Resyncing
    );

    // Rebuilt: it follows the winner like any replica.
    loser.db_mut().unwrap().repair_finished(&resync, Ok(()));
    let rebuilt = probe(true, "0-2-150", None);
    let decided = run(&mut loser, 2_200, 3_000, &[winner], &[], &rebuilt);
    assert!(
        matches!(actions(&decided).as_slice(), [DbAction::ReplicateFrom { node, .. }] if node == "db2"),
        "{decided:?}"
    );
    assert_eq!(loser.self_db().unwrap().repair, None);
}

#[test]
fn a_merge_that_left_rows_unsaved_makes_the_rebuild_save_this_node_first() {
    // The loser's binary log was purged past the fork: the merge copied the window, and rows
    // dated before it are neither in the winner nor in the saved file. The rebuild must not wipe
    // them unsaved.
    let winner = split_primary("db2", 2, 2, "0-2-150", "0-1-100");
    let (mut loser, _) = refused_by(&winner);
    let stopped = probe(true, "0-1-120", None);
    let decided = run(&mut loser, 100, 1_000, std::slice::from_ref(&winner), &[], &stopped);
    let acted = actions(&decided);
    let [merge @ DbAction::Merge(_)] = acted.as_slice() else {
        panic!("{decided:?}")
    };
    loser.input(crate::core::Input::RepairFinished {
        action: merge,
        result: Ok(()),
        unsaved: Some("the binary log was purged past the fork"),
    });
    let decided = run(&mut loser, 2_100, 2_100, std::slice::from_ref(&winner), &[], &stopped);
    assert!(
        matches!(
            actions(&decided).as_slice(),
            [DbAction::Resync {
                save_first: SaveFirst::BinlogAndDump,
                ..
            }]
        ),
        "{decided:?}"
    );
}

#[test]
fn a_failed_repair_is_retried_a_few_times_then_waits_for_the_operator() {
    let winner = split_primary("db2", 2, 2, "0-2-150", "0-1-100");
    let mut loser = db_node("db1", 3);
    run(
        &mut loser,
        0,
        0,
        std::slice::from_ref(&winner),
        &[],
        &diverged_from("127.0.0.1:3302"),
    );
    let stopped = probe(true, "0-1-120", None);
    let mut now = 100;
    for attempt in 1..=MAX_REPAIR_ATTEMPTS {
        let decided = run(
            &mut loser,
            now,
            now + 20_000,
            std::slice::from_ref(&winner),
            &[],
            &stopped,
        );
        let merge = actions(&decided);
        assert!(
            matches!(merge.as_slice(), [DbAction::Merge(_)]),
            "attempt {attempt}: {decided:?}"
        );
        let failed = loser
            .db_mut()
            .unwrap()
            .repair_finished(&merge[0], Err("cannot connect to 127.0.0.1:3302".into()));
        assert!(
            matches!(failed.as_slice(), [DbDecision::NeedsResync { .. }]),
            "{failed:?}"
        );
        now += 100;
        // Never rejoins half-repaired, and waits 10 × threshold before trying again.
        let decided = run(
            &mut loser,
            now,
            now + 9_000,
            std::slice::from_ref(&winner),
            &[],
            &stopped,
        );
        assert!(actions(&decided).is_empty(), "{decided:?}");
        now += 9_100;
    }
    let decided = run(
        &mut loser,
        now,
        now + 60_000,
        std::slice::from_ref(&winner),
        &[],
        &stopped,
    );
    assert!(actions(&decided).is_empty(), "no more automatic attempts: {decided:?}");
    let status = loser.self_db().unwrap().repair.clone().unwrap();
    assert_eq!(status.stage, RepairStage::Failed);
    assert!(status.progress.unwrap().contains("cannot connect"));

    now += 60_100;
    assert!(loser.request_resync().is_ok());
    let decided = run(&mut loser, now, now, &[winner], &[], &stopped);
    assert!(
        matches!(actions(&decided).as_slice(), [DbAction::Merge(_)]),
        "{decided:?}"
    );
    assert!(loser.request_resync().is_err(), "one repair at a time");
}

#[test]
fn a_promotion_records_where_it_forked() {
    let mut alone = Core::new("db1", "127.0.0.1:7000", 1, announcement(&[Role::Db])).with_db(DbCore::new(
        DbPolicy {
            ha_hosts_count: 2,
            ..policy(3)
        },
        0,
    ));
    let decided = run(&mut alone, 0, 10_000, &[], &[], &probe(true, "0-1-42", None));
    let promoted = decided.iter().find_map(|decision| match decision {
        DbDecision::Act {
            action: DbAction::Promote { from_gtid, .. },
            ..
        } => Some(from_gtid.clone()),
        _ => None,
    });
    assert_eq!(promoted.as_deref(), Some("0-1-42"));
    assert_eq!(alone.self_db().unwrap().promoted_from_gtid.as_deref(), Some("0-1-42"));
}

fn resumed_primary(name: &str, priority: u8) -> Core {
    Core::new(name, "127.0.0.1:7000", 2, announcement(&[Role::Db])).with_db(DbCore::new(policy(priority), 1))
}

fn following(name: &'static str, priority: u8, gtid: &'static str, source: &'static str) -> Peer {
    Peer {
        source: Some(source),
        ..replica_peer(name, priority, gtid)
    }
}

#[test]
fn a_switchover_goes_read_only_waits_for_the_target_and_steps_down_for_it() {
    let mut primary = resumed_primary("db1", 3);
    let replica = following("db2", 2, "0-1-50", "127.0.0.1:3303");
    run(
        &mut primary,
        0,
        0,
        std::slice::from_ref(&replica),
        &[],
        &probe(false, "0-1-50", None),
    );
    assert!(primary.request_switchover("db3").is_err(), "unknown target");
    let not_following = following("db2", 2, "0-1-50", "127.0.0.1:9999");
    run(
        &mut primary,
        100,
        100,
        std::slice::from_ref(&not_following),
        &[],
        &probe(false, "0-1-50", None),
    );
    let refused = primary.request_switchover("db2").unwrap_err();
    assert!(refused.contains("not replicating from db1"), "{refused}");

    run(
        &mut primary,
        200,
        200,
        std::slice::from_ref(&replica),
        &[],
        &probe(false, "0-1-50", None),
    );
    primary.request_switchover("db2").unwrap();
    let decided = run(
        &mut primary,
        300,
        300,
        std::slice::from_ref(&replica),
        &[],
        &probe(false, "0-1-50", None),
    );
    assert_eq!(actions(&decided), [DbAction::SetReadOnly]);
    // Read-only now: it names the GTID the target must reach, and still holds the claim.
    let decided = run(
        &mut primary,
        400,
        1_000,
        std::slice::from_ref(&replica),
        &[],
        &probe(true, "0-1-50", None),
    );
    assert!(actions(&decided).is_empty(), "{decided:?}");
    let announced = primary.self_db().unwrap().clone();
    assert_eq!(announced.handover_to.as_deref(), Some("db2"));
    assert_eq!(announced.handover_gtid.as_deref(), Some("0-1-50"));
    assert_eq!(primary.db_primary(), Some("db1"));

    // db2 promotes: db1 yields at once, whatever the split-brain tally says.
    let promoted = Peer {
        fork: Some("0-1-50"),
        ..primary_peer("db2", 2, 2)
    };
    let decided = run(
        &mut primary,
        1_100,
        1_100,
        &[promoted],
        &[],
        &probe(true, "0-1-50", None),
    );
    assert_eq!(actions(&decided), [DbAction::StepDown], "{decided:?}");
    assert!(
        format!("{decided:?}").contains("switchover: db2 has promoted"),
        "{decided:?}"
    );
    // A planned move is no split-brain: nobody alerting on one is paged for it.
    assert!(
        !decided.iter().any(|d| matches!(d, DbDecision::SplitBrain { .. })),
        "{decided:?}"
    );
    assert_eq!(primary.db_primary(), Some("db2"));
}

#[test]
fn the_switchover_target_promotes_only_once_it_has_applied_everything() {
    let handing_over = Peer {
        handover: Some(("db2", "0-1-50")),
        ..primary_peer("db1", 3, 1)
    };
    let mut target = db_node("db2", 2);
    let behind = probe(true, "0-1-48", Some(replica_of("127.0.0.1:3303")));
    let decided = run(&mut target, 0, 3_000, std::slice::from_ref(&handing_over), &[], &behind);
    assert!(
        actions(&decided)
            .iter()
            .all(|action| !matches!(action, DbAction::Promote { .. })),
        "{decided:?}"
    );
    assert!(
        notes(&decided).contains("applying up to GTID 0-1-50"),
        "{}",
        notes(&decided)
    );
    let caught_up = probe(true, "0-1-50", Some(replica_of("127.0.0.1:3303")));
    let decided = run(&mut target, 3_100, 3_100, &[handing_over], &[], &caught_up);
    assert_eq!(actions(&decided), [promote(2)]);
}

#[test]
fn a_switchover_the_target_cannot_finish_is_abandoned_and_the_primary_writes_again() {
    let mut primary = resumed_primary("db1", 3);
    let replica = following("db2", 2, "0-1-40", "127.0.0.1:3303");
    run(
        &mut primary,
        0,
        0,
        std::slice::from_ref(&replica),
        &[],
        &probe(false, "0-1-50", None),
    );
    primary.request_switchover("db2").unwrap();
    run(
        &mut primary,
        100,
        100,
        std::slice::from_ref(&replica),
        &[],
        &probe(false, "0-1-50", None),
    );
    let read_only = probe(true, "0-1-50", None);
    let decided = run(
        &mut primary,
        200,
        9_000,
        std::slice::from_ref(&replica),
        &[],
        &read_only,
    );
    assert!(actions(&decided).is_empty(), "{decided:?}");
    let decided = run(&mut primary, 9_100, 12_000, &[replica], &[], &read_only);
    assert_eq!(actions(&decided), [DbAction::Resume], "{decided:?}");
    assert_eq!(primary.self_db().unwrap().handover_to, None);
    assert!(primary.self_db().unwrap().claims_primary);
}

#[test]
fn a_request_relayed_by_gossip_is_carried_out_once_by_the_node_it_names() {
    let asking = Peer {
        request: Some(ClusterRequest {
            id: 7,
            kind: ClusterRequestKind::Maintenance {
                node: "db2".into(),
                on: true,
            },
        }),
        ..witness("srv", Some("db1"))
    };
    let mut other = db_node("db3", 1);
    let mut named = db_node("db2", 2);
    let local = probe(true, "0-1-50", Some(replica_of("127.0.0.1:3303")));
    for (core, expected) in [(&mut named, true), (&mut other, false)] {
        let decisions = core.step(MonoMs(0), vec![observe(&asking, 1)], Some(&local));
        let requests = decisions
            .iter()
            .filter(|decision| matches!(decision, Decision::Request { .. }))
            .count();
        assert_eq!(requests, usize::from(expected));
        assert_eq!(core.self_db().unwrap().maintenance, expected);
        let again = core.step(MonoMs(100), vec![observe(&asking, 2)], Some(&local));
        assert!(!again
            .iter()
            .any(|decision| matches!(decision, Decision::Request { .. })));
    }
    let answered: Vec<(String, u64, bool)> = named
        .request_answers()
        .into_iter()
        .map(|answer| (answer.to, answer.id, answer.done))
        .collect();
    assert_eq!(answered, [("srv".to_string(), 7, true)]);
    assert!(other.request_answers().is_empty(), "only the node named answers");
}

#[test]
fn a_refused_relayed_switchover_is_answered_to_the_node_that_asked() {
    let mut primary = resumed_primary("db1", 3);
    let not_following = following("db2", 2, "0-1-50", "127.0.0.1:9999");
    let asking = Peer {
        request: Some(ClusterRequest {
            id: 9,
            kind: ClusterRequestKind::Switchover { to: "db2".into() },
        }),
        ..witness("srv", Some("db1"))
    };
    let writable = probe(false, "0-1-50", None);
    run(&mut primary, 0, 0, std::slice::from_ref(&not_following), &[], &writable);
    run(&mut primary, 100, 100, &[not_following, asking], &[], &writable);
    let answers = primary.request_answers();
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert!(
        !answers[0].done && answers[0].to == "srv" && answers[0].id == 9,
        "{answers:?}"
    );
    assert!(answers[0].text.contains("not replicating from db1"), "{answers:?}");

    // The asking node finds db1's answer in db1's gossip.
    let mut srv = Core::new("srv", "127.0.0.1:7002", 1, announcement(&[Role::Server]));
    let mut from_primary = observe(&primary_peer("db1", 3, 1), 1);
    from_primary.answers = answers.clone();
    srv.step(MonoMs(0), vec![from_primary], None);
    let (node, answer) = srv.answer_from_cluster(9).expect("db1's answer arrives");
    assert_eq!((node, answer), ("db1", &answers[0]));
    assert!(srv.answer_from_cluster(8).is_none(), "an answer to another request");
}

/// db2, replicating from db1 as `local` shows, is cut off from db1 whose agent then falls
/// silent while the server srv still reaches db1's host: db2 declines to promote. Returns db2
/// and the two peers, for the moment db2 reaches db1's host again.
fn cut_off_from_a_silent_primary(local: &LocalDb) -> (Core, Peer, Peer) {
    let primary = primary_peer("db1", 3, 1);
    let mut replica = db_node("db2", 2);
    let formed = probe(true, "0-1-10", Some(replica_of("127.0.0.1:3303")));
    run(
        &mut replica,
        0,
        3_000,
        &[primary.clone(), witness("srv", Some("db1"))],
        &[],
        &formed,
    );
    let still_reaching = Peer {
        reaches: &["db1"],
        ..witness("srv", None)
    };
    let decided = run(
        &mut replica,
        3_100,
        12_000,
        std::slice::from_ref(&still_reaching),
        std::slice::from_ref(&primary),
        local,
    );
    assert!(actions(&decided).is_empty(), "{decided:?}");
    assert!(notes(&decided).contains("but srv still does"), "{}", notes(&decided));
    replica.set_db_reach(vec!["db1".into()]);
    (replica, still_reaching, primary)
}

fn fence_then_promote(decided: &[DbDecision]) -> bool {
    matches!(
        actions(decided).as_slice(),
        [DbAction::Fence { .. }, DbAction::Promote { .. }]
    )
}

#[test]
fn a_candidate_cut_off_from_a_silent_primary_that_others_still_reach_does_not_promote() {
    // db1's mysqld may still take writes from srv, and a fence from db2 would miss it. Once db2
    // reaches db1's database too, the fence can work: fence, then promote.
    let local = probe(true, "0-1-10", Some(replica_of("127.0.0.1:3303")));
    let (mut replica, still_reaching, primary) = cut_off_from_a_silent_primary(&local);
    let decided = run(&mut replica, 12_100, 12_100, &[still_reaching], &[primary], &local);
    assert!(fence_then_promote(&decided), "{decided:?}");
}

#[test]
fn back_in_reach_of_a_silent_primary_the_candidate_first_fetches_what_it_took() {
    // The cut heals: db1's host is in reach, but db2's IO thread has not reconnected yet. The
    // writes db1 took during the cut would stay there once it is fenced: db2 waits (bounded).
    let reconnecting = ReplicaProbe {
        io_state: "Connecting".into(),
        io_errno: 2003,
        last_error: Some("error reconnecting to master 'repl@127.0.0.1:3303' (110 \"Connection timed out\")".into()),
        ..replica_of("127.0.0.1:3303")
    };
    let local = probe(true, "0-1-10", Some(reconnecting.clone()));
    let (mut replica, still_reaching, primary) = cut_off_from_a_silent_primary(&local);
    let peers = (std::slice::from_ref(&still_reaching), std::slice::from_ref(&primary));
    let decided = run(&mut replica, 12_100, 14_000, peers.0, peers.1, &local);
    assert!(actions(&decided).is_empty(), "{decided:?}");
    assert!(notes(&decided).contains("in reach again"), "{}", notes(&decided));
    // Reconnected and applied: now the fence and the promotion.
    let caught_up = probe(true, "0-1-14", Some(replica_of("127.0.0.1:3303")));
    assert!(fence_then_promote(&run(
        &mut replica,
        14_100,
        14_100,
        peers.0,
        peers.1,
        &caught_up
    )));

    // Refused outright (its mysqld is down too): nothing to fetch, no wait.
    let refused = probe(
        true,
        "0-1-10",
        Some(ReplicaProbe {
            last_error: Some("Can't connect to server on '127.0.0.1' (111 \"Connection refused\")".into()),
            ..reconnecting.clone()
        }),
    );
    let (mut replica, still_reaching, primary) = cut_off_from_a_silent_primary(&refused);
    let decided = run(&mut replica, 12_100, 12_100, &[still_reaching], &[primary], &refused);
    assert!(fence_then_promote(&decided), "{decided:?}");

    // Never reconnecting: promoted after the catch-up timeout (5 × threshold) all the same.
    let (mut replica, still_reaching, primary) = cut_off_from_a_silent_primary(&local);
    let decided = run(&mut replica, 12_100, 20_000, &[still_reaching], &[primary], &local);
    assert!(fenced(&decided) == ["db1"], "{decided:?}");
}

fn fenced(decided: &[DbDecision]) -> Vec<String> {
    actions(decided)
        .into_iter()
        .filter_map(|action| match action {
            DbAction::Fence { node, .. } => Some(node),
            _ => None,
        })
        .collect()
}

#[test]
fn a_primary_fences_a_silent_old_primary_each_time_its_host_comes_back_in_reach() {
    // db1 is cut off from everyone, then its agent dies with its mysqld still writable: db2's
    // fence at promotion misses. When the cut heals nobody else can stop db1 taking writes.
    let old = primary_peer("db1", 3, 1);
    let mut db2 = db_node("db2", 2);
    let replica = probe(true, "0-1-10", Some(replica_of("127.0.0.1:3303")));
    run(
        &mut db2,
        0,
        3_000,
        &[old.clone(), witness("srv", Some("db1"))],
        &[],
        &replica,
    );
    let decided = run(
        &mut db2,
        3_100,
        12_000,
        &[witness("srv", None)],
        std::slice::from_ref(&old),
        &replica,
    );
    assert!(
        matches!(
            actions(&decided).as_slice(),
            [DbAction::Fence { .. }, DbAction::Promote { .. }]
        ),
        "{decided:?}"
    );
    let (primary, srv) = (probe(false, "0-1-10", None), witness("srv", Some("db2")));
    let silent = std::slice::from_ref(&old);
    let decided = run(&mut db2, 12_100, 14_000, std::slice::from_ref(&srv), silent, &primary);
    assert!(actions(&decided).is_empty(), "out of reach: {decided:?}");

    // Reached, but an agent that is alive speaks again within 2 × threshold of a heal: wait.
    db2.set_db_reach(vec!["db1".into()]);
    let decided = run(&mut db2, 14_100, 16_000, std::slice::from_ref(&srv), silent, &primary);
    assert!(
        actions(&decided).is_empty(),
        "fenced before its agent could speak: {decided:?}"
    );
    let decided = run(&mut db2, 16_100, 17_000, std::slice::from_ref(&srv), silent, &primary);
    assert_eq!(fenced(&decided), ["db1"], "{decided:?}");
    let decided = run(&mut db2, 17_100, 20_000, std::slice::from_ref(&srv), silent, &primary);
    assert!(actions(&decided).is_empty(), "fenced once per return: {decided:?}");

    db2.set_db_reach(Vec::new());
    run(&mut db2, 20_100, 20_100, std::slice::from_ref(&srv), silent, &primary);
    db2.set_db_reach(vec!["db1".into()]);
    let decided = run(&mut db2, 20_200, 23_000, std::slice::from_ref(&srv), silent, &primary);
    assert_eq!(fenced(&decided), ["db1"], "back in reach again: {decided:?}");

    // A replica last seen read-only needs no fence.
    let mut db2 = resumed_primary("db2", 2);
    let quiet_replica = replica_peer("db3", 1, "0-1-10");
    run(&mut db2, 0, 0, std::slice::from_ref(&quiet_replica), &[], &primary);
    db2.set_db_reach(vec!["db3".into()]);
    let decided = run(
        &mut db2,
        100,
        5_000,
        &[],
        std::slice::from_ref(&quiet_replica),
        &primary,
    );
    assert!(fenced(&decided).is_empty(), "{decided:?}");
}

#[test]
fn a_rival_claim_right_after_a_peer_returns_waits_one_threshold_before_a_step_down() {
    // db1 (epoch 1) resumed its claim on restart and db2 fenced it a moment later: the claim in
    // gossip may already be withdrawn. A primary waits one threshold before stepping down for it.
    let rival = split_primary("db1", 3, 1, "0-1-100", "0-1-100");
    let mut db2 = Core::new("db2", "127.0.0.1:7000", 2, announcement(&[Role::Db]))
        .with_db(DbCore::new(policy(2), 2).with_promotion_record(Some("0-1-100".into()), Some(1)));
    let writable = probe(false, "0-1-100", None);
    let srv = witness("srv", Some("db2"));
    run(&mut db2, 0, 500, std::slice::from_ref(&srv), &[], &writable);
    let mut restarted_srv = observe(&srv, 1_000);
    restarted_srv.generation = 2;
    let decisions = db2.step(MonoMs(600), vec![restarted_srv, observe(&rival, 600)], Some(&writable));
    let decided: Vec<DbDecision> = decisions
        .into_iter()
        .filter_map(|decision| match decision {
            Decision::Db(db) => Some(db),
            _ => None,
        })
        .collect();
    assert!(actions(&decided).is_empty(), "{decided:?}");
    assert!(notes(&decided).contains("a peer just came back"), "{decided:?}");
    let restarted: Vec<Peer> = vec![srv, rival];
    let decided = run(&mut db2, 700, 3_000, &restarted, &[], &writable);
    assert_eq!(actions(&decided), [DbAction::StepDown], "{decided:?}");
}

/// `local` with its server logging `format` events with `image` row images.
fn logging(local: &LocalDb, format: BinlogFormat, image: BinlogRowImage) -> LocalDb {
    let mut local = local.clone();
    if let Ok(probe) = local.probe.as_mut() {
        probe.binlog_format = format;
        probe.binlog_row_image = image;
    }
    local
}

/// Steps `core` every 100 ms from `from_ms` to `to_ms` with a witness alive, whatever it decides.
fn steps(core: &mut Core, from_ms: u64, to_ms: u64, local: &LocalDb) -> Vec<DbDecision> {
    let srv = witness("srv", None);
    (from_ms..=to_ms)
        .step_by(100)
        .flat_map(|now| core.step(MonoMs(now), vec![observe(&srv, now + 1)], Some(local)))
        .filter_map(|decision| match decision {
            Decision::Db(db) => Some(db),
            _ => None,
        })
        .collect()
}

fn warnings(decided: &[DbDecision]) -> Vec<&str> {
    decided
        .iter()
        .filter_map(|decision| match decision {
            DbDecision::Warning { reason } => Some(reason.as_str()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_binlog_a_merge_cannot_copy_exactly_is_warned_about_once_per_change_and_shown_meanwhile() {
    let mut db1 = db_node("db1", 2);
    let row = probe(true, "0-1-10", None);
    let mixed = logging(&row, BinlogFormat::Mixed, BinlogRowImage::Full);
    let decided = steps(&mut db1, 0, 1_000, &mixed);
    let said = warnings(&decided);
    assert_eq!(said.len(), 1, "once, not every step: {decided:?}");
    assert!(said[0].contains("binlog_format=MIXED"), "{}", said[0]);
    assert_eq!(db1.db_warnings(), [said[0].to_string()]);
    let shown = db1.view(MonoMs(1_000)).into_iter().find(|node| node.is_self).unwrap();
    assert_eq!(shown.db_warnings, [said[0].to_string()]);

    // Unreachable: nothing says the settings changed, so the warning stays, unsaid again.
    let down = LocalDb {
        probe: Err("cannot connect".into()),
        unreachable_for_ms: 100,
        action_in_flight: false,
    };
    let decided = steps(&mut db1, 1_100, 1_500, &down);
    assert!(warnings(&decided).is_empty(), "{decided:?}");
    let decided = steps(&mut db1, 1_600, 2_000, &mixed);
    assert!(warnings(&decided).is_empty(), "{decided:?}");
    assert_eq!(db1.db_warnings().len(), 1);

    let minimal = logging(&row, BinlogFormat::Row, BinlogRowImage::Minimal);
    let decided = steps(&mut db1, 2_100, 3_000, &minimal);
    let said = warnings(&decided);
    assert_eq!(said.len(), 1, "said again when it changes: {decided:?}");
    assert!(said[0].contains("binlog_row_image=MINIMAL"), "{}", said[0]);

    let decided = steps(&mut db1, 3_100, 4_000, &row);
    assert!(warnings(&decided).is_empty(), "{decided:?}");
    assert!(
        notes(&decided).contains("no longer limits a split-brain merge"),
        "{decided:?}"
    );
    assert!(db1.db_warnings().is_empty());
}

#[test]
fn a_server_logging_full_row_images_is_never_warned_about() {
    let mut db1 = db_node("db1", 2);
    let decided = steps(&mut db1, 0, 5_000, &probe(true, "0-1-10", None));
    assert!(warnings(&decided).is_empty(), "{decided:?}");
    assert!(!notes(&decided).contains("binary log"), "{decided:?}");
    assert!(db1.db_warnings().is_empty());
}

mod histories;
mod invariants;
mod said_once;
