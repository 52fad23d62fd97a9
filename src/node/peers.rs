//! Peers whose gossip is ignored, said once per (peer, reason) and bounded: a refused claim is
//! gossiped again on every tick, and names of states not heard at all come from whoever forges
//! them.

use std::collections::HashSet;

use gossip_ha_proto::api::EventKind;

use super::Event;
use crate::gossip::{IgnoredPeer, RefusedClaim};

/// Distinct names of states not heard at all that are reported as events; more are not.
const MAX_REPORTED_UNHEARD_NAMES: usize = 32;
/// Distinct ignored-peer reasons remembered, so each is reported once, not once per tick.
const MAX_REMEMBERED_IGNORED: usize = 1_000;

#[derive(Default)]
pub(super) struct Reported {
    seen: HashSet<(String, u64, String)>,
    /// Names whose gossip states were not heard at all and were reported (bounded).
    unheard_names: HashSet<String>,
}

impl Reported {
    pub(super) fn ignored(&mut self, peer: IgnoredPeer, events: &mut Vec<Event>) {
        let key = (peer.name.clone(), peer.generation, peer.error.to_string());
        if !self.first_time(key) {
            return;
        }
        events.push(Event {
            kind: EventKind::PeerIgnored,
            node: Some(peer.name.clone()),
            reason: format!(
                "ignoring {} (generation {}): {}",
                peer.name, peer.generation, peer.error
            ),
        });
    }

    pub(super) fn refused(&mut self, claim: RefusedClaim, events: &mut Vec<Event>) {
        if claim.reason.starts_with("not heard at all") && !self.unheard_names.contains(&claim.name) {
            if self.unheard_names.len() >= MAX_REPORTED_UNHEARD_NAMES {
                return;
            }
            self.unheard_names.insert(claim.name.clone());
        }
        if !self.first_time((claim.name.clone(), 0, claim.reason.clone())) {
            return;
        }
        events.push(Event {
            kind: EventKind::PeerIgnored,
            node: Some(claim.name.clone()),
            reason: format!("ignoring what {} claims: {}", claim.name, claim.reason),
        });
    }

    /// Whether `key` is reported for the first time (then it is remembered, bounded).
    fn first_time(&mut self, key: (String, u64, String)) -> bool {
        if self.seen.contains(&key) {
            return false;
        }
        if self.seen.len() >= MAX_REMEMBERED_IGNORED {
            self.seen.clear();
        }
        self.seen.insert(key)
    }
}
