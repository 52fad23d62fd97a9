//! The local socket's protocol: one JSON object per line each way. A request names the protocol
//! version `v` and a `cmd`; the answer carries `v`, `ok`, and either `error` or the result.

use serde::{Deserialize, Serialize};

use crate::db::DbAnnouncement;
use crate::gossip::Role;

/// Longest request line the agent reads; anything longer is refused without buffering it all.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub v: u32,
    #[serde(flatten)]
    pub command: Command,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    Status,
    /// Exclude a node's database from promotion (`on: true`), or include it again; this
    /// node's when `node` is absent. Changes the cluster: only root or the `admin_group`.
    Maintenance {
        on: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<String>,
    },
    /// Planned switchover of the DB primary to `to`. Admin only.
    Switchover {
        to: String,
    },
    /// Rebuild this node's database from the primary: repair a diverged node (merge, then
    /// rebuild), retry a failed repair, or rebuild a healthy replica. Admin only.
    Resync,
    Events {
        /// At most this many of the newest events; all that are kept when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<usize>,
    },
}

impl Command {
    /// Whether the command changes anything (and so needs admin rights on the socket).
    pub fn changes_state(&self) -> bool {
        matches!(
            self,
            Command::Maintenance { .. } | Command::Resync | Command::Switchover { .. }
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub v: u32,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<Event>>,
    /// What a state-changing command did, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done: Option<String>,
}

impl Response {
    pub fn error(message: impl Into<String>) -> Self {
        Response {
            v: crate::PROTOCOL_VERSION,
            ok: false,
            error: Some(message.into()),
            status: None,
            events: None,
            done: None,
        }
    }

    pub fn done(message: impl Into<String>) -> Self {
        Response {
            done: Some(message.into()),
            ..Self::empty_ok()
        }
    }

    pub fn status(report: StatusReport) -> Self {
        Response {
            status: Some(report),
            ..Self::empty_ok()
        }
    }

    pub fn events(events: Vec<Event>) -> Self {
        Response {
            events: Some(events),
            ..Self::empty_ok()
        }
    }

    fn empty_ok() -> Self {
        Response {
            v: crate::PROTOCOL_VERSION,
            ok: true,
            error: None,
            status: None,
            events: None,
            done: None,
        }
    }
}

/// What `gossip-ha status --json` prints: this agent's view of the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    #[serde(rename = "self")]
    pub self_name: String,
    pub cluster_id: String,
    pub server_master: Option<String>,
    #[serde(default)]
    pub db_primary: Option<String>,
    pub threshold_ms: u64,
    pub uptime_ms: u64,
    pub nodes: Vec<NodeStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rewrites: Vec<RewriteStatus>,
    /// DB hosts some live agent's last reachability checks did not reach (only problems: empty
    /// when every agent reaches every DB host). Older agents send none.
    #[serde(default)]
    pub db_reach: Vec<ReachProblem>,
}

/// An agent whose reachability checks have not reached a DB node's host for a while.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReachProblem {
    /// The agent that checks.
    pub observer: String,
    /// The DB node whose host it does not reach.
    pub node: String,
    /// host:port of that node's database, as it advertises it.
    pub address: String,
    /// Since when, on the answering agent's clock: the first of its ticks that saw it.
    pub unreached_ms: u64,
}

/// How far a replica is behind the DB primary, as the answering agent derives it from both
/// nodes' announced GTID positions (never from `Seconds_Behind_Master`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationLag {
    /// Transactions of the primary's announced position this replica has not executed; 0 when
    /// it holds them all. Absent when the histories cannot be compared (unreadable, forked,
    /// unrelated, no primary position yet).
    pub transactions_behind: Option<u64>,
    /// How long ago the answering agent first saw the primary announce the oldest position this
    /// replica still lacks; 0 when it holds the primary's latest. Absent when unknown.
    pub lag_ms: Option<u64>,
    /// `lag_ms` is a lower bound: the replica lacks even the oldest primary position remembered.
    #[serde(default)]
    pub lag_at_least: bool,
    /// Why nothing reaches this replica, when that is so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stalled: Option<Stall>,
    /// How long its position has not moved while behind (answering agent's clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_progress_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stall {
    /// The IO thread is not running.
    IoStopped,
    /// The IO thread is trying to connect to its source.
    IoConnecting,
    /// Both threads run, yet its position has not moved for a while although it is behind.
    NoProgress,
}

