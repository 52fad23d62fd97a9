//! Repairing a diverged node (DESIGN §2): after losing a split-brain (or being refused by the
//! primary), plan the merge window, ask for the merge, then the rebuild, retry a failed step a
//! few times, and take the operator's `gossip-ha resync`.

use gossip_ha_proto::db::{RepairStage, RepairStatus};

use super::*;

#[derive(Debug, Clone)]
pub(super) struct Repair {
    pub(super) status: RepairStatus,
    pub(super) winner_addr: String,
    /// The action to ask for on the next step, if any.
    pub(super) next: Option<RepairStep>,
    /// The merge is done: a retry only rebuilds.
    pub(super) merged: bool,
    /// Failed attempts so far; automatic retries stop at `MAX_REPAIR_ATTEMPTS`.
    pub(super) failures: u32,
    pub(super) failed_at: Option<MonoMs>,
}

/// Automatic attempts at a repair before it waits for `gossip-ha resync`.
pub const MAX_REPAIR_ATTEMPTS: u32 = 5;

/// A failed repair is tried again after this many thresholds (the partition may still be on).
const REPAIR_RETRY_THRESHOLDS: u64 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RepairStep {
    Merge,
    Resync,
}

impl DbCore {
    /// The shell reports how a merge or resync ended; the core decides what comes next.
    pub fn repair_finished(&mut self, action: &DbAction, result: Result<(), String>) -> Vec<DbDecision> {
        let mut out = Vec::new();
        let Some(repair) = self.repair.as_mut() else {
            return out;
        };
        match (action, result) {
            (DbAction::Merge(_), Ok(())) => {
                repair.merged = true;
                repair.next = Some(RepairStep::Resync);
                repair.status.progress = Some("merge done; rebuilding from the winner next".into());
            }
            (DbAction::Resync { node, .. }, Ok(())) => {
                out.push(DbDecision::Note {
                    reason: format!("rebuilt from {node}: rejoining as its replica"),
                });
                self.repair = None;
                self.role = LocalRole::Starting;
                self.last_repoint_at = None;
            }
            (DbAction::Merge(_) | DbAction::Resync { .. }, Err(err)) => {
                repair.status.stage = RepairStage::Failed;
                repair.status.progress = Some(err.clone());
                repair.next = None;
                repair.failures += 1;
                repair.failed_at = None;
                let then = if self.policy.splitbrain_autofix && repair.failures < MAX_REPAIR_ATTEMPTS {
                    format!(
                        "tried again in {REPAIR_RETRY_THRESHOLDS} × threshold (attempt {} of {MAX_REPAIR_ATTEMPTS}) or on `gossip-ha resync`",
                        repair.failures + 1
                    )
                } else {
                    "waits for `gossip-ha resync`".into()
                };
                out.push(DbDecision::NeedsResync {
                    reason: format!(
                        "repair failed ({err}); stays read-only, never rejoining half-repaired (a merge run again copies nothing twice); {then}"
                    ),
                });
            }
            _ => {}
        }
        out
    }

    /// Newest progress of a running merge or resync, for status.
    pub fn repair_progress(&mut self, progress: String) {
        if let Some(repair) = self.repair.as_mut() {
            repair.status.progress = Some(progress);
        }
    }

    /// `gossip-ha resync`: repair a diverged node now, or rebuild a replica from the primary.
    pub fn request_resync(&mut self, primary: Option<(&str, &str)>) -> Result<String, String> {
        if let Some(repair) = self.repair.as_mut() {
            if matches!(repair.status.stage, RepairStage::Merging | RepairStage::Resyncing) && repair.next.is_none() {
                return Err(format!(
                    "a repair is already running ({})",
                    repair.status.stage.as_str()
                ));
            }
            repair.next = Some(if repair.merged {
                RepairStep::Resync
            } else {
                RepairStep::Merge
            });
            repair.failures = 0;
            return Ok(format!(
                "repairing: merge the window's rows into {}, then rebuild from it",
                repair.status.winner
            ));
        }
        if self.claims_primary() {
            return Err("this node is the primary: there is nothing to resync it from".into());
        }
        let Some((winner, addr)) = primary else {
            return Err("no primary is elected: nothing to resync from".into());
        };
        self.role = LocalRole::NeedsResync(format!("operator asked for a rebuild from {winner}"));
        self.repair = Some(Repair {
            status: RepairStatus {
                winner: winner.to_string(),
                fork_gtid: String::new(),
                window_start_unix_ms: 0,
                stage: RepairStage::Resyncing,
                progress: None,
            },
            winner_addr: addr.to_string(),
            next: Some(RepairStep::Resync),
            merged: true,
            failures: 0,
            failed_at: None,
        });
        Ok(format!("rebuilding from {winner} at {addr}"))
    }

