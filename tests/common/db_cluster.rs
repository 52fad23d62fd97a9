//! A cluster of real MariaDB servers with their agents, for the DB tests and the failover
//! benchmark: DB hosts `db1`, `db2`, … (priority 3, 2, 1: `db1` is the first of ha_hosts) and,
//! if asked, a `server` agent as witness.

use std::time::{Duration, Instant};

use gossip_ha::core::db::announced_history;
use gossip_ha::core::gtid::Relation;
use gossip_ha_proto::api::{EventKind, StatusReport};
use gossip_ha_proto::db::{DbAnnouncement, DbRole};

use super::mariadb::{scalar, sql, MariaDb};
use super::netns::Lab;
use super::{Agent, AgentSpec};

pub const THRESHOLD: f64 = 1.0;

/// Agents are dropped (killed) before the servers.
pub struct Cluster {
    pub agents: Vec<Agent>,
    pub specs: Vec<AgentSpec>,
    pub dbs: Vec<MariaDb>,
    pub dir: tempfile::TempDir,
    /// The hosts' namespaces, removed after everything that ran in them.
    pub lab: Option<Lab>,
}

/// One agent per server (priority 3, 2, 1 in order: the first is preferred), each reading
/// `db_toml(its server)` as its configuration file.
fn db_specs(dbs: &[MariaDb], dir: &std::path::Path, db_toml: impl Fn(&MariaDb) -> String) -> Vec<AgentSpec> {
    dbs.iter()
        .enumerate()
        .map(|(index, db)| {
            let config = dir.join(format!("{}.toml", db.name));
            std::fs::write(&config, db_toml(db)).unwrap();
            let priority = (dbs.len() - index) as u8;
            let mut spec = AgentSpec::for_db(&db.name, THRESHOLD, db, priority, dir);
            spec.extra.extend(["--config".into(), config.display().to_string()]);
            spec
        })
        .collect()
}

/// Starts the agents of `specs` (every one but the first seeding from the first), with
/// certificates of `ca` when given.
fn launch(
    dir: tempfile::TempDir,
    dbs: Vec<MariaDb>,
    mut specs: Vec<AgentSpec>,
    ca: Option<&std::path::Path>,
    lab: Option<Lab>,
) -> Cluster {
    seed_from_first(&mut specs);
    if let Some(ca) = ca {
        specs = specs.into_iter().map(|spec| spec.with_tls(dir.path(), ca)).collect();
    }
    let agents = specs.iter().map(|spec| Agent::start(dir.path(), spec)).collect();
    Cluster {
        agents,
        specs,
        dbs,
        dir,
        lab,
    }
}

/// Every agent but the first seeds from the first.
fn seed_from_first(specs: &mut [AgentSpec]) {
    let first = format!("{}:{}", specs[0].ip, specs[0].port);
    for spec in specs.iter_mut().skip(1) {
        spec.seed_addrs = vec![first.clone()];
    }
}

impl Cluster {
    pub fn start(db_count: usize, witness: bool) -> Cluster {
        Self::start_with(db_count, witness, "")
    }

