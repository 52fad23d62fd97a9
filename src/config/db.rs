//! The `[db]` keys and what a DB node's agent resolves from them (with Pandora's fallbacks).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Secret};

/// DB-related keys, imported from `pandora_server.conf` or set in `[db]`. Used by DB failover.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DbSettings {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ha_hosts: Vec<String>,
    pub ha_hosts_file: Option<PathBuf>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub name: Option<String>,
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub admin_user: Option<String>,
    pub admin_password: Option<Secret>,
    pub replication_user: Option<String>,
    pub replication_password: Option<Secret>,
    pub splitbrain_autofix: Option<bool>,
    #[serde(serialize_with = "crate::secret::serialize_optional_url")]
    pub url: Option<Secret>,
    pub advertise: Option<String>,
    pub priority: Option<u8>,
    /// Seconds between probes of the local database.
    pub check_interval: Option<f64>,
    /// Excluded from promotion, like `pcs node standby`.
    pub maintenance: Option<bool>,
    /// Seconds a demoted node waits before it may be promoted again (default 10 × threshold).
    pub promotion_cooldown: Option<f64>,
    /// Seconds the best candidate waits for its relay log before promoting (default 5 × threshold).
    pub catchup_timeout: Option<f64>,
    /// Seconds before the forking promotion from which rows are merged where the binary log
    /// cannot say which rows the loser wrote (default 300).
    pub splitbrain_lookback: Option<f64>,
    /// Tables whose split-brain rows are merged into the winner (default: Pandora's
    /// `tagente_datos`, `tagente_datos_string` and `tevento`).
    pub merge_tables: Option<Vec<MergeTable>>,
    /// At most this many rows per merge batch, one transaction on the winner (default 50000;
    /// a batch also stops at 4 MiB).
    pub merge_batch_rows: Option<usize>,
    /// Seconds a whole resync (dump and load) may take (default 21600).
    pub resync_timeout: Option<f64>,
    /// Seconds one statement of a merge or resync may take (default 120).
    pub repair_statement_timeout: Option<f64>,
    /// Seconds a planned switchover may take before it is abandoned (default 10 × threshold).
    pub switchover_timeout: Option<f64>,
    /// The local server's data directory: with `stop_command` and `start_command`, this node
    /// can be rebuilt by physical copy (mariabackup) instead of a logical one.
    pub datadir: Option<PathBuf>,
    pub stop_command: Option<Vec<String>>,
    pub start_command: Option<Vec<String>>,
    /// TCP port of this agent's transfer service (physical backups for other nodes' resyncs),
    /// on the gossip address. Off when unset.
    pub transfer_port: Option<u16>,
    /// Keep Pandora's `tdatabase` (the console's HA view) from this agent (default on).
    pub pandora_ha_view: Option<bool>,
}

/// How this node is rebuilt by physical copy.
#[derive(Debug, Clone, Serialize)]
pub struct PhysicalSettings {
    pub datadir: PathBuf,
    pub stop_command: Vec<String>,
    pub start_command: Vec<String>,
}

/// A table whose rows written during a split-brain window are copied into the winner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MergeTable {
    pub name: String,
    /// Unix seconds of each row: the window is selected by it.
    pub time_column: String,
    /// A column the winner fills anew (an auto-increment id, as the manual does for `tevento`).
    #[serde(default)]
    pub fresh_id: Option<String>,
}

impl MergeTable {
    fn pandora_defaults() -> Vec<MergeTable> {
        let table = |name: &str, fresh_id: Option<&str>| MergeTable {
            name: name.into(),
            time_column: "utimestamp".into(),
            fresh_id: fresh_id.map(str::to_string),
        };
        vec![
            table("tagente_datos", None),
            table("tagente_datos_string", None),
            table("tevento", Some("id_evento")),
        ]
    }
}

