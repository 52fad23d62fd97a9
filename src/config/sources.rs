//! What `check-config` says besides the effective values: which source won each key that
//! `pandora_server.conf` also sets, and DB addresses derived from Pandora's `dbhost` that peers
//! could not use.

use std::net::IpAddr;

use config::{Config, Value, ValueKind};

use super::locate::{lookup, Locator};
use super::pandora::PandoraServerConf;
use super::{Settings, MASK};
use crate::rewrite::{Kind, Target};

/// Notes about a configuration that loads: none of them stops the agent.
#[derive(Debug, Default, Clone)]
pub struct Notes {
    /// One line per key set both in `pandora_server.conf` and by a later source.
    pub overrides: Vec<String>,
    /// Settings that load but are likely wrong.
    pub warnings: Vec<String>,
}

/// `master = 5 from gossip-ha.toml:12 overrides `master 1` from pandora_server.conf:40`, for
/// every imported token that a later source (file, environment, flag) set again.
pub(super) fn overridden(pandora: &PandoraServerConf, merged: &Config, locator: &Locator) -> Vec<String> {
    pandora
        .entries()
        .filter_map(|(key, token, lost, lost_origin)| {
            let winner = lookup(merged, key)?;
            if winner.origin() == Some(lost_origin) {
                return None;
            }
            let secret = key.ends_with("password");
            let shown = |text: String| if secret { MASK.to_string() } else { text };
            let won = shown(toml_like(winner));
            let lost = shown(lost.to_string());
            let same = if toml_like(winner).trim_matches('"') == lost {
                " (the same value)"
            } else {
                ""
            };
            Some(format!(
                "{key} = {won} from {} overrides `{token} {lost}` from {lost_origin}{same}",
                locator.describe(winner.origin(), key)
            ))
        })
        .collect()
}

/// A value as it would be written in the TOML file.
fn toml_like(value: &Value) -> String {
    match &value.kind {
        ValueKind::String(text) => format!("{text:?}"),
        ValueKind::Array(items) => format!("[{}]", items.iter().map(toml_like).collect::<Vec<_>>().join(", ")),
        other => other.to_string(),
    }
}

/// A DB node's `db.advertise` left to default comes from `db.host` (Pandora's `dbhost`). On a
/// Pandora host that is often 127.0.0.1, which every other host reads as itself.
pub(super) fn derived_loopback(settings: &Settings, merged: &Config, locator: &Locator) -> Vec<String> {
    let Some(db) = &settings.db_agent else {
        return Vec::new();
    };
    if settings.db.advertise.is_some() {
        return Vec::new();
    }
    let Some((host, _)) = crate::address::split_host_port(&db.advertise) else {
        return Vec::new();
    };
    if !host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()) {
        return Vec::new();
    }
    let source = lookup(merged, "db.host").map_or_else(
        || "the built-in default".to_string(),
        |value| locator.describe(value.origin(), "db.host"),
    );
    vec![format!(
        "db.advertise is {}, derived from db.host {host} ({source}), a loopback address. Peers replicate from \
         db.advertise, fence it, check that its host is reachable and write its host into Pandora's files as the \
         primary's; on any other host {host} is that host itself. Set `db.advertise` (flag --db-advertise) to the \
         address other hosts reach this database at, and leave `dbhost` to Pandora; loopback suits only a cluster \
         whose agents all run on this host",
        db.advertise
    )]
}

/// A `php` target whose file exists but has no live assignment fails at the first failover,
/// when it matters most: said at `check-config` (which the unit runs before each start).
pub(super) fn php_targets_without_assignment(targets: &[Target]) -> Vec<String> {
    targets
        .iter()
        .enumerate()
        .filter(|(_, target)| target.kind == Kind::Php && !target.insert_if_missing)
        .filter_map(|(index, target)| {
            let text = super::read_config_file(&target.path).ok()?;
            let token = target.token.as_deref().unwrap_or("dbhost");
            let err = crate::rewrite::edit::php(&text, token, "x").err()?;
            Some(format!("rewrite #{index} ({}): {err}", target.path.display()))
        })
        .collect()
}
