//! How far each replica is behind the DB primary, from announced GTID positions alone (no
//! heartbeat table, no `Seconds_Behind_Master`, which reads 0 whenever the SQL thread is idle).
//!
//! Transactions behind: the primary's announced position against the replica's, as histories
//! (`gtid.rs`). Seconds: the observing agent remembers when it first saw the primary announce
//! each of its last `REMEMBERED_POSITIONS` positions; a replica lacking some of them is as far
//! behind as the oldest one it lacks is old. Times are the observer's own `MonoMs`: nothing here
//! compares clocks of two hosts.

use std::collections::{BTreeMap, VecDeque};

use gossip_ha_proto::api::{ReplicationLag, Stall};
use gossip_ha_proto::db::{DbAnnouncement, DbRole};

use super::gtid::{GtidSet, Relation};
use super::MonoMs;

/// Distinct primary positions remembered; beyond them a lag in seconds is a lower bound.
pub const REMEMBERED_POSITIONS: usize = 64;
/// Replicas whose progress is followed at most (a Pandora cluster has a handful of DB nodes).
const MAX_FOLLOWED_REPLICAS: usize = 256;

#[derive(Debug, Clone)]
struct SeenPosition {
    text: String,
    set: GtidSet,
    first_seen: MonoMs,
}

/// A replica's position, and since when it has been behind without it moving.
#[derive(Debug, Clone)]
struct Progress {
    gtid: String,
    since: MonoMs,
}

#[derive(Debug, Clone, Default)]
pub struct LagBook {
    /// The primary whose positions are remembered; another primary starts the memory afresh.
    primary: Option<String>,
    /// Oldest first.
    positions: VecDeque<SeenPosition>,
    progress: BTreeMap<String, Progress>,
}

/// One node as the observer sees it now.
pub struct DbNode<'a> {
    pub name: &'a str,
    pub alive: bool,
    pub db: &'a DbAnnouncement,
}

impl LagBook {
    /// Takes in what gossip shows at `now` and answers each live replica's lag. `primary` is the
    /// elected DB primary; a replica is stalled after `stall_after_ms` without progress while
    /// behind.
    pub fn step(
        &mut self,
        now: MonoMs,
        primary: Option<&DbNode<'_>>,
        nodes: &[DbNode<'_>],
        stall_after_ms: u64,
    ) -> BTreeMap<String, ReplicationLag> {
        self.remember_primary(now, primary);
        let replicas: Vec<&DbNode> = nodes
            .iter()
            .filter(|node| node.alive && Some(node.name) != primary.map(|p| p.name) && is_replica(node.db))
            .collect();
        self.progress
            .retain(|name, _| replicas.iter().any(|replica| replica.name == name));
        replicas
            .into_iter()
            .map(|replica| (replica.name.to_string(), self.replica_lag(now, replica, stall_after_ms)))
            .collect()
    }

    fn remember_primary(&mut self, now: MonoMs, primary: Option<&DbNode<'_>>) {
        let Some(primary) = primary else {
            self.primary = None;
            self.positions.clear();
            return;
        };
        if self.primary.as_deref() != Some(primary.name) {
            self.primary = Some(primary.name.to_string());
            self.positions.clear();
        }
        let text = primary.db.gtid.trim();
        if text.is_empty() || self.positions.back().is_some_and(|newest| newest.text == text) {
            return;
        }
        let Ok(set) = GtidSet::parse(text) else { return };
        // A position that does not contain the last one is another history (the primary was
        // rebuilt): what was remembered no longer says anything about it.
        if self.positions.back().is_some_and(|newest| !set.covers(&newest.set)) {
            self.positions.clear();
        }
        self.positions.push_back(SeenPosition {
            text: text.to_string(),
            set,
            first_seen: now,
        });
        while self.positions.len() > REMEMBERED_POSITIONS {
            self.positions.pop_front();
        }
    }

    fn replica_lag(&mut self, now: MonoMs, replica: &DbNode<'_>, stall_after_ms: u64) -> ReplicationLag {
        let mut lag = self.behind(now, replica.db);
        let behind = lag.transactions_behind.is_some_and(|count| count > 0);
        let stuck_ms = self.stuck_ms(now, replica, behind);
        let sql_running = replica.db.sql_running != Some(false);
        lag.stalled = match replica.db.io_state.as_deref() {
            Some(state) if state.eq_ignore_ascii_case("connecting") => Some(Stall::IoConnecting),
            Some(state) if !state.eq_ignore_ascii_case("yes") => Some(Stall::IoStopped),
            // With the SQL thread stopped nothing moves, and the table already says so.
            _ if behind && sql_running && stuck_ms >= stall_after_ms => Some(Stall::NoProgress),
            _ => None,
        };
        lag.no_progress_ms = behind.then_some(stuck_ms);
        lag
    }

    /// Transactions and time this replica is behind the primary's newest announced position.
    fn behind(&self, now: MonoMs, db: &DbAnnouncement) -> ReplicationLag {
        let unknown = ReplicationLag::default();
        let Some(newest) = self.positions.back() else {
            return unknown;
        };
        let Ok(held) = GtidSet::of_node(&db.gtid, &db.gtid_history) else {
            return unknown;
        };
        match held.relation(&newest.set) {
            Relation::Equal | Relation::Ahead => ReplicationLag {
                transactions_behind: Some(0),
                lag_ms: Some(0),
                ..unknown
            },
            Relation::Behind => {
                let oldest_lacking = self
                    .positions
                    .iter()
                    .position(|seen| !held.covers(&seen.set))
                    .unwrap_or(self.positions.len() - 1);
                ReplicationLag {
                    transactions_behind: newest.set.transactions_beyond(&held).map(|count| count.max(1)),
                    lag_ms: Some(now.since(self.positions[oldest_lacking].first_seen)),
                    lag_at_least: oldest_lacking == 0,
                    ..unknown
                }
            }
            Relation::Forked | Relation::Unrelated => unknown,
        }
    }

    /// How long the replica has been behind without its announced position moving: an idle
    /// replica that just fell behind has not been stuck for as long as it has been idle.
    fn stuck_ms(&mut self, now: MonoMs, replica: &DbNode<'_>, behind: bool) -> u64 {
        let gtid = replica.db.gtid.as_str();
        if let Some(progress) = self.progress.get_mut(replica.name) {
            if progress.gtid != gtid || !behind {
                progress.gtid = gtid.to_string();
                progress.since = now;
            }
            return now.since(progress.since);
        }
        if self.progress.len() < MAX_FOLLOWED_REPLICAS {
            let progress = Progress {
                gtid: gtid.to_string(),
                since: now,
            };
            self.progress.insert(replica.name.to_string(), progress);
        }
        0
    }
}

/// A replica, configured to replicate (threads running or not). A node being repaired is
/// not one: its history is not the primary's, and the repair says where it stands.
fn is_replica(db: &DbAnnouncement) -> bool {
    db.role == DbRole::Replica && db.reachable && db.source.is_some() && !db.claims_primary
}

#[cfg(test)]
mod tests;
