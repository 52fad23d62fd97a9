//! DB failover without quorum (DESIGN §2), as pure decisions. Every agent elects the DB primary
//! from the claims it sees; an agent on a DB host also decides what its own database does:
//! stay, promote, go read-only, replicate from the primary, or stop and wait for a resync.

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

/// What the agent's settings say about its local database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbPolicy {
    pub priority: u8,
    /// host:port replicas use to reach this database.
    pub advertise: String,
    pub ha_hosts_count: usize,
    pub maintenance: bool,
    pub promotion_cooldown_ms: u64,
    pub catchup_timeout_ms: u64,
    /// A node that lost a split-brain merges its window's rows into the winner and is rebuilt
    /// from it without waiting for an operator.
    pub splitbrain_autofix: bool,
    /// The merge window opens this long before the promotion that forked the histories: writes
    /// the old primary took but had not yet shipped when the link broke, and clock skew.
    pub splitbrain_lookback_ms: u64,
    /// A planned switchover is abandoned (and this primary made writable again) when the
    /// target has not caught up and promoted within this time.
    pub switchover_timeout_ms: u64,
    /// ip:port of this agent's transfer service, announced to the others.
    pub transfer: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaProbe {
    /// host:port of the source it is configured for.
    pub source: String,
    /// `Yes`, `Connecting` or `No`.
    pub io_state: String,
    pub sql_running: bool,
    pub lag_seconds: Option<u64>,
    /// The SQL thread has applied everything the IO thread fetched.
    pub relay_applied: bool,
    pub io_errno: u32,
    pub sql_errno: u32,
    pub last_error: Option<String>,
}

