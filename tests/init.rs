//! `gossip-ha init` as an operator runs it on a host: from the `pandora_server.conf` Pandora
//! ships and certificates from `gossip-ha certs`, the file it writes passes `check-config`; it
//! replaces the package's untouched example but not a file someone wrote, unless `--force`.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;

const EXAMPLE: &str = include_str!("../deploy/package/gossip-ha.toml");

fn run(args: &[&str]) -> (bool, String, String) {
    let output = cli(args);
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.success(), text(&output.stdout), text(&output.stderr))
}

/// Pandora's shipped file (0600, as it holds `dbpass`) and a host certificate for dbhost1.
fn host(dir: &Path) -> String {
    let pandora = dir.join("pandora_server.conf");
    std::fs::copy("tests/fixtures/pandora_server.conf", &pandora).unwrap();
    std::fs::set_permissions(&pandora, std::fs::Permissions::from_mode(0o600)).unwrap();
    let path = |name: &str| dir.join(name).display().to_string();
    let (ok, _, err) = run(&["certs", "init-ca", "--dir", &path("ca")]);
    assert!(ok, "{err}");
    let issue = [
        "certs",
        "issue",
        "--ca-dir",
        &path("ca"),
        "--name",
        "dbhost1",
        "--ip",
        "198.18.0.1",
        "--role",
        "db",
        "--role",
        "server",
        "--out",
        &path("tls"),
    ];
    let (ok, _, err) = run(&issue);
    assert!(ok, "{err}");
    pandora.display().to_string()
}

fn init<'a>(config: &'a str, pandora: &'a str, tls: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "init",
        "--config",
        config,
        "--pandora-server-conf",
        pandora,
        "--roles",
        "server,db",
        "--name",
        "dbhost1",
        "--address",
        "198.18.0.1",
        "--tls-dir",
        tls,
    ];
    args.extend_from_slice(extra);
    args
}

#[test]
fn a_config_written_from_the_shipped_pandora_file_passes_check_config() {
    let dir = tempfile::tempdir().unwrap();
    let pandora = host(dir.path());
    let config = dir.path().join("gossip-ha.toml").display().to_string();
    let tls = dir.path().join("tls").display().to_string();
    let (ok, stdout, stderr) = run(&init(&config, &pandora, &tls, &[]));
    assert!(ok, "{stderr}");
    for expected in [
        "guessed:",
        "master 1 imported",
        "check:",
        "no live `ha_hosts`",
        "next: gossip-ha check-config",
    ] {
        assert!(stdout.contains(expected), "expected `{expected}` in:\n{stdout}");
    }
    let mode = std::fs::metadata(&config).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let (ok, stdout, stderr) = run(&["check-config", "--config", &config]);
    assert!(ok, "{stderr}");
    let effective: toml::Table = toml::from_str(&stdout).unwrap();
    assert_eq!(
        effective["master"].as_integer(),
        Some(1),
        "imported from Pandora's file"
    );
    assert_eq!(effective["db_agent"]["advertise"].as_str(), Some("198.18.0.1:3306"));
    assert!(
        !stderr.contains("loopback"),
        "db.advertise is the host's address: {stderr}"
    );
}

#[test]
fn the_package_example_is_replaced_a_written_file_only_with_force() {
    let dir = tempfile::tempdir().unwrap();
    let pandora = host(dir.path());
    let config = dir.path().join("gossip-ha.toml").display().to_string();
    let tls = dir.path().join("tls").display().to_string();
    std::fs::write(&config, EXAMPLE).unwrap();
    let (ok, _, stderr) = run(&init(&config, &pandora, &tls, &[]));
    assert!(ok, "the untouched example is no one's file: {stderr}");

    let mine = "node_name = \"mine\"\n";
    std::fs::write(&config, mine).unwrap();
    let (ok, _, stderr) = run(&init(&config, &pandora, &tls, &[]));
    assert!(!ok);
    assert!(stderr.contains("not overwritten (--force replaces it)"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), mine);

    let (ok, _, stderr) = run(&init(&config, &pandora, &tls, &["--force"]));
    assert!(ok, "{stderr}");
    assert!(std::fs::read_to_string(&config)
        .unwrap()
        .contains("node_name = \"dbhost1\""));
}
