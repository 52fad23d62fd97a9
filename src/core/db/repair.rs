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
        let Some(repair) = self.role.repair_mut() else {
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
                self.role = LocalRole::starting();
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
    /// The merge left data it could neither copy nor save: the rebuild saves everything first.
    pub fn save_before_rebuild(&mut self, why: &str) {
        if let Some(repair) = self.role.repair_mut() {
            repair.save_first = SaveFirst::BinlogAndDump;
            repair.status.progress = Some(format!(
                "merge done, but {why}: saving this node's binary log and user databases before the rebuild"
            ));
        }
    }

    /// A merge's summary, shown with the repair until the node is rebuilt (at most
    /// `MAX_MERGE_SUMMARY_CHARS`: it is gossiped).
    pub fn record_merge(&mut self, summary: &str) {
        if let Some(repair) = self.role.repair_mut() {
            let mut kept: String = summary.chars().take(MAX_MERGE_SUMMARY_CHARS).collect();
            if kept.len() < summary.len() {
                kept.push('…');
            }
            repair.status.merged = Some(kept);
        }
    }

    pub fn repair_progress(&mut self, progress: String) {
        if let Some(repair) = self.role.repair_mut() {
            repair.status.progress = Some(progress);
        }
    }

    /// `gossip-ha resync`: repair a diverged node now, or rebuild a replica from the primary.
    pub fn request_resync(&mut self, primary: Option<(&str, &str)>) -> Result<String, String> {
        if let Some(repair) = self.role.repair_mut() {
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
        let repair = Repair {
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
        };
        self.role = LocalRole::NeedsResync {
            why: format!("operator asked for a rebuild from {winner}"),
            repair,
        };
        Ok(format!("rebuilding from {winner} at {addr}"))
    }

    pub(super) fn advance_repair(&mut self, view: &DbView<'_>, out: &mut Vec<DbDecision>) {
        let Some(repair) = self.role.repair_mut() else {
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

    /// Where the histories parted and since when rows may differ. A promotion forked them (the
    /// newer of this node's and the winner's); the fork itself is the common point of this
    /// node's history and the winner's, which a replica of the losing primary (never promoted
    /// itself, or long ago) gets right too. The window opens at the promotion made there.
    pub(super) fn repair_plan(&self, view: &DbView<'_>, winner: &str, winner_addr: &str, probe: &DbProbe) -> Repair {
        let winner_db = peer_db(view, winner);
        let promotion = match winner_db {
            Some(db) if db.epoch >= self.epoch => (db.promoted_from_gtid.clone(), db.promoted_unix_ms),
            _ => (self.promoted_from_gtid.clone(), self.promoted_unix_ms),
        };
        let mine = probe.history().ok();
        let theirs = winner_db.and_then(announced_history);
        // Without a promotion there is no telling which transactions diverged: an operator
        // decides (`gossip-ha resync` saves the whole binary log and a dump first).
        let fork = merge_fork(mine.as_ref(), theirs.as_ref(), promotion.0.as_deref());
        let promotions = view
            .peers
            .iter()
            .filter_map(|peer| peer.db)
            .map(|db| (db.promoted_from_gtid.as_deref(), db.promoted_unix_ms))
            .chain([(self.promoted_from_gtid.as_deref(), self.promoted_unix_ms)]);
        let promoted_unix_ms = fork
            .as_deref()
            .and_then(|fork| promotion_at(fork, promotions))
            .or(promotion.1);
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
            // Refused with the very history the primary announces: that announcement is stale
            // (its server was replaced, say), so what this node holds is saved first.
            Some(Relation::Equal) if !probe.databases.is_empty() => (
                Self::rebuild_plan(primary, primary_addr, RepairKind::Clone, SaveFirst::BinlogAndDump),
                format!("{primary} refused the very history it announces, so its announcement is stale (a replaced server?): saving this node's binary log and user databases under state_dir, then cloning it from {primary}"),
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
                let repair = self.repair_plan(view, primary, primary_addr, probe);
                let next = match (repair.next.is_some(), repair.status.fork_gtid.is_empty()) {
                    (true, _) => "merging its rows into the winner, then rebuilding from it (splitbrain_autofix)",
                    (false, true) => "the fork is unknown (no promotion point announced), so which transactions diverged cannot be told: left to an operator; `gossip-ha resync` on this host saves its whole binary log and a dump under state_dir, then rebuilds it",
                    (false, false) => "waiting for `gossip-ha resync` (splitbrain_autofix is off)",
                };
                (repair, format!("it has transactions {primary} lacks; {next}"))
            }
        };
        self.role = LocalRole::NeedsResync {
            why: format!("{situation}; {then}"),
            repair,
        };
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

/// The fork a merge reads the loser's log from: the common point of the two histories when
/// both are MariaDB histories sharing one, else the promotion that forked them; `None` when no
/// promotion is known (then nothing says the histories forked where they seem to).
pub fn merge_fork(mine: Option<&GtidSet>, theirs: Option<&GtidSet>, promotion: Option<&str>) -> Option<String> {
    let promotion = promotion.filter(|fork| !fork.is_empty())?;
    let common = mine.zip(theirs).and_then(|(mine, theirs)| common_point(mine, theirs));
    Some(common.unwrap_or_else(|| promotion.to_string()))
}

/// Where two MariaDB histories part, per domain: both hold a server's transactions up to the
/// lower of their waypoints for it (a server writes on one line), and the shared line of a
/// domain reaches the highest of those. A replica of the losing primary holds the winner's
/// transactions from before the cut, and its own setup, and the losing side's since: only the
/// first are common. Gossiped waypoints only lag, so the point found is never past the real
/// one. `None` for MySQL sets, or when no domain shares a server.
pub fn common_point(mine: &GtidSet, theirs: &GtidSet) -> Option<String> {
    let (GtidSet::MariaDb(mine), GtidSet::MariaDb(theirs)) = (mine, theirs) else {
        return None;
    };
    let points: Vec<String> = mine
        .iter()
        .filter_map(|(domain, held)| {
            let their_domain = theirs.get(domain)?;
            let (server, seq) = held
                .servers
                .iter()
                .filter_map(|(server, seq)| Some((*server, (*seq).min(*their_domain.servers.get(server)?))))
                .max_by_key(|&(server, seq)| (seq, server))?;
            Some(format!("{domain}-{server}-{seq}"))
        })
        .collect();
    (!points.is_empty()).then(|| points.join(","))
}

/// The wall-clock time of the promotion made at `fork` (as announced beside its GTID), if one
/// of `promotions` was; the newest if several.
fn promotion_at<'a>(fork: &str, promotions: impl Iterator<Item = (Option<&'a str>, Option<u64>)>) -> Option<u64> {
    let position = |text: &str| GtidSet::parse(text).ok().map(|set| set.to_string());
    let wanted = position(fork)?;
    promotions
        .filter(|(from, _)| from.and_then(position).as_ref() == Some(&wanted))
        .filter_map(|(_, unix_ms)| unix_ms)
        .max()
}

/// Which transactions of a split-brain loser's binary log a merge copies from: those neither
/// the fork nor the winner holds. The winner's history (`gtid_binlog_state`,
/// `gtid_slave_pos`, `gtid_current_pos`, read from it when the merge starts) is judged per
/// server id, so a transaction the winner holds is never divergent whatever fork the loser was
/// given: its own transactions the loser logged, those applied before the loser stopped
/// replicating, a replica's setup the winner replicated.
#[derive(Debug, Clone)]
pub struct Divergence {
    fork: GtidSet,
    winner: GtidSet,
}

impl Divergence {
    pub fn new(fork_gtid: &str, winner_history: &str) -> Result<Divergence, String> {
        let mariadb = |text: &str, what: &str| match GtidSet::parse(text) {
            Ok(set @ GtidSet::MariaDb(_)) => Ok(set),
            _ => Err(format!("the {what} `{text}` is not a MariaDB GTID position")),
        };
        if fork_gtid.trim().is_empty() {
            return Err("the fork is empty".into());
        }
        Ok(Divergence {
            fork: mariadb(fork_gtid, "fork")?,
            winner: mariadb(winner_history, "winner's history")?,
        })
    }

    /// Transaction `domain-server-seq` is the loser's own since the fork.
    pub fn is_divergent(&self, domain: u32, server: u32, seq: u64) -> bool {
        !self.fork.holds(domain, seq) && !self.winner_holds(domain, server, seq)
    }

    fn winner_holds(&self, domain: u32, server: u32, seq: u64) -> bool {
        match &self.winner {
            GtidSet::MariaDb(domains) => domains
                .get(&domain)
                .and_then(|held| held.servers.get(&server))
                .is_some_and(|held| *held >= seq),
            GtidSet::MySql(_) => false,
        }
    }

    /// A binary log file whose `Gtid_list` (the newest GTID per domain and server before it)
    /// holds nothing divergent starts no later than the first divergent transaction.
    pub fn starts_before(&self, gtid_list: &GtidSet) -> bool {
        match gtid_list {
            GtidSet::MariaDb(domains) => domains.iter().all(|(domain, held)| {
                held.servers
                    .iter()
                    .all(|(server, seq)| !self.is_divergent(*domain, *server, *seq))
            }),
            GtidSet::MySql(_) => false,
        }
    }
}

/// A row a divergent transaction inserted into a merged table, known by where it was first
/// written: its transaction's GTID (the origin's, kept by every server that logs it again with
/// `log-slave-updates`) and its place among that transaction's merged rows. A losing primary
/// and its replica hold the same rows under the same names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OriginRow {
    pub domain: u32,
    pub server: u32,
    pub seq: u64,
    pub row: u64,
}

impl OriginRow {
    fn line(&self) -> (u32, u32) {
        (self.domain, self.server)
    }

    fn place(&self) -> (u64, u64) {
        (self.seq, self.row)
    }
}

/// One line of the winner's ledger: every merged row of one origin (domain, server) from
/// `first` to `last` (by sequence number, then row), `rows` of them, is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerLine {
    pub first: OriginRow,
    pub last: OriginRow,
    pub rows: u64,
}