impl ReplicaProbe {
    pub fn io_running(&self) -> bool {
        self.io_state.eq_ignore_ascii_case("yes")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbProbe {
    pub read_only: bool,
    pub binlog_enabled: bool,
    /// What the server logs for new sessions (`@@GLOBAL`): a split-brain merge copies rows
    /// exactly only from ROW events with full images (`binlog::binlog_warning`).
    pub binlog_format: BinlogFormat,
    pub binlog_row_image: BinlogRowImage,
    pub version: String,
    pub gtid: String,
    /// MariaDB: `gtid_binlog_state` and `gtid_slave_pos`, the waypoints of its history.
    pub gtid_history: String,
    /// User databases, largest first.
    pub databases: Vec<DatabaseContent>,
    pub replica: Option<ReplicaProbe>,
}

impl DbProbe {
    /// This server's history: its position and waypoints.
    pub fn history(&self) -> Result<GtidSet, String> {
        GtidSet::of_node(&self.gtid, &self.gtid_history).map_err(|err| err.to_string())
    }

    /// Why a merge of this server's writes could not be exact, if it could not.
    pub fn binlog_warning(&self) -> Option<String> {
        binlog_warning(self.binlog_enabled, &self.binlog_format, &self.binlog_row_image)
    }
}

/// A peer's history as it announced it (a primary's with the point it promoted at); an
/// unreadable one counts as unknown.
pub fn announced_history(db: &DbAnnouncement) -> Option<GtidSet> {
    let fork = db.promoted_from_gtid.as_deref().filter(|_| db.claims_primary);
    history_with_fork(&db.gtid, &db.gtid_history, fork)
}

/// A node's position and waypoints, with the point it promoted at (it had executed that much
/// then, whatever its binary log shows now).
fn history_with_fork(position: &str, waypoints: &str, fork: Option<&str>) -> Option<GtidSet> {
    let waypoints = match fork.filter(|fork| !fork.is_empty()) {
        Some(fork) => format!("{waypoints},{fork}"),
        None => waypoints.to_string(),
    };
    GtidSet::of_node(position, waypoints.trim_start_matches(',')).ok()
}

/// The local database as the shell last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalDb {
    /// `Err` holds why the database could not be probed.
    pub probe: Result<DbProbe, String>,
    pub unreachable_for_ms: u64,
    /// An action is being carried out; no new one is decided until it ends.
    pub action_in_flight: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbAction {
    SetReadOnly,
    /// A primary that sees a better one goes read-only (then rejoins as a replica).
    StepDown,
    /// Stop and reset replication, then make the database writable. `from_gtid` is where this
    /// history begins to differ from the old primary's, should that one keep taking writes.
    Promote {
        epoch: u64,
        from_gtid: String,
    },
    /// Read-only, then replicate from `addr` with GTID auto-positioning.
    ReplicateFrom {
        node: String,
        addr: String,
    },
    /// Set another node's database read-only (its agent is down, its mysqld may still take
    /// writes): done before a promotion, so two writable primaries never run side by side.
    Fence {
        node: String,
        addr: String,
        /// Whether this agent's last reachability check reached the node's host: if not, the
        /// fence is a long shot and may not hold the promotion up for long.
        host_reached: bool,
    },
    StopReplication,
    /// Save this diverged node's transactions since the fork for the operator, then copy the
    /// merged tables' rows of the window into the winner (idempotently).
    Merge(MergePlan),
    /// Make this (still claiming) primary writable again: a switchover was abandoned.
    Resume,
    /// Rebuild this node's data from `addr` (the winner), leaving it ready to replicate;
    /// by physical copy from `transfer` (the winner's transfer service) when it offers one.
    Resync {
        node: String,
        addr: String,
        transfer: Option<String>,
        save_first: SaveFirst,
    },
}

/// What a rebuild saves of this node under `state_dir` before it replaces its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveFirst {
    /// Nothing here is lacking on the source (a merge saved the divergent part already, or the
    /// node is behind the source).
    Nothing,
    /// Its whole binary log (a setup-only history: users and grants of its own), and a dump of
    /// any user database it holds.
    BinlogAndDump,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergePlan {
    pub winner: String,
    pub winner_addr: String,
    pub fork_gtid: String,
    pub window_start_unix_ms: u64,
}

/// A peer as the DB rules need it: its database (DB nodes only) and its witness view.
#[derive(Debug, Clone, Copy)]
pub struct PeerDb<'a> {
    pub name: &'a str,
    pub alive: bool,
    pub db: Option<&'a DbAnnouncement>,
    /// The DB primary this peer believes in.
    pub db_primary: Option<&'a str>,
    /// DB nodes whose host (at the database's address) this peer reached at its last check.
    pub reaches: &'a [String],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbDecision {
    Act {
        action: DbAction,
        reason: String,
    },
    /// Why nothing is done; emitted only when the reason changes.
    Note {
        reason: String,
    },
    NeedsResync {
        reason: String,
    },
    Unreachable {
        reason: String,
    },
    Reachable {
        reason: String,
    },
    /// Two primaries see each other; emitted once per episode, by both.
    SplitBrain {
        reason: String,
    },
    /// The local database's settings put something at risk (a binary log a merge cannot copy
    /// rows from exactly); emitted when it first appears or changes, not on every step.
    Warning {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum LocalRole {
    /// Just started, or back from being unreachable: decided on the next steps.
    Starting,
    Promoting,
    Primary,
    Replica,
    NeedsResync(String),
    Unreachable,
}

/// A primary claim, ranked by `(epoch, priority, name)`: higher epoch first, then priority, then
/// the smaller name, as every agent ranks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim<'a> {
    pub name: &'a str,
    pub epoch: u64,
    pub priority: u8,
    /// Executed GTIDs as last announced.
    pub gtid: &'a str,
    /// Its history's waypoints (MariaDB), as last announced.
    pub history: &'a str,
    /// It holds at least one user database.
    pub holds_data: bool,
    /// Executed GTIDs when this claim's node promoted.
    pub fork_gtid: Option<&'a str>,
    /// The node this primary is handing over to (a planned switchover, read-only already).
    pub yields_to: Option<&'a str>,
}

impl Claim<'_> {
    /// The claimant's history: its position, its waypoints, and where it promoted.
    pub fn history_set(&self) -> Option<GtidSet> {
        history_with_fork(self.gtid, self.history, self.fork_gtid)
    }
}

/// One primary claim, or the winner of a split-brain (DESIGN §2): when several nodes claim
/// primary, the histories parted where the newest of them promoted, and the side that took the
/// most writes since then stays primary (then the higher priority, then the smaller name), so
/// the fewest rows have to be merged. Without a readable fork the newest claim wins.
pub fn elect_db_primary<'a>(claims: impl IntoIterator<Item = Claim<'a>>) -> Option<Claim<'a>> {
    let all: Vec<Claim<'a>> = claims.into_iter().collect();
    // A primary handing over yields as soon as its successor claims.
    let claims: Vec<Claim<'a>> = all
        .iter()
        .copied()
        .filter(|claim| {
            !claim
                .yields_to
                .is_some_and(|to| all.iter().any(|other| other.name == to))
        })
        .collect();
    let newest = claims
        .iter()
        .copied()
        .max_by_key(|claim| (claim.epoch, claim.priority, Reverse(claim.name)))?;
    if claims.len() == 1 {
        return Some(newest);
    }
    if unrelated_claims(&claims) {
        // No common point: not a split-brain, and no write count means anything. A server
        // holding no user database never wins over one that does; then the first of ha_hosts.
        return claims
            .iter()
            .copied()
            .max_by_key(|claim| (claim.holds_data, claim.priority, Reverse(claim.name)));
    }
    match writes_since_fork(&claims) {
        Some(counted) => counted
            .into_iter()
            .max_by_key(|(claim, writes)| (*writes, claim.priority, Reverse(claim.name)))
            .map(|(claim, _)| claim),
        None => Some(newest),
    }
}

