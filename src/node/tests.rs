//! The node machine driven as its shells drive it: ticks in, `Ready` out, failures handed back.

use std::collections::BTreeSet;

use gossip_ha_proto::api::{Command, EventKind};
use gossip_ha_proto::gossip::{Announcement, Role, KEY_DB};

use super::*;
use gossip_ha_proto::db::{DatabaseContent, DbAnnouncement, DbRole};

use crate::core::db::{BinlogFormat, BinlogRowImage, DbProbe};
use crate::core::Observation;
use crate::state_file::MaintenanceRecord;

const THRESHOLD_MS: u64 = 1_000;

fn announcement(roles: &[Role]) -> Announcement {
    Announcement {
        roles: roles.iter().copied().collect::<BTreeSet<_>>(),
        master: 0,
        threshold_ms: THRESHOLD_MS,
        started_unix_ms: 0,
    }
}

fn policy() -> DbPolicy {
    DbPolicy {
        priority: 1,
        advertise: "127.0.0.1:3301".into(),
        ha_hosts_count: 1,
        maintenance: false,
        promotion_cooldown_ms: 10 * THRESHOLD_MS,
        catchup_timeout_ms: 5 * THRESHOLD_MS,
        splitbrain_autofix: true,
        splitbrain_lookback_ms: 300_000,
        switchover_timeout_ms: 10 * THRESHOLD_MS,
        transfer: None,
    }
}

fn setup(db: Option<PersistentState>) -> NodeSetup {
    let roles: &[Role] = if db.is_some() { &[Role::Db] } else { &[Role::Console] };
    NodeSetup {
        name: "db1".into(),
        cluster_id: "test".into(),
        advertise: "127.0.0.1:7001".into(),
        generation: 1,
        announcement: announcement(roles),
        seeds: Vec::new(),
        rewrite_settle_ms: 500,
        ha_hosts: vec!["127.0.0.1".into()],
        relay_refusal: None,
        db: db.map(|persisted| NodeDbSetup {
            policy: policy(),
            persisted,
            check_interval_ms: 1_000,
            database: "pandora".into(),
            pandora_view: false,
        }),
    }
}

/// A read-only server of Pandora's data, its binary log on: a candidate for promotion.
fn candidate() -> Probe {
    Probe {
        result: Ok(DbProbe {
            read_only: true,
            binlog_enabled: true,
            binlog_format: BinlogFormat::Row,
            binlog_row_image: BinlogRowImage::Full,
            version: "10.11.19-MariaDB".into(),
            gtid: "0-1-100".into(),
            gtid_history: String::new(),
            databases: vec![DatabaseContent {
                name: "pandora".into(),
                tables: 4,
                approx_rows: 1_000,
            }],
            replica: None,
        }),
        unreachable_for_ms: 0,
    }
}

fn tick(node: &mut Node, now_ms: u64, probe: Option<Probe>) -> Ready {
    node.tick(Tick {
        now: MonoMs(now_ms),
        wall_unix_ms: 1_700_000_000_000 + now_ms,
        observations: Vec::new(),
        ignored: Vec::new(),
        refused: Vec::new(),
        probe,
        db_reach: Some(Vec::new()),
    });
    node.ready()
}

/// Ticks a lone DB node until it decides to promote; the `Ready` that says so.
fn until_promotion(node: &mut Node) -> Ready {
    for now_ms in (0..20_000).step_by(100) {
        let ready = tick(node, now_ms, Some(candidate()));
        if ready
            .actions
            .iter()
            .any(|act| matches!(act.action, DbAction::Promote { .. }))
        {
            return ready;
        }
    }
    panic!("a lone DB node with its binary log on never promoted");
}

#[test]
fn a_promotion_is_written_down_in_the_same_ready_before_it_runs() {
    let mut node = Node::new(setup(Some(PersistentState {
        epoch: 4,
        ..PersistentState::default()
    })));
    let ready = until_promotion(&mut node);
    let persist = ready.persist.expect("the promotion's record");
    assert!(persist.reasons.contains(&PersistReason::Promotion), "{persist:?}");
    let promote = &ready.actions[0];
    let DbAction::Promote { epoch, from_gtid } = &promote.action else {
        panic!("{:?}", ready.actions)
    };
    assert_eq!(persist.state.epoch, *epoch);
    assert!(*epoch > 4, "the epoch grows past the one on disk");
    assert_eq!(persist.state.promoted_from_gtid.as_deref(), Some(from_gtid.as_str()));
    assert_eq!(ready.events[promote.event].kind, EventKind::DbAction);
    assert_eq!(node.actions_in_flight(), 1);
}

#[test]
fn a_promotion_whose_record_cannot_be_saved_does_not_run() {
    let mut node = Node::new(setup(Some(PersistentState::default())));
    let mut ready = until_promotion(&mut node);
    let persist = ready.persist.take().unwrap();
    node.persist_failed(&mut ready, &persist, "No space left on device");
    assert!(
        !ready
            .actions
            .iter()
            .any(|act| matches!(act.action, DbAction::Promote { .. })),
        "{:?}",
        ready.actions
    );
    assert!(
        ready
            .events
            .iter()
            .any(|event| event.kind == EventKind::DbActionFailed
                && event.reason == "not promoting: No space left on device"),
        "{:?}",
        ready.events
    );
    assert_eq!(node.actions_in_flight(), ready.actions.len());
}

