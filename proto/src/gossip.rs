//! What an agent says about itself in gossip. Chitchat carries string key/values, so every field
//! is a key with a plain-text value: readable in packet dumps and trivially versioned.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub const KEY_PROTOCOL: &str = "proto";
pub const KEY_ROLES: &str = "roles";
pub const KEY_MASTER: &str = "master";
pub const KEY_THRESHOLD_MS: &str = "threshold_ms";
/// The peer's wall clock when it started; display only, never compared (DESIGN §1.2).
pub const KEY_STARTED_UNIX_MS: &str = "started_unix_ms";
/// JSON `DbAnnouncement` of a DB node's local database.
pub const KEY_DB: &str = "db";
/// The agent's view, so that others can use it as a witness: names it holds DOWN (comma
/// separated) and the DB primary it believes in (empty when none).
pub const KEY_DOWN: &str = "down";
pub const KEY_DB_PRIMARY: &str = "db_primary";
/// JSON `ClusterRequest`: an operator's command for another node, relayed by gossip (whose
/// members are authenticated by mutual TLS). Present only while the request is pending.
pub const KEY_REQUEST: &str = "request";
/// JSON list of `RequestAnswer`: how this agent took the newest request of each peer that it
/// acted on, so the asking CLI learns of a refusal at once rather than at its deadline.
pub const KEY_ANSWERS: &str = "answers";
/// DB nodes whose host this agent reached at its last check (a TCP connection to the agent port
/// on the database's address, accepted or refused), comma separated: lets a candidate tell "the
/// old primary is gone" from "only I am cut off from it".
pub const KEY_DB_REACH: &str = "db_reach";
/// Over mutual TLS: the agent's certificate (base64 DER). Peers believe its roles, DB claims
/// and requests only as far as this certificate, issued by the cluster CA for its node name,
/// grants them.
pub const KEY_CERT: &str = "cert";
/// Over mutual TLS: the agent's signature over all its other keys, its name, its generation and
/// a counter that only grows (`tls::seal`), so that no member can forge another's state.
pub const KEY_SEAL: &str = "seal";

/// A state-changing command given on one node's socket (checked there) for another node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRequest {
    /// Unique per requesting node (its wall-clock ms when asked): applied once.
    pub id: u64,
    #[serde(flatten)]
    pub kind: ClusterRequestKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum ClusterRequestKind {
    /// For the DB primary: hand over to `to`.
    Switchover { to: String },
    /// For `node`: exclude its database from promotion, or include it again.
    Maintenance { node: String, on: bool },
}

impl fmt::Display for ClusterRequestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClusterRequestKind::Switchover { to } => write!(f, "a switchover to {to}"),
            ClusterRequestKind::Maintenance { node, on } => {
                write!(f, "maintenance {} for {node}", if *on { "on" } else { "off" })
            }
        }
    }
}

/// What a node made of a relayed `ClusterRequest`: `done` says it was carried out (or started,
/// for a switchover), otherwise `text` says why it was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestAnswer {
    /// The node that asked.
    pub to: String,
    pub id: u64,
    pub done: bool,
    pub text: String,
}

/// Highest `master` priority Pandora accepts (`master [1..7]`, 0 = never master).
pub const MAX_MASTER_PRIORITY: u8 = 7;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Server,
    Db,
    Console,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Server, Role::Db, Role::Console];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Db => "db",
            Role::Console => "console",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownRole(pub String);

impl fmt::Display for UnknownRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown role `{}` (expected one of: server, db, console)", self.0)
    }
}

impl std::error::Error for UnknownRole {}

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str().eq_ignore_ascii_case(text.trim()))
            .ok_or_else(|| UnknownRole(text.trim().to_string()))
    }
}

/// The self-description every agent publishes as chitchat key/values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    pub roles: BTreeSet<Role>,
    pub master: u8,
    pub threshold_ms: u64,
    pub started_unix_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnnouncementError {
    Missing(&'static str),
    Invalid { key: &'static str, value: String },
    Version { ours: u32, theirs: String },
}

impl fmt::Display for AnnouncementError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnnouncementError::Missing(key) => write!(f, "gossip key `{key}` missing"),
            AnnouncementError::Invalid { key, value } => {
                write!(f, "gossip key `{key}` has invalid value `{value}`")
            }
            AnnouncementError::Version { ours, theirs } => {
                write!(f, "protocol version {theirs}, this agent speaks {ours}")
            }
        }
    }
}

