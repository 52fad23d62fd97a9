//! What a DB node's agent gossips about its local database (DESIGN §2), and what `status`
//! shows for it. Carried as JSON in the `db` gossip key.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DbRole {
    Primary,
    Replica,
    NeedsResync,
    Unreachable,
    #[default]
    Unknown,
}

impl DbRole {
    pub fn as_str(self) -> &'static str {
        match self {
            DbRole::Primary => "primary",
            DbRole::Replica => "replica",
            DbRole::NeedsResync => "needs_resync",
            DbRole::Unreachable => "unreachable",
            DbRole::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbAnnouncement {
    pub role: DbRole,
    /// The agent holds its database to be the primary (it may be briefly unreachable).
    pub claims_primary: bool,
    pub reachable: bool,
    /// How long the local database has been unreachable, on the agent's own clock.
    pub unreachable_for_ms: u64,
    pub read_only: Option<bool>,
    pub io_running: Option<bool>,
    pub sql_running: Option<bool>,
    /// `Yes`, `Connecting` or `No`, as the server says it.
    pub io_state: Option<String>,
    /// `Seconds_Behind_Master` as the server reports it: the age of the event the SQL thread is
    /// applying, 0 whenever it is idle however far behind it is, so not the lag. Status shows
    /// the lag from GTIDs instead (`NodeStatus::replication`).
    pub lag_seconds: Option<u64>,
    /// host:port this node replicates from.
    pub source: Option<String>,
    /// Executed GTIDs: MariaDB `gtid_current_pos` or MySQL `gtid_executed`.
    pub gtid: String,
    /// MariaDB only: the newest GTID this node holds from each server id of each domain
    /// (`gtid_binlog_state` and `gtid_slave_pos`), so histories can be related without
    /// comparing sequence numbers of different servers. Empty from older agents.
    #[serde(default)]
    pub gtid_history: String,
    /// The user databases the server holds (system schemas left out), largest first, at most
    /// `MAX_ANNOUNCED_DATABASES`.
    #[serde(default)]
    pub databases: Vec<DatabaseContent>,
    pub epoch: u64,
    pub priority: u8,
    pub maintenance: bool,
    /// Could be promoted now: reachable, binary log on, not in maintenance, resync or cool-down.
    pub promotable: bool,
    /// Why it cannot be promoted, when it cannot (and does not claim primary): maintenance,
    /// cool-down, needs resync, binary log off, database unreachable. Absent from older agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_promotable: Option<String>,
    /// host:port replicas use to reach this database.
    pub advertise: String,
    pub version: Option<String>,
    pub last_error: Option<String>,
    /// Executed GTIDs when this node last promoted: where its history parted from its
    /// predecessor's, should the predecessor have kept taking writes (a split-brain).
    #[serde(default)]
    pub promoted_from_gtid: Option<String>,
    /// Wall-clock time of that promotion, on the promoting agent's clock.
    #[serde(default)]
    pub promoted_unix_ms: Option<u64>,
    /// This node lost a split-brain (or otherwise diverged) and is being repaired.
    #[serde(default)]
    pub repair: Option<RepairStatus>,
    /// A planned switchover: this primary hands over to that node.
    #[serde(default)]
    pub handover_to: Option<String>,
    /// This primary took over from that node in a planned switchover (cleared by its next
    /// promotion): every observer reports the change as a switchover, even one that saw the old
    /// primary's claim end before this one began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switchover_from: Option<String>,
    /// The GTIDs this primary executed before it went read-only for the handover: the
    /// target promotes once it has applied them all.
    #[serde(default)]
    pub handover_gtid: Option<String>,
    /// ip:port of this agent's transfer service (physical backups for resyncs), if it runs one.
    #[serde(default)]
    pub transfer: Option<String>,
}

/// User databases announced at most; the smallest are left out.
pub const MAX_ANNOUNCED_DATABASES: usize = 16;

/// A user database and roughly what it holds (InnoDB's row estimates).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseContent {
    pub name: String,
    pub tables: u64,
    pub approx_rows: u64,
}

/// "pandora (227 tables, ~1,204 rows), scratch (1 table, ~300 rows)", or "no user database".
pub fn describe_databases(databases: &[DatabaseContent]) -> String {
    if databases.is_empty() {
        return "no user database".into();
    }
    databases
        .iter()
        .map(|db| {
            let plural = if db.tables == 1 { "" } else { "s" };
            format!("{} ({} table{plural}, ~{} rows)", db.name, db.tables, db.approx_rows)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why a node is being repaired, which decides what is saved before its data is replaced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RepairKind {
    /// It lost a split-brain (or holds transactions the primary lacks after a common point):
    /// its transactions since the fork are saved and its rows merged, then it is rebuilt.
    #[default]
    SplitBrain,
    /// It cannot follow the primary but holds nothing the primary lacks (empty, setup only,
    /// or the primary purged the binary logs it needs): cloned, its own log saved first.
    Clone,
    /// Its history is unrelated to the primary's and it holds user databases the primary
    /// lacks: never wiped by itself; `gossip-ha resync` saves a full dump, then rebuilds.
    Unrelated,
    /// An operator asked for a rebuild of a healthy replica.
    Operator,
}

impl RepairKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RepairKind::SplitBrain => "split_brain",
            RepairKind::Clone => "clone",
            RepairKind::Unrelated => "unrelated",
            RepairKind::Operator => "operator",
        }
    }
}

/// Where a diverged node's repair stands: merge its window's rows into the winner, then
/// rebuild it from the winner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairStatus {
    /// The primary this node yields to.
    pub winner: String,
    /// GTIDs both sides had executed when they parted (empty when unknown).
    pub fork_gtid: String,
    /// Rows written on this node from this time on are candidates for the merge.
    pub window_start_unix_ms: u64,
    pub stage: RepairStage,
    /// The newest progress or failure, as the worker reported it.
    pub progress: Option<String>,
    #[serde(default)]
    pub kind: RepairKind,
    /// What the merge copied into the winner and what it left (saved) for the operator, kept
    /// while the rebuild that follows runs.
    #[serde(default)]
    pub merged: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RepairStage {
    /// `splitbrain_autofix` is off: read-only until `gossip-ha resync`.
    WaitingForOperator,
    Merging,
    Resyncing,
    /// The last attempt failed; read-only until `gossip-ha resync`.
    Failed,
}

impl RepairStage {
    pub fn as_str(self) -> &'static str {
        match self {
            RepairStage::WaitingForOperator => "waiting_for_operator",
            RepairStage::Merging => "merging",
            RepairStage::Resyncing => "resyncing",
            RepairStage::Failed => "failed",
        }
    }
}
