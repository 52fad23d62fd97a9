//! End to end: after the primary's mysqld is killed, every agent's own pandora_ha_hosts.conf,
//! pandora_server.conf and config.php name the new primary, each reload ran once, the promote
//! hook ran on the new primary, and on_db_primary_change once per change on every host.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::db_cluster::{Cluster, THRESHOLD};
use common::mariadb::MariaDb;
use common::*;

/// One host's Pandora files, its reload log and hook log, and the agent config pointing at them.
fn host_files(dir: &Path, name: &str) -> PathBuf {
    let host = dir.join(format!("host-{name}"));
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(
        host.join("pandora_server.conf"),
        "# Pandora FMS Server\ndbhost 127.0.0.99\ndbport 3306\n",
    )
    .unwrap();
    std::fs::write(
        host.join("config.php"),
        "<?php\n/*\n$config[\"dbhost\"]=\"commented\";\n*/\n$config[\"dbhost\"]=\"127.0.0.99\"; // DB Host\n",
    )
    .unwrap();
    let reload = |what: &str| {
        format!(
            "[\"sh\", \"-c\", \"echo {what} $GOSSIP_HA_DB_PRIMARY_HOST >> {}\"]",
            host.join("reloads.log").display()
        )
    };
    let config = format!(
        "[[rewrite]]\nkind = \"ha_hosts_file\"\npath = \"{0}/pandora_ha_hosts.conf\"\nfollows = \"db_primary\"\nreload = {1}\n\n\
         [[rewrite]]\nkind = \"token\"\npath = \"{0}/pandora_server.conf\"\ntoken = \"dbhost\"\nfollows = \"db_primary\"\nreload = {2}\n\n\
         [[rewrite]]\nkind = \"php\"\npath = \"{0}/config.php\"\ntoken = \"dbhost\"\nfollows = \"db_primary\"\nreload = {3}\n\n\
         [hooks]\non_promote = [\"sh\", \"-c\", \"echo $GOSSIP_HA_EVENT $GOSSIP_HA_NODE >> {0}/hooks.log\"]\n\
         on_db_primary_change = [\"sh\", \"-c\", \"echo $GOSSIP_HA_PREVIOUS'>'$GOSSIP_HA_NODE >> {0}/primary.log\"]\n",
        host.display(),
        reload("server"),
        reload("server"),
        reload("console"),
    );
    let path = host.join("gossip-ha.toml");
    std::fs::write(&path, config).unwrap();
    host
}

fn names_primary(host: &Path, ip: &str) -> bool {
    let read = |file: &str| std::fs::read_to_string(host.join(file)).unwrap_or_default();
    read("pandora_ha_hosts.conf") == ip
        && read("pandora_server.conf") == format!("# Pandora FMS Server\ndbhost {ip}\ndbport 3306\n")
        && read("config.php")
            == format!("<?php\n/*\n$config[\"dbhost\"]=\"commented\";\n*/\n$config[\"dbhost\"]=\"{ip}\"; // DB Host\n")
}

fn reload_lines(host: &Path) -> Vec<String> {
    std::fs::read_to_string(host.join("reloads.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn every_host_rewrites_its_files_once_to_the_new_primary() {
    let dir = tempfile::tempdir().unwrap();
    let ips = ["127.0.0.11", "127.0.0.12", "127.0.0.13"];
    let dbs: Vec<MariaDb> = ips
        .iter()
        .enumerate()
        .map(|(index, ip)| MariaDb::install_on(dir.path(), &format!("db{}", index + 1), index as u32 + 1, true, ip))
        .collect();
    let mut specs: Vec<AgentSpec> = dbs
        .iter()
        .enumerate()
        .map(|(index, db)| AgentSpec::for_db(&db.name, THRESHOLD, db, 3 - index as u8, dir.path()))
        .collect();
    specs.push(AgentSpec::new("srv", 1, THRESHOLD));
    let mut hosts = Vec::new();
    for spec in specs.iter_mut() {
        let host = host_files(dir.path(), &spec.name);
        spec.extra
            .extend(["--config".into(), host.join("gossip-ha.toml").display().to_string()]);
        hosts.push((spec.name.clone(), host));
    }
    let first = specs[0].port;
    for spec in specs.iter_mut().skip(1) {
        spec.seeds = vec![first];
    }
    let agents = specs.iter().map(|spec| Agent::start(dir.path(), spec)).collect();
    let mut cluster = Cluster {
        agents,
        specs,
        dbs,
        dir,
        lab: None,
    };

    cluster.wait("every host's files to name db1", Duration::from_secs(20), |_| {
        hosts.iter().all(|(_, host)| names_primary(host, ips[0]))
    });
    // Once the first reconciliation settled: one reload per distinct command.
    std::thread::sleep(Duration::from_secs_f64(THRESHOLD));
    for (name, host) in &hosts {
        assert_eq!(reload_lines(host).len(), 2, "{name}: {:?}", reload_lines(host));
    }

    let killed_at = Instant::now();
    cluster.db_mut("db1").kill();
    let rewritten_after = cluster.wait("every host's files to name db2", Duration::from_secs(20), |_| {
        hosts.iter().all(|(_, host)| names_primary(host, ips[1]))
    });
    assert!(killed_at.elapsed() >= rewritten_after);
    // Let any late or duplicate rewrite show itself before counting reloads.
    std::thread::sleep(Duration::from_secs_f64(2.0 * THRESHOLD));
    for (name, host) in &hosts {
        let lines = reload_lines(host);
        let after_failover: Vec<&String> = lines.iter().skip(2).collect();
        assert_eq!(
            after_failover,
            [&format!("server {}", ips[1]), &format!("console {}", ips[1])],
            "{name}: each reload ran once for the failover"
        );
        assert!(names_primary(host, ips[1]), "{name}: files stay on the new primary");
    }
    // One change of primary per failover on every host, naming the old one: the gap between
    // (no primary for a moment) is no change a hook can act on.
    for (name, host) in &hosts {
        let changes = std::fs::read_to_string(host.join("primary.log")).unwrap_or_default();
        assert_eq!(changes, ">db1\ndb1>db2\n", "{name}: on_db_primary_change");
    }
    let hooks = std::fs::read_to_string(hosts[1].1.join("hooks.log")).unwrap_or_default();
    assert_eq!(hooks, "promote db2\n", "db2's on_promote ran once");
    let report = cluster.agent("srv").status();
    assert!(report
        .rewrites
        .iter()
        .all(|target| target.ok && target.value.as_deref() == Some(ips[1])));
    println!(
        "from the kill of db1's mysqld to the last file rewritten on {} hosts: {:.3} s (threshold {THRESHOLD} s)",
        hosts.len(),
        rewritten_after.as_secs_f64()
    );
}