impl std::error::Error for AnnouncementError {}

impl Announcement {
    pub fn to_key_values(&self) -> Vec<(String, String)> {
        let roles: Vec<&str> = self.roles.iter().map(|role| role.as_str()).collect();
        vec![
            (KEY_PROTOCOL.into(), crate::PROTOCOL_VERSION.to_string()),
            (KEY_ROLES.into(), roles.join(",")),
            (KEY_MASTER.into(), self.master.to_string()),
            (KEY_THRESHOLD_MS.into(), self.threshold_ms.to_string()),
            (KEY_STARTED_UNIX_MS.into(), self.started_unix_ms.to_string()),
        ]
    }

    /// Parses a peer's keys. `get` looks one key up in the peer's chitchat state.
    pub fn from_lookup<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<Self, AnnouncementError> {
        let require = |key: &'static str| get(key).ok_or(AnnouncementError::Missing(key));
        let invalid = |key: &'static str, value: &str| AnnouncementError::Invalid {
            key,
            value: value.to_string(),
        };
        let version = require(KEY_PROTOCOL)?;
        if version != crate::PROTOCOL_VERSION.to_string() {
            return Err(AnnouncementError::Version {
                ours: crate::PROTOCOL_VERSION,
                theirs: version.to_string(),
            });
        }
        let roles_text = require(KEY_ROLES)?;
        let roles = roles_text
            .split(',')
            .filter(|part| !part.is_empty())
            .map(Role::from_str)
            .collect::<Result<BTreeSet<_>, _>>()
            .map_err(|_| invalid(KEY_ROLES, roles_text))?;
        let master_text = require(KEY_MASTER)?;
        let master = master_text
            .parse::<u8>()
            .ok()
            .filter(|priority| *priority <= MAX_MASTER_PRIORITY)
            .ok_or_else(|| invalid(KEY_MASTER, master_text))?;
        let threshold_text = require(KEY_THRESHOLD_MS)?;
        let threshold_ms = threshold_text
            .parse::<u64>()
            .ok()
            .filter(|ms| *ms > 0)
            .ok_or_else(|| invalid(KEY_THRESHOLD_MS, threshold_text))?;
        let started_unix_ms = get(KEY_STARTED_UNIX_MS).and_then(|text| text.parse().ok()).unwrap_or(0);
        Ok(Announcement {
            roles,
            master,
            threshold_ms,
            started_unix_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn sample() -> Announcement {
        Announcement {
            roles: [Role::Server, Role::Db].into_iter().collect(),
            master: 7,
            threshold_ms: 1500,
            started_unix_ms: 42,
        }
    }

    #[test]
    fn round_trips_through_key_values() {
        let map: HashMap<String, String> = sample().to_key_values().into_iter().collect();
        let parsed = Announcement::from_lookup(|key| map.get(key).map(String::as_str)).unwrap();
        assert_eq!(parsed, sample());
    }

    #[test]
    fn refuses_other_protocol_versions_and_bad_values() {
        let mut map: HashMap<String, String> = sample().to_key_values().into_iter().collect();
        map.insert(KEY_PROTOCOL.into(), "99".into());
        let err = Announcement::from_lookup(|key| map.get(key).map(String::as_str)).unwrap_err();
        assert!(matches!(err, AnnouncementError::Version { .. }), "{err}");

        let mut map: HashMap<String, String> = sample().to_key_values().into_iter().collect();
        map.insert(KEY_MASTER.into(), "8".into());
        let err = Announcement::from_lookup(|key| map.get(key).map(String::as_str)).unwrap_err();
        assert_eq!(err.to_string(), "gossip key `master` has invalid value `8`");

        let mut map: HashMap<String, String> = sample().to_key_values().into_iter().collect();
        map.insert(KEY_ROLES.into(), "server,witch".into());
        assert!(Announcement::from_lookup(|key| map.get(key).map(String::as_str)).is_err());
    }

    #[test]
    fn roles_parse_case_insensitively() {
        assert_eq!("DB".parse::<Role>().unwrap(), Role::Db);
        assert_eq!(
            "witch".parse::<Role>().unwrap_err().to_string(),
            "unknown role `witch` (expected one of: server, db, console)"
        );
    }
}