    /// As `start`, the DB agents also reading `db_toml` as their configuration file.
    pub fn start_with(db_count: usize, witness: bool, db_toml: &str) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let dbs: Vec<MariaDb> = (0..db_count)
            .map(|index| MariaDb::install(dir.path(), &format!("db{}", index + 1), index as u32 + 1))
            .collect();
        Self::start_on(dir, dbs, witness, |_| db_toml.to_string())
    }

    /// Agents for servers a test prepared itself in `dir` (their histories, their data), in
    /// order of preference, as in `start`.
    pub fn start_on(
        dir: tempfile::TempDir,
        dbs: Vec<MariaDb>,
        witness: bool,
        db_toml: impl Fn(&MariaDb) -> String,
    ) -> Cluster {
        Self::start_on_loopback(dir, dbs, witness, db_toml, None)
    }

    fn start_on_loopback(
        dir: tempfile::TempDir,
        dbs: Vec<MariaDb>,
        witness: bool,
        db_toml: impl Fn(&MariaDb) -> String,
        ca: Option<&std::path::Path>,
    ) -> Cluster {
        let mut specs = db_specs(&dbs, dir.path(), db_toml);
        if witness {
            specs.push(AgentSpec::new("srv", 1, THRESHOLD));
        }
        launch(dir, dbs, specs, ca, None)
    }

    /// As `start_with`, every agent gossiping over mutual TLS on loopback with a certificate of
    /// the CA in `dir/ca` granting its roles and admin (a test issues more from that CA).
    pub fn start_tls(db_count: usize, witness: bool, db_toml: impl Fn(&MariaDb) -> String) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca");
        gossip_ha::tls::certs::init_ca(&ca, "gossip-ha-test", false).unwrap();
        let dbs: Vec<MariaDb> = (0..db_count)
            .map(|index| MariaDb::install(dir.path(), &format!("db{}", index + 1), index as u32 + 1))
            .collect();
        Self::start_on_loopback(dir, dbs, witness, db_toml, Some(&ca))
    }

    /// As `start`, but each host in its own network namespace (DB hosts `db1`…, then `srv`),
    /// gossiping over mutual TLS (plain gossip is refused off loopback).
    pub fn start_in_lab(db_count: usize, witness: bool) -> Cluster {
        Self::start_in_lab_with(db_count, witness, |_| String::new())
    }

    /// As `start_in_lab`, each DB agent also reading `db_toml(its server)` as its configuration.
    pub fn start_in_lab_with(db_count: usize, witness: bool, db_toml: impl Fn(&MariaDb) -> String) -> Cluster {
        Self::start_in_lab_prepared(db_count, witness, db_toml, |_| {})
    }

    /// As `start_in_lab_with`, `prepare` running on each server before the agents start (its
    /// data, its history).
    pub fn start_in_lab_prepared(
        db_count: usize,
        witness: bool,
        db_toml: impl Fn(&MariaDb) -> String,
        prepare: impl Fn(&MariaDb),
    ) -> Cluster {
        let mut hosts: Vec<String> = (1..=db_count).map(|index| format!("db{index}")).collect();
        if witness {
            hosts.push("srv".into());
        }
        let lab = Lab::new(&hosts.iter().map(String::as_str).collect::<Vec<_>>());
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca");
        gossip_ha::tls::certs::init_ca(&ca, "gossip-ha-test", false).unwrap();
        let dbs: Vec<MariaDb> = (0..db_count)
            .map(|index| {
                let name = &hosts[index];
                MariaDb::install_in(
                    dir.path(),
                    name,
                    index as u32 + 1,
                    true,
                    &lab.ip(name),
                    Some(&lab.ns(name)),
                )
            })
            .collect();
        dbs.iter().for_each(prepare);
        let mut specs = db_specs(&dbs, dir.path(), db_toml);
        if witness {
            specs.push(AgentSpec {
                ip: lab.ip("srv"),
                netns: Some(lab.ns("srv")),
                ..AgentSpec::new("srv", 1, THRESHOLD)
            });
        }
        launch(dir, dbs, specs, Some(&ca), Some(lab))
    }

    pub fn lab(&self) -> &Lab {
        self.lab.as_ref().expect("a cluster started in a lab")
    }

    pub fn agent(&self, name: &str) -> &Agent {
        self.agents.iter().find(|agent| agent.name == name).unwrap()
    }

    pub fn agent_mut(&mut self, name: &str) -> &mut Agent {
        self.agents.iter_mut().find(|agent| agent.name == name).unwrap()
    }

    pub fn db(&self, name: &str) -> &MariaDb {
        self.dbs.iter().find(|db| db.name == name).unwrap()
    }

    pub fn db_mut(&mut self, name: &str) -> &mut MariaDb {
        self.dbs.iter_mut().find(|db| db.name == name).unwrap()
    }

    pub fn restart_agent(&mut self, name: &str) {
        let spec = self.specs.iter().find(|spec| spec.name == name).unwrap();
        let agent = Agent::start(self.dir.path(), spec);
        let slot = self.agents.iter_mut().find(|agent| agent.name == name).unwrap();
        *slot = agent;
    }

    /// Everything the agents logged, for a failing assertion's message.
    pub fn logs(&self) -> String {
        self.agents
            .iter()
            .map(|agent| format!("==== {}\n{}", agent.name, tail(&agent.log_text(), 60)))
            .collect()
    }

    pub fn wait(&self, what: &str, timeout: Duration, mut condition: impl FnMut(&Cluster) -> bool) -> Duration {
        let started = Instant::now();
        loop {
            if condition(self) {
                return started.elapsed();
            }
            if started.elapsed() > timeout {
                panic!("timed out after {timeout:?} waiting for {what}\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every running agent named in `observers` reports `primary` as DB primary.
    pub fn all_see_primary(&self, observers: &[&str], primary: &str) -> bool {
        observers.iter().all(|name| {
            self.agent(name)
                .try_status()
                .is_some_and(|report| report.db_primary.as_deref() == Some(primary))
        })
    }
}

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

pub fn db_of(report: &StatusReport, name: &str) -> Option<DbAnnouncement> {
    report.nodes.iter().find(|node| node.name == name)?.db.clone()
}

pub fn replicating_from(report: &StatusReport, name: &str, source: &MariaDb) -> bool {
    db_of(report, name).is_some_and(|db| {
        db.role == DbRole::Replica
            && db.io_running == Some(true)
            && db.sql_running == Some(true)
            && db.source.as_deref() == Some(source.advertise().as_str())
    })
}

pub fn create_schema(primary: &MariaDb) {
    sql(
        &primary.app_url(),
        &[
            "CREATE DATABASE IF NOT EXISTS pandora",
            "CREATE TABLE IF NOT EXISTS pandora.tagente_datos (id INT PRIMARY KEY, datos DOUBLE, utimestamp BIGINT)",
        ],
    )
    .unwrap_or_else(|err| panic!("creating the schema on {}: {err}", primary.name));
}

pub fn insert(db: &MariaDb, id: u32) -> Result<(), String> {
    sql(
        &db.app_url(),
        &[&format!(
            "INSERT INTO pandora.tagente_datos VALUES ({id}, {id}.5, UNIX_TIMESTAMP())"
        )],
    )
    .map(|_| ())
}

pub fn row_count(db: &MariaDb) -> u64 {
    scalar(&db.admin_url(), "SELECT COUNT(*) FROM pandora.tagente_datos")
        .and_then(|count| count.parse().ok())
        .unwrap_or(0)
}

pub fn has_event(agent: &Agent, kind: EventKind, fragment: &str) -> bool {
    agent
        .events()
        .iter()
        .any(|event| event.kind == kind && event.reason.contains(fragment))
}

/// Fresh cluster up to "db1 primary, the others replicating from it, schema in place".
pub fn formed(db_count: usize, witness: bool) -> Cluster {
    formed_with(db_count, witness, "")
}

/// As `formed`, the DB agents also reading `db_toml`.
pub fn formed_with(db_count: usize, witness: bool, db_toml: &str) -> Cluster {
    let cluster = wait_formed(Cluster::start_with(db_count, witness, db_toml));
    create_schema(cluster.db("db1"));
    cluster
}

/// Waits for "db1 primary, the others replicating from it".
pub fn wait_formed(cluster: Cluster) -> Cluster {
    let names: Vec<String> = cluster.agents.iter().map(|agent| agent.name.clone()).collect();
    let observers: Vec<&str> = names.iter().map(String::as_str).collect();
    cluster.wait("db1 elected primary everywhere", Duration::from_secs(20), |c| {
        c.all_see_primary(&observers, "db1")
    });
    let db1 = cluster.db("db1");
    // A replica's IO thread may connect for a moment before db1 refuses its own setup
    // transactions (it is then cloned): formed means replicating with a history inside db1's.
    cluster.wait("the others to replicate from db1", Duration::from_secs(30), |c| {
        let report = c.agent("db1").status();
        let primary = db_of(&report, "db1").and_then(|db| announced_history(&db));
        c.dbs.iter().skip(1).all(|db| {
            let replica = db_of(&report, &db.name);
            let inside = match (replica.as_ref().and_then(announced_history), &primary) {
                (Some(mine), Some(theirs)) => matches!(mine.relation(theirs), Relation::Behind | Relation::Equal),
                _ => false,
            };
            inside && replicating_from(&report, &db.name, db1) && replica.is_some_and(|db| db.repair.is_none())
        })
    });
    cluster
}

/// Writes rows 1..=count on `primary` and waits until every listed replica has them all.
pub fn write_and_replicate(cluster: &Cluster, primary: &str, ids: std::ops::RangeInclusive<u32>, replicas: &[&str]) {
    let db = cluster.db(primary);
    for id in ids.clone() {
        insert(db, id).unwrap_or_else(|err| panic!("write {id} on {primary}: {err}"));
    }
    let expected = row_count(db);
    cluster.wait("the rows on the replicas", Duration::from_secs(10), |c| {
        replicas.iter().all(|name| row_count(c.db(name)) == expected)
    });
}

/// One row as a Pandora server writes it into the real `tagente_datos` (no primary key).
pub fn insert_pandora_row(db: &MariaDb) {
    sql(
        &db.app_url(),
        &["INSERT INTO pandora.tagente_datos (id_agente_modulo, datos, utimestamp) VALUES (7, 1.5, UNIX_TIMESTAMP())"],
    )
    .unwrap_or_else(|err| panic!("a row on {}: {err}", db.name));
}

/// With `SHOW_WALKTHROUGH=1`, prints what an operator sees on a host (README).
pub fn show_walkthrough(cluster: &Cluster, name: &str, commands: &[&str]) {
    if std::env::var_os("SHOW_WALKTHROUGH").is_none() {
        return;
    }
    let socket = cluster.agent(name).socket.display().to_string();
    for command in commands {
        let output = super::cli(&[command, "--socket", &socket]);
        println!("$ gossip-ha {command}\n{}", String::from_utf8_lossy(&output.stdout));
    }
}

/// Each DB agent can stop and start its own server and serves backups on port 7947.
pub fn physical_config(db: &MariaDb) -> String {
    let argv = |argv: Vec<String>| {
        let quoted: Vec<String> = argv.iter().map(|arg| format!("{arg:?}")).collect();
        format!("[{}]", quoted.join(", "))
    };
    format!(
        "[db]\ndatadir = {:?}\nstop_command = {}\nstart_command = {}\ntransfer_port = 7947\n",
        db.datadir().display().to_string(),
        argv(db.stop_command()),
        argv(db.start_command())
    )
}
