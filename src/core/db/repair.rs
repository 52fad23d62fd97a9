//! Repairing a node that cannot follow the primary (DESIGN §2): after losing a split-brain (or
//! being refused with a common point), plan the merge window, ask for the merge, then the
//! rebuild; a node that holds nothing the primary lacks (empty, setup only, or behind purged
//! logs) is cloned by itself; one of an unrelated history holding user data waits for the
//! operator. A failed step is retried a few times; `gossip-ha resync` takes over.

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
    /// What the rebuild saves first.
    pub(super) save_first: SaveFirst,
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

/// A merge summary names tables and a file; more than this is in the saved report.
pub const MAX_MERGE_SUMMARY_CHARS: usize = 1_000;

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
                let retried = self.policy.splitbrain_autofix || repair.status.kind == RepairKind::Clone;
                let then = if retried && repair.failures < MAX_REPAIR_ATTEMPTS {
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
    /// A merge's summary, shown with the repair until the node is rebuilt (at most
    /// `MAX_MERGE_SUMMARY_CHARS`: it is gossiped).
    pub fn record_merge(&mut self, summary: &str) {
        if let Some(repair) = self.repair.as_mut() {
            let mut kept: String = summary.chars().take(MAX_MERGE_SUMMARY_CHARS).collect();
            if kept.len() < summary.len() {
                kept.push('…');
            }
            repair.status.merged = Some(kept);
        }
    }

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
            if repair.status.kind != RepairKind::SplitBrain {
                // Unrelated history or a clone: nothing to merge; everything is saved first.
                repair.next = Some(RepairStep::Resync);
                repair.merged = true;
                repair.save_first = SaveFirst::BinlogAndDump;
                repair.failures = 0;
                return Ok(format!(
                    "saving this node's binary log and a dump of its user databases under state_dir, then rebuilding it from {}",
                    repair.status.winner
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
                merged: None,
                kind: RepairKind::Operator,
            },
            winner_addr: addr.to_string(),
            next: Some(RepairStep::Resync),
            merged: true,
            save_first: SaveFirst::Nothing,
            failures: 0,
            failed_at: None,
        });
        Ok(format!("rebuilding from {winner} at {addr}"))
    }

    pub(super) fn advance_repair(&mut self, view: &DbView<'_>, out: &mut Vec<DbDecision>) {
        let Some(repair) = self.repair.as_mut() else {
            return;
        };
        // A clone loses nothing, so it is retried whatever splitbrain_autofix says.
        let autofix = self.policy.splitbrain_autofix || repair.status.kind == RepairKind::Clone;
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
                    save_first: repair.save_first,
                }
            }
        };
        let reason = match &action {
            DbAction::Merge(plan) => format!(
                "saving this node's transactions since GTID `{}` and copying the rows they inserted into the merged tables into {} (by time from unix ms {} only where the log has statements)",
                plan.fork_gtid, plan.winner, plan.window_start_unix_ms
            ),
            DbAction::Resync {
                save_first: SaveFirst::BinlogAndDump,
                ..
            } => format!(
                "saving this node's binary log and user databases under state_dir, then cloning it from {}",
                repair.status.winner
            ),
            _ if repair.status.kind == RepairKind::Clone => {
                format!("cloning this node from {}", repair.status.winner)
            }
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
        // Without the fork there is no telling which transactions diverged: an operator decides
        // (`gossip-ha resync` saves the whole binary log and a dump first).
        let fork = fork.filter(|fork| !fork.is_empty());
        let automatic = self.policy.splitbrain_autofix && fork.is_some();
        let stage = if automatic {
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
                merged: None,
                kind: RepairKind::SplitBrain,
            },
            winner_addr: winner_addr.to_string(),
            next: automatic.then_some(RepairStep::Merge),
            merged: false,
            save_first: SaveFirst::Nothing,
            failures: 0,
            failed_at: None,
        }
    }

    /// A clone, or a wait for the operator: no merge (there is no fork), only a rebuild.
    fn rebuild_plan(winner: &str, winner_addr: &str, kind: RepairKind, save_first: SaveFirst) -> Repair {
        let waits = kind == RepairKind::Unrelated;
        Repair {
            status: RepairStatus {
                winner: winner.to_string(),
                fork_gtid: String::new(),
                window_start_unix_ms: 0,
                stage: if waits {
                    RepairStage::WaitingForOperator
                } else {
                    RepairStage::Resyncing
                },
                progress: None,
                merged: None,
                kind,
            },
            winner_addr: winner_addr.to_string(),
            next: (!waits).then_some(RepairStep::Resync),
            merged: true,
            save_first,
            failures: 0,
            failed_at: None,
        }
    }

    /// User data of this node's own that a rebuild from the primary would replace: databases
    /// the primary's announcement does not name, and databases holding rows (of another history
    /// than the primary's, when the histories are unrelated). Empty databases the primary also
    /// has (a deploy script's `CREATE DATABASE pandora`) are setup.
    fn data_at_risk<'p>(primary: Option<&DbAnnouncement>, probe: &'p DbProbe) -> Vec<&'p DatabaseContent> {
        let theirs = primary.map(|db| db.databases.as_slice()).unwrap_or_default();
        probe
            .databases
            .iter()
            .filter(|mine| mine.approx_rows > 0 || !theirs.iter().any(|db| db.name == mine.name))
            .collect()
    }

    fn relation_to(primary: Option<&DbAnnouncement>, probe: &DbProbe) -> Option<Relation> {
        let theirs = announced_history(primary?)?;
        Some(probe.history().ok()?.relation(&theirs))
    }

    /// This node's history has nothing in common with the primary's and it holds user data of
    /// its own: another cluster's data, never replicated over.
    pub(super) fn holds_unrelated_data(view: &DbView<'_>, primary: &str, probe: &DbProbe) -> bool {
        let theirs = peer_db(view, primary);
        Self::relation_to(theirs, probe) == Some(Relation::Unrelated) && !Self::data_at_risk(theirs, probe).is_empty()
    }

    /// The primary refused this replica (or its history is another cluster's): decide by how
    /// the histories relate. Behind or equal (an empty server, or the primary purged the logs
    /// it needs), or unrelated with nothing the primary lacks (users and grants of its own):
    /// cloned by itself. Unrelated with user data: waits read-only for the operator. Forked or
    /// ahead: its transactions since the common point are saved and merged, as a split-brain's.
    pub(super) fn cannot_follow(
        &mut self,
        view: &DbView<'_>,
        primary: &str,
        primary_addr: &str,
        probe: &DbProbe,
        refusal: Refusal<'_>,
        out: &mut Vec<DbDecision>,
    ) {
        let server_said = refusal.server_said;
        let theirs = peer_db(view, primary);
        let relation = Self::relation_to(theirs, probe);
        let lacking = Self::data_at_risk(theirs, probe);
        let their_gtid = display_gtid(theirs.map(|db| db.gtid.as_str()).unwrap_or_default());
        let situation = format!(
            "{primary} (GTID {their_gtid}; {}) will not take this node (GTID {}; {}) as a replica: this node's history is {} (server said: {server_said})",
            describe_databases(theirs.map(|db| db.databases.as_slice()).unwrap_or_default()),
            display_gtid(&probe.gtid),
            describe_databases(&probe.databases),
            relation_words(relation, primary)
        );
        let owned: Vec<DatabaseContent> = lacking.into_iter().cloned().collect();
        let (repair, then) = match relation {
            // Its SQL thread stopped on rows or objects its GTIDs do not show (written with the
            // binary log off): whatever it holds is saved before the clone.
            Some(Relation::Equal | Relation::Behind) if refusal.collided && !probe.databases.is_empty() => (
                Self::rebuild_plan(primary, primary_addr, RepairKind::Clone, SaveFirst::BinlogAndDump),
                format!("its GTIDs hold nothing {primary} lacks, but {primary}'s history collides with what it holds: saving its binary log and user databases under state_dir, then cloning it from {primary}"),
            ),
            Some(Relation::Equal | Relation::Behind) => (
                Self::rebuild_plan(primary, primary_addr, RepairKind::Clone, SaveFirst::Nothing),
                format!("it holds nothing {primary} lacks (an empty server, or {primary} no longer has the binary logs it needs): cloning it from {primary}, then it replicates"),
            ),
            Some(Relation::Unrelated) if owned.is_empty() => (
                Self::rebuild_plan(primary, primary_addr, RepairKind::Clone, SaveFirst::BinlogAndDump),
                format!("its own transactions are setup only (users and grants; no user data {primary} lacks): saving its binary log under state_dir, then cloning it from {primary}"),
            ),
            Some(Relation::Unrelated) => (
                Self::rebuild_plan(primary, primary_addr, RepairKind::Unrelated, SaveFirst::Nothing),
                format!(
                    "it holds user data of its own: {}; it would be lost, so it stays read-only and is never rebuilt by itself; `gossip-ha resync` on this host saves its binary log and a full dump under state_dir, then rebuilds it from {primary}",
                    describe_databases(&owned)
                ),
            ),
            _ => {
                let repair = self.repair_plan(view, primary, primary_addr);
                let next = match (repair.next.is_some(), repair.status.fork_gtid.is_empty()) {
                    (true, _) => "merging its rows into the winner, then rebuilding from it (splitbrain_autofix)",
                    (false, true) => "the fork is unknown (no promotion point announced), so which transactions diverged cannot be told: left to an operator; `gossip-ha resync` on this host saves its whole binary log and a dump under state_dir, then rebuilds it",
                    (false, false) => "waiting for `gossip-ha resync` (splitbrain_autofix is off)",
                };
                (repair, format!("it has transactions {primary} lacks; {next}"))
            }
        };
        self.role = LocalRole::NeedsResync(format!("{situation}; {then}"));
        self.repair = Some(repair);
        out.push(DbDecision::NeedsResync {
            reason: format!("{situation}; stays read-only and will not rejoin on top of a different history; {then}"),
        });
        self.act(
            DbAction::StopReplication,
            format!("stop replicating from {primary}: it cannot take this node as it is"),
            out,
        );
    }
}

