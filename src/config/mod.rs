//! Configuration: built-in defaults < `pandora_server_conf` import < TOML file <
//! `GOSSIP_HA_<KEY>` environment variables (`GOSSIP_HA_DB__URL` for `db.url`) < flags.
//! Every refusal names where the bad value came from: file and line, variable, or flag.

mod db;
mod locate;
pub mod pandora;
mod sources;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use config::{Config, Environment, File, FileFormat, Value};
use gossip_ha_proto::gossip::{Role, MAX_MASTER_PRIORITY};
use serde::{Deserialize, Serialize};

use locate::Locator;

use crate::hooks::HooksConfig;
use crate::rewrite::{Facts, Kind, Target};
pub use crate::secret::{mask_url_password, Secret, MASK};
use crate::tls::identity::TlsFiles;
use db::{resolve_db_agent, seconds_to_ms};
pub use db::{DbAgentSettings, DbSettings, MergeTable};
pub use locate::Override;
use pandora::PandoraServerConf;
pub use sources::Notes;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7946";
pub const DEFAULT_THRESHOLD_SECONDS: f64 = 2.0;
const THRESHOLD_RANGE_SECONDS: std::ops::RangeInclusive<f64> = 0.1..=3600.0;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{origin}: key `{key}`: {message}")]
    Invalid {
        origin: String,
        key: String,
        message: String,
    },
    #[error("{0}")]
    Load(String),
    #[error("{path} holds a password and is readable by every user (mode {mode:o}); run `chmod o-r {path}` (`chmod 600` or `640` with the agent's group)", path = path.display())]
    Exposed { path: PathBuf, mode: u32 },
}

