//! Config rewriting (DESIGN §3): when the DB primary or the server master changes, the files
//! other programs read are brought in line, then their services reloaded. The driver sends the
//! settled facts; a task applies them to every target, retries failures, and reports.

pub mod edit;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gossip_ha_proto::api::{EventKind, RewriteStatus};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::events::EventLog;
use crate::fsutil::{replace_file, WriteStep};

/// While a target fails, it is tried again this often.
const RETRY_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Follows {
    DbPrimary,
    ServerMaster,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Pandora's `pandora_ha_hosts.conf`: the address alone, no newline.
    HaHostsFile,
    /// A `token value` line of a pandora_server.conf-style file.
    Token,
    /// A `$config["token"]="…";` line of the console's config.php.
    Php,
    /// `template` rendered to `path`.
    Template,
}

/// One `[[rewrite]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub kind: Kind,
    pub path: PathBuf,
    pub follows: Follows,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<PathBuf>,
    /// Run after the file changed: argv, no shell.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reload: Vec<String>,
    /// `php` only: a file without a live assignment gets one after its `<?php` line (opt-in: the
    /// agent otherwise never adds code to the console's files).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insert_if_missing: bool,
}

/// What files are written from: the settled view of the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    pub cluster_id: String,
    pub node_name: String,
    pub db_primary: Option<String>,
    pub db_primary_host: Option<String>,
    pub db_primary_port: Option<u16>,
    pub server_master: Option<String>,
    pub server_master_addr: Option<String>,
}

impl Facts {
    pub fn variables(&self) -> BTreeMap<&'static str, String> {
        let text = |value: &Option<String>| value.clone().unwrap_or_default();
        BTreeMap::from([
            ("cluster_id", self.cluster_id.clone()),
            ("node_name", self.node_name.clone()),
            ("db_primary", text(&self.db_primary)),
            ("db_primary_host", text(&self.db_primary_host)),
            (
                "db_primary_port",
                self.db_primary_port.map(|port| port.to_string()).unwrap_or_default(),
            ),
            ("server_master", text(&self.server_master)),
            ("server_master_addr", text(&self.server_master_addr)),
        ])
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("{path}: {source}")]
    Edit {
        path: String,
        #[source]
        source: edit::EditError,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The followed master is not known yet: nothing written.
    Waiting,
    Unchanged {
        value: String,
    },
    Written {
        value: String,
    },
}

impl Target {
    /// The value this target writes: the DB primary's host, or the server master's name.
    pub fn value<'a>(&self, facts: &'a Facts) -> Option<&'a str> {
        match self.follows {
            Follows::DbPrimary => facts.db_primary_host.as_deref(),
            Follows::ServerMaster => facts.server_master.as_deref(),
        }
    }

    fn file_error(&self, message: impl std::fmt::Display) -> RewriteError {
        RewriteError::File {
            path: self.path.display().to_string(),
            message: message.to_string(),
        }
    }

    /// The new content for `current` (the file's text; `None` if it does not exist).
    pub fn render(&self, current: Option<&str>, facts: &Facts) -> Result<Option<String>, RewriteError> {
        let Some(value) = self.value(facts) else {
            return Ok(None);
        };
        let edit_error = |source| RewriteError::Edit {
            path: self.path.display().to_string(),
            source,
        };
        let token = self.token.as_deref().unwrap_or("dbhost");
        let rendered = match self.kind {
            Kind::HaHostsFile => edit::ha_hosts_file(value),
            Kind::Token => edit::token(current.ok_or_else(|| self.file_error("does not exist"))?, token, value),
            Kind::Php => {
                let current = current.ok_or_else(|| self.file_error("does not exist"))?;
                match self.insert_if_missing {
                    true => edit::php_or_insert(current, token, value),
                    false => edit::php(current, token, value),
                }
            }
            Kind::Template => {
                let template_path = self.template.as_deref().unwrap_or(Path::new(""));
                let template = crate::fsutil::read_config_text(template_path).map_err(|err| {
                    self.file_error(format!("template: cannot read {}: {err}", template_path.display()))
                })?;
                edit::template(&template, &facts.variables())
            }
        };
        rendered.map(Some).map_err(edit_error)
    }

    /// Reads, edits and durably replaces the file; `on_step` sees each step of the write.
    pub fn apply(&self, facts: &Facts, on_step: &mut dyn FnMut(WriteStep)) -> Result<Applied, RewriteError> {
        let Some(value) = self.value(facts).map(str::to_string) else {
            return Ok(Applied::Waiting);
        };
        let current = match std::fs::read(&self.path) {
            Ok(bytes) => Some(String::from_utf8(bytes).map_err(|_| self.file_error("is not UTF-8 text"))?),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
            Err(err) => return Err(self.file_error(format!("cannot read: {err}"))),
        };
        let Some(content) = self.render(current.as_deref(), facts)? else {
            return Ok(Applied::Waiting);
        };
        match replace_file(&self.path, content.as_bytes(), on_step) {
            Ok(true) => Ok(Applied::Written { value }),
            Ok(false) => Ok(Applied::Unchanged { value }),
            Err(err) => Err(self.file_error(format!("cannot write: {err}"))),
        }
    }
}

