use std::io::Write;

use super::*;

/// Writes a configuration file as an operator should: 0640, not readable by every user.
fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.path().join(name);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .open(&path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    path
}

fn flag(key: &'static str, flag: &'static str, value: impl Into<Value>) -> Override {
    Override {
        key,
        flag,
        value: value.into(),
    }
}

fn env(pairs: &[(&str, &str)]) -> config::Map<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn error_text(result: Result<Settings, ConfigError>) -> String {
    result.expect_err("configuration should be refused").to_string()
}

#[test]
fn defaults_make_a_single_loopback_server_node() {
    let settings = Settings::load_with_env(None, &[], env(&[])).unwrap();
    assert_eq!(settings.listen.to_string(), DEFAULT_LISTEN);
    assert_eq!(settings.advertise, settings.listen);
    assert_eq!(settings.roles.iter().copied().collect::<Vec<_>>(), [Role::Server]);
    assert_eq!((settings.master, settings.threshold_ms()), (1, 2_000));
    assert!(!settings.node_name.is_empty());
    assert!(settings.socket.ends_with("gossip-ha.sock"));
}

#[test]
fn precedence_is_pandora_then_file_then_environment_then_flags() {
    let dir = tempfile::tempdir().unwrap();
    let pandora = write(
        &dir,
        "pandora_server.conf",
        "master 2\nserver_threshold 5\nha_hosts db1,db2\ndbpass hunter2\n",
    );
    let file = write(
        &dir,
        "agent.toml",
        &format!(
            "node_name = \"n1\"\nmaster = 3\npandora_server_conf = \"{}\"\n",
            pandora.display()
        ),
    );
    let load = |environment: &[(&str, &str)], flags: &[Override]| {
        Settings::load_with_env(Some(&file), flags, env(environment)).unwrap()
    };
    let settings = load(&[], &[]);
    assert_eq!(settings.master, 3, "the file beats the import");
    assert_eq!(settings.threshold_ms(), 5_000, "imported when the file is silent");
    assert_eq!(settings.db.ha_hosts, ["db1", "db2"]);
    assert_eq!(settings.db.password.as_ref().unwrap().expose(), "hunter2");
    assert_eq!(load(&[("GOSSIP_HA_MASTER", "4")], &[]).master, 4);
    let flags = [flag("master", "master", 5)];
    assert_eq!(load(&[("GOSSIP_HA_MASTER", "4")], &flags).master, 5);
    let settings = load(
        &[
            ("GOSSIP_HA_SEEDS", "127.0.0.1:1,localhost:2"),
            ("GOSSIP_HA_DB__PRIORITY", "9"),
        ],
        &[],
    );
    assert_eq!(settings.seeds, ["127.0.0.1:1", "127.0.0.1:2"]);
    assert_eq!(settings.db.priority, Some(9));
}

#[test]
fn refusals_name_file_line_key_and_expectation() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, "agent.toml", "node_name = \"n1\"\n\nmaster = 9\n");
    let text = error_text(Settings::load_with_env(Some(&file), &[], env(&[])));
    assert!(text.contains(&format!("{}:3", file.display())), "{text}");
    assert!(text.contains("key `master`") && text.contains("0 to 7"), "{text}");

    let file = write(&dir, "db.toml", "node_name = \"n1\"\n[db]\nport = \"many\"\n");
    let text = error_text(Settings::load_with_env(Some(&file), &[], env(&[])));
    assert!(text.contains(":3") && text.contains("db.port"), "{text}");

    let file = write(&dir, "unknown.toml", "node_name = \"n1\"\nthreshold = 3\n");
    let text = error_text(Settings::load_with_env(Some(&file), &[], env(&[])));
    assert!(
        text.contains(":2") && text.contains("`threshold`: unknown key"),
        "{text}"
    );

    let file = write(&dir, "broken.toml", "node_name = \"n1\"\nmaster = [\n");
    let text = error_text(Settings::load_with_env(Some(&file), &[], env(&[])));
    assert!(text.contains("broken.toml") && text.contains("line"), "{text}");

    let missing = dir.path().join("missing.toml");
    let text = error_text(Settings::load_with_env(Some(&missing), &[], env(&[])));
    assert!(text.contains("missing.toml"), "{text}");
}

#[test]
fn refusals_from_flags_and_environment_say_so() {
    let flags = [flag("server_threshold", "server-threshold", -1.0)];
    let text = error_text(Settings::load_with_env(None, &flags, env(&[])));
    assert!(
        text.starts_with("flag --server-threshold: key `server_threshold`"),
        "{text}"
    );

    let text = error_text(Settings::load_with_env(
        None,
        &[],
        env(&[("GOSSIP_HA_ROLES", "server,witch")]),
    ));
    assert!(text.starts_with("environment variable GOSSIP_HA_ROLES"), "{text}");
    assert!(text.contains("unknown role `witch`"), "{text}");

    let flags = [flag("seeds", "seeds", vec!["db-host"])];
    let text = error_text(Settings::load_with_env(None, &flags, env(&[])));
    assert!(text.contains("seed `db-host`: expected ip:port"), "{text}");
}

