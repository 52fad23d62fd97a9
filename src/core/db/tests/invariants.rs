//! Property tests of the invariants of `core/db/invariants.rs`: random schedules of gossip,
//! probes and clock readings driven through `Core::step`.

use proptest::prelude::*;

use super::*;
use crate::core::db::invariants::one_action_at_a_time;

const GTIDS: [&str; 4] = ["", "0-1-10", "0-1-20", "0-2-15"];
const PEERS: [&str; 3] = ["db2", "db3", "db4"];

/// One peer on one step.
#[derive(Debug, Clone)]
struct PeerInput {
    alive: bool,
    claims_primary: bool,
    epoch: u64,
    gtid: usize,
    promotable: bool,
    reached: bool,
}

/// One step: how far the clock moved (it may go back), the local probe and the peers.
#[derive(Debug, Clone)]
struct StepInput {
    advance_ms: i64,
    reachable: bool,
    read_only: bool,
    gtid: usize,
    in_flight: bool,
    peers: Vec<PeerInput>,
}

fn peer_input() -> impl Strategy<Value = PeerInput> {
    (
        any::<bool>(),
        prop::bool::weighted(0.3),
        0u64..6,
        0..GTIDS.len(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(alive, claims_primary, epoch, gtid, promotable, reached)| PeerInput {
            alive,
            claims_primary,
            epoch,
            gtid,
            promotable,
            reached,
        })
}

fn step_input() -> impl Strategy<Value = StepInput> {
    (
        prop_oneof![8 => 0i64..1_500, 1 => -2_000i64..0],
        prop::bool::weighted(0.9),
        any::<bool>(),
        0..GTIDS.len(),
        prop::bool::weighted(0.2),
        prop::collection::vec(peer_input(), PEERS.len()),
    )
        .prop_map(|(advance_ms, reachable, read_only, gtid, in_flight, peers)| StepInput {
            advance_ms,
            reachable,
            read_only,
            gtid,
            in_flight,
            peers,
        })
}

fn local(input: &StepInput) -> LocalDb {
    let mut local = probe(input.read_only, GTIDS[input.gtid], None);
    if !input.reachable {
        local.probe = Err("connection refused".into());
        local.unreachable_for_ms = 1_000;
    }
    local.action_in_flight = input.in_flight;
    local
}

fn peer(name: &'static str, priority: u8, input: &PeerInput) -> Peer {
    Peer {
        claims_primary: input.claims_primary,
        epoch: input.epoch,
        promotable: input.promotable && !input.claims_primary,
        db_primary: input.claims_primary.then_some(name),
        reaches: if input.reached { &["db1"] } else { &[] },
        ..replica_peer(name, priority, GTIDS[input.gtid])
    }
}

/// Steps db1 through `schedule`, checking every step; `Err` names the first breach.
fn check(schedule: &[StepInput]) -> Result<(), String> {
    let mut core = db_node("db1", 100);
    let mut now: u64 = 10_000;
    let mut newest: Option<u64> = None;
    let mut highest_epoch_seen = 0;
    let mut heartbeats = [1u64; PEERS.len()];
    for (index, input) in schedule.iter().enumerate() {
        now = now.saturating_add_signed(input.advance_ms);
        let peers: Vec<Peer> = PEERS
            .iter()
            .zip(&input.peers)
            .enumerate()
            .map(|(i, (name, peer_input))| peer(name, 90 - i as u8 * 10, peer_input))
            .collect();
        let observations: Vec<Observation> = peers
            .iter()
            .zip(&input.peers)
            .zip(heartbeats.iter_mut())
            .map(|((peer, peer_input), heartbeat)| {
                *heartbeat += u64::from(peer_input.alive);
                observe(peer, *heartbeat)
            })
            .collect();
        let local = local(input);
        let decided: Vec<DbDecision> = core
            .step(MonoMs(now), observations, Some(&local))
            .into_iter()
            .filter_map(|decision| match decision {
                Decision::Db(db) => Some(db),
                _ => None,
            })
            .collect();
        highest_epoch_seen = input
            .peers
            .iter()
            .map(|peer| peer.epoch)
            .fold(highest_epoch_seen, u64::max);
        let went_back = decided.iter().any(
            |decision| matches!(decision, DbDecision::Note { reason } if reason.contains("monotonic clock went back")),
        );
        if went_back != newest.is_some_and(|newest| now < newest) {
            return Err(format!(
                "step {index}: now {now} after {newest:?}, said so: {went_back}"
            ));
        }
        newest = newest.max(Some(now));
        if !one_action_at_a_time(&decided, input.in_flight) {
            return Err(format!("step {index}: more than one action in flight: {decided:?}"));
        }
        for decision in &decided {
            if let DbDecision::Act {
                action: DbAction::Promote { epoch, .. },
                ..
            } = decision
            {
                if *epoch <= highest_epoch_seen {
                    return Err(format!(
                        "step {index}: promoted with epoch {epoch}, seen {highest_epoch_seen}"
                    ));
                }
                highest_epoch_seen = *epoch;
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_schedules_keep_the_core_invariants(schedule in prop::collection::vec(step_input(), 1..80)) {
        if let Err(breach) = check(&schedule) {
            prop_assert!(false, "{}", breach);
        }
    }
}

#[test]
fn a_clock_going_back_is_said_and_no_wait_ends_early() {
    let mut core = db_node("db1", 100);
    let local = probe(true, "0-1-10", None);
    let peers = [replica_peer("db2", 90, "0-1-10"), witness("w", None)];
    // Inside the start-up grace (2 × threshold) at 1 s; the clock then reads 0.5 s.
    let first = run(&mut core, 1_000, 1_000, &peers, &[], &local);
    assert!(notes(&first).contains("start-up grace"), "{first:?}");
    let back = run(&mut core, 500, 500, &peers, &[], &local);
    assert!(notes(&back).contains("monotonic clock went back 500 ms"), "{back:?}");
    // Decided as of 1 s: the grace still runs until 1 s + 2 × threshold.
    let early = run(&mut core, 2_900, 2_900, &peers, &[], &local);
    assert!(actions(&early).is_empty(), "{early:?}");
}
