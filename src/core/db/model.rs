//! What goes into the DB core and what comes out: the agent's settings for its database, the
//! probe of the local database, the actions it may ask for and the decisions it returns.

use super::*;

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
