//! What the agent must remember across restarts: the DB epoch it last promoted with (written
//! before the database is made writable, so a restarted primary never claims an older epoch),
//! and the cluster it was part of (its nodes, the last DB primary).

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
}
