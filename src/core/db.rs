//! DB failover without quorum (DESIGN §2), as pure decisions. Every agent elects the DB primary
//! from the claims it sees; an agent on a DB host also decides what its own database does:
//! stay, promote, go read-only, replicate from the primary, or stop and wait for a resync.
//!
//! The local database's role carries the state only that role needs (`role.rs`); a promotion is
//! decided as a typed hold, a pure ranking and a fence plan (`promotion.rs`); every step keeps
//! the invariants of `invariants.rs` (time never goes backwards, a promotion's epoch above every
//! epoch seen, at most one action in flight).

use std::cmp::Reverse;
use std::collections::BTreeMap;

use gossip_ha_proto::db::{describe_databases, DatabaseContent, DbAnnouncement, DbRole, RepairKind};

pub use self::binlog::{binlog_warning, BinlogFormat, BinlogRowImage};
use super::gtid::{GtidSet, Relation};
use super::{seconds, MonoMs};

/// MariaDB/MySQL error a replica's IO thread reports when its executed GTIDs are not in the
/// source's binary log: it holds transactions the source lacks.
pub const ER_SOURCE_FATAL_READING_BINLOG: u32 = 1236;
/// MariaDB `gtid_strict_mode` refusing an out-of-order GTID: the histories diverged.
pub const ER_GTID_STRICT_OUT_OF_ORDER: u32 = 1950;

/// Errors a replica's SQL thread stops on when the primary's history collides with objects the
/// replica created itself (users and grants of a deploy script, a schema loaded by hand):
/// `ER_CANNOT_USER`, `ER_DB_CREATE_EXISTS`, `ER_TABLE_EXISTS_ERROR`, `ER_DUP_ENTRY`.
pub const SETUP_COLLISION_ERRNOS: [u32; 4] = [1396, 1007, 1050, 1062];

#[derive(Debug, Clone)]
pub struct DbCore {
    policy: DbPolicy,
    role: LocalRole,
    epoch: u64,
    started_at: Option<MonoMs>,
    demoted_at: Option<MonoMs>,
    last_repoint_at: Option<MonoMs>,
    last_primary_seen: Option<String>,
    /// What the last note was about: a note is said again only when that changes.
    last_note: Option<Waiting>,
    was_reachable: Option<bool>,
    /// The binary log warning last emitted: said once per change, shown in status meanwhile.
    binlog_warning: Option<String>,
    /// Since when this node has been promotable without a break: one that just became so must
    /// let the others hear of it before it may promote, or two could promote at once.
    promotable_since: Option<MonoMs>,
    promoted_from_gtid: Option<String>,
    promoted_unix_ms: Option<u64>,
    /// The primary this node took over from in a planned switchover, until its next promotion.
    switchover_from: Option<String>,
    /// Silent-agent DB nodes whose host this primary reaches: since when, and whether it fenced
    /// them in this stretch (fenced again only after they were out of reach, or spoke, between).
    silent_in_reach: BTreeMap<String, SilentInReach>,
    /// The old primary this node fenced, its host in reach, when it last promoted, and when.
    fenced_at_promotion: Option<(String, MonoMs)>,
    /// The newest `now` stepped with: time never goes backwards here (`invariants.rs`).
    last_now: Option<MonoMs>,
    /// The highest epoch this node or any DB peer has announced, on any step so far.
    highest_epoch_seen: u64,
}

#[derive(Debug, Clone, Copy)]
struct SilentInReach {
    since: MonoMs,
    fenced: bool,
}

/// What `DbCore::step` needs from the rest of the core.
pub struct DbView<'a> {
    pub now: MonoMs,
    pub me: &'a str,
    pub threshold_ms: u64,
    pub peers: &'a [PeerDb<'a>],
    /// Nodes this agent knows, itself included, alive or not.
    pub known_nodes: usize,
    /// The primary every agent would elect from what this one sees.
    pub elected: Option<Claim<'a>>,
    /// When a peer last came back (up again, or restarted): right after, its gossip may still
    /// be what it said before it was cut off.
    pub last_peer_return: Option<MonoMs>,
    /// DB nodes whose host (at the database's address) this agent reached at its last check.
    pub reaches: &'a [String],
}

