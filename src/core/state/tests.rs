use std::collections::BTreeSet;

use super::*;

fn announcement(master: u8, threshold_ms: u64, roles: &[Role]) -> Announcement {
    Announcement {
        roles: roles.iter().copied().collect::<BTreeSet<_>>(),
        master,
        threshold_ms,
        started_unix_ms: 0,
    }
}

fn observation(name: &str, generation: u64, heartbeat: u64, master: u8, threshold_ms: u64) -> Observation {
    Observation {
        name: name.to_string(),
        generation,
        heartbeat,
        addr: format!("127.0.0.1:{}", 7000 + name.len()),
        announcement: announcement(master, threshold_ms, &[Role::Server]),
        db: None,
        db_primary: None,
        request: None,
        answers: Vec::new(),
        db_reach: Vec::new(),
    }
}

fn core(master: u8) -> Core {
    Core::new("a", "127.0.0.1:7001", 1, announcement(master, 1_000, &[Role::Server]))
}

fn kinds(decisions: &[Decision]) -> Vec<&'static str> {
    decisions
        .iter()
        .map(|decision| match decision {
            Decision::NodeUp { .. } => "up",
            Decision::NodeDown { .. } => "down",
            Decision::NodeRestarted { .. } => "restarted",
            Decision::ServerMasterChanged { .. } => "master",
            Decision::DbPrimaryChanged { .. } => "db_primary",
            Decision::Request { .. } => "request",
            Decision::Db(_) => "db",
        })
        .collect()
}

#[test]
fn a_lone_agent_elects_itself_with_a_reason() {
    let mut core = core(1);
    let decisions = core.step(MonoMs(0), [], None);
    assert_eq!(core.server_master(), Some("a"));
    let Decision::ServerMasterChanged { from, to, reason } = &decisions[0] else {
        panic!("{decisions:?}")
    };
    assert_eq!((from.as_deref(), to.as_deref()), (None, Some("a")));
    assert!(reason.contains("highest master priority (1)"), "{reason}");
}

#[test]
fn master_zero_agent_alone_elects_nobody() {
    let mut core = core(0);
    assert!(core.step(MonoMs(0), [], None).is_empty());
    assert_eq!(core.server_master(), None);
}

#[test]
fn a_higher_peer_takes_over_and_loses_it_when_down() {
    let mut core = core(1);
    core.step(MonoMs(0), [], None);
    let decisions = core.step(MonoMs(100), [observation("b", 1, 1, 5, 1_000)], None);
    assert_eq!(kinds(&decisions), ["up", "master"]);
    assert_eq!(core.server_master(), Some("b"));

    // Heartbeats keep b alive; silence for exactly 2 × threshold is not yet DOWN.
    core.step(MonoMs(500), [observation("b", 1, 2, 5, 1_000)], None);
    assert!(core
        .step(MonoMs(2_500), [observation("b", 1, 2, 5, 1_000)], None)
        .is_empty());
    let decisions = core.step(MonoMs(2_501), [observation("b", 1, 2, 5, 1_000)], None);
    assert_eq!(kinds(&decisions), ["down", "master"]);
    let Decision::ServerMasterChanged { reason, .. } = &decisions[1] else {
        unreachable!()
    };
    assert!(reason.contains("previous master b is down"), "{reason}");
    assert_eq!(core.server_master(), Some("a"));
}

#[test]
fn a_silent_peer_that_speaks_again_is_up_again() {
    let mut core = core(1);
    core.step(MonoMs(0), [observation("b", 1, 1, 1, 1_000)], None);
    assert_eq!(kinds(&core.step(MonoMs(2_001), [], None)), ["down"]);
    let decisions = core.step(MonoMs(5_000), [observation("b", 1, 2, 1, 1_000)], None);
    assert_eq!(kinds(&decisions), ["up"]);
    let Decision::NodeUp { reason, .. } = &decisions[0] else {
        unreachable!()
    };
    assert!(reason.contains("after 5.000 s of silence"), "{reason}");
}

#[test]
fn a_restarted_peer_is_recognised_by_its_new_generation() {
    let mut core = core(1);
    core.step(MonoMs(0), [observation("b", 10, 50, 1, 1_000)], None);
    core.step(MonoMs(3_000), [], None);
    // The old generation may linger in gossip beside the new one; the newest wins.
    let decisions = core.step(MonoMs(3_100), [observation("b", 11, 1, 1, 1_000)], None);
    assert_eq!(kinds(&decisions), ["restarted"]);
    assert!(core
        .step(MonoMs(3_200), [observation("b", 10, 99, 1, 1_000)], None)
        .is_empty());
    let view = core.view(MonoMs(3_200));
    assert_eq!((view[1].generation, view[1].alive), (11, true));
}

#[test]
fn a_peer_with_a_longer_threshold_is_judged_by_it() {
    let mut core = core(1);
    core.step(MonoMs(0), [observation("slow", 1, 1, 1, 5_000)], None);
    assert!(core.step(MonoMs(9_000), [], None).is_empty(), "2 × 5 s have not passed");
    assert_eq!(kinds(&core.step(MonoMs(10_001), [], None)), ["down"]);
}

#[test]
fn ties_go_to_the_smallest_name_whatever_the_order_seen() {
    let mut first = core(3);
    let mut second = core(3);
    first.step(
        MonoMs(0),
        [observation("0b", 1, 1, 3, 1_000), observation("0a", 1, 1, 3, 1_000)],
        None,
    );
    second.step(
        MonoMs(0),
        [observation("0a", 1, 1, 3, 1_000), observation("0b", 1, 1, 3, 1_000)],
        None,
    );
    assert_eq!(first.server_master(), Some("0a"));
    assert_eq!(second.server_master(), Some("0a"));
}

#[test]
fn view_lists_self_first_with_ages_on_the_local_clock() {
    let mut core = core(1);
    core.step(MonoMs(1_000), [observation("b", 1, 1, 1, 1_000)], None);
    let view = core.view(MonoMs(1_700));
    assert_eq!(view.len(), 2);
    assert!(view[0].is_self && view[0].alive && view[0].last_contact_ms == 0);
    assert_eq!((view[1].name.as_str(), view[1].last_contact_ms), ("b", 700));
}

#[test]
fn the_first_election_waits_for_the_seeds_first_answers() {
    // a (master 1, at :7100) is given the seed list of every host: b (master 5, at :7001) and
    // itself.
    let mut waiting = Core::new("a", "127.0.0.1:7100", 1, announcement(1, 1_000, &[Role::Server]))
        .with_seeds(["127.0.0.1:7001".to_string(), "127.0.0.1:7100".to_string()]);
    assert!(
        waiting.step(MonoMs(0), [], None).is_empty(),
        "no master before the seed answers"
    );
    assert_eq!(waiting.server_master(), None);
    let decisions = waiting.step(MonoMs(100), [observation("b", 1, 1, 5, 1_000)], None);
    assert_eq!(kinds(&decisions), ["up", "master"]);
    assert_eq!(waiting.server_master(), Some("b"), "the first master is the real one");

    // A seed that never answers holds the election for one DOWN window, no longer.
    let mut alone = core(1).with_seeds(["127.0.0.1:7999".to_string()]);
    assert!(alone.step(MonoMs(0), [], None).is_empty());
    assert!(alone.step(MonoMs(1_999), [], None).is_empty());
    assert_eq!(kinds(&alone.step(MonoMs(2_000), [], None)), ["master"]);
    assert_eq!(alone.server_master(), Some("a"));
}