/// Two of the claims have histories with no transaction in common (different servers wrote
/// everything each holds): two primaries of two clusters, never a split-brain of one.
pub fn unrelated_claims(claims: &[Claim<'_>]) -> bool {
    let histories: Vec<GtidSet> = claims.iter().filter_map(Claim::history_set).collect();
    histories
        .iter()
        .enumerate()
        .any(|(i, a)| histories[i + 1..].iter().any(|b| a.relation(b) == Relation::Unrelated))
}

/// Each claim with the transactions it executed since the newest claim's promotion; `None`
/// when the fork or a position cannot be read.
pub fn writes_since_fork<'a>(claims: &[Claim<'a>]) -> Option<Vec<(Claim<'a>, u64)>> {
    let newest = claims
        .iter()
        .max_by_key(|claim| (claim.epoch, claim.priority, Reverse(claim.name)))?;
    let fork = GtidSet::parse(newest.fork_gtid?).ok()?;
    claims
        .iter()
        .map(|claim| {
            // A claim whose database is briefly unreachable announces no GTID: unknown, not 0.
            if claim.gtid.is_empty() && !fork.is_empty() {
                return None;
            }
            let writes = GtidSet::parse(claim.gtid).ok()?.transactions_beyond(&fork)?;
            Some((*claim, writes))
        })
        .collect()
}

/// Whether every claim's gossiped position is past the newest claim's fork (holds it), so the
/// writes counted since the fork are current. A position gossiped before the fork (an old
/// primary's, read before the heal) would count its side's writes as none. True when there is
/// nothing to count: one claim, no readable fork, unrelated histories.
pub fn positions_settled(claims: &[Claim<'_>]) -> bool {
    if claims.len() < 2 || unrelated_claims(claims) {
        return true;
    }
    let newest = claims
        .iter()
        .max_by_key(|claim| (claim.epoch, claim.priority, Reverse(claim.name)));
    let Some(fork) = newest.and_then(|claim| GtidSet::parse(claim.fork_gtid?).ok()) else {
        return true;
    };
    claims
        .iter()
        .all(|claim| claim.history_set().is_some_and(|history| history.covers(&fork)))
}

/// "db2 took 36 writes since the fork at GTID 0-1-65, db1 took 16 (the most writes stays
/// primary; ties go to priority, then name)", for reasons.
pub fn split_tally(claims: &[Claim<'_>]) -> String {
    if unrelated_claims(claims) {
        let parts: Vec<String> = claims
            .iter()
            .map(|claim| {
                let holds = if claim.holds_data {
                    "holds user databases"
                } else {
                    "holds no user database"
                };
                format!("{} at GTID {} {holds}", claim.name, display_gtid(claim.gtid))
            })
            .collect();
        return format!(
            "their histories are unrelated, no split-brain: {} (a server holding user databases stays primary, then the first of ha_hosts)",
            parts.join(", ")
        );
    }
    let Some(counted) = writes_since_fork(claims) else {
        return "no common fork known: the newest promotion stays primary".into();
    };
    let fork = claims
        .iter()
        .max_by_key(|claim| (claim.epoch, claim.priority, Reverse(claim.name)))
        .and_then(|claim| claim.fork_gtid)
        .unwrap_or_default();
    let parts: Vec<String> = counted
        .iter()
        .map(|(claim, writes)| format!("{} took {writes}", claim.name))
        .collect();
    format!(
        "writes since the fork at GTID {fork}: {} (the most writes stays primary; ties go to priority, then name)",
        parts.join(", ")
    )
}

/// A peer's claim counts while its database is reachable, and for 2 × threshold after it
/// stopped answering (a restart of mysqld is not yet a failure).
pub fn peer_claim<'a>(peer: &PeerDb<'a>, down_after_ms: u64) -> Option<Claim<'a>> {
    let db = peer.db?;
    let valid = peer.alive && db.claims_primary && (db.reachable || db.unreachable_for_ms <= down_after_ms);
    valid.then_some(Claim {
        name: peer.name,
        epoch: db.epoch,
        priority: db.priority,
        gtid: &db.gtid,
        history: &db.gtid_history,
        holds_data: !db.databases.is_empty(),
        fork_gtid: db.promoted_from_gtid.as_deref(),
        yields_to: db.handover_gtid.as_ref().and(db.handover_to.as_deref()),
    })
}

