//! Imports the tokens gossip-ha shares with an existing `pandora_server.conf`, parsed the way the
//! Pandora server parses it: one `token value` per line, `#` lines are comments, tokens match
//! case-insensitively, the value is trimmed and the last occurrence wins.

use std::collections::BTreeMap;
use std::path::Path;

use config::{Map, Source, Value, ValueKind};

use super::ConfigError;

/// Pandora token → our key. Values are imported as text and checked like any other source.
const IMPORTED_TOKENS: &[(&str, &str)] = &[
    ("master", "master"),
    ("server_threshold", "server_threshold"),
    ("ha_hosts", "db.ha_hosts"),
    ("ha_hosts_file", "db.ha_hosts_file"),
    ("dbhost", "db.host"),
    ("dbport", "db.port"),
    ("dbname", "db.name"),
    ("dbuser", "db.user"),
    ("dbpass", "db.password"),
    ("ha_dbuser", "db.admin_user"),
    ("ha_dbpass", "db.admin_password"),
    ("repl_dbuser", "db.replication_user"),
    ("repl_dbpass", "db.replication_password"),
    ("splitbrain_autofix", "db.splitbrain_autofix"),
];

/// A parsed `pandora_server.conf`, usable as a `config` source. Each value's origin is
/// `path:line`, so a bad imported value is reported where it stands.
#[derive(Debug, Clone)]
pub struct PandoraServerConf {
    values: BTreeMap<&'static str, (String, String)>,
}

impl PandoraServerConf {
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = super::read_config_file(path)?;
        Ok(Self::parse(&path.display().to_string(), &text))
    }

    /// Whether the file sets `dbpass` (Pandora's database password).
    pub fn holds_password(&self) -> bool {
        self.values
            .iter()
            .any(|(key, (value, _))| key.ends_with("password") && !value.is_empty())
    }

    pub fn parse(path: &str, text: &str) -> Self {
        let mut values = BTreeMap::new();
        for (index, line) in text.lines().enumerate() {
            if line.starts_with('#') {
                continue;
            }
            let Some((token, value)) = line.split_once(|c: char| c.is_ascii_whitespace()) else {
                continue;
            };
            let Some(&(_, key)) = IMPORTED_TOKENS
                .iter()
                .find(|(pandora_token, _)| pandora_token.eq_ignore_ascii_case(token))
            else {
                continue;
            };
            values.insert(key, (value.trim().to_string(), format!("{path}:{}", index + 1)));
        }
        PandoraServerConf { values }
    }

    /// Each imported value: our key, Pandora's token, the value and its `path:line`.
    pub fn entries(&self) -> impl Iterator<Item = (&'static str, &'static str, &str, &str)> {
        self.values.iter().map(|(key, (value, origin))| {
            let token = IMPORTED_TOKENS
                .iter()
                .find(|(_, ours)| ours == key)
                .map_or(*key, |(token, _)| *token);
            (*key, token, value.as_str(), origin.as_str())
        })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(|(value, _)| value.as_str())
    }
}

impl Source for PandoraServerConf {
    fn clone_into_box(&self) -> Box<dyn Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<Map<String, Value>, config::ConfigError> {
        let mut root: Map<String, Value> = Map::new();
        let mut db: Map<String, Value> = Map::new();
        for (key, (text, origin)) in &self.values {
            let origin = Some(origin.clone());
            let kind = match *key {
                "db.ha_hosts" => ValueKind::Array(
                    text.split(',')
                        .map(str::trim)
                        .filter(|host| !host.is_empty())
                        .map(|host| Value::new(origin.as_ref(), host))
                        .collect(),
                ),
                // Pandora writes `1`/`0`; a number is what the server reads as true/false.
                "db.splitbrain_autofix" => ValueKind::Boolean(text.trim() == "1"),
                _ => ValueKind::String(text.clone()),
            };
            let value = Value::new(origin.as_ref(), kind);
            match key.strip_prefix("db.") {
                Some(db_key) => db.insert(db_key.to_string(), value),
                None => root.insert(key.to_string(), value),
            };
        }
        if !db.is_empty() {
            root.insert("db".into(), Value::new(None, ValueKind::Table(db)));
        }
        Ok(root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
# Pandora FMS server configuration
dbhost 127.0.0.1
#dbport 3306
DBUSER pandora
dbpass s3cret
master 1
master 3
server_threshold 5
ha_hosts 10.0.0.1, 10.0.0.2
servername ignored-token
   master 9
";

    #[test]
    fn parses_like_the_pandora_server() {
        let conf = PandoraServerConf::parse("pandora_server.conf", SAMPLE);
        assert_eq!(conf.get("db.host"), Some("127.0.0.1"));
        assert_eq!(conf.get("db.port"), None, "commented token ignored");
        assert_eq!(conf.get("db.user"), Some("pandora"), "tokens are case-insensitive");
        assert_eq!(
            conf.get("master"),
            Some("3"),
            "last occurrence wins; indented lines don't match"
        );
        assert_eq!(conf.get("server_threshold"), Some("5"));
    }

    #[test]
    fn values_carry_file_and_line_as_origin() {
        let conf = PandoraServerConf::parse("p.conf", SAMPLE);
        let map = conf.collect().unwrap();
        assert_eq!(map["master"].origin(), Some("p.conf:7"));
        let db = map["db"].clone().into_table().unwrap();
        let hosts = db["ha_hosts"].clone().into_array().unwrap();
        let hosts: Vec<String> = hosts.into_iter().map(|h| h.into_string().unwrap()).collect();
        assert_eq!(hosts, ["10.0.0.1", "10.0.0.2"]);
    }
}