    pub(super) fn advance_repair(&mut self, view: &DbView<'_>, out: &mut Vec<DbDecision>) {
        let autofix = self.policy.splitbrain_autofix;
        let Some(repair) = self.repair.as_mut() else {
            return;
        };
        if repair.status.stage == RepairStage::Failed && repair.next.is_none() {
            let failed_at = *repair.failed_at.get_or_insert(view.now);
            let waited = view.now.since(failed_at) >= REPAIR_RETRY_THRESHOLDS * view.threshold_ms;
            if autofix && waited && repair.failures < MAX_REPAIR_ATTEMPTS {
                repair.next = Some(if repair.merged {
                    RepairStep::Resync
                } else {
                    RepairStep::Merge
                });
            }
        }
        if repair.next.is_some() {
            // The primary may have changed since the repair was planned: repair towards the
            // current one (it holds the winner's data, or it would not be primary).
            let current = view.elected.filter(|claim| claim.name != view.me).and_then(|claim| {
                let peer = view.peers.iter().find(|peer| peer.name == claim.name)?;
                Some((claim.name.to_string(), peer.db?.advertise.clone()))
            });
            if let Some((name, addr)) = current {
                repair.status.winner = name;
                repair.winner_addr = addr;
            }
        }
        let Some(step) = repair.next.take() else {
            return;
        };
        let action = match step {
            RepairStep::Merge => {
                repair.status.stage = RepairStage::Merging;
                DbAction::Merge(MergePlan {
                    winner: repair.status.winner.clone(),
                    winner_addr: repair.winner_addr.clone(),
                    fork_gtid: repair.status.fork_gtid.clone(),
                    window_start_unix_ms: repair.status.window_start_unix_ms,
                })
            }
            RepairStep::Resync => {
                repair.status.stage = RepairStage::Resyncing;
                let transfer = view
                    .peers
                    .iter()
                    .find(|peer| peer.name == repair.status.winner)
                    .and_then(|peer| peer.db)
                    .and_then(|db| db.transfer.clone());
                DbAction::Resync {
                    node: repair.status.winner.clone(),
                    addr: repair.winner_addr.clone(),
                    transfer,
                }
            }
        };
        let reason = match &action {
            DbAction::Merge(plan) => format!(
                "saving this node's transactions since GTID `{}` and copying the merged tables' rows written since unix ms {} into {}",
                plan.fork_gtid, plan.window_start_unix_ms, plan.winner
            ),
            _ => format!("rebuilding this node from {}", repair.status.winner),
        };
        self.act(action, reason, out);
    }

    /// Where the histories parted and since when rows may differ: the newer promotion of the
    /// two (this node's or the winner's) forked them.
    pub(super) fn repair_plan(&self, view: &DbView<'_>, winner: &str, winner_addr: &str) -> Repair {
        let winner_db = view
            .peers
            .iter()
            .find(|peer| peer.name == winner)
            .and_then(|peer| peer.db);
        let (fork, promoted_unix_ms) = match winner_db {
            Some(db) if db.epoch >= self.epoch => (db.promoted_from_gtid.clone(), db.promoted_unix_ms),
            _ => (self.promoted_from_gtid.clone(), self.promoted_unix_ms),
        };
        let stage = if self.policy.splitbrain_autofix {
            RepairStage::Merging
        } else {
            RepairStage::WaitingForOperator
        };
        Repair {
            status: RepairStatus {
                winner: winner.to_string(),
                fork_gtid: fork.unwrap_or_default(),
                window_start_unix_ms: promoted_unix_ms
                    .map(|at| at.saturating_sub(self.policy.splitbrain_lookback_ms))
                    .unwrap_or(0),
                stage,
                progress: None,
            },
            winner_addr: winner_addr.to_string(),
            next: self.policy.splitbrain_autofix.then_some(RepairStep::Merge),
            merged: false,
            failures: 0,
            failed_at: None,
        }
    }
}
