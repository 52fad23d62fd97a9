//! What a DB node's agent gossips about its local database (DESIGN §2), and what `status`
//! shows for it. Carried as JSON in the `db` gossip key.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DbRole {
    Primary,
    Replica,
    NeedsResync,
    Unreachable,
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    pub lag_seconds: Option<u64>,
    /// host:port this node replicates from.
    pub source: Option<String>,
    /// Executed GTIDs: MariaDB `gtid_current_pos` or MySQL `gtid_executed`.
    pub gtid: String,
    pub epoch: u64,
    pub priority: u8,
    pub maintenance: bool,
    /// Could be promoted now: reachable, binary log on, not in maintenance, resync or cool-down.
    pub promotable: bool,
    /// host:port replicas use to reach this database.
    pub advertise: String,
    pub version: Option<String>,
    pub last_error: Option<String>,
}
