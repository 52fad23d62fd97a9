//! DB failover against real MariaDB servers and real agent processes on loopback (issue #3):
//! the agents keep exactly one writable primary, promote a replica when the primary dies, and
//! bring the old primary back as a replica.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::mariadb::{scalar, sql, MariaDb};
use common::*;
use gossip_ha_proto::api::{EventKind, StatusReport};
use gossip_ha_proto::db::{DbAnnouncement, DbRole};

const THRESHOLD: f64 = 1.0;

/// DB hosts `db1`, `db2`, … (priority 3, 2, 1: `db1` is the first of ha_hosts) and, if asked,
/// a `server` agent as witness. Agents are dropped (killed) before the servers.
struct Cluster {
    agents: Vec<Agent>,
    specs: Vec<AgentSpec>,
    dbs: Vec<MariaDb>,
    dir: tempfile::TempDir,
}

impl Cluster {
    fn start(db_count: usize, witness: bool) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let dbs: Vec<MariaDb> = (0..db_count)
            .map(|index| MariaDb::install(dir.path(), &format!("db{}", index + 1), index as u32 + 1))
            .collect();
        let mut specs: Vec<AgentSpec> = dbs
            .iter()
            .enumerate()
            .map(|(index, db)| AgentSpec::for_db(&db.name, THRESHOLD, db, (db_count - index) as u8, dir.path()))
            .collect();
        if witness {
            specs.push(AgentSpec::new("srv", 1, THRESHOLD));
        }
        let first_port = specs[0].port;
        for spec in specs.iter_mut().skip(1) {
            spec.seeds = vec![first_port];
        }
        let agents = specs.iter().map(|spec| Agent::start(dir.path(), spec)).collect();
        Cluster {
            agents,
            specs,
            dbs,
            dir,
        }
    }

    fn agent(&self, name: &str) -> &Agent {
        self.agents.iter().find(|agent| agent.name == name).unwrap()
    }

    fn agent_mut(&mut self, name: &str) -> &mut Agent {
        self.agents.iter_mut().find(|agent| agent.name == name).unwrap()
    }

    fn db(&self, name: &str) -> &MariaDb {
        self.dbs.iter().find(|db| db.name == name).unwrap()
    }

    fn db_mut(&mut self, name: &str) -> &mut MariaDb {
        self.dbs.iter_mut().find(|db| db.name == name).unwrap()
    }

    fn restart_agent(&mut self, name: &str) {
        let spec = self.specs.iter().find(|spec| spec.name == name).unwrap();
        let agent = Agent::start(self.dir.path(), spec);
        let slot = self.agents.iter_mut().find(|agent| agent.name == name).unwrap();
        *slot = agent;
    }

    /// Everything the agents logged, for a failing assertion's message.
    fn logs(&self) -> String {
        self.agents
            .iter()
            .map(|agent| format!("==== {}\n{}", agent.name, tail(&agent.log_text(), 60)))
            .collect()
    }

    fn wait(&self, what: &str, timeout: Duration, mut condition: impl FnMut(&Cluster) -> bool) -> Duration {
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
    fn all_see_primary(&self, observers: &[&str], primary: &str) -> bool {
        observers.iter().all(|name| {
            self.agent(name)
                .try_status()
                .is_some_and(|report| report.db_primary.as_deref() == Some(primary))
        })
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn db_of(report: &StatusReport, name: &str) -> Option<DbAnnouncement> {
    report.nodes.iter().find(|node| node.name == name)?.db.clone()
}

fn replicating_from(report: &StatusReport, name: &str, source: &MariaDb) -> bool {
    db_of(report, name).is_some_and(|db| {
        db.role == DbRole::Replica
            && db.io_running == Some(true)
            && db.sql_running == Some(true)
            && db.source.as_deref() == Some(source.advertise().as_str())
    })
}

fn create_schema(primary: &MariaDb) {
    sql(
        &primary.app_url(),
        &[
            "CREATE DATABASE IF NOT EXISTS pandora",
            "CREATE TABLE IF NOT EXISTS pandora.tagente_datos (id INT PRIMARY KEY, datos DOUBLE, utimestamp BIGINT)",
        ],
    )
    .unwrap_or_else(|err| panic!("creating the schema on {}: {err}", primary.name));
}

fn insert(db: &MariaDb, id: u32) -> Result<(), String> {
    sql(
        &db.app_url(),
        &[&format!(
            "INSERT INTO pandora.tagente_datos VALUES ({id}, {id}.5, UNIX_TIMESTAMP())"
        )],
    )
    .map(|_| ())
}

fn row_count(db: &MariaDb) -> u64 {
    scalar(&db.admin_url(), "SELECT COUNT(*) FROM pandora.tagente_datos")
        .and_then(|count| count.parse().ok())
        .unwrap_or(0)
}

fn has_event(agent: &Agent, kind: EventKind, fragment: &str) -> bool {
    agent
        .events()
        .iter()
        .any(|event| event.kind == kind && event.reason.contains(fragment))
}

/// Fresh cluster up to "db1 primary, the others replicating from it, schema in place".
fn formed(db_count: usize, witness: bool) -> Cluster {
    let cluster = Cluster::start(db_count, witness);
    let names: Vec<String> = cluster.agents.iter().map(|agent| agent.name.clone()).collect();
    let observers: Vec<&str> = names.iter().map(String::as_str).collect();
    cluster.wait("db1 elected primary everywhere", Duration::from_secs(20), |c| {
        c.all_see_primary(&observers, "db1")
    });
    let db1 = cluster.db("db1");
    cluster.wait("the others to replicate from db1", Duration::from_secs(20), |c| {
        let report = c.agent("db1").status();
        c.dbs.iter().skip(1).all(|db| replicating_from(&report, &db.name, db1))
    });
    create_schema(db1);
    cluster
}

#[test]
fn fresh_cluster_elects_the_first_host_and_replicates() {
    let cluster = formed(3, false);
    let db1 = cluster.db("db1");
    assert_eq!(scalar(&db1.admin_url(), "SELECT @@read_only").as_deref(), Some("0"));
    for replica in ["db2", "db3"] {
        let db = cluster.db(replica);
        assert_eq!(scalar(&db.admin_url(), "SELECT @@read_only").as_deref(), Some("1"));
        assert!(
            insert(db, 99).unwrap_err().contains("read-only"),
            "{replica} refuses writes"
        );
    }
    insert(db1, 1).unwrap();
    cluster.wait("the row on every replica", Duration::from_secs(10), |c| {
        c.dbs.iter().all(|db| row_count(db) == 1)
    });
    let report = cluster.agent("db2").status();
    let primary = db_of(&report, "db1").unwrap();
    assert_eq!(
        (primary.role, primary.epoch, primary.read_only),
        (DbRole::Primary, 1, Some(false))
    );
    assert!(has_event(cluster.agent("db1"), EventKind::DbAction, "fresh cluster"));
    let table = cli(&["status", "--socket", cluster.agent("db2").socket.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("Database primary: db1") && text.contains("IO Yes / SQL Yes"),
        "{text}"
    );
}