impl DbCore {
    pub fn new(policy: DbPolicy, persisted_epoch: u64) -> Self {
        DbCore {
            policy,
            role: LocalRole::starting(),
            epoch: persisted_epoch,
            started_at: None,
            demoted_at: None,
            last_repoint_at: None,
            last_primary_seen: None,
            last_note: None,
            was_reachable: None,
            binlog_warning: None,
            promotable_since: None,
            promoted_from_gtid: None,
            promoted_unix_ms: None,
            switchover_from: None,
            silent_in_reach: BTreeMap::new(),
            fenced_at_promotion: None,
            last_now: None,
            highest_epoch_seen: persisted_epoch,
        }
    }

    /// What the state file remembers of this node's last promotion.
    pub fn with_promotion_record(mut self, from_gtid: Option<String>, unix_ms: Option<u64>) -> Self {
        self.promoted_from_gtid = from_gtid;
        self.promoted_unix_ms = unix_ms;
        self
    }

    /// The shell tells the wall-clock time at which a promotion was carried out.
    pub fn promoted_at(&mut self, unix_ms: u64) {
        self.promoted_unix_ms = Some(unix_ms);
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The primary a previous run of this agent last saw, from the state file.
    pub fn remember_primary(&mut self, primary: Option<String>) {
        if self.last_primary_seen.is_none() {
            self.last_primary_seen = primary;
        }
    }

    pub fn last_primary_seen(&self) -> Option<&str> {
        self.last_primary_seen.as_deref()
    }

    pub fn priority(&self) -> u8 {
        self.policy.priority
    }

    pub fn set_maintenance(&mut self, on: bool) {
        self.policy.maintenance = on;
    }

    pub fn claims_primary(&self) -> bool {
        matches!(self.role, LocalRole::Primary(_) | LocalRole::Promoting)
    }

    /// This node's own claim, as others will rank it; only while its database answers.
    /// `fork_gtid` is `promoted_from_gtid()`, passed in so the claim does not borrow the core.
    /// `fork_gtid` and `yields_to` are `promoted_from_gtid()` and `yields_to()`, passed in so
    /// the claim does not borrow the core.
    pub fn own_claim<'a>(
        &self,
        me: &'a str,
        local: &'a LocalDb,
        fork_gtid: Option<&'a str>,
        yields_to: Option<&'a str>,
    ) -> Option<Claim<'a>> {
        let probe = local.probe.as_ref().ok()?;
        self.claims_primary().then_some(Claim {
            name: me,
            epoch: self.epoch,
            priority: self.policy.priority,
            gtid: &probe.gtid,
            history: &probe.gtid_history,
            holds_data: !probe.databases.is_empty(),
            fork_gtid,
            yields_to,
        })
    }

    /// The primary this node took over from in a planned switchover, until its next promotion.
    pub fn switchover_from(&self) -> Option<&str> {
        self.switchover_from.as_deref()
    }

    pub fn promoted_from_gtid(&self) -> Option<&str> {
        self.promoted_from_gtid.as_deref()
    }

    fn promotable_reason(&self, now: MonoMs, local: &LocalDb) -> Result<(), NotPromotable> {
        let probe = local
            .probe
            .as_ref()
            .map_err(|err| NotPromotable::new(Blocker::DatabaseUnreachable, format!("database unreachable: {err}")))?;
        if self.policy.maintenance {
            return Err(NotPromotable::new(Blocker::Maintenance, "in maintenance"));
        }
        if let LocalRole::NeedsResync { why, .. } = &self.role {
            return Err(NotPromotable::new(
                Blocker::NeedsResync,
                format!("needs resync ({why})"),
            ));
        }
        if !probe.binlog_enabled {
            return Err(NotPromotable::new(
                Blocker::BinlogDisabled,
                "binary log disabled: replicas could not follow it",
            ));
        }
        if probe.history().is_err() {
            return Err(NotPromotable::new(
                Blocker::UnreadableGtid,
                format!("unreadable GTID position `{}`", probe.gtid),
            ));
        }
        if let Some(demoted_at) = self.demoted_at {
            let waited = now.since(demoted_at);
            if waited < self.policy.promotion_cooldown_ms {
                return Err(NotPromotable::new(
                    Blocker::CoolDown {
                        demoted_at_ms: demoted_at.0,
                    },
                    // No running time: this text is gossiped, and would change every step.
                    format!(
                        "in its promotion cool-down: demoted less than {} ago",
                        seconds(self.policy.promotion_cooldown_ms)
                    ),
                ));
            }
        }
        Ok(())
    }

    pub fn announcement(&self, now: MonoMs, local: &LocalDb) -> DbAnnouncement {
        let promotable = self.promotable_reason(now, local);
        let role = match (&self.role, &local.probe) {
            (LocalRole::NeedsResync { .. }, _) => DbRole::NeedsResync,
            (_, Err(_)) => DbRole::Unreachable,
            (LocalRole::Primary(_) | LocalRole::Promoting, _) => DbRole::Primary,
            (
                LocalRole::Following {
                    phase: Phase::Replica, ..
                },
                _,
            ) => DbRole::Replica,
            (LocalRole::Following { .. }, _) => DbRole::Unknown,
        };
        let probe = local.probe.as_ref().ok();
        let replica = probe.and_then(|probe| probe.replica.as_ref());
        let last_error = match (&local.probe, &self.role) {
            (Err(err), _) => Some(err.clone()),
            (_, LocalRole::NeedsResync { why, .. }) => Some(why.clone()),
            _ => replica.and_then(|replica| replica.last_error.clone()),
        };
        DbAnnouncement {
            role,
            claims_primary: self.claims_primary(),
            reachable: probe.is_some(),
            unreachable_for_ms: local.unreachable_for_ms,
            read_only: probe.map(|probe| probe.read_only),
            io_running: replica.map(ReplicaProbe::io_running),
            sql_running: replica.map(|replica| replica.sql_running),
            io_state: replica.map(|replica| replica.io_state.clone()),
            lag_seconds: replica.and_then(|replica| replica.lag_seconds),
            source: replica.map(|replica| replica.source.clone()),
            gtid: probe.map(|probe| probe.gtid.clone()).unwrap_or_default(),
            gtid_history: probe.map(|probe| probe.gtid_history.clone()).unwrap_or_default(),
            databases: probe.map(|probe| probe.databases.clone()).unwrap_or_default(),
            epoch: self.epoch,
            priority: self.policy.priority,
            maintenance: self.policy.maintenance,
            promotable: promotable.is_ok() && !self.claims_primary(),
            not_promotable: promotable.err().map(|refusal| refusal.why),
            advertise: self.policy.advertise.clone(),
            version: probe.map(|probe| probe.version.clone()),
            last_error,
            promoted_from_gtid: self.promoted_from_gtid.clone(),
            promoted_unix_ms: self.promoted_unix_ms,
            repair: self.role.repair().map(|repair| repair.status.clone()),
            handover_to: self.role.handover().map(|handover| handover.to.clone()),
            switchover_from: self.switchover_from.clone(),
            handover_gtid: self.role.handover().and_then(|handover| handover.gtid.clone()),
            transfer: self.policy.transfer.clone(),
        }
    }

    /// Says why nothing is done, once per thing waited for (not per wording: see `waiting`).
    fn note(&mut self, waiting: Waiting, reason: String, out: &mut Vec<DbDecision>) {
        if self.last_note.as_ref() != Some(&waiting) {
            self.last_note = Some(waiting);
            out.push(DbDecision::Note { reason });
        }
    }

    fn act(&mut self, action: DbAction, reason: String, out: &mut Vec<DbDecision>) {
        self.last_note = None;
        out.push(DbDecision::Act { action, reason });
    }

    /// One step of the local database's decisions, keeping the invariants of `invariants.rs`.
    pub fn step(&mut self, view: &DbView<'_>, local: &LocalDb) -> Vec<DbDecision> {
        let (now, went_back) = invariants::monotonic(self.last_now, view.now);
        self.last_now = Some(now);
        let view = DbView { now, ..*view };
        self.highest_epoch_seen = self.highest_epoch(&view);
        let mut out: Vec<DbDecision> = went_back.into_iter().collect();
        out.extend(self.decide(&view, local));
        debug_assert!(
            invariants::one_action_at_a_time(&out, local.action_in_flight),
            "more than one action in flight: {out:?}"
        );
        out
    }

    fn decide(&mut self, view: &DbView<'_>, local: &LocalDb) -> Vec<DbDecision> {
        let mut out = Vec::new();
        let now = view.now;
        let started_at = *self.started_at.get_or_insert(now);
        if let Some(elected) = view.elected.filter(|claim| claim.name != view.me) {
            self.last_primary_seen = Some(elected.name.to_string());
        }
        self.track_reachability(local, &mut out);
        self.track_binlog_settings(local, &mut out);
        let promotable = self.promotable_reason(now, local).is_ok();
        self.promotable_since = match (promotable, self.promotable_since) {
            (true, Some(since)) => Some(since),
            (true, None) => Some(now),
            (false, _) => None,
        };
        if local.action_in_flight {
            return out;
        }
        let probe = match &local.probe {
            Ok(probe) => probe,
            Err(_) => {
                if !self.claims_primary() && !matches!(self.role, LocalRole::NeedsResync { .. }) {
                    self.role.set_phase(Phase::Unreachable);
                }
                return out;
            }
        };

        match &self.role {
            LocalRole::Promoting if probe.read_only => {
                self.role = LocalRole::starting();
                self.note(
                    Waiting::ReEvaluating,
                    "promotion did not leave the database writable; re-evaluating".into(),
                    &mut out,
                );
            }
            LocalRole::Promoting => self.role = LocalRole::primary(),
            LocalRole::Following {
                phase: Phase::Unreachable,
                ..
            } => self.role.set_phase(Phase::Starting),
            LocalRole::Primary(primacy) if probe.read_only && primacy.handover.is_none() => {
                // mysqld restarted (it boots read-only): a primary no longer, until re-elected.
                self.role = LocalRole::starting();
                self.note(
                    Waiting::ReEvaluating,
                    "the database came back read-only; re-evaluating who is primary".into(),
                    &mut out,
                );
            }
            _ => {}
        }

        if self.role.in_phase(Phase::Starting) && !probe.read_only && self.epoch > 0 {
            // This agent restarted while its database kept running as primary: it resumes the
            // claim at once (so peers see no gap), and steps down below if a better one exists.
            self.role = LocalRole::primary();
            self.note(
                Waiting::ResumingPrimary { epoch: self.epoch },
                format!(
                    "resuming as primary with epoch {}: the database is writable and this node promoted it",
                    self.epoch
                ),
                &mut out,
            );
        }

        if let LocalRole::NeedsResync { .. } = self.role {
            if !probe.read_only {
                self.act(
                    DbAction::SetReadOnly,
                    "needs resync: must stay read-only".into(),
                    &mut out,
                );
                return out;
            }
            self.advance_repair(view, &mut out);
            return out;
        }

        if let LocalRole::Primary(_) = self.role {
            if self.carry_out_handover(view, probe, &mut out) {
                return out;
            }
            self.check_rivals(view, probe, &mut out);
            if let LocalRole::Primary(_) = self.role {
                self.fence_silent_writers(view, &mut out);
            }
            return out;
        }
        if !probe.read_only {
            self.act(
                DbAction::SetReadOnly,
                "the database is writable but this node is not the primary".into(),
                &mut out,
            );
            return out;
        }

        match view.elected.filter(|claim| claim.name != view.me) {
            Some(primary) => self.follow(view, primary, local, probe, &mut out),
            None => self.consider_promotion(view, started_at, local, probe, &mut out),
        }
        out
    }

    /// Why a merge of this server's writes could not be exact, as last probed.
    pub fn binlog_warning(&self) -> Option<&str> {
        self.binlog_warning.as_deref()
    }

    /// Warns once when this server's binary log cannot give a merge exact rows, again when that
    /// changes, and notes when it no longer applies. An unreachable server keeps the last
    /// warning: nothing says its settings changed.
    fn track_binlog_settings(&mut self, local: &LocalDb, out: &mut Vec<DbDecision>) {
        let Ok(probe) = &local.probe else { return };
        let warning = probe.binlog_warning();
        if warning == self.binlog_warning {
            return;
        }
        out.push(match &warning {
            Some(reason) => DbDecision::Warning { reason: reason.clone() },
            None => DbDecision::Note {
                reason: format!(
                    "this server's binary log no longer limits a split-brain merge (log_bin {}, binlog_format={}, binlog_row_image={})",
                    if probe.binlog_enabled { "ON" } else { "OFF" },
                    probe.binlog_format,
                    probe.binlog_row_image
                ),
            },
        });
        self.binlog_warning = warning;
    }

    fn track_reachability(&mut self, local: &LocalDb, out: &mut Vec<DbDecision>) {
        let reachable = local.probe.is_ok();
        if self.was_reachable == Some(reachable) {
            return;
        }
        match &local.probe {
            Err(err) => out.push(DbDecision::Unreachable {
                reason: format!("local database unreachable: {err}"),
            }),
            Ok(probe) if self.was_reachable.is_some() => out.push(DbDecision::Reachable {
                reason: format!("local database answers again ({})", probe.version),
            }),
            Ok(_) => {}
        }
        self.was_reachable = Some(reachable);
    }

    fn follow(
        &mut self,
        view: &DbView<'_>,
        primary: Claim<'_>,
        local: &LocalDb,
        probe: &DbProbe,
        out: &mut Vec<DbDecision>,
    ) {
        if primary.yields_to == Some(view.me) {
            return self.take_over(view, primary, local, probe, out);
        }
        if let Some(catchup_since) = self.role.catchup_since() {
            *catchup_since = None;
        }
        let Some(primary_addr) = view
            .peers
            .iter()
            .find(|peer| peer.name == primary.name)
            .and_then(|peer| peer.db)
            .map(|db| db.advertise.clone())
        else {
            return;
        };
        if let Some(replica) = probe.replica.as_ref().filter(|replica| replica.source == primary_addr) {
            let diverged =
                replica.io_errno == ER_SOURCE_FATAL_READING_BINLOG || replica.sql_errno == ER_GTID_STRICT_OUT_OF_ORDER;
            // The primary's history cannot be applied on top of what this server created itself
            // (its users, its schema): the SQL thread stopped on a collision.
            let collided = !replica.sql_running && SETUP_COLLISION_ERRNOS.contains(&replica.sql_errno);
            if diverged || collided {
                let server_said = replica.last_error.clone().unwrap_or_else(|| "-".into());
                let refusal = Refusal {
                    server_said: &server_said,
                    collided: collided && !diverged,
                };
                return self.cannot_follow(view, primary.name, &primary_addr, probe, refusal, out);
            }
            self.role.set_phase(Phase::Replica);
            return;
        }
        let recently = self
            .last_repoint_at
            .is_some_and(|at| view.now.since(at) < view.threshold_ms);
        if recently {
            return;
        }
        if Self::holds_unrelated_data(view, primary.name, probe) {
            // Never replicate on top of another cluster's data: the server might even accept it
            // (another domain), mixing two histories.
            let refusal = Refusal {
                server_said: "not asked: the histories are unrelated",
                collided: false,
            };
            return self.cannot_follow(view, primary.name, &primary_addr, probe, refusal, out);
        }
        self.last_repoint_at = Some(view.now);
        self.role.set_phase(Phase::Replica);
        let from = probe
            .replica
            .as_ref()
            .map(|replica| format!(" (was replicating from {})", replica.source))
            .unwrap_or_default();
        self.act(
            DbAction::ReplicateFrom {
                node: primary.name.to_string(),
                addr: primary_addr.clone(),
            },
            format!(
                "{} at {primary_addr} is primary (epoch {}){from}: replicate from it with GTID auto-positioning",
                primary.name, primary.epoch
            ),
            out,
        );
    }
}

