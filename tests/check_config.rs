//! `check-config` on a DB host that imports `pandora_server.conf`, as an operator sets it up from
//! the examples: it says which source won each key both define, shows the derived admin URL with
//! only its password masked, and warns that an address derived from `dbhost 127.0.0.1` is loopback.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::*;

/// Pandora's own file on a DB host: the database on loopback, `master 1`, `server_threshold 5`.
fn pandora_conf(dir: &Path, db_port: u16) -> PathBuf {
    let path = dir.join("pandora_server.conf");
    let text = format!(
        "# Pandora FMS Server configuration\n\
         servername pandora1\n\
         dbname pandora\n\
         dbuser pandora\n\
         dbpass Pand0ra-s3cret\n\
         dbhost 127.0.0.1\n\
         dbport {db_port}\n\
         master 1\n\
         server_threshold 5\n"
    );
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// The example's keys that Pandora's file sets too (`master = 5`, `server_threshold = 2`).
fn agent_conf(dir: &Path, pandora: &Path, extra_db: &str) -> PathBuf {
    let path = dir.join("gossip-ha.toml");
    let text = format!(
        "node_name = \"pandora1\"\n\
         roles = [\"server\", \"db\"]\n\
         master = 5\n\
         server_threshold = 2\n\
         pandora_server_conf = \"{}\"\n\
         \n\
         [db]\n\
         {extra_db}\n",
        pandora.display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn check_config(config: &Path) -> (String, String) {
    let output = cli(&["check-config", "--config", config.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    (stdout, stderr)
}

#[test]
fn each_key_both_sources_set_says_which_won_and_what_it_lost() {
    let dir = tempfile::tempdir().unwrap();
    let pandora = pandora_conf(dir.path(), free_port());
    let config = agent_conf(dir.path(), &pandora, "advertise = \"198.18.0.1:3306\"");
    let (stdout, _) = check_config(&config);
    let (config, pandora) = (config.display(), pandora.display());
    for expected in [
        format!("master = 5 from {config}:3 overrides `master 1` from {pandora}:8"),
        format!("server_threshold = 2 from {config}:4 overrides `server_threshold 5` from {pandora}:9"),
    ] {
        assert!(stdout.contains(&expected), "expected `{expected}` in:\n{stdout}");
    }
    // Keys only Pandora's file sets are not overridden, and the output is still TOML.
    assert!(!stdout.contains("`dbuser"), "{stdout}");
    let effective: toml::Table = toml::from_str(&stdout).unwrap();
    assert_eq!(effective["master"].as_integer(), Some(5));
}

#[test]
fn a_derived_admin_url_shows_all_but_its_password_and_a_loopback_advertise_is_warned_of() {
    let dir = tempfile::tempdir().unwrap();
    let db_port = free_port();
    let pandora = pandora_conf(dir.path(), db_port);
    let config = agent_conf(dir.path(), &pandora, "");
    let (stdout, stderr) = check_config(&config);
    assert!(
        stdout.contains(&format!("url = \"mysql://pandora:********@127.0.0.1:{db_port}/\"")),
        "{stdout}"
    );
    assert!(!stdout.contains("Pand0ra-s3cret") && !stderr.contains("Pand0ra-s3cret"));
    for expected in [
        format!(
            "warning: db.advertise is 127.0.0.1:{db_port}, derived from db.host 127.0.0.1 ({}:6), a loopback address",
            pandora.display()
        ),
        "Peers replicate from db.advertise".into(),
        "Set `db.advertise` (flag --db-advertise)".into(),
    ] {
        assert!(stderr.contains(&expected), "expected `{expected}` in:\n{stderr}");
    }

    // Set where other hosts reach it, there is nothing to warn of.
    let config = agent_conf(dir.path(), &pandora, "advertise = \"198.18.0.1:3306\"");
    let (_, stderr) = check_config(&config);
    assert!(!stderr.contains("warning: db.advertise"), "{stderr}");
}

/// The console's packaged `include/config.inc.php`: its settings are only in comments.
const CONFIG_INC_PHP: &str = include_str!("fixtures/console_config.inc.php");

#[test]
fn a_php_target_without_a_live_assignment_is_named_before_the_first_failover() {
    let dir = tempfile::tempdir().unwrap();
    let php = dir.path().join("config.inc.php");
    std::fs::write(&php, CONFIG_INC_PHP).unwrap();
    let target = format!(
        "node_name = \"console1\"\nroles = [\"console\"]\n\n[[rewrite]]\nkind = \"php\"\npath = \"{}\"\n\
         token = \"dbhost\"\nfollows = \"db_primary\"\n",
        php.display()
    );
    let config = dir.path().join("console.toml");
    std::fs::write(&config, &target).unwrap();
    let (_, stderr) = check_config(&config);
    for expected in [
        format!(
            "warning: rewrite #0 ({}): no uncommented `$config[\"dbhost\"]`",
            php.display()
        ),
        "set `insert_if_missing = true` on this [[rewrite]] target".into(),
    ] {
        assert!(stderr.contains(&expected), "expected `{expected}` in:\n{stderr}");
    }

    std::fs::write(&config, format!("{target}insert_if_missing = true\n")).unwrap();
    let (stdout, stderr) = check_config(&config);
    assert!(!stderr.contains("warning"), "{stderr}");
    assert!(stdout.contains("insert_if_missing = true"), "{stdout}");
    assert_eq!(
        std::fs::read_to_string(&php).unwrap(),
        CONFIG_INC_PHP,
        "check-config writes nothing"
    );

    std::fs::write(
        &config,
        format!("{}insert_if_missing = true\n", target.replace("\"php\"", "\"token\"")),
    )
    .unwrap();
    let refused = cli(&["check-config", "--config", config.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("`insert_if_missing` applies only to kind `php`"));
}