fn target_status(target: &Target) -> RewriteStatus {
    RewriteStatus {
        path: target.path.display().to_string(),
        kind: serde_json::to_value(target.kind)
            .ok()
            .and_then(|kind| kind.as_str().map(str::to_string))
            .unwrap_or_default(),
        follows: serde_json::to_value(target.follows)
            .ok()
            .and_then(|follows| follows.as_str().map(str::to_string))
            .unwrap_or_default(),
        value: None,
        ok: true,
        error: None,
        changed_unix_ms: None,
    }
}

/// The rewrite task's handle: send settled facts, read per-target status.
pub struct Rewriter {
    facts: watch::Sender<Option<Facts>>,
    status: Arc<Mutex<Vec<RewriteStatus>>>,
    task: JoinHandle<()>,
}

impl Rewriter {
    pub fn spawn(
        targets: Vec<Target>,
        command_timeout: Duration,
        events: Arc<Mutex<EventLog>>,
        stop: watch::Receiver<bool>,
    ) -> Rewriter {
        let (facts_tx, facts_rx) = watch::channel(None);
        let status = Arc::new(Mutex::new(targets.iter().map(target_status).collect()));
        let task = tokio::spawn(run(targets, command_timeout, facts_rx, status.clone(), events, stop));
        Rewriter {
            facts: facts_tx,
            status,
            task,
        }
    }

    /// Hands over newly settled facts; only the newest counts if several arrive at once.
    pub fn settle(&self, facts: Facts) {
        self.facts.send_replace(Some(facts));
    }

    pub fn status(&self) -> Vec<RewriteStatus> {
        self.status.lock().map(|status| status.clone()).unwrap_or_default()
    }

    pub async fn join(self, timeout: Duration) {
        if tokio::time::timeout(timeout, self.task).await.is_err() {
            tracing::warn!("the rewrite task did not stop within {timeout:?}");
        }
    }
}

fn record(events: &Mutex<EventLog>, kind: EventKind, reason: String) {
    if let Ok(mut log) = events.lock() {
        log.push(crate::clock::unix_ms(), kind, None, reason);
    }
}