impl Stall {
    pub fn as_str(self) -> &'static str {
        match self {
            Stall::IoStopped => "IO stopped",
            Stall::IoConnecting => "IO connecting",
            Stall::NoProgress => "no progress",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeLiveness {
    Alive,
    Down,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub name: String,
    /// The peer's advertised gossip address.
    pub addr: String,
    pub roles: Vec<Role>,
    pub master: u8,
    pub state: NodeLiveness,
    /// Age of the last heartbeat advance seen from this node, on the reporting agent's clock.
    pub last_contact_ms: u64,
    pub generation: u64,
    pub threshold_ms: u64,
    pub is_self: bool,
    /// Present for nodes with the `db` role once their agent has gossiped it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db: Option<DbAnnouncement>,
    /// The answering agent's own database only (never gossiped): settings that put something
    /// at risk, such as a binary log a split-brain merge cannot copy rows from exactly.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub db_warnings: Vec<String>,
    /// Replicas only (alive, not the primary): how far behind the primary, and whether stalled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<ReplicationLag>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    AgentStarted,
    AgentStopping,
    NodeUp,
    NodeDown,
    NodeRestarted,
    ServerMasterChanged,
    PeerIgnored,
    PeerRefused,
    /// The agent reloaded its certificate, key and CA bundle (SIGHUP), or kept the old ones.
    IdentityReloaded,
    IdentityReloadFailed,
    AdminCommand,
    DbPrimaryChanged,
    /// A planned switchover moved the DB primary (never reported as a split-brain).
    Switchover,
    DbAction,
    DbActionFailed,
    DbNote,
    DbNeedsResync,
    DbUnreachable,
    DbReachable,
    /// An agent's reachability check of a DB node's host changed: it no longer reaches it, or
    /// reaches it again. Once per change per (agent, DB node).
    DbReach,
    /// The local database's settings put something at risk (its binary log format); said when
    /// it first appears or changes.
    DbWarning,
    /// Two primaries saw each other; who stays and who steps down.
    SplitBrain,
    /// Progress and outcome of a merge or resync.
    Repair,
    RewriteDone,
    RewriteFailed,
    ReloadRan,
    ReloadFailed,
    HookRan,
    HookFailed,
}

/// One `[[rewrite]]` target as the agent last handled it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewriteStatus {
    pub path: String,
    pub kind: String,
    pub follows: String,
    /// The value the file names now, once written or found right.
    pub value: Option<String>,
    /// False while the file cannot be parsed or written (the agent retries).
    pub ok: bool,
    pub error: Option<String>,
    pub changed_unix_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Increases by one per event of this agent's run.
    pub seq: u64,
    /// Wall-clock time of the event, for display only.
    pub unix_ms: u64,
    pub kind: EventKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_from_the_documented_json() {
        let request: Request = serde_json::from_str(r#"{"v":1,"cmd":"status"}"#).unwrap();
        assert_eq!(request.command, Command::Status);
        let request: Request = serde_json::from_str(r#"{"v":1,"cmd":"events","limit":5}"#).unwrap();
        assert_eq!(request.command, Command::Events { limit: Some(5) });
    }

    #[test]
    fn unknown_commands_are_refused_with_the_known_ones_named() {
        let err = serde_json::from_str::<Request>(r#"{"v":1,"cmd":"explode"}"#).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("explode") && message.contains("status"), "{message}");
    }

    #[test]
    fn status_uses_self_as_the_field_name() {
        let report = StatusReport {
            self_name: "a".into(),
            cluster_id: "c".into(),
            server_master: None,
            db_primary: None,
            threshold_ms: 2000,
            uptime_ms: 1,
            nodes: vec![],
            rewrites: vec![],
            db_reach: vec![],
        };
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["self"], "a");
        assert!(json["server_master"].is_null());
    }

    #[test]
    fn a_status_from_an_older_agent_still_parses() {
        let old = r#"{"self":"a","cluster_id":"c","server_master":null,"threshold_ms":2000,"uptime_ms":1,
            "nodes":[{"name":"db1","addr":"127.0.0.1:1","roles":["db"],"master":0,"state":"alive",
            "last_contact_ms":0,"generation":1,"threshold_ms":2000,"is_self":true}]}"#;
        let report: StatusReport = serde_json::from_str(old).unwrap();
        assert!(report.db_reach.is_empty());
        assert_eq!(report.nodes[0].replication, None);
        let kind: EventKind = serde_json::from_str(r#""db_reach""#).unwrap();
        assert_eq!(kind, EventKind::DbReach);
    }
}
