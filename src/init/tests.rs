use super::*;

/// In the shape of the `pandora_server.conf` Pandora ships: `ha_hosts` commented out, the
/// database on loopback with Pandora's default credentials.
const SHIPPED: &str = include_str!("../../tests/fixtures/pandora_server.conf");

fn args(roles: &[&str], address: Option<&str>) -> InitArgs {
    InitArgs {
        config: PathBuf::from("/etc/gossip-ha/gossip-ha.toml"),
        pandora_server_conf: Some(PathBuf::from("/etc/pandora/pandora_server.conf")),
        roles: roles.iter().map(|role| role.to_string()).collect(),
        name: None,
        address: address.map(|address| address.parse().unwrap()),
        port: DEFAULT_GOSSIP_PORT,
        seeds: None,
        tls_dir: PathBuf::from("/nonexistent/tls"),
        cluster_id: None,
        console_config: None,
        force: false,
    }
}

fn found(text: &str) -> Found {
    Found {
        pandora: Some((PathBuf::from("/etc/pandora/pandora_server.conf"), text.to_string())),
        hostname: "host-a".into(),
        console_config: None,
    }
}

fn written(plan: &Plan) -> toml::Table {
    toml::from_str(&plan.text).unwrap_or_else(|err| panic!("{err}:\n{}", plan.text))
}

#[test]
fn the_shipped_file_on_a_server_and_db_host() {
    let plan = plan(&args(&["server", "db"], Some("198.18.0.1")), &found(SHIPPED)).unwrap();
    let table = written(&plan);
    assert_eq!(
        table["node_name"].as_str(),
        Some("host-a"),
        "servername is commented out"
    );
    assert_eq!(table["listen"].as_str(), Some("198.18.0.1:7946"));
    assert_eq!(
        table["pandora_server_conf"].as_str(),
        Some("/etc/pandora/pandora_server.conf")
    );
    let db = table["db"].as_table().unwrap();
    // dbhost 127.0.0.1 stays the admin connection; peers get the host's address, dbport's default.
    assert_eq!(db["host"].as_str(), Some("127.0.0.1"));
    assert_eq!(db["advertise"].as_str(), Some("198.18.0.1:3306"));
    assert!(
        !plan.text.contains("dbpass") && !plan.text.contains("password"),
        "{}",
        plan.text
    );
    let rewrites = table["rewrite"].as_array().unwrap();
    assert_eq!(
        rewrites[0]["path"].as_str(),
        Some("/var/spool/pandora/data_in/conf/pandora_ha_hosts.conf"),
        "from incomingdir"
    );
    assert_eq!(rewrites[1]["token"].as_str(), Some("dbhost"));
    let guessed = plan.guessed.join("\n");
    for expected in [
        "master 1 imported",
        "server_threshold 5 imported",
        "node_name = \"host-a\"",
    ] {
        assert!(guessed.contains(expected), "expected `{expected}` in:\n{guessed}");
    }
    let check = plan.check.join("\n");
    for expected in [
        "no live `ha_hosts`",
        "seeds is empty",
        "missing /nonexistent/tls/ca.pem",
    ] {
        assert!(check.contains(expected), "expected `{expected}` in:\n{check}");
    }
}

#[test]
fn live_servername_and_ha_hosts_give_the_name_and_the_other_hosts_as_seeds() {
    let text = format!("{SHIPPED}\nservername pandora1\nha_hosts 198.18.0.1, 198.18.0.2,db3.example\n");
    let plan = plan(&args(&["db"], Some("198.18.0.1")), &found(&text)).unwrap();
    let table = written(&plan);
    assert_eq!(table["node_name"].as_str(), Some("pandora1"));
    let seeds: Vec<&str> = table["seeds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(seeds, ["198.18.0.2:7946"]);
    assert!(
        plan.check.iter().any(|line| line.contains("`db3.example`")),
        "{:?}",
        plan.check
    );
    assert!(
        !plan.text.contains("[[rewrite]]"),
        "a DB-only host rewrites no Pandora file"
    );
}

#[test]
fn a_console_host_rewrites_the_config_php_found() {
    let mut found = found(SHIPPED);
    found.console_config = Some(PathBuf::from("/var/www/html/pandora_console/include/config.php"));
    let plan = plan(&args(&["console"], Some("198.18.0.4")), &found).unwrap();
    let table = written(&plan);
    let rewrite = &table["rewrite"].as_array().unwrap()[0];
    assert_eq!(rewrite["kind"].as_str(), Some("php"));
    assert_eq!(
        rewrite["path"].as_str(),
        Some("/var/www/html/pandora_console/include/config.php")
    );
    assert!(table.get("db").is_none());
}

#[test]
fn without_an_address_the_agent_stays_on_loopback_and_says_so() {
    let plan = plan(&args(&["server"], None), &found(SHIPPED)).unwrap();
    let table = written(&plan);
    assert!(table.get("listen").is_none());
    assert!(
        plan.check.iter().any(|line| line.contains("no --address")),
        "{:?}",
        plan.check
    );
}

#[test]
fn an_unknown_role_is_refused() {
    let err = plan(&args(&["db", "witness"], None), &found(SHIPPED)).unwrap_err();
    assert!(err.to_string().contains("`witness` is not a role"), "{err}");
}

#[test]
fn tokens_are_read_as_the_pandora_server_reads_them() {
    let text = "#master 7\nMASTER 2\nmaster 3 \n   master 9\n";
    assert_eq!(pandora_token(text, "master").as_deref(), Some("3"));
    assert_eq!(pandora_token(SHIPPED, "ha_hosts"), None);
}