#[test]
fn bad_imported_values_point_into_pandora_server_conf() {
    let dir = tempfile::tempdir().unwrap();
    let pandora = write(&dir, "pandora_server.conf", "# comment\ndbhost x\nmaster lots\n");
    let flags = [flag(
        "pandora_server_conf",
        "pandora-server-conf",
        pandora.display().to_string(),
    )];
    let text = error_text(Settings::load_with_env(None, &flags, env(&[])));
    assert!(
        text.starts_with(&format!("{}:3: key `master`", pandora.display())),
        "{text}"
    );
}

#[test]
fn gossip_off_loopback_is_refused_without_tls() {
    let flags = [flag("listen", "listen", "198.18.0.1:7946")];
    let text = error_text(Settings::load_with_env(None, &flags, env(&[])));
    assert!(text.contains("198.18.0.1 is not a loopback address"), "{text}");
    assert!(text.contains("--tls-ca") && text.contains("gossip-ha certs"), "{text}");
    let flags = [
        flag("listen", "listen", "198.18.0.1:7946"),
        flag("tls.ca", "tls-ca", "/x/ca.pem"),
    ];
    let text = error_text(Settings::load_with_env(None, &flags, env(&[])));
    assert!(text.contains("missing: cert, key"), "{text}");
    let flags = [flag("listen", "listen", "0.0.0.0:7946")];
    let text = error_text(Settings::load_with_env(None, &flags, env(&[])));
    assert!(text.contains("`advertise`"), "{text}");
}

#[test]
fn printed_configuration_masks_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        &dir,
        "agent.toml",
        "node_name = \"n1\"\n[db]\npassword = \"hunter2\"\nurl = \"mysql://root:hunter2@127.0.0.1/\"\n",
    );
    let settings = Settings::load_with_env(Some(&file), &[], env(&[])).unwrap();
    let printed = toml::to_string(&settings).unwrap();
    assert!(!printed.contains("hunter2"), "{printed}");
    assert!(printed.contains(MASK), "{printed}");
    assert!(!format!("{settings:?}").contains("hunter2"));
}

#[test]
fn a_world_readable_file_holding_a_password_is_refused_with_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let world_readable = |path: &Path| std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let toml = write(&dir, "agent.toml", "[db]\nadmin_password = \"hunter2\"\n");
    let pandora = write(&dir, "pandora_server.conf", "dbpass hunter2\n");
    let plain = write(&dir, "plain.toml", "master = 2\n[db]\nuser = \"pandora\"\n");
    for path in [&toml, &pandora, &plain] {
        world_readable(path);
    }
    let err = error_text(Settings::load_with_env(Some(&toml), &[], env(&[])));
    assert!(
        err.contains("agent.toml holds a password") && err.contains("mode 644"),
        "{err}"
    );
    assert!(err.contains("chmod o-r"), "{err}");
    let importing = flag(
        "pandora_server_conf",
        "--pandora-server-conf",
        pandora.display().to_string(),
    );
    let err = error_text(Settings::load_with_env(None, &[importing], env(&[])));
    assert!(err.contains("pandora_server.conf holds a password"), "{err}");
    // Readable by all is fine when there is no secret in it.
    assert_eq!(Settings::load_with_env(Some(&plain), &[], env(&[])).unwrap().master, 2);
    // A device is refused at once instead of being read forever.
    let err = error_text(Settings::load_with_env(Some(Path::new("/dev/zero")), &[], env(&[])));
    assert!(err.contains("/dev/zero") && err.contains("not a regular file"), "{err}");
}

#[test]
fn line_lookup_understands_tables_and_dotted_keys() {
    let text = "master = 1\n[db]\nport = 1\n[other]\nport = 2\n";
    assert_eq!(locate::line_of(text, "master"), Some(1));
    assert_eq!(locate::line_of(text, "db.port"), Some(3));
    assert_eq!(locate::line_of("db.port = 4\n", "db.port"), Some(1));
    assert_eq!(locate::line_of(text, "nothing"), None);
}

#[test]
fn flags_reach_nested_db_keys() {
    let flags = [
        flag("roles", "roles", vec!["db"]),
        flag("db.url", "db-url", "mysql://a:b@127.0.0.1:1/"),
        flag("db.advertise", "db-advertise", "127.0.0.1:1"),
        flag("db.replication_user", "repl-user", "r"),
    ];
    let settings = Settings::load_with_env(None, &flags, env(&[])).unwrap();
    let db = settings.db_agent.expect("a db node");
    assert_eq!(db.advertise, "127.0.0.1:1");
}