#[derive(Debug, Clone)]
pub struct DbCore {
    policy: DbPolicy,
    role: LocalRole,
    epoch: u64,
    started_at: Option<MonoMs>,
    demoted_at: Option<MonoMs>,
    catchup_since: Option<MonoMs>,
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
    /// Since when this primary has seen another valid primary claim (a split-brain).
    rival_since: Option<MonoMs>,
    /// The split-brain verdict of the current episode was said (once per episode).
    split_verdict_said: bool,
    repair: Option<Repair>,
    handover: Option<Handover>,
    /// Silent-agent DB nodes whose host this primary reaches: since when, and whether it fenced
    /// them in this stretch (fenced again only after they were out of reach, or spoke, between).
    silent_in_reach: BTreeMap<String, SilentInReach>,
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
            role: LocalRole::Starting,
            epoch: persisted_epoch,
            started_at: None,
            demoted_at: None,
            catchup_since: None,
            last_repoint_at: None,
            last_primary_seen: None,
            last_note: None,
            was_reachable: None,
            binlog_warning: None,
            promotable_since: None,
            promoted_from_gtid: None,
            promoted_unix_ms: None,
            switchover_from: None,
            rival_since: None,
            split_verdict_said: false,
            repair: None,
            handover: None,
            silent_in_reach: BTreeMap::new(),
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
        matches!(self.role, LocalRole::Primary | LocalRole::Promoting)
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
        if let LocalRole::NeedsResync(why) = &self.role {
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
            (LocalRole::NeedsResync(_), _) => DbRole::NeedsResync,
            (_, Err(_)) => DbRole::Unreachable,
            (LocalRole::Primary | LocalRole::Promoting, _) => DbRole::Primary,
            (LocalRole::Replica, _) => DbRole::Replica,
            (LocalRole::Starting | LocalRole::Unreachable, _) => DbRole::Unknown,
        };
        let probe = local.probe.as_ref().ok();
        let replica = probe.and_then(|probe| probe.replica.as_ref());
        let last_error = match (&local.probe, &self.role) {
            (Err(err), _) => Some(err.clone()),
            (_, LocalRole::NeedsResync(why)) => Some(why.clone()),
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
            repair: self.repair.as_ref().map(|repair| repair.status.clone()),
            handover_to: self.handover.as_ref().map(|handover| handover.to.clone()),
            switchover_from: self.switchover_from.clone(),
            handover_gtid: self.handover.as_ref().and_then(|handover| handover.gtid.clone()),
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

    pub fn step(&mut self, view: &DbView<'_>, local: &LocalDb) -> Vec<DbDecision> {
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
                if !self.claims_primary() && !matches!(self.role, LocalRole::NeedsResync(_)) {
                    self.role = LocalRole::Unreachable;
                }
                return out;
            }
        };

        match &self.role {
            LocalRole::Promoting if probe.read_only => {
                self.role = LocalRole::Starting;
                self.note(
                    Waiting::ReEvaluating,
                    "promotion did not leave the database writable; re-evaluating".into(),
                    &mut out,
                );
            }
            LocalRole::Promoting => self.role = LocalRole::Primary,
            LocalRole::Unreachable => self.role = LocalRole::Starting,
            LocalRole::Primary if probe.read_only && self.handover.is_none() => {
                // mysqld restarted (it boots read-only): a primary no longer, until re-elected.
                self.role = LocalRole::Starting;
                self.note(
                    Waiting::ReEvaluating,
                    "the database came back read-only; re-evaluating who is primary".into(),
                    &mut out,
                );
            }
            _ => {}
        }

        if self.role == LocalRole::Starting && !probe.read_only && self.epoch > 0 {
            // This agent restarted while its database kept running as primary: it resumes the
            // claim at once (so peers see no gap), and steps down below if a better one exists.
            self.role = LocalRole::Primary;
            self.note(
                Waiting::ResumingPrimary { epoch: self.epoch },
                format!(
                    "resuming as primary with epoch {}: the database is writable and this node promoted it",
                    self.epoch
                ),
                &mut out,
            );
        }