/// What `name` announces of its database, as this agent last heard it.
fn peer_db<'a>(view: &DbView<'a>, name: &str) -> Option<&'a DbAnnouncement> {
    view.peers
        .iter()
        .find(|peer| peer.name == name)
        .and_then(|peer| peer.db)
}

/// Why this node cannot follow the primary, as its replica threads say.
#[derive(Debug, Clone, Copy)]
pub(super) struct Refusal<'a> {
    pub(super) server_said: &'a str,
    /// The SQL thread stopped on a collision with what this server holds (not the IO thread
    /// refused by the primary).
    pub(super) collided: bool,
}

/// "behind db1's", "forked from db1's (…)", for reasons.
fn relation_words(relation: Option<Relation>, primary: &str) -> String {
    match relation {
        Some(Relation::Equal) => format!("the same as {primary}'s"),
        Some(Relation::Behind) => format!("behind {primary}'s"),
        Some(Relation::Ahead) => format!("ahead of {primary}'s (transactions {primary} lacks)"),
        Some(Relation::Forked) => {
            format!("forked from {primary}'s (a common point, then each has transactions the other lacks)")
        }
        Some(Relation::Unrelated) => format!("unrelated to {primary}'s (no transaction in common)"),
        None => format!("of unknown relation to {primary}'s (a GTID set could not be read)"),
    }
}
