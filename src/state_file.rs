//! What the agent must remember across restarts: the DB epoch it last promoted with (written
//! before the database is made writable, so a restarted primary never claims an older epoch),
//! the cluster it was part of (its nodes, the last DB primary), and the operator's last
//! `gossip-ha maintenance on|off`, so a restart neither drops nor revives maintenance.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fsutil::write_atomic;

/// The state file holds an epoch, a GTID and node names: far under this.
const MAX_STATE_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistentState {
    pub epoch: u64,
    /// Executed GTIDs when this node last promoted: the fork point of a later split-brain.
    #[serde(default)]
    pub promoted_from_gtid: Option<String>,
    #[serde(default)]
    pub promoted_unix_ms: Option<u64>,
    /// Every node this agent has known: after a restart it is still part of a cluster that
    /// large (the isolation rule), not a fresh one.
    #[serde(default)]
    pub known_nodes: Vec<String>,
    /// The DB primary this agent last saw elected.
    #[serde(default)]
    pub last_db_primary: Option<String>,
    /// The last `gossip-ha maintenance on|off` for this node (given here or relayed to it).
    #[serde(default)]
    pub maintenance: Option<MaintenanceRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaintenanceRecord {
    pub on: bool,
    pub set_unix_ms: u64,
    /// `[db] maintenance` when the command was given: a later edit of that key is the newer
    /// decision, and wins over the command.
    pub config: bool,
}

/// Whether a starting agent's database is in maintenance, and what to say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintenanceAtStart {
    pub on: bool,
    /// An event for the operator: why it is (or stays out of) maintenance.
    pub note: Option<String>,
    /// The record was set aside (the configuration changed since): the file must be saved.
    pub forgot_record: bool,
}

impl PersistentState {
    /// The newest decision wins: the last command, unless `[db] maintenance` was edited after
    /// it (the record holds the key's value at the time of the command). So a restart neither
    /// undoes `maintenance off` over `maintenance = true` nor forgets `maintenance on`.
    pub fn maintenance_at_start(&mut self, config: bool) -> MaintenanceAtStart {
        let Some(record) = self.maintenance.clone() else {
            return MaintenanceAtStart {
                on: config,
                note: None,
                forgot_record: false,
            };
        };
        let set_at = humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(record.set_unix_ms),
        );
        let command = format!("`gossip-ha maintenance {}`", if record.on { "on" } else { "off" });
        if record.config != config {
            self.maintenance = None;
            return MaintenanceAtStart {
                on: config,
                note: Some(format!(
                    "maintenance {}: `[db] maintenance = {config}` was set in the configuration after {command} at {set_at}, and wins",
                    if config { "on" } else { "off" }
                )),
                forgot_record: true,
            };
        }
        let note = match (record.on, config) {
            (true, _) => Some(format!(
                "maintenance kept from before the restart (set at {set_at} by {command}): this database is never promoted until `gossip-ha maintenance off`"
            )),
            (false, true) => Some(format!(
                "maintenance stays off, as {command} at {set_at} set it over `[db] maintenance = true` in the configuration"
            )),
            (false, false) => None,
        };
        MaintenanceAtStart {
            on: record.on,
            note,
            forgot_record: false,
        }
    }

    /// Whether the database is in maintenance by what is on disk (the last command, else the
    /// configuration): a change from it is saved.
    pub fn maintenance_on(&self, config: bool) -> bool {
        self.maintenance.as_ref().map_or(config, |record| record.on)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read state file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("state file {path} is damaged ({message}); move it away to start from epoch 0")]
    Damaged { path: PathBuf, message: String },
    #[error("cannot write state file {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub fn in_dir(dir: &Path) -> StateFile {
        StateFile {
            path: dir.join("state.json"),
        }
    }

    pub fn load(&self) -> Result<PersistentState, StateError> {
        // Bounded: the state is a few KiB; a device or an endless file there is an error.
        match crate::fsutil::read_regular_file(&self.path, MAX_STATE_BYTES) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|err| StateError::Damaged {
                path: self.path.clone(),
                message: err.to_string(),
            }),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(PersistentState::default()),
            Err(source) => Err(StateError::Read {
                path: self.path.clone(),
                source,
            }),
        }
    }

    pub fn save(&self, state: PersistentState) -> Result<(), StateError> {
        let write_error = |source| StateError::Write {
            path: self.path.clone(),
            source,
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(write_error)?;
        }
        let bytes = serde_json::to_vec(&state).expect("state serialises");
        write_atomic(&self.path, &bytes).map_err(write_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_is_epoch_zero_saved_is_read_back_damaged_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::in_dir(&dir.path().join("nested"));
        assert_eq!(file.load().unwrap().epoch, 0);
        file.save(PersistentState {
            epoch: 7,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(file.load().unwrap().epoch, 7);
        std::fs::write(dir.path().join("nested/state.json"), "{garbage").unwrap();
        let err = file.load().unwrap_err().to_string();
        assert!(err.contains("damaged") && err.contains("state.json"), "{err}");
    }

    #[test]
    fn a_state_file_of_an_older_agent_has_no_maintenance_record() {
        let old = r#"{"epoch":3,"known_nodes":["db1"],"last_db_primary":"db1"}"#;
        let state: PersistentState = serde_json::from_str(old).unwrap();
        assert_eq!((state.epoch, state.maintenance), (3, None));
    }

    #[test]
    fn the_newest_decision_wins_at_start() {
        let record = |on, config| MaintenanceRecord {
            on,
            set_unix_ms: 1_700_000_000_000,
            config,
        };
        // (config now, record, on, note contains, record forgotten)
        let cases = [
            (false, None, false, None, false),
            (true, None, true, None, false),
            (
                false,
                Some(record(true, false)),
                true,
                Some("maintenance kept from before the restart (set at 2023-11-14T22:13:20Z"),
                false,
            ),
            (true, Some(record(true, true)), true, Some("maintenance kept"), false),
            // An operator's explicit `off` over `maintenance = true` survives the restart.
            (true, Some(record(false, true)), false, Some("stays off"), false),
            (false, Some(record(false, false)), false, None, false),
            // The file was edited after the command: the edit is the newer decision.
            (
                true,
                Some(record(false, false)),
                true,
                Some("`[db] maintenance = true` was set"),
                true,
            ),
            (
                false,
                Some(record(true, true)),
                false,
                Some("maintenance off: `[db] maintenance = false`"),
                true,
            ),
        ];
        for (config, maintenance, on, note, forgot) in cases {
            let mut state = PersistentState {
                maintenance: maintenance.clone(),
                ..Default::default()
            };
            let start = state.maintenance_at_start(config);
            let case = format!("config {config}, record {maintenance:?}: {start:?}");
            assert_eq!(start.on, on, "{case}");
            assert_eq!(start.forgot_record, forgot, "{case}");
            assert_eq!(state.maintenance.is_none(), forgot || maintenance.is_none(), "{case}");
            match note {
                None => assert_eq!(start.note, None, "{case}"),
                Some(fragment) => assert!(
                    start.note.as_deref().is_some_and(|text| text.contains(fragment)),
                    "{case}"
                ),
            }
            assert_eq!(state.maintenance_on(config), on, "{case}");
        }
    }
}