/// One origin's rows from a first to a last place (sequence number, row), both included.
type Span = ((u64, u64), (u64, u64));

/// Whether each row a merge reads goes to the winner: exactly the rows no ledger line holds,
/// whichever node's merge wrote the line. Rows are asked about in log order; the lines of the
/// rows taken grow while each row taken is the next one its origin showed in this log (a row
/// found in already breaks them), so a line never claims a row nobody copied.
#[derive(Debug, Clone, Default)]
pub struct RowLedger {
    /// The ledger's lines, per origin: sorted, overlapping ones joined.
    merged: BTreeMap<(u32, u32), Vec<Span>>,
    /// The last row of each origin this reading met.
    last_seen: BTreeMap<(u32, u32), (u64, u64)>,
    /// Lines of the rows taken since the last `take_lines`.
    taken: Vec<LedgerLine>,
    /// Rows found in already.
    pub rows_in_already: u64,
}

impl RowLedger {
    pub fn new(lines: impl IntoIterator<Item = (OriginRow, OriginRow)>) -> RowLedger {
        let mut merged: BTreeMap<(u32, u32), Vec<Span>> = BTreeMap::new();
        for (first, last) in lines {
            if first.line() == last.line() && first.place() <= last.place() {
                merged
                    .entry(first.line())
                    .or_default()
                    .push((first.place(), last.place()));
            }
        }
        for ranges in merged.values_mut() {
            ranges.sort_unstable();
            let mut joined: Vec<Span> = Vec::with_capacity(ranges.len());
            for &(first, last) in ranges.iter() {
                match joined.last_mut() {
                    Some(previous) if first <= previous.1 => previous.1 = previous.1.max(last),
                    _ => joined.push((first, last)),
                }
            }
            *ranges = joined;
        }
        RowLedger {
            merged,
            ..RowLedger::default()
        }
    }

