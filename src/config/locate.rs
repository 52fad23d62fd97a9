//! Finds where a configuration value came from, so that a refusal names the file and line, the
//! environment variable or the flag instead of just the key.

use std::path::Path;

use config::{Config, Value, ValueKind};

use super::ConfigError;

/// One command-line flag that was given: the config key it sets and the flag's own name.
#[derive(Debug, Clone)]
pub struct Override {
    pub key: &'static str,
    pub flag: &'static str,
    pub value: Value,
}

pub(super) struct Locator<'a> {
    /// How the file is named in messages, then its canonical path: the `config` crate reports
    /// the file as a path relative to the working directory, which we match by canonical form.
    file_names: Option<(String, std::path::PathBuf)>,
    file_text: Option<&'a str>,
    overrides: &'a [Override],
}

const ENVIRONMENT_ORIGIN: &str = "the environment";

impl<'a> Locator<'a> {
    pub fn new(config_file: Option<&Path>, file_text: Option<&'a str>, overrides: &'a [Override]) -> Self {
        let file_names = config_file.map(|path| {
            let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
            (path.display().to_string(), canonical)
        });
        Locator {
            file_names,
            file_text,
            overrides,
        }
    }

    /// Where a value with this `origin` came from: `file:line`, a variable, a flag.
    pub fn describe(&self, origin: Option<&str>, key: &str) -> String {
        match origin {
            None => match self.overrides.iter().find(|flag| flag.key == key) {
                Some(flag) => format!("flag --{}", flag.flag),
                None => "built-in default".to_string(),
            },
            Some(ENVIRONMENT_ORIGIN) => {
                format!(
                    "environment variable GOSSIP_HA_{}",
                    key.to_uppercase().replace('.', "__")
                )
            }
            Some(uri) if self.is_config_file(uri) => {
                let name = self
                    .file_names
                    .as_ref()
                    .map(|(name, _)| name.clone())
                    .unwrap_or_default();
                match self.file_text.and_then(|text| line_of(text, key)) {
                    Some(line) => format!("{name}:{line}"),
                    None => name,
                }
            }
            Some(other) => other.to_string(),
        }
    }

    fn is_config_file(&self, uri: &str) -> bool {
        self.file_names.as_ref().is_some_and(|(name, canonical)| {
            uri == name || std::fs::canonicalize(uri).is_ok_and(|resolved| &resolved == canonical)
        })
    }

    pub fn invalid(&self, merged: &Config, key: &str, message: String) -> ConfigError {
        let origin = lookup(merged, key).and_then(|value| value.origin().map(str::to_string));
        ConfigError::Invalid {
            origin: self.describe(origin.as_deref(), key),
            key: key.to_string(),
            message,
        }
    }

    /// An error about something only a file can hold (arrays of tables): named by the file.
    pub fn invalid_in_file(&self, key: &str, message: String) -> ConfigError {
        ConfigError::Invalid {
            origin: self
                .file_names
                .as_ref()
                .map_or_else(|| "configuration".into(), |(name, _)| name.clone()),
            key: key.to_string(),
            message,
        }
    }

    pub fn load_error(&self, err: config::ConfigError) -> ConfigError {
        match err {
            config::ConfigError::Type {
                origin,
                unexpected,
                expected,
                key,
            } => {
                let key = key.unwrap_or_default();
                ConfigError::Invalid {
                    origin: self.describe(origin.as_deref(), &key),
                    message: format!("expected {expected}, found {unexpected}"),
                    key,
                }
            }
            other => ConfigError::Load(other.to_string()),
        }
    }

    pub fn refuse_unknown_keys(&self, merged: &Config, top: &[&str], db: &[&str]) -> Result<(), ConfigError> {
        let mut unknown = Vec::new();
        if let ValueKind::Table(root) = &merged.cache.kind {
            for (key, value) in root {
                if !top.contains(&key.as_str()) {
                    unknown.push((key.clone(), value.origin().map(str::to_string), top));
                }
            }
            if let Some(ValueKind::Table(db_table)) = root.get("db").map(|value| &value.kind) {
                for (key, value) in db_table {
                    if !db.contains(&key.as_str()) {
                        unknown.push((format!("db.{key}"), value.origin().map(str::to_string), db));
                    }
                }
            }
        }
        match unknown.into_iter().next() {
            None => Ok(()),
            Some((key, origin, known)) => Err(ConfigError::Invalid {
                origin: self.describe(origin.as_deref(), &key),
                message: format!("unknown key (known keys here: {})", known.join(", ")),
                key,
            }),
        }
    }
}

pub(super) fn lookup<'c>(merged: &'c Config, dotted_key: &str) -> Option<&'c Value> {
    let mut current = &merged.cache;
    for part in dotted_key.split('.') {
        let ValueKind::Table(table) = &current.kind else {
            return None;
        };
        current = table.get(part)?;
    }
    Some(current)
}

/// The 1-based line that sets `dotted_key` in a TOML text, under `[table]` or as `table.key`.
pub(super) fn line_of(text: &str, dotted_key: &str) -> Option<usize> {
    let mut table = String::new();
    let mut found = None;
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(header) = line.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')) {
            table = header.trim().to_string();
            continue;
        }
        let Some((lhs, _)) = line.split_once('=') else {
            continue;
        };
        let lhs = lhs.trim().trim_matches('"');
        let full = if table.is_empty() {
            lhs.to_string()
        } else {
            format!("{table}.{lhs}")
        };
        if full == dotted_key {
            found = Some(index + 1);
        }
    }
    found
}