async fn run(
    targets: Vec<Target>,
    command_timeout: Duration,
    mut facts: watch::Receiver<Option<Facts>>,
    status: Arc<Mutex<Vec<RewriteStatus>>>,
    events: Arc<Mutex<EventLog>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut retry = tokio::time::interval(RETRY_EVERY);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let failing = status.lock().map(|all| all.iter().any(|s| !s.ok)).unwrap_or(false);
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return,
            changed = facts.changed() => if changed.is_err() { return },
            _ = retry.tick(), if failing => {}
        }
        let Some(current) = facts.borrow_and_update().clone() else {
            continue;
        };
        let mut reloads: Vec<Vec<String>> = Vec::new();
        for (index, target) in targets.iter().enumerate() {
            let applied = {
                let target = target.clone();
                let current = current.clone();
                tokio::task::spawn_blocking(move || target.apply(&current, &mut |_| {})).await
            };
            let applied = applied.unwrap_or_else(|err| {
                Err(RewriteError::File {
                    path: target.path.display().to_string(),
                    message: format!("rewrite task failed: {err}"),
                })
            });
            let Ok(mut all) = status.lock() else { return };
            let entry = &mut all[index];
            match applied {
                Ok(Applied::Waiting) => {}
                Ok(Applied::Unchanged { value }) => {
                    entry.ok = true;
                    entry.error = None;
                    entry.value = Some(value);
                }
                Ok(Applied::Written { value }) => {
                    record(
                        &events,
                        EventKind::RewriteDone,
                        format!("{} now names {value} ({})", target.path.display(), entry.follows),
                    );
                    entry.ok = true;
                    entry.error = None;
                    entry.value = Some(value);
                    entry.changed_unix_ms = Some(crate::clock::unix_ms());
                    if !target.reload.is_empty() && !reloads.contains(&target.reload) {
                        reloads.push(target.reload.clone());
                    }
                }
                Err(err) => {
                    let message = err.to_string();
                    // Reported once per distinct failure, not at every retry.
                    if entry.error.as_deref() != Some(message.as_str()) {
                        record(
                            &events,
                            EventKind::RewriteFailed,
                            format!("{message}; retrying every {} s", RETRY_EVERY.as_secs()),
                        );
                    }
                    entry.ok = false;
                    entry.error = Some(message);
                }
            }
        }
        let environment = fact_environment(&current);
        for reload in reloads {
            let outcome = crate::command::run(&reload, &environment, command_timeout).await;
            let kind = if outcome.result.is_ok() {
                EventKind::ReloadRan
            } else {
                EventKind::ReloadFailed
            };
            record(&events, kind, format!("reload {}", outcome.describe(&reload)));
        }
    }
}