/// Reads a configuration file at start, bounded in size and never blocking.
pub(crate) fn read_config_file(path: &Path) -> Result<String, ConfigError> {
    crate::fsutil::read_config_text(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The `[db]` keys whose values are secrets.
const SECRET_DB_KEYS: [&str; 4] = ["password", "admin_password", "replication_password", "url"];

/// Whether the TOML `text` sets a password (a `[db]` secret with a value).
fn holds_password(text: &str) -> bool {
    let Ok(table) = toml::from_str::<toml::Table>(text) else {
        return false;
    };
    let db = table.get("db").and_then(toml::Value::as_table);
    SECRET_DB_KEYS.iter().any(|key| {
        db.and_then(|db| db.get(*key))
            .and_then(toml::Value::as_str)
            .is_some_and(|value| !value.is_empty())
    })
}

/// A file holding a password must not be readable by every user of the host.
fn refuse_if_exposed(path: &Path, holds_password: bool) -> Result<(), ConfigError> {
    use std::os::unix::fs::MetadataExt;
    if holds_password && crate::fsutil::readable_by_others(path) {
        let mode = std::fs::metadata(path).map_or(0, |metadata| metadata.mode() & 0o777);
        return Err(ConfigError::Exposed {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// The effective configuration of one agent, validated.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub node_name: String,
    pub cluster_id: String,
    pub listen: SocketAddr,
    pub advertise: SocketAddr,
    pub seeds: Vec<String>,
    pub roles: BTreeSet<Role>,
    pub master: u8,
    /// Seconds, as Pandora's `server_threshold`; see `threshold_ms`.
    pub server_threshold: f64,
    pub socket: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pandora_server_conf: Option<PathBuf>,
    /// Where the agent keeps what must survive a restart (the DB epoch).
    pub state_dir: PathBuf,
    pub db: DbSettings,
    /// What a `db` node's agent runs with, resolved from `db` and the imported tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db_agent: Option<DbAgentSettings>,
    /// A change must hold this long before files are rewritten (debounce).
    pub rewrite_settle_ms: u64,
    pub hook_timeout_ms: u64,
    pub hooks: HooksConfig,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rewrite: Vec<Target>,
    /// Group that owns the socket (mode 0660): its members may read status and events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket_group: Option<String>,
    /// Group whose members, besides root, may send commands that change the agent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_group: Option<String>,
    /// Mutual TLS for gossip; `None` only when every gossip address is on loopback.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsFiles>,
    /// The read-only HTTP listener (health checks, metrics, status); off when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_listen: Option<SocketAddr>,
    /// Serve HTTP over TLS with this host's cluster certificate (`[tls]` must be set).
    pub http_tls: bool,
    pub log_format: LogFormat,
}

/// How the agent writes its log on stderr: text for people, JSON lines for collectors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    node_name: Option<String>,
    #[serde(default = "default_cluster_id")]
    cluster_id: String,
    #[serde(default = "default_listen")]
    listen: String,
    advertise: Option<String>,
    #[serde(default)]
    seeds: Vec<String>,
    #[serde(default = "default_roles")]
    roles: Vec<String>,
    #[serde(default = "default_master")]
    master: i64,
    #[serde(default = "default_threshold")]
    server_threshold: f64,
    socket: Option<PathBuf>,
    pandora_server_conf: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    #[serde(default)]
    db: DbSettings,
    rewrite_settle: Option<f64>,
    #[serde(default)]
    hooks: HooksConfig,
    #[serde(default)]
    rewrite: Vec<Target>,
    #[serde(default)]
    tls: RawTls,
    socket_group: Option<String>,
    admin_group: Option<String>,
    http_listen: Option<String>,
    #[serde(default)]
    http_tls: bool,
    #[serde(default)]
    log_format: LogFormat,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

fn default_cluster_id() -> String {
    "gossip-ha".into()
}
fn default_listen() -> String {
    DEFAULT_LISTEN.into()
}
fn default_roles() -> Vec<String> {
    vec!["server".into()]
}
fn default_master() -> i64 {
    1
}
fn default_threshold() -> f64 {
    DEFAULT_THRESHOLD_SECONDS
}

const TOP_LEVEL_KEYS: &[&str] = &[
    "node_name",
    "cluster_id",
    "listen",
    "advertise",
    "seeds",
    "roles",
    "master",
    "server_threshold",
    "socket",
    "pandora_server_conf",
    "state_dir",
    "db",
    "rewrite_settle",
    "hooks",
    "rewrite",
    "tls",
    "socket_group",
    "admin_group",
    "http_listen",
    "http_tls",
    "log_format",
];
const DB_KEYS: &[&str] = &[
    "ha_hosts",
    "ha_hosts_file",
    "host",
    "port",
    "name",
    "user",
    "password",
    "admin_user",
    "admin_password",
    "replication_user",
    "replication_password",
    "splitbrain_autofix",
    "url",
    "advertise",
    "priority",
    "check_interval",
    "maintenance",
    "promotion_cooldown",
    "catchup_timeout",
    "splitbrain_lookback",
    "merge_tables",
    "merge_batch_rows",
    "resync_timeout",
    "repair_statement_timeout",
    "switchover_timeout",
    "datadir",
    "stop_command",
    "start_command",
    "transfer_port",
    "pandora_ha_view",
];

impl Settings {
    pub fn threshold_ms(&self) -> u64 {
        (self.server_threshold * 1000.0).round() as u64
    }

    /// Loads and validates; `config_file` is the `--config` path, `overrides` the flags given.
    pub fn load(config_file: Option<&Path>, overrides: &[Override]) -> Result<Settings, ConfigError> {
        Self::load_with_env(config_file, overrides, own_environment())
    }

    /// As `load`, with the environment given explicitly (tests must not share process state).
    pub fn load_with_env(
        config_file: Option<&Path>,
        overrides: &[Override],
        environment: config::Map<String, String>,
    ) -> Result<Settings, ConfigError> {
        Self::load_noted(config_file, overrides, environment).map(|(settings, _)| settings)
    }

    /// As `load`, with what `check-config` says besides: which source won each key that
    /// `pandora_server.conf` also sets, and derived addresses that are likely wrong.
    pub fn check(config_file: Option<&Path>, overrides: &[Override]) -> Result<(Settings, Notes), ConfigError> {
        Self::load_noted(config_file, overrides, own_environment())
    }

    fn load_noted(
        config_file: Option<&Path>,
        overrides: &[Override],
        environment: config::Map<String, String>,
    ) -> Result<(Settings, Notes), ConfigError> {
        let file_text = match config_file {
            Some(path) => {
                let text = read_config_file(path)?;
                refuse_if_exposed(path, holds_password(&text))?;
                Some(text)
            }
            None => None,
        };
        let locator = Locator::new(config_file, file_text.as_deref(), overrides);
        let layered = |pandora: Option<PandoraServerConf>| -> Result<Config, ConfigError> {
            let mut builder = Config::builder();
            if let Some(pandora) = pandora {
                builder = builder.add_source(pandora);
            }
            if let Some(path) = config_file {
                builder = builder.add_source(File::from(path).format(FileFormat::Toml).required(true));
            }
            builder = builder.add_source(
                Environment::with_prefix("GOSSIP_HA")
                    .prefix_separator("_")
                    .separator("__")
                    .list_separator(",")
                    .with_list_parse_key("seeds")
                    .with_list_parse_key("roles")
                    .with_list_parse_key("db.ha_hosts")
                    .ignore_empty(true)
                    .try_parsing(true)
                    .source(Some(environment.clone())),
            );
            for flag in overrides {
                builder = builder
                    .set_override(flag.key, flag.value.clone())
                    .map_err(|err| ConfigError::Load(err.to_string()))?;
            }
            builder.build().map_err(|err| locator.load_error(err))
        };

        let without_import = layered(None)?;
        let pandora_path: Option<PathBuf> = without_import
            .get("pandora_server_conf")
            .map_err(|err| locator.load_error(err))
            .ok();
        let (merged, pandora) = match &pandora_path {
            Some(path) => {
                let pandora = PandoraServerConf::read(path)?;
                refuse_if_exposed(path, pandora.holds_password())?;
                (layered(Some(pandora.clone()))?, Some(pandora))
            }
            None => (without_import, None),
        };
        locator.refuse_unknown_keys(&merged, TOP_LEVEL_KEYS, DB_KEYS)?;
        let raw: RawSettings = merged
            .clone()
            .try_deserialize()
            .map_err(|err| locator.load_error(err))?;
        let settings = validate(raw, &merged, &locator)?;
        let notes = Notes {
            overrides: pandora
                .map(|pandora| sources::overridden(&pandora, &merged, &locator))
                .unwrap_or_default(),
            warnings: [
                sources::derived_loopback(&settings, &merged, &locator),
                sources::php_targets_without_assignment(&settings.rewrite),
            ]
            .concat(),
        };
        Ok((settings, notes))
    }
}

/// The `GOSSIP_HA_*` variables of this process.
fn own_environment() -> config::Map<String, String> {
    std::env::vars()
        .filter(|(name, _)| name.starts_with("GOSSIP_HA_"))
        .collect()
}

fn validate(raw: RawSettings, merged: &Config, locator: &Locator) -> Result<Settings, ConfigError> {
    let invalid = |key: &str, message: String| locator.invalid(merged, key, message);

    let node_name = match raw.node_name {
        Some(name) => name,
        None => nix::unistd::gethostname()
            .map_err(|err| invalid("node_name", format!("not set and the host name is unreadable: {err}")))?
            .to_string_lossy()
            .into_owned(),
    };
    if node_name.is_empty()
        || node_name.len() > 64
        || !node_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(invalid(
            "node_name",
            format!("expected 1–64 characters of letters, digits, `.`, `_` or `-`, got `{node_name}`"),
        ));
    }
    if raw.cluster_id.trim().is_empty() {
        return Err(invalid("cluster_id", "expected a non-empty cluster name".into()));
    }

    let master = u8::try_from(raw.master)
        .ok()
        .filter(|m| *m <= MAX_MASTER_PRIORITY)
        .ok_or_else(|| {
            invalid(
                "master",
                format!(
                    "expected a priority from 0 to {MAX_MASTER_PRIORITY} (0 = never master), got {}",
                    raw.master
                ),
            )
        })?;
    if !raw.server_threshold.is_finite() || !THRESHOLD_RANGE_SECONDS.contains(&raw.server_threshold) {
        return Err(invalid(
            "server_threshold",
            format!(
                "expected seconds between {} and {}, got {}",
                THRESHOLD_RANGE_SECONDS.start(),
                THRESHOLD_RANGE_SECONDS.end(),
                raw.server_threshold
            ),
        ));
    }

    if raw.roles.is_empty() {
        return Err(invalid("roles", "expected at least one of: server, db, console".into()));
    }
    let roles = raw
        .roles
        .iter()
        .map(|role| role.parse::<Role>())
        .collect::<Result<BTreeSet<_>, _>>()
        .map_err(|err| invalid("roles", err.to_string()))?;

    let listen: SocketAddr = raw
        .listen
        .parse()
        .map_err(|_| invalid("listen", format!("expected ip:port, got `{}`", raw.listen)))?;
    let advertise: SocketAddr = match &raw.advertise {
        Some(text) => text
            .parse()
            .map_err(|_| invalid("advertise", format!("expected ip:port, got `{text}`")))?,
        None if listen.ip().is_unspecified() => {
            return Err(invalid(
                "advertise",
                format!("`listen` is {listen}, a wildcard: set `advertise` to the address peers reach this host at"),
            ))
        }
        None => listen,
    };
    let mut seeds = Vec::with_capacity(raw.seeds.len());
    for seed in raw.seeds.iter().map(|seed| seed.trim()).filter(|seed| !seed.is_empty()) {
        seeds.push(parse_seed(seed).map_err(|message| invalid("seeds", message))?);
    }

    let tls = match (raw.tls.ca, raw.tls.cert, raw.tls.key) {
        (Some(ca), Some(cert), Some(key)) => Some(TlsFiles { ca, cert, key }),
        (None, None, None) => None,
        (ca, cert, key) => {
            let missing: Vec<&str> = [("ca", ca.is_none()), ("cert", cert.is_none()), ("key", key.is_none())]
                .into_iter()
                .filter_map(|(name, missing)| missing.then_some(name))
                .collect();
            return Err(invalid(
                "tls",
                format!("needs ca, cert and key; missing: {}", missing.join(", ")),
            ));
        }
    };
    // Plain-text gossip is allowed only on loopback (DESIGN §4): anywhere else anyone could
    // inject state for any node.
    if tls.is_none() {
        let mut gossip_ips = vec![("listen", listen.ip()), ("advertise", advertise.ip())];
        gossip_ips.extend(seeds.iter().map(|seed| ("seeds", seed.ip())));
        if let Some((key, ip)) = gossip_ips.into_iter().find(|(_, ip)| !ip.is_loopback()) {
            return Err(invalid(
                key,
                format!(
                    "{ip} is not a loopback address: gossip there needs mutual TLS, and [tls] ca, cert and key \
                     (flags --tls-ca, --tls-cert, --tls-key) are not set; make them with `gossip-ha certs`"
                ),
            ));
        }
    }

    let socket = raw.socket.unwrap_or_else(default_socket_path);
    let threshold_ms = (raw.server_threshold * 1000.0).round() as u64;
    let db_agent = if roles.contains(&Role::Db) {
        Some(resolve_db_agent(&raw.db, &node_name, threshold_ms, &invalid)?)
    } else {
        None
    };
    let rewrite_settle_ms = seconds_to_ms(
        "rewrite_settle",
        raw.rewrite_settle,
        (threshold_ms / 2).clamp(100, 5_000),
        0.0..=600.0,
        &invalid,
    )?;
    let hook_timeout_ms = seconds_to_ms("hooks.timeout", raw.hooks.timeout, 30_000, 0.1..=3_600.0, &invalid)?;
    for (hook, argv) in [
        ("on_promote", &raw.hooks.on_promote),
        ("on_demote", &raw.hooks.on_demote),
        ("on_db_primary_change", &raw.hooks.on_db_primary_change),
        ("on_server_master_change", &raw.hooks.on_server_master_change),
        ("on_node_down", &raw.hooks.on_node_down),
        ("on_node_up", &raw.hooks.on_node_up),
    ] {
        if argv
            .as_ref()
            .is_some_and(|argv| argv.first().is_none_or(|program| program.is_empty()))
        {
            return Err(invalid(
                &format!("hooks.{hook}"),
                "expected a command as an argv list, e.g. [\"/usr/local/bin/notify\", \"promote\"]".into(),
            ));
        }
    }
    for (index, target) in raw.rewrite.iter().enumerate() {
        check_target(index, target)
            .map_err(|message| locator.invalid_in_file(&format!("rewrite[{index}]"), message))?;
    }
    for (key, group) in [("socket_group", &raw.socket_group), ("admin_group", &raw.admin_group)] {
        if let Some(group) = group {
            if group_id(group).is_none() {
                return Err(invalid(key, format!("no group `{group}` on this host")));
            }
        }
    }
    let http_listen = match raw.http_listen.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => Some(
            text.parse::<SocketAddr>()
                .map_err(|_| invalid("http_listen", format!("expected ip:port, got `{text}`")))?,
        ),
    };
    if raw.http_tls && tls.is_none() {
        return Err(invalid(
            "http_tls",
            "serving HTTP over TLS needs [tls] ca, cert and key (the cluster certificate)".into(),
        ));
    }
    Ok(Settings {
        node_name,
        cluster_id: raw.cluster_id,
        listen,
        advertise,
        seeds: seeds.iter().map(SocketAddr::to_string).collect(),
        roles,
        master,
        server_threshold: raw.server_threshold,
        socket,
        pandora_server_conf: raw.pandora_server_conf,
        state_dir: raw.state_dir.unwrap_or_else(default_state_dir),
        db: raw.db,
        db_agent,
        rewrite_settle_ms,
        hook_timeout_ms,
        hooks: raw.hooks,
        rewrite: raw.rewrite,
        socket_group: raw.socket_group,
        admin_group: raw.admin_group,
        tls,
        http_listen,
        http_tls: raw.http_tls,
        log_format: raw.log_format,
    })
}

/// A group by name or number.
pub fn group_id(group: &str) -> Option<nix::unistd::Gid> {
    if let Ok(gid) = group.parse::<u32>() {
        return Some(nix::unistd::Gid::from_raw(gid));
    }
    nix::unistd::Group::from_name(group)
        .ok()
        .flatten()
        .map(|group| group.gid)
}

/// What can be known about a rewrite target before any failover: what its kind needs, and
/// that its template renders.
fn check_target(index: usize, target: &Target) -> Result<(), String> {
    let path = target.path.display();
    if target.path.as_os_str().is_empty() {
        return Err(format!("rewrite #{index}: `path` is empty"));
    }
    if matches!(target.kind, Kind::Token | Kind::Php) && target.token.as_deref().is_some_and(str::is_empty) {
        return Err(format!("rewrite #{index} ({path}): `token` is empty"));
    }
    if target.insert_if_missing && target.kind != Kind::Php {
        return Err(format!(
            "rewrite #{index} ({path}): `insert_if_missing` applies only to kind `php`"
        ));
    }
    if target.reload.first().is_some_and(|program| program.is_empty()) {
        return Err(format!("rewrite #{index} ({path}): `reload` must start with a program"));
    }
    if target.kind == Kind::Template {
        let template = target.template.as_ref().ok_or_else(|| {
            format!("rewrite #{index} ({path}): kind `template` needs `template`, the template's path")
        })?;
        let text = read_config_file(template).map_err(|err| format!("rewrite #{index} ({path}): template: {err}"))?;
        let sample = Facts {
            db_primary_host: Some("x".into()),
            server_master: Some("x".into()),
            ..Facts::default()
        };
        crate::rewrite::edit::template(&text, &sample.variables())
            .map_err(|err| format!("rewrite #{index} ({path}): template {}: {err}", template.display()))?;
    }
    Ok(())
}

/// `/var/lib/gossip-ha` for root, the user's state directory otherwise.
pub fn default_state_dir() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/gossip-ha");
    }
    match (std::env::var_os("XDG_STATE_HOME"), std::env::var_os("HOME")) {
        (Some(state), _) if !state.is_empty() => PathBuf::from(state).join("gossip-ha"),
        (_, Some(home)) if !home.is_empty() => PathBuf::from(home).join(".local/state/gossip-ha"),
        _ => std::env::temp_dir().join(format!("gossip-ha-state-{}", nix::unistd::geteuid())),
    }
}

fn parse_seed(seed: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = seed.parse::<SocketAddr>() {
        return Ok(addr);
    }
    match seed.rsplit_once(':') {
        Some(("localhost", port)) => port
            .parse::<u16>()
            .map(|port| SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port))
            .map_err(|_| format!("seed `{seed}`: expected a port number after `:`")),
        _ => Err(format!("seed `{seed}`: expected ip:port")),
    }
}

/// Where the socket lives when no `socket` is configured: `/run/gossip-ha` for root, the
/// user's runtime directory otherwise, so a newcomer can run the agent without privileges.
pub fn default_socket_path() -> PathBuf {
    let uid = nix::unistd::geteuid();
    let dir = if uid.is_root() {
        PathBuf::from("/run/gossip-ha")
    } else if let Some(runtime) = std::env::var_os("XDG_RUNTIME_DIR").filter(|dir| !dir.is_empty()) {
        PathBuf::from(runtime).join("gossip-ha")
    } else {
        std::env::temp_dir().join(format!("gossip-ha-{uid}"))
    };
    dir.join("gossip-ha.sock")
}

/// A flag value for `Override`.
pub fn flag_value(value: impl Into<Value>) -> Value {
    value.into()
}

#[cfg(test)]
mod tests;