impl DbCore {
    /// The current split-brain episode of this primary.
    fn set_rival(&mut self, rival: Rival) {
        if let Some(primacy) = self.role.primacy_mut() {
            primacy.rival = Some(rival);
        }
    }

    /// When the relay-log wait began: now, if it had not. Only a following node waits.
    fn catchup_started(&mut self, now: MonoMs) -> MonoMs {
        match self.role.catchup_since() {
            Some(since) => *since.get_or_insert(now),
            None => now,
        }
    }
}

/// A GTID text as people read it in reasons: `(none)` for a server with no transaction.
pub fn display_gtid(text: &str) -> String {
    if text.trim().is_empty() {
        "(none)".into()
    } else {
        text.to_string()
    }
}

pub mod binlog;
mod candidates;
mod claims;
mod describe;
mod handover;
pub mod invariants;
mod model;
mod primary;
mod promotion;
mod repair;
mod role;
#[cfg(test)]
mod tests;
pub mod waiting;

pub use claims::{
    announced_history, elect_db_primary, peer_claim, positions_settled, split_tally, unrelated_claims,
    writes_since_fork, Claim,
};
pub use model::{DbAction, DbDecision, DbPolicy, DbProbe, LocalDb, MergePlan, PeerDb, ReplicaProbe, SaveFirst};

use repair::Refusal;
pub use repair::{common_point, merge_fork, Divergence, LedgerLine, OriginRow, RowLedger, MAX_REPAIR_ATTEMPTS};
use role::{LocalRole, Phase, Rival};
pub use waiting::{Blocker, NotPromotable, Waiting};