    fn holds(&self, row: OriginRow) -> bool {
        let Some(ranges) = self.merged.get(&row.line()) else {
            return false;
        };
        let after = ranges.partition_point(|(first, _)| *first <= row.place());
        after > 0 && ranges[after - 1].1 >= row.place()
    }

    /// Whether `row` is copied (and recorded in the batch's lines) or is in already.
    pub fn take(&mut self, row: OriginRow) -> bool {
        let previous = self.last_seen.insert(row.line(), row.place());
        if self.holds(row) {
            self.rows_in_already += 1;
            return false;
        }
        let open = self
            .taken
            .iter_mut()
            .rev()
            .find(|line| line.last.line() == row.line())
            .filter(|line| Some(line.last.place()) == previous);
        match open {
            Some(line) => {
                line.last = row;
                line.rows += 1;
            }
            None => self.taken.push(LedgerLine {
                first: row,
                last: row,
                rows: 1,
            }),
        }
        true
    }

    /// The lines of the rows taken since the last call: committed with those rows.
    pub fn take_lines(&mut self) -> Vec<LedgerLine> {
        std::mem::take(&mut self.taken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(text: &str) -> GtidSet {
        GtidSet::parse(text).unwrap()
    }

    #[test]
    fn the_fork_is_the_common_point_of_both_histories() {
        // (this node's history, the winner's, the promotion the old rule picked, the fork)
        let cases: &[(&str, &str, Option<&str>, Option<&str>)] = &[
            // The losing primary (promoted at 0-1-335) against the old primary that kept writing.
            ("0-2-380,0-1-335", "0-1-400,0-1-6", Some("0-1-335"), Some("0-1-335")),
            // Its replica: setup of its own (server 3) and an old promotion point picked by the
            // old rule (the winner's, at its setup); the common point is still 0-1-335.
            ("0-2-380,0-1-335,0-3-6", "0-1-400,0-1-6", Some("0-1-6"), Some("0-1-335")),
            // It promoted once (0-2-228) in an earlier failover that the winner replicated.
            ("0-2-380,0-1-335", "0-1-400,0-2-228", Some("0-2-228"), Some("0-1-335")),
            // The losing side is the old primary and its replica; the winner promoted at
            // 0-1-335 and holds server 1 only so far.
            ("0-1-380,0-3-6", "0-2-400,0-1-335", Some("0-1-335"), Some("0-1-335")),
            // Two domains: each has its own point.
            (
                "0-2-380,0-1-335,1-2-50,1-1-40",
                "0-1-400,1-1-45",
                Some("0-1-335"),
                Some("0-1-335,1-1-40"),
            ),
            // Nothing shared in any server: the promotion.
            ("0-3-6", "0-1-400", Some("0-1-335"), Some("0-1-335")),
            // No promotion known: nothing says where the fork is.
            ("0-2-380,0-1-335", "0-1-400", None, None),
            ("0-2-380,0-1-335", "0-1-400", Some(""), None),
        ];
        for &(mine, theirs, promotion, fork) in cases {
            let chosen = merge_fork(Some(&set(mine)), Some(&set(theirs)), promotion);
            assert_eq!(
                chosen.as_deref(),
                fork,
                "{mine} against {theirs}, promoted {promotion:?}"
            );
        }
        assert_eq!(
            merge_fork(None, Some(&set("0-1-400")), Some("0-1-6")).as_deref(),
            Some("0-1-6"),
            "an unreadable history keeps the promotion"
        );
        let mysql = set("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5");
        assert_eq!(common_point(&mysql, &mysql), None);
    }

    #[test]
    fn the_window_opens_at_the_promotion_made_at_the_fork() {
        let promotions = [
            (Some("0-1-6"), Some(100)),
            (None, Some(150)),
            (Some("0-1-335"), Some(200)),
            (Some("0-1-335"), None),
        ];
        assert_eq!(promotion_at("0-1-335", promotions.into_iter()), Some(200));
        assert_eq!(promotion_at("0-1-6", promotions.into_iter()), Some(100));
        assert_eq!(promotion_at("0-1-7", promotions.into_iter()), None);
    }

    #[test]
    fn a_transaction_the_winner_holds_is_never_divergent() {
        // The replica was given an old fork (0-1-6): the winner's own transactions up to 400
        // and the replica's promotion history it replicated (server 2 up to 228) are held.
        let divergence = Divergence::new("0-1-6", "0-1-400,0-2-228,0-1-6").unwrap();
        let cases: &[((u32, u32, u64), bool)] = &[
            ((0, 1, 5), false),   // before the fork
            ((0, 1, 335), false), // the winner's own, logged by the loser before the cut
            ((0, 2, 228), false), // an earlier promotion the winner replicated
            ((0, 2, 336), true),  // the losing side's writes during the cut
            ((0, 2, 380), true),
            ((0, 3, 7), true), // the replica's own, the winner never had
            ((1, 1, 3), true), // a domain neither holds
        ];
        for &((domain, server, seq), divergent) in cases {
            assert_eq!(
                divergence.is_divergent(domain, server, seq),
                divergent,
                "{domain}-{server}-{seq}"
            );
        }
        assert!(divergence.starts_before(&set("0-1-300,0-2-228")));
        assert!(!divergence.starts_before(&set("0-1-300,0-2-340")));
        assert!(Divergence::new("", "0-1-1").is_err());
        assert!(Divergence::new("0-1-5", "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5").is_err());
    }

    fn row(server: u32, seq: u64, row: u64) -> OriginRow {
        OriginRow {
            domain: 0,
            server,
            seq,
            row,
        }
    }

    #[test]
    fn the_ledger_knows_rows_by_their_origin_whoever_merged_them() {
        // The losing primary merged server 2's 336..=340 (two rows each) in one line, and
        // 345's first row in another; its replica reads the same transactions from its own log.
        let mut ledger = RowLedger::new([(row(2, 336, 0), row(2, 340, 1)), (row(2, 345, 0), row(2, 345, 0))]);
        let read = [
            row(2, 336, 0),
            row(2, 336, 1),
            row(2, 340, 1),
            row(3, 7, 0), // the replica's own row: never merged
            row(2, 341, 0),
            row(2, 341, 1),
            row(2, 345, 0),
            row(2, 345, 1),
            row(2, 346, 0),
        ];
        let taken: Vec<OriginRow> = read.into_iter().filter(|&origin| ledger.take(origin)).collect();
        assert_eq!(
            taken,
            [
                row(3, 7, 0),
                row(2, 341, 0),
                row(2, 341, 1),
                row(2, 345, 1),
                row(2, 346, 0)
            ]
        );
        assert_eq!(ledger.rows_in_already, 4);
        // A line grows only over rows taken one after another; 345/0, in already, breaks it.
        let lines = ledger.take_lines();
        let spans: Vec<(OriginRow, OriginRow, u64)> =
            lines.iter().map(|line| (line.first, line.last, line.rows)).collect();
        assert_eq!(
            spans,
            [
                (row(3, 7, 0), row(3, 7, 0), 1),
                (row(2, 341, 0), row(2, 341, 1), 2),
                (row(2, 345, 1), row(2, 346, 0), 2),
            ]
        );
        assert!(ledger.take_lines().is_empty(), "lines leave with their batch");
        // The next batch's lines start afresh.
        assert!(ledger.take(row(2, 347, 0)));
        assert_eq!(ledger.take_lines()[0].first, row(2, 347, 0));
    }

    #[test]
    fn overlapping_ledger_lines_are_joined_and_other_origins_stay_apart() {
        let ledger = RowLedger::new([
            (row(2, 10, 0), row(2, 20, 0)),
            (row(2, 15, 0), row(2, 30, 2)),
            (row(2, 40, 0), row(2, 40, 0)),
            // Malformed (two origins, or reversed): ignored.
            (row(2, 50, 0), row(3, 60, 0)),
            (row(2, 70, 0), row(2, 60, 0)),
        ]);
        let held = |origin: OriginRow| ledger.holds(origin);
        assert!(held(row(2, 10, 0)) && held(row(2, 25, 9)) && held(row(2, 30, 2)) && held(row(2, 40, 0)));
        assert!(!held(row(2, 9, 5)) && !held(row(2, 30, 3)) && !held(row(2, 40, 1)));
        assert!(!held(row(3, 15, 0)), "another server's 15 is another row");
        assert!(!held(row(2, 55, 0)) && !held(row(2, 65, 0)));
        let other_domain = OriginRow {
            domain: 1,
            ..row(2, 15, 0)
        };
        assert!(!held(other_domain));
    }
}