        if let LocalRole::NeedsResync(_) = self.role {
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

        if self.role == LocalRole::Primary {
            if self.carry_out_handover(view, probe, &mut out) {
                return out;
            }
            self.check_rivals(view, probe, &mut out);
            if self.role == LocalRole::Primary {
                self.fence_silent_writers(view, &mut out);
            }
            return out;
        }
        self.rival_since = None;
        self.split_verdict_said = false;

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

    /// A node whose agent is silent was last seen writable, and this primary has reached its host
    /// for 2 × threshold without hearing its agent: a partition that healed after the node's
    /// agent died leaves its mysqld taking writes beside this one, and no agent of its own will
    /// stop it. (An agent that is alive speaks again within that time after a heal, and the
    /// split-brain rule decides, by writes since the fork.)
    fn fence_silent_writers(&mut self, view: &DbView<'_>, out: &mut Vec<DbDecision>) {
        let reached = |name: &str| view.reaches.iter().any(|reached| reached == name);
        self.silent_in_reach
            .retain(|name, _| reached(name) && view.peers.iter().any(|peer| peer.name == name && !peer.alive));
        let grace_ms = 2 * view.threshold_ms;
        for peer in view.peers.iter().filter(|peer| !peer.alive && reached(peer.name)) {
            let Some(db) = peer.db.filter(|db| db.claims_primary || db.read_only == Some(false)) else {
                continue;
            };
            let stretch = self
                .silent_in_reach
                .entry(peer.name.to_string())
                .or_insert(SilentInReach {
                    since: view.now,
                    fenced: false,
                });
            if !stretch.fenced && view.now.since(stretch.since) >= grace_ms {
                stretch.fenced = true;
                let (node, addr) = (peer.name.to_string(), db.advertise.clone());
                let reason = format!(
                    "{node}'s agent is silent, it was last seen writable, and its host has been reachable for {} without a word from its agent: set {addr} read-only so it cannot take writes beside this primary (its own writes are merged when its agent returns)",
                    seconds(grace_ms)
                );
                let action = DbAction::Fence {
                    node,
                    addr,
                    host_reached: true,
                };
                self.act(action, reason, out);
            }
        }
    }

    /// A primary that sees another primary claim: the split-brain rule of `elect_db_primary`
    /// decides who steps down. Should both keep believing they win (each reads the other's
    /// write count a little late while both take writes), after 2 × threshold the one with the
    /// lower (priority, name) steps down anyway: two writable primaries never last.
    fn check_rivals(&mut self, view: &DbView<'_>, probe: &DbProbe, out: &mut Vec<DbDecision>) {
        let down_after_ms = 2 * view.threshold_ms;
        // A primary handing over to this node (a switchover) is no rival: it steps down as soon
        // as it sees this claim.
        let rivals: Vec<Claim> = view
            .peers
            .iter()
            .filter_map(|peer| peer_claim(peer, down_after_ms))
            .filter(|claim| claim.yields_to != Some(view.me))
            .collect();
        // Elected again with this node's claim as it stands now (it may have just resumed it).
        let own = Claim {
            name: view.me,
            epoch: self.epoch,
            priority: self.policy.priority,
            gtid: &probe.gtid,
            history: &probe.gtid_history,
            holds_data: !probe.databases.is_empty(),
            fork_gtid: self.promoted_from_gtid.as_deref(),
            yields_to: self
                .handover
                .as_ref()
                .filter(|handover| handover.gtid.is_some())
                .map(|handover| handover.to.as_str()),
        };
        let all: Vec<Claim> = rivals.iter().copied().chain([own]).collect();
        let elected = elect_db_primary(all.iter().copied());
        let tally = split_tally(&all);
        if rivals.is_empty() {
            if self.rival_since.take().is_some() {
                // The episode is over: the same wait in the next one is said again.
                self.last_note = None;
            }
            self.split_verdict_said = false;
        } else {
            let since = *self.rival_since.get_or_insert(view.now);
            let handing_over = self.handover.as_ref().is_some_and(|handover| {
                handover.gtid.is_some() && rivals.iter().all(|rival| rival.name == handover.to)
            });
            let settled = positions_settled(&all);
            if !handing_over && !settled && view.now.since(since) < view.threshold_ms {
                // A position gossiped before the fork counts its side's writes as 0: a verdict
                // now could be reversed a moment later. Gossip brings current ones within a
                // threshold.
                let names: Vec<String> = rivals.iter().map(|rival| rival.name.to_string()).collect();
                let reason = format!(
                    "{} also claims primary, but not every position gossiped is past the fork yet: waiting (at most {}) for current ones before any verdict",
                    names.join(", "),
                    seconds(view.threshold_ms)
                );
                return self.note(Waiting::SplitPositionsStale { rivals: names }, reason, out);
            }
            if !self.split_verdict_said && !handing_over {
                // A planned switchover is not a split-brain: the target's claim is what the
                // handover waits for, and the step-down below says so.
                self.split_verdict_said = true;
                out.push(self.split_verdict(&rivals, &all, elected, probe, settled));
            }
        }
        let better = elected.filter(|claim| claim.name != view.me);
        let better_name = better.map(|claim| claim.name.to_string());
        let unresolved = self
            .rival_since
            .is_some_and(|since| view.now.since(since) > down_after_ms)
            .then(|| {
                rivals
                    .iter()
                    .find(|rival| (rival.priority, Reverse(rival.name)) > (self.policy.priority, Reverse(view.me)))
            })
            .flatten();
        let reason = match (better, unresolved) {
            (Some(better), _) => {
                let rival = rivals.iter().any(|rival| rival.name == better.name);
                if rival {
                    format!(
                        "{} is primary too and wins the split-brain ({tally}): stepping down, read-only first; this node's writes since the fork are merged into it",
                        better.name
                    )
                } else {
                    format!(
                        "{} is primary with (epoch {}, priority {}), ahead of this node's (epoch {}, priority {}): stepping down, read-only first",
                        better.name, better.epoch, better.priority, self.epoch, self.policy.priority
                    )
                }
            }
            (None, Some(rival)) => format!(
                "{} and this node have both claimed primary for over {}: the one with the lower (priority, name) steps down, and {} ranks higher",
                rival.name,
                seconds(down_after_ms),
                rival.name
            ),
            (None, None) => return,
        };
        let handing_over_to_it = self
            .handover
            .as_ref()
            .is_some_and(|handover| better_name.as_deref() == Some(handover.to.as_str()));
        if !handing_over_to_it
            && view
                .last_peer_return
                .is_some_and(|at| view.now.since(at) < view.threshold_ms)
        {
            // Right after a peer returns its gossip may still be what it said before: a restarted
            // old primary announces the claim it resumed, then finds the fence's read-only.
            return self.note(
                Waiting::RivalAfterReturn,
                "a peer just came back: waiting one threshold for its current state before stepping down for a rival claim".into(),
                out,
            );
        }
        let reason = match self.handover.take() {
            Some(handover) if better_name.as_deref() == Some(handover.to.as_str()) => {
                format!(
                    "switchover: {} has promoted; this node steps down and follows it",
                    handover.to
                )
            }
            _ => reason,
        };
        self.role = LocalRole::Starting;
        self.demoted_at = Some(view.now);
        self.rival_since = None;
        self.split_verdict_said = false;
        self.act(DbAction::StepDown, reason, out);
    }

    /// The one verdict of a split-brain episode, as an event: who claims, the tally, who stays.
    fn split_verdict(
        &self,
        rivals: &[Claim<'_>],
        all: &[Claim<'_>],
        elected: Option<Claim<'_>>,
        probe: &DbProbe,
        settled: bool,
    ) -> DbDecision {
        let names: Vec<String> = rivals
            .iter()
            .map(|rival| {
                format!(
                    "{} (epoch {}, GTID {})",
                    rival.name,
                    rival.epoch,
                    display_gtid(rival.gtid)
                )
            })
            .collect();
        let winner = elected.map(|claim| claim.name).unwrap_or("-");
        let stale = if settled {
            ""
        } else {
            " (a position gossiped is still older than the fork after a threshold: judged on what is known)"
        };
        let both = format!(
            "this node (epoch {}, GTID {}) and {} both claim primary; {}{stale}; {winner} stays primary",
            self.epoch,
            display_gtid(&probe.gtid),
            names.join(", "),
            split_tally(all)
        );
        // Two unrelated histories are two clusters' primaries, not one cluster split.
        if unrelated_claims(all) {
            DbDecision::Note { reason: both }
        } else {
            DbDecision::SplitBrain {
                reason: format!("split-brain: {both}"),
            }
        }
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
        self.catchup_since = None;
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
            self.role = LocalRole::Replica;
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
        self.role = LocalRole::Replica;
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

    /// The highest epoch any DB node announces, this one's included.
    fn highest_epoch(&self, view: &DbView<'_>) -> u64 {
        view.peers
            .iter()
            .filter_map(|peer| peer.db.map(|db| db.epoch))
            .chain([self.epoch])
            .max()
            .unwrap_or(0)
    }

    /// Claims primary with `epoch` from the state in `probe` (its GTID is where this history
    /// may part from the old primary's).
    fn promote(&mut self, epoch: u64, probe: &DbProbe, reason: String, out: &mut Vec<DbDecision>) {
        self.role = LocalRole::Promoting;
        self.epoch = epoch;
        self.demoted_at = None;
        self.catchup_since = None;
        self.promoted_from_gtid = Some(probe.gtid.clone());
        self.promoted_unix_ms = None;
        self.switchover_from = None;
        self.act(
            DbAction::Promote {
                epoch,
                from_gtid: probe.gtid.clone(),
            },
            reason,
            out,
        );
    }

    fn consider_promotion(
        &mut self,
        view: &DbView<'_>,
        started_at: MonoMs,
        local: &LocalDb,
        probe: &DbProbe,
        out: &mut Vec<DbDecision>,
    ) {
        let down_after_ms = 2 * view.threshold_ms;
        if view.now.since(started_at) <= down_after_ms {
            return self.note(
                Waiting::StartupGrace,
                "start-up grace: waiting 2 × threshold before any promotion".into(),
                out,
            );
        }
        if let Err(refusal) = self.promotable_reason(view.now, local) {
            return self.note(
                Waiting::NotPromotable(refusal.blocker),
                format!("no primary, but this node cannot be promoted: {}", refusal.why),
                out,
            );
        }
        if view.now.since(self.promotable_since.unwrap_or(view.now)) < view.threshold_ms {
            return self.note(
                Waiting::JustPromotable,
                "just became promotable: waiting one threshold so the other candidates hear of it".into(),
                out,
            );
        }
        if view
            .last_peer_return
            .is_some_and(|at| view.now.since(at) < view.threshold_ms)
        {
            return self.note(
                Waiting::PeerJustReturned,
                "a peer just came back: waiting one threshold for its current state before any promotion".into(),
                out,
            );
        }
        let two_node = view.known_nodes <= 2 && self.policy.ha_hosts_count <= 2;
        let live_peers: Vec<&PeerDb> = view.peers.iter().filter(|peer| peer.alive).collect();
        if !two_node {
            if live_peers.is_empty() {
                return self.note(
                    Waiting::Isolated,
                    "no primary visible, but this node sees no other live node: isolated, not bereaved; not promoting"
                        .into(),
                    out,
                );
            }
            if let Some(witness) = live_peers
                .iter()
                .find(|peer| peer.db_primary.is_some_and(|primary| primary != view.me))
            {
                let primary = witness.db_primary.unwrap_or_default();
                return self.note(
                    Waiting::WitnessSeesPrimary {
                        witness: witness.name.to_string(),
                        primary: primary.to_string(),
                    },
                    format!(
                        "no primary visible here, but {} still sees {} as primary; not promoting",
                        witness.name,
                        witness.db_primary.unwrap_or_default()
                    ),
                    out,
                );
            }
        }

        let ranking = candidates::rank(view, self.policy.priority, probe, &live_peers);
        let Some(best) = ranking.best() else {
            return;
        };
        let (best, best_priority) = (best.name, best.priority);
        if best != view.me {
            self.catchup_since = None;
            let is_behind = !ranking.is_most_advanced(view.me);
            let behind = if is_behind {
                format!(" (this node is behind: GTID {})", display_gtid(&probe.gtid))
            } else {
                String::new()
            };
            return self.note(
                Waiting::BetterCandidate {
                    best: best.to_string(),
                    behind: is_behind,
                },
                format!(
                    "no primary; {best} (priority {best_priority}) is the best candidate and should promote{behind}"
                ),
                out,
            );
        }

        let mut caveat = String::new();
        if let Some(replica) = probe.replica.as_ref().filter(|r| r.sql_running && !r.relay_applied) {
            let since = *self.catchup_since.get_or_insert(view.now);
            if view.now.since(since) < self.policy.catchup_timeout_ms {
                return self.note(
                    Waiting::ApplyingRelayLog,
                    "best candidate: applying the relay log before promotion".into(),
                    out,
                );
            }
            caveat = format!(
                "; relay log not fully applied after {} (lag {:?} s): its events stay in the old primary's binlog for the merge",
                seconds(self.policy.catchup_timeout_ms),
                replica.lag_seconds
            );
        }
        let max_epoch = self.highest_epoch(view);
        let epoch = max_epoch + 1;
        let situation = match (&self.last_primary_seen, max_epoch) {
            (_, 0) => "fresh cluster with no primary yet".to_string(),
            (Some(old), _) => format!("primary {old} is down"),
            (None, _) => "no live primary".to_string(),
        };
        let reason = format!(
            "{situation}; this node is the most advanced live candidate with the highest priority ({}) among {} live candidate(s) [{}]{}: promoting with epoch {epoch}{caveat}",
            self.policy.priority,
            ranking.len(),
            ranking.describe(),
            ranking.unrelated_note()
        );
        // The old primary's agent is silent, or says it cannot reach its database (its own
        // connections failing: descriptors run out, say), but its mysqld may still take
        // writes: fence it first.
        let fence = self.last_primary_seen.as_deref().and_then(|old| {
            let peer = view.peers.iter().find(|peer| peer.name == old)?;
            let db = peer.db?;
            (!peer.alive || !db.reachable).then(|| (old.to_string(), db.advertise.clone()))
        });
        // Unless only this node is cut off from it: a live peer still reaching the old primary's
        // database while this node cannot means the fence would miss it and clients could keep
        // writing there beside this one.
        if let Some((old, addr)) = &fence {
            let reached_here = view.reaches.iter().any(|name| name == old);
            let witness = view
                .peers
                .iter()
                .find(|peer| peer.alive && peer.reaches.iter().any(|name| name == old));
            if let (false, Some(witness)) = (reached_here, witness) {
                return self.note(
                    Waiting::OldPrimaryWitnessed {
                        old: old.clone(),
                        witness: witness.name.to_string(),
                    },
                    format!(
                        "{old}'s agent is silent or cannot reach its database, and this node cannot reach its host ({addr}), but {} still does: its database may still take writes, so not promoting over it",
                        witness.name
                    ),
                    out,
                );
            }
        }
        if let Some(waiting) = self.wait_for_old_primary(view, probe, fence.as_ref()) {
            let old = fence.as_ref().map(|(old, _)| old.clone()).unwrap_or_default();
            return self.note(Waiting::OldPrimaryLink { old }, waiting, out);
        }
        if let Some((node, addr)) = fence {
            // Fenced again as primary only once it was out of this node's reach in between.
            let fenced = SilentInReach {
                since: view.now,
                fenced: true,
            };
            self.silent_in_reach.insert(node.clone(), fenced);
            self.act(
                DbAction::Fence {
                    node: node.clone(),
                    addr: addr.clone(),
                    host_reached: view.reaches.contains(&node),
                },
                format!(
                    "{node}'s agent is not heard from (down or cut off) but its database may still be writable: set {addr} read-only before promoting (harmless if unreachable)"
                ),
                out,
            );
        }
        self.promote(epoch, probe, reason, out);
    }
}

impl DbCore {
    /// The old primary's agent is silent but its database is in reach again (a cut healed) while
    /// this node's IO thread to it is not connected yet: writes it took during the cut would be
    /// stranded there once fenced. Wait (bounded by the catch-up timeout) for the IO thread to
    /// fetch them; the relay-log wait then applies them.
    fn wait_for_old_primary(
        &mut self,
        view: &DbView<'_>,
        probe: &DbProbe,
        fence: Option<&(String, String)>,
    ) -> Option<String> {
        let (old, addr) = fence?;
        let replica = probe.replica.as_ref()?;
        // Only an IO thread still trying to connect will fetch anything; refused outright
        // (errno 111: its mysqld is down too, MariaDB and MySQL both say `(111`) it will not.
        let refused = replica
            .last_error
            .as_deref()
            .is_some_and(|error| error.contains("(111") || error.contains("Connection refused"));
        let connecting = replica.io_state.eq_ignore_ascii_case("connecting");
        let reconnecting = view.reaches.contains(old) && replica.source == *addr && connecting && !refused;
        if !reconnecting {
            return None;
        }
        let since = *self.catchup_since.get_or_insert(view.now);
        (view.now.since(since) < self.policy.catchup_timeout_ms).then(|| {
            format!("{old}'s database is in reach again: waiting for the replication link to it to fetch what it took before promoting")
        })
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
mod describe;
mod handover;
mod repair;
#[cfg(test)]
mod tests;
pub mod waiting;

use handover::Handover;
pub use repair::{common_point, merge_fork, Divergence, LedgerLine, OriginRow, RowLedger, MAX_REPAIR_ATTEMPTS};
use repair::{Refusal, Repair};
pub use waiting::{Blocker, NotPromotable, Waiting};