/// The facts as environment variables, for reload commands and hooks.
pub fn fact_environment(facts: &Facts) -> Vec<(String, String)> {
    facts
        .variables()
        .into_iter()
        .map(|(name, value)| (format!("GOSSIP_HA_{}", name.to_ascii_uppercase()), value))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            db_primary: Some("db2".into()),
            db_primary_host: Some("198.18.0.12".into()),
            db_primary_port: Some(3306),
            server_master: Some("pandora1".into()),
            ..Facts::default()
        }
    }

    fn target(kind: Kind, path: PathBuf, follows: Follows) -> Target {
        Target {
            kind,
            path,
            follows,
            token: None,
            template: None,
            reload: vec![],
            insert_if_missing: false,
        }
    }

    #[test]
    fn each_kind_is_applied_and_a_second_pass_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("pandora_server.conf");
        std::fs::write(&conf, "dbhost 127.0.0.1\ndbport 3306\n").unwrap();
        let php = dir.path().join("config.php");
        std::fs::write(&php, "<?php\n$config[\"dbhost\"]=\"127.0.0.1\"; // DB Host\n").unwrap();
        let template = dir.path().join("haproxy.tmpl");
        std::fs::write(
            &template,
            "server {{db_primary}} {{db_primary_host}}:{{db_primary_port}}\n",
        )
        .unwrap();
        let targets = [
            target(
                Kind::HaHostsFile,
                dir.path().join("pandora_ha_hosts.conf"),
                Follows::DbPrimary,
            ),
            target(Kind::Token, conf.clone(), Follows::DbPrimary),
            target(Kind::Php, php.clone(), Follows::DbPrimary),
            Target {
                template: Some(template),
                ..target(Kind::Template, dir.path().join("haproxy.cfg"), Follows::DbPrimary)
            },
            Target {
                token: Some("master_host".into()),
                ..target(Kind::Token, conf.clone(), Follows::ServerMaster)
            },
        ];
        for target in &targets {
            assert!(
                matches!(target.apply(&facts(), &mut |_| {}), Ok(Applied::Written { .. })),
                "{target:?}"
            );
        }
        assert_eq!(
            std::fs::read_to_string(dir.path().join("pandora_ha_hosts.conf")).unwrap(),
            "198.18.0.12"
        );
        assert_eq!(
            std::fs::read_to_string(&conf).unwrap(),
            "dbhost 198.18.0.12\ndbport 3306\nmaster_host pandora1\n"
        );
        assert_eq!(
            std::fs::read_to_string(&php).unwrap(),
            "<?php\n$config[\"dbhost\"]=\"198.18.0.12\"; // DB Host\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("haproxy.cfg")).unwrap(),
            "server db2 198.18.0.12:3306\n"
        );
        for target in &targets {
            assert!(matches!(
                target.apply(&facts(), &mut |_| {}),
                Ok(Applied::Unchanged { .. })
            ));
        }
    }

    #[test]
    fn a_php_file_without_an_assignment_gets_one_only_when_the_target_asks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.inc.php");
        let shipped = include_str!("../../tests/fixtures/console_config.inc.php");
        std::fs::write(&path, shipped).unwrap();
        let plain = target(Kind::Php, path.clone(), Follows::DbPrimary);
        let err = plain.apply(&facts(), &mut |_| {}).unwrap_err().to_string();
        assert!(err.contains("insert_if_missing"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), shipped);

        let inserting = Target {
            insert_if_missing: true,
            ..plain
        };
        assert!(matches!(
            inserting.apply(&facts(), &mut |_| {}),
            Ok(Applied::Written { .. })
        ));
        let written = std::fs::read_to_string(&path).unwrap();
        assert!(
            written.starts_with("<?php\n$config[\"dbhost\"]=\"198.18.0.12\";"),
            "{written}"
        );
        assert!(matches!(
            inserting.apply(&facts(), &mut |_| {}),
            Ok(Applied::Unchanged { .. })
        ));
    }

    #[test]
    fn nothing_is_written_while_the_master_is_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pandora_ha_hosts.conf");
        let waiting = Facts::default();
        assert_eq!(
            target(Kind::HaHostsFile, path.clone(), Follows::DbPrimary).apply(&waiting, &mut |_| {}),
            Ok(Applied::Waiting)
        );
        assert!(!path.exists());
    }

    #[test]
    fn unwritable_or_unparsable_files_are_errors_that_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = target(Kind::Token, dir.path().join("absent.conf"), Follows::DbPrimary);
        let err = missing.apply(&facts(), &mut |_| {}).unwrap_err().to_string();
        assert!(err.contains("absent.conf") && err.contains("does not exist"), "{err}");

        let php = dir.path().join("config.php");
        std::fs::write(&php, "<?php\n// $config[\"dbhost\"]=\"x\";\n").unwrap();
        let err = target(Kind::Php, php, Follows::DbPrimary)
            .apply(&facts(), &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains("config.php") && err.contains("no uncommented"), "{err}");

        // A read-only directory: the temporary file cannot be made; the old file stays.
        let locked = dir.path().join("locked");
        std::fs::create_dir(&locked).unwrap();
        std::fs::write(locked.join("pandora_ha_hosts.conf"), "old").unwrap();
        let locked_target = target(
            Kind::HaHostsFile,
            locked.join("pandora_ha_hosts.conf"),
            Follows::DbPrimary,
        );
        // root ignores directory modes, so as root the directory is made a read-only bind mount.
        let as_root = nix::unistd::geteuid().is_root();
        if as_root {
            let mounted = std::process::Command::new("mount")
                .args(["--bind", "-o", "ro"])
                .arg(&locked)
                .arg(&locked)
                .status()
                .is_ok_and(|status| status.success());
            assert!(
                mounted,
                "this test needs `mount --bind -o ro` as root (util-linux, CAP_SYS_ADMIN)"
            );
        } else {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
        }
        let result = locked_target.apply(&facts(), &mut |_| {});
        if as_root {
            let _ = std::process::Command::new("umount").arg(&locked).status();
        }
        let err = result.unwrap_err().to_string();
        assert!(err.contains("cannot write"), "{err}");
        assert_eq!(
            std::fs::read_to_string(locked.join("pandora_ha_hosts.conf")).unwrap(),
            "old"
        );
    }
}