#[test]
fn rewrite_targets_and_hooks_are_checked_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let template = write(&dir, "haproxy.tmpl", "server db {{db_primary_hots}}:3306\n");
    let file = write(
        &dir,
        "agent.toml",
        &format!(
            "node_name = \"n1\"\n[[rewrite]]\nkind = \"ha_hosts_file\"\npath = \"/tmp/x\"\nfollows = \"db_primary\"\n\
             [[rewrite]]\nkind = \"template\"\npath = \"/tmp/haproxy.cfg\"\nfollows = \"db_primary\"\ntemplate = \"{}\"\n",
            template.display()
        ),
    );
    let text = error_text(Settings::load_with_env(Some(&file), &[], env(&[])));
    assert!(
        text.contains("rewrite #1") && text.contains("db_primary_hots"),
        "{text}"
    );

    std::fs::write(&template, "server db {{db_primary_host}}:{{db_primary_port}}\n").unwrap();
    let settings = Settings::load_with_env(Some(&file), &[], env(&[])).unwrap();
    assert_eq!(settings.rewrite.len(), 2);
    assert_eq!(settings.rewrite_settle_ms, 1_000, "half the default threshold");

    let file = write(
        &dir,
        "bad-kind.toml",
        "node_name = \"n1\"\n[[rewrite]]\nkind = \"yaml\"\npath = \"/x\"\nfollows = \"db_primary\"\n",
    );
    let text = error_text(Settings::load_with_env(Some(&file), &[], env(&[])));
    assert!(text.contains("yaml"), "{text}");

    let file = write(&dir, "hooks.toml", "node_name = \"n1\"\n[hooks]\non_promote = []\n");
    let text = error_text(Settings::load_with_env(Some(&file), &[], env(&[])));
    assert!(
        text.contains("hooks.on_promote") && text.contains("argv list"),
        "{text}"
    );
}

#[test]
fn overrides_of_imported_tokens_name_the_winning_variable_or_flag_and_mask_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let pandora = write(
        &dir,
        "pandora_server.conf",
        "master 1\nserver_threshold 5\ndbpass hunter2\nha_hosts 127.0.0.1\n",
    );
    let flags = [
        flag(
            "pandora_server_conf",
            "pandora-server-conf",
            pandora.display().to_string(),
        ),
        flag("server_threshold", "server-threshold", 2.0),
    ];
    let variables = env(&[("GOSSIP_HA_MASTER", "3"), ("GOSSIP_HA_DB__PASSWORD", "other")]);
    let (settings, notes) = Settings::load_noted(None, &flags, variables).unwrap();
    assert_eq!(settings.master, 3);
    let pandora = pandora.display();
    assert_eq!(
        notes.overrides,
        [
            format!("db.password = ******** from environment variable GOSSIP_HA_DB__PASSWORD overrides `dbpass ********` from {pandora}:3"),
            format!("master = 3 from environment variable GOSSIP_HA_MASTER overrides `master 1` from {pandora}:1"),
            format!("server_threshold = 2 from flag --server-threshold overrides `server_threshold 5` from {pandora}:2"),
        ]
    );
    assert!(notes.warnings.is_empty(), "{:?}", notes.warnings);
}

#[test]
fn the_http_listener_is_off_by_default_and_http_tls_needs_the_cluster_certificate() {
    let settings = Settings::load_with_env(None, &[], env(&[])).unwrap();
    assert_eq!((settings.http_listen, settings.http_tls), (None, false));
    assert_eq!(settings.log_format, LogFormat::Text);
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        &dir,
        "agent.toml",
        "http_listen = \"127.0.0.1:8008\"\nlog_format = \"json\"\n",
    );
    let settings = Settings::load_with_env(Some(&file), &[], env(&[])).unwrap();
    assert_eq!(settings.http_listen, Some("127.0.0.1:8008".parse().unwrap()));
    assert_eq!(settings.log_format, LogFormat::Json);
    let refused = error_text(Settings::load_with_env(
        None,
        &[],
        env(&[
            ("GOSSIP_HA_HTTP_LISTEN", "127.0.0.1:8008"),
            ("GOSSIP_HA_HTTP_TLS", "true"),
        ]),
    ));
    assert!(refused.contains("http_tls") && refused.contains("[tls]"), "{refused}");
    let refused = error_text(Settings::load_with_env(
        None,
        &[],
        env(&[("GOSSIP_HA_HTTP_LISTEN", "8008")]),
    ));
    assert!(
        refused.contains("http_listen") && refused.contains("ip:port"),
        "{refused}"
    );
}