/// Table and column names go into SQL as identifiers: only plain ones are accepted.
fn plain_identifier(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

/// The resolved settings of a DB node's agent.
#[derive(Debug, Clone, Serialize)]
pub struct DbAgentSettings {
    /// Shown with only its password masked: the derived host and user are worth checking.
    #[serde(serialize_with = "crate::secret::serialize_url")]
    pub url: Secret,
    pub advertise: String,
    pub replication_user: String,
    pub replication_password: Secret,
    pub priority: u8,
    pub ha_hosts_count: usize,
    pub check_interval_ms: u64,
    pub maintenance: bool,
    pub promotion_cooldown_ms: u64,
    pub catchup_timeout_ms: u64,
    pub splitbrain_autofix: bool,
    pub splitbrain_lookback_ms: u64,
    /// The Pandora database (`dbname`): what is merged and resynced.
    pub database: String,
    pub merge_tables: Vec<MergeTable>,
    pub merge_batch_rows: usize,
    pub resync_timeout_ms: u64,
    pub repair_statement_timeout_ms: u64,
    pub switchover_timeout_ms: u64,
    pub physical: Option<PhysicalSettings>,
    pub transfer_port: Option<u16>,
    /// The primary's agent writes `tdatabase`; every DB agent reads its own row's `disabled`.
    pub pandora_ha_view: bool,
}

pub(super) fn seconds_to_ms(
    key: &str,
    value: Option<f64>,
    default_ms: u64,
    range: std::ops::RangeInclusive<f64>,
    invalid: &dyn Fn(&str, String) -> ConfigError,
) -> Result<u64, ConfigError> {
    match value {
        None => Ok(default_ms),
        Some(seconds) if seconds.is_finite() && range.contains(&seconds) => Ok((seconds * 1000.0).round() as u64),
        Some(seconds) => Err(invalid(
            key,
            format!(
                "expected seconds between {} and {}, got {seconds}",
                range.start(),
                range.end()
            ),
        )),
    }
}

/// Resolves what a DB node's agent needs, falling back on the tokens Pandora uses
/// (`ha_dbuser` → `dbuser`, `repl_dbuser` → `dbuser`, …; see shared/REFERENCE.md).
pub(super) fn resolve_db_agent(
    db: &DbSettings,
    node_name: &str,
    threshold_ms: u64,
    invalid: &dyn Fn(&str, String) -> ConfigError,
) -> Result<DbAgentSettings, ConfigError> {
    let url = match (&db.url, &db.admin_user.as_ref().or(db.user.as_ref())) {
        (Some(url), _) => url.clone(),
        (None, Some(user)) => {
            let password = db.admin_password.as_ref().or(db.password.as_ref());
            let host = db.host.clone().unwrap_or_else(|| "127.0.0.1".into());
            let host = if host.contains(':') { format!("[{host}]") } else { host };
            Secret::new(format!(
                "mysql://{}:{}@{host}:{}/",
                percent(user),
                percent(password.map(Secret::expose).unwrap_or_default()),
                db.port.unwrap_or(3306)
            ))
        }
        (None, None) => {
            return Err(invalid(
                "db.url",
                "a `db` node needs `db.url` (mysql://user:password@host:port/), or `db.admin_user`/`db.user` with `db.host`".into(),
            ))
        }
    };
    if mysql_async::Opts::from_url(url.expose()).is_err() {
        return Err(invalid(
            "db.url",
            "expected mysql://user:password@host:port/ (or ?socket=/path)".into(),
        ));
    }
    let advertise = match (&db.advertise, &db.host) {
        (Some(advertise), _) => advertise.clone(),
        (None, Some(host)) if host != "localhost" => format!("{host}:{}", db.port.unwrap_or(3306)),
        _ => {
            return Err(invalid(
                "db.advertise",
                "expected the host:port replicas reach this database at".into(),
            ))
        }
    };
    if crate::address::split_host_port(&advertise).is_none() {
        return Err(invalid(
            "db.advertise",
            format!("expected host:port, got `{advertise}`"),
        ));
    }
    let replication_user = db.replication_user.clone().or_else(|| db.user.clone()).ok_or_else(|| {
        invalid(
            "db.replication_user",
            "a `db` node needs the replication user (or `db.user` / Pandora's `dbuser`)".into(),
        )
    })?;
    let replication_password = db
        .replication_password
        .clone()
        .or_else(|| db.password.clone())
        .unwrap_or_else(|| Secret::new(""));
    // The same matching every agent applies to DB claims (core::authority).
    let position = crate::core::authority::AuthorityPolicy {
        ha_hosts: db.ha_hosts.clone(),
    }
    .position_of(node_name, &advertise);
    if position.is_none() && !db.ha_hosts.is_empty() {
        // Peers believe DB claims only for databases listed in ha_hosts (core::authority).
        return Err(invalid(
            "db.ha_hosts",
            format!(
                "neither this node ({node_name}) nor its db.advertise ({advertise}) is in ha_hosts ({}): peers would ignore its database",
                db.ha_hosts.join(",")
            ),
        ));
    }
    let priority = match (db.priority, position) {
        (Some(priority), _) => priority,
        // The first host of ha_hosts has preference: it gets the highest priority.
        (None, Some(index)) => u8::try_from(db.ha_hosts.len() - index).unwrap_or(u8::MAX),
        (None, None) => 1,
    };
    let merge_tables = db.merge_tables.clone().unwrap_or_else(MergeTable::pandora_defaults);
    for (index, table) in merge_tables.iter().enumerate() {
        let names = [Some(&table.name), Some(&table.time_column), table.fresh_id.as_ref()];
        if let Some(bad) = names.into_iter().flatten().find(|name| !plain_identifier(name)) {
            return Err(invalid(
                &format!("db.merge_tables[{index}]"),
                format!("`{bad}` is not a plain table or column name (letters, digits, _ and $)"),
            ));
        }
    }
    let database = db.name.clone().unwrap_or_else(|| "pandora".into());
    if !plain_identifier(&database) {
        return Err(invalid("db.name", format!("`{database}` is not a plain database name")));
    }
    let merge_batch_rows = db.merge_batch_rows.unwrap_or(50_000);
    if !(1..=100_000).contains(&merge_batch_rows) {
        return Err(invalid(
            "db.merge_batch_rows",
            format!("expected 1 to 100000 rows, got {merge_batch_rows}"),
        ));
    }
    let physical = match (&db.datadir, &db.stop_command, &db.start_command) {
        (None, None, None) => None,
        (Some(datadir), Some(stop), Some(start)) if !stop.is_empty() && !start.is_empty() => Some(PhysicalSettings {
            datadir: datadir.clone(),
            stop_command: stop.clone(),
            start_command: start.clone(),
        }),
        _ => {
            return Err(invalid(
                "db.datadir",
                "a physical resync needs all three of db.datadir, db.stop_command and db.start_command (non-empty argv lists); set all or none".into(),
            ))
        }
    };
    Ok(DbAgentSettings {
        physical,
        transfer_port: db.transfer_port,
        pandora_ha_view: db.pandora_ha_view.unwrap_or(true),
        splitbrain_autofix: db.splitbrain_autofix.unwrap_or(true),
        splitbrain_lookback_ms: seconds_to_ms(
            "db.splitbrain_lookback",
            db.splitbrain_lookback,
            300_000,
            0.0..=86_400.0,
            invalid,
        )?,
        database,
        merge_tables,
        merge_batch_rows,
        switchover_timeout_ms: seconds_to_ms(
            "db.switchover_timeout",
            db.switchover_timeout,
            10 * threshold_ms,
            0.5..=3_600.0,
            invalid,
        )?,
        repair_statement_timeout_ms: seconds_to_ms(
            "db.repair_statement_timeout",
            db.repair_statement_timeout,
            120_000,
            0.5..=3_600.0,
            invalid,
        )?,
        resync_timeout_ms: seconds_to_ms(
            "db.resync_timeout",
            db.resync_timeout,
            21_600_000,
            1.0..=604_800.0,
            invalid,
        )?,
        url,
        advertise,
        replication_user,
        replication_password,
        priority,
        ha_hosts_count: db.ha_hosts.len(),
        check_interval_ms: seconds_to_ms("db.check_interval", db.check_interval, 1_000, 0.05..=60.0, invalid)?,
        maintenance: db.maintenance.unwrap_or(false),
        promotion_cooldown_ms: seconds_to_ms(
            "db.promotion_cooldown",
            db.promotion_cooldown,
            10 * threshold_ms,
            0.0..=86_400.0,
            invalid,
        )?,
        catchup_timeout_ms: seconds_to_ms(
            "db.catchup_timeout",
            db.catchup_timeout,
            5 * threshold_ms,
            0.0..=3_600.0,
            invalid,
        )?,
    })
}

/// Percent-encodes a URL user or password component.
fn percent(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (byte as char).to_string(),
            _ => format!("%{byte:02X}"),
        })
        .collect()
}