#[test]
fn an_action_the_executor_refuses_is_not_in_flight_and_says_why() {
    let mut node = Node::new(setup(Some(PersistentState::default())));
    let mut ready = until_promotion(&mut node);
    let before = node.actions_in_flight();
    let act = ready.actions.remove(0);
    node.not_started(&mut ready, &act, "the database worker is busy");
    assert_eq!(node.actions_in_flight(), before - 1);
    let event = &ready.events[act.event];
    assert_eq!(event.kind, EventKind::DbActionFailed);
    assert!(event.reason.ends_with(": the database worker is busy"), "{event:?}");
}

#[test]
fn an_outcome_ends_the_action_in_flight_and_is_said() {
    let mut node = Node::new(setup(Some(PersistentState::default())));
    let ready = until_promotion(&mut node);
    for act in ready.actions {
        node.action_finished(
            MonoMs(30_000),
            Finished {
                action: act.action,
                result: Ok(None),
                took_ms: 12,
                unsaved: None,
            },
        );
    }
    assert_eq!(node.actions_in_flight(), 0);
    let ready = node.ready();
    assert!(
        ready
            .events
            .iter()
            .any(|event| event.reason.starts_with("promote (epoch 1) done in 12 ms")),
        "{:?}",
        ready.events
    );
    assert!(
        ready.hooks.iter().any(|call| call.hook == Hook::OnPromote),
        "{:?}",
        ready.hooks
    );
}

#[test]
fn maintenance_given_here_is_answered_and_written_down() {
    let mut node = Node::new(setup(Some(PersistentState::default())));
    tick(&mut node, 0, Some(candidate()));
    node.admin(
        MonoMs(100),
        1_700_000_000_100,
        7,
        Command::Maintenance { on: true, node: None },
        0,
    );
    let ready = node.ready();
    assert!(
        matches!(ready.answers.as_slice(), [(7, Ok(done))] if done.contains("in maintenance")),
        "{:?}",
        ready.answers
    );
    let persist = ready.persist.expect("the command is written down");
    assert_eq!(persist.reasons, [PersistReason::Maintenance { on: true }]);
    assert_eq!(
        persist.state.maintenance,
        Some(MaintenanceRecord {
            on: true,
            set_unix_ms: 1_700_000_000_100,
            config: false
        })
    );
}

#[test]
fn commands_a_node_without_a_database_cannot_carry_out_are_refused_at_once() {
    let mut node = Node::new(setup(None));
    tick(&mut node, 0, None);
    node.admin(MonoMs(100), 0, 1, Command::Resync, 0);
    node.admin(MonoMs(100), 0, 2, Command::Switchover { to: "db2".into() }, 0);
    let answers = node.ready().answers;
    assert!(
        matches!(answers.as_slice(), [(1, Err(_)), (2, Err(no_primary))] if no_primary.contains("no DB primary")),
        "{answers:?}"
    );
}

/// db2, a DB primary with a database, as a console's node hears it.
fn primary_db2(heartbeat: u64) -> Observation {
    Observation {
        name: "db2".into(),
        generation: 1,
        heartbeat,
        addr: "127.0.0.1:7002".into(),
        announcement: announcement(&[Role::Db]),
        db: Some(DbAnnouncement {
            role: DbRole::Primary,
            claims_primary: true,
            reachable: true,
            read_only: Some(false),
            epoch: 1,
            advertise: "127.0.0.1:3302".into(),
            ..DbAnnouncement::default()
        }),
        db_primary: Some("db2".into()),
        request: None,
        answers: Vec::new(),
        db_reach: Vec::new(),
    }
}

#[test]
fn a_switchover_to_the_current_primary_is_refused_not_answered_done() {
    let mut node = Node::new(setup(None));
    for (heartbeat, now_ms) in (0..10).map(|step| (step + 1, step * 100)) {
        node.tick(Tick {
            now: MonoMs(now_ms),
            wall_unix_ms: 1_700_000_000_000 + now_ms,
            observations: vec![primary_db2(heartbeat)],
            ignored: Vec::new(),
            refused: Vec::new(),
            probe: None,
            db_reach: Some(Vec::new()),
        });
    }
    assert_eq!(node.core().db_primary(), Some("db2"));
    node.ready();
    node.admin(MonoMs(1_000), 0, 3, Command::Switchover { to: "db2".into() }, 0);
    let answers = node.ready().answers;
    assert!(
        matches!(answers.as_slice(), [(3, Err(why))] if why.contains("db2 is already the primary")),
        "{answers:?}"
    );
}

#[test]
fn gossip_keys_that_could_not_be_set_are_offered_again() {
    let mut node = Node::new(setup(Some(PersistentState::default())));
    let first = tick(&mut node, 0, Some(candidate()));
    assert!(first.gossip.iter().any(|(key, _)| *key == KEY_DB));
    assert!(
        tick(&mut node, 100, Some(candidate())).gossip.is_empty(),
        "nothing changed"
    );
    node.unpublish(&first.gossip);
    let again = tick(&mut node, 200, Some(candidate())).gossip;
    assert!(again.iter().any(|(key, _)| *key == KEY_DB), "{again:?}");
}

#[test]
fn a_maintenance_command_the_configuration_overrode_is_said_and_forgotten_at_start() {
    let persisted = PersistentState {
        maintenance: Some(MaintenanceRecord {
            on: true,
            set_unix_ms: 1,
            config: true,
        }),
        ..PersistentState::default()
    };
    let mut node = Node::new(setup(Some(persisted)));
    let ready = node.ready();
    let persist = ready.persist.expect("the old record is dropped on disk too");
    assert_eq!(persist.reasons, [PersistReason::ForgotRecord]);
    assert_eq!(persist.state.maintenance, None);
    assert!(
        ready.events.iter().any(|event| event.kind == EventKind::AdminCommand),
        "{:?}",
        ready.events
    );
}
