//! Which agents do not reach which DB hosts, since when, and when that changes (events).
//!
//! Every agent gossips the DB nodes whose host its last check reached (`db_reach`), not the
//! time: "since" lives here, on the observing agent's monotonic clock, from the first step that
//! saw a pair unreached. A pair counts only once it has stayed unreached for `settle_ms` and its
//! checking agent has been alive that long too: a starting agent gossips an empty list until its
//! first round, and one check lost under load is no cut. Only unreached pairs are remembered.

use std::collections::BTreeMap;

use gossip_ha_proto::api::ReachProblem;

use super::{seconds, MonoMs};

/// Unreached (agent, DB node) pairs remembered at most.
pub const MAX_TRACKED_PAIRS: usize = 4_096;

/// An agent as the observer sees it: alive or not, and the DB nodes its last check reached.
pub struct Checker<'a> {
    pub name: &'a str,
    pub alive: bool,
    pub reached: &'a [String],
}

/// A DB node whose host is checked: its name, whether its agent is alive, its database address.
pub struct Target<'a> {
    pub name: &'a str,
    pub alive: bool,
    pub address: &'a str,
}

#[derive(Debug, Clone, Copy)]
struct Unreached {
    since: MonoMs,
    /// A "no longer reaches" event was given: its end gets a "reaches again" one.
    announced: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReachChange {
    Lost {
        checker: String,
        node: String,
        address: String,
    },
    Back {
        checker: String,
        node: String,
        address: String,
        after_ms: u64,
    },
}

impl ReachChange {
    /// The agent whose check changed, and what changed, for people.
    pub fn describe(&self) -> (String, String) {
        match self {
            ReachChange::Lost { checker, node, address } => (
                checker.clone(),
                format!("{checker} can no longer reach {node}'s host ({address})"),
            ),
            ReachChange::Back {
                checker,
                node,
                address,
                after_ms,
            } => (
                checker.clone(),
                format!(
                    "{checker} reaches {node}'s host ({address}) again after {}",
                    seconds(*after_ms)
                ),
            ),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ReachBook {
    unreached: BTreeMap<(String, String), Unreached>,
    /// Since when each live agent has been alive without a break, on this clock.
    alive_since: BTreeMap<String, MonoMs>,
}

impl ReachBook {
    /// Takes in every agent's last reach results at `now`; answers the changes worth an event.
    /// Agents that are DOWN change nothing (their silence is `node_down`), nor do checks of a
    /// DB node whose own agent is DOWN.
    pub fn step(
        &mut self,
        now: MonoMs,
        settle_ms: u64,
        checkers: &[Checker<'_>],
        targets: &[Target<'_>],
    ) -> Vec<ReachChange> {
        self.track_liveness(now, checkers);
        // Pairs of agents or DB nodes no longer known go quietly: nothing is left to change.
        self.unreached.retain(|(checker, node), _| {
            targets.iter().any(|target| target.name == node) && checkers.iter().any(|known| known.name == checker)
        });
        let mut changes = Vec::new();
        for checker in checkers.iter().filter(|checker| checker.alive) {
            let settled = now.since(self.alive_since[checker.name]) >= settle_ms;
            for target in targets.iter().filter(|target| target.name != checker.name) {
                let reached = checker.reached.iter().any(|name| name == target.name);
                if let Some(change) = self.judge(now, settle_ms, settled, checker.name, target, reached) {
                    changes.push(change);
                }
            }
        }
        changes
    }

    fn track_liveness(&mut self, now: MonoMs, checkers: &[Checker<'_>]) {
        self.alive_since
            .retain(|name, _| checkers.iter().any(|checker| checker.alive && checker.name == name));
        for checker in checkers.iter().filter(|checker| checker.alive) {
            self.alive_since.entry(checker.name.to_string()).or_insert(now);
        }
    }

    fn judge(
        &mut self,
        now: MonoMs,
        settle_ms: u64,
        checker_settled: bool,
        checker: &str,
        target: &Target<'_>,
        reached: bool,
    ) -> Option<ReachChange> {
        let key = (checker.to_string(), target.name.to_string());
        if reached {
            let was = self.unreached.remove(&key)?;
            return was.announced.then(|| ReachChange::Back {
                checker: key.0,
                node: key.1,
                address: target.address.to_string(),
                after_ms: now.since(was.since),
            });
        }
        if !self.unreached.contains_key(&key) && self.unreached.len() >= MAX_TRACKED_PAIRS {
            return None;
        }
        let pair = self.unreached.entry(key).or_insert(Unreached {
            since: now,
            announced: false,
        });
        let lasting = checker_settled && now.since(pair.since) >= settle_ms;
        if !lasting || pair.announced || !target.alive {
            return None;
        }
        pair.announced = true;
        Some(ReachChange::Lost {
            checker: checker.to_string(),
            node: target.name.to_string(),
            address: target.address.to_string(),
        })
    }

    /// The lasting unreached pairs of live agents, for status.
    pub fn problems(&self, now: MonoMs, settle_ms: u64, targets: &[Target<'_>]) -> Vec<ReachProblem> {
        self.unreached
            .iter()
            .filter(|((checker, _), pair)| {
                let settled = self
                    .alive_since
                    .get(checker)
                    .is_some_and(|since| now.since(*since) >= settle_ms);
                settled && now.since(pair.since) >= settle_ms
            })
            .filter_map(|((checker, node), pair)| {
                let target = targets.iter().find(|target| target.name == node)?;
                Some(ReachProblem {
                    observer: checker.clone(),
                    node: node.clone(),
                    address: target.address.to_string(),
                    unreached_ms: now.since(pair.since),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
