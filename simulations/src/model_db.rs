//! A model of a MariaDB server with GTID replication, behind the same `DbBackend` trait as the
//! real one: a binary log of `0-server-seq` GTIDs, read-only at boot, replication that copies
//! what the source has after the replica's last GTID — and refuses (error 1236) when that GTID
//! is not in the source's log, as MariaDB does for a replica with transactions the source lacks,
//! or when the source has purged the logs the replica needs. A server may start with setup
//! transactions of its own (users and grants created with the binary log on): they hold no
//! user database.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use gossip_ha::core::db::{BinlogFormat, BinlogRowImage, DbProbe, ReplicaProbe, ER_SOURCE_FATAL_READING_BINLOG};
use gossip_ha::db::{DbBackend, DbError, ReplicationSource};
use gossip_ha_proto::db::DatabaseContent;

use crate::network::SimNetwork;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Gtid {
    pub server: u32,
    pub seq: u64,
}

impl std::fmt::Display for Gtid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "0-{}-{}", self.server, self.seq)
    }
}

#[derive(Debug, Clone)]
pub struct ModelServer {
    pub server_id: u32,
    pub advertise: String,
    pub alive: bool,
    pub read_only: bool,
    pub binlog: Vec<Gtid>,
    /// The host it replicates from, and whether its threads run.
    pub source: Option<String>,
    pub replicating: bool,
    pub io_error: Option<(u32, String)>,
    /// Transactions that only created users and grants: no user database.
    pub setup: BTreeSet<Gtid>,
    /// The first `purged` entries of `binlog` are executed but no longer in its log files.
    pub purged: usize,
}

impl ModelServer {
    fn last(&self) -> Option<Gtid> {
        self.binlog.last().copied()
    }

    /// The newest GTID of each server id in its log, as `gtid_binlog_state` shows it.
    fn waypoints(&self) -> String {
        let mut newest: BTreeMap<u32, u64> = BTreeMap::new();
        for gtid in &self.binlog {
            let seq = newest.entry(gtid.server).or_insert(gtid.seq);
            *seq = (*seq).max(gtid.seq);
        }
        newest
            .iter()
            .map(|(server, seq)| format!("0-{server}-{seq}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The model holds one user database, the Pandora one, once anything but setup was written.
    fn databases(&self) -> Vec<DatabaseContent> {
        if self.binlog.iter().all(|gtid| self.setup.contains(gtid)) {
            return Vec::new();
        }
        vec![DatabaseContent {
            name: "pandora".into(),
            tables: 3,
            approx_rows: self.binlog.len() as u64,
        }]
    }
}

#[derive(Clone)]
pub struct ModelCluster {
    servers: Arc<Mutex<BTreeMap<String, ModelServer>>>,
    network: SimNetwork,
    /// Transactions a merge saved for the operator (the agent's binlog export), and whose rows
    /// it copied into the winner as new transactions.
    saved: Arc<Mutex<BTreeSet<Gtid>>>,
}

impl ModelCluster {
    pub fn new(network: SimNetwork) -> Self {
        ModelCluster {
            servers: Arc::new(Mutex::new(BTreeMap::new())),
            network,
            saved: Arc::new(Mutex::new(BTreeSet::new())),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<String, ModelServer>) -> T) -> T {
        f(&mut self.servers.lock().expect("model servers"))
    }

    /// A new server whose users and grants were created with the binary log on: `setup`
    /// transactions of its own, `0-<server_id>-1…`, then `data` transactions of user data of its
    /// own (a server that ran something before it joined). Returns the data transactions.
    pub fn add(&self, host: &str, server_id: u32, setup: u64, data: u64) -> Vec<Gtid> {
        let own = |seq| Gtid { server: server_id, seq };
        let setup_gtids: BTreeSet<Gtid> = (1..=setup).map(own).collect();
        let binlog: Vec<Gtid> = (1..=setup + data).map(own).collect();
        let data_gtids = binlog[setup as usize..].to_vec();
        self.with(|servers| {
            servers.insert(
                host.to_string(),
                ModelServer {
                    server_id,
                    advertise: format!("{host}:3306"),
                    alive: true,
                    read_only: true,
                    setup: setup_gtids,
                    binlog,
                    source: None,
                    replicating: false,
                    io_error: None,
                    purged: 0,
                },
            )
        });
        data_gtids
    }

    /// `PURGE BINARY LOGS` up to now: what this server executed stays, its log files do not.
    pub fn purge(&self, host: &str) {
        self.with(|servers| servers.get_mut(host).map(|server| server.purged = server.binlog.len()));
    }

    /// The DB hosts (other than `host` itself) that `host`'s reachability check reaches: the
    /// network passes both ways (a TCP handshake needs both). Whether their mysqld runs does not
    /// matter: the check dials the agent port on the database's address, never mysqld.
    pub fn reachable_from(&self, host: &str) -> Vec<String> {
        let network = self.network.clone();
        self.with(|servers| {
            servers
                .keys()
                .filter(|name| name.as_str() != host && network.connected(host, name) && network.connected(name, host))
                .cloned()
                .collect()
        })
    }

    pub fn saved(&self) -> BTreeSet<Gtid> {
        self.saved.lock().expect("model saved set").clone()
    }

    pub fn snapshot(&self) -> BTreeMap<String, ModelServer> {
        self.with(|servers| servers.clone())
    }

    pub fn kill(&self, host: &str) {
        self.with(|servers| servers.get_mut(host).map(|server| server.alive = false));
    }

    /// mysqld starts again: data kept, read-only at boot, replication resumes if configured.
    pub fn start(&self, host: &str) {
        self.with(|servers| {
            if let Some(server) = servers.get_mut(host).filter(|server| !server.alive) {
                server.alive = true;
                server.read_only = true;
            }
        });
    }

    /// A client on `client_host` writes to `host`: acknowledged only if the server is reachable,
    /// alive and writable.
    pub fn write(&self, client_host: &str, host: &str) -> Option<Gtid> {
        if !self.network.connected(client_host, host) {
            return None;
        }
        self.with(|servers| {
            let server = servers
                .get_mut(host)
                .filter(|server| server.alive && !server.read_only)?;
            let seq = server.binlog.iter().map(|gtid| gtid.seq).max().unwrap_or(0) + 1;
            let gtid = Gtid {
                server: server.server_id,
                seq,
            };
            server.binlog.push(gtid);
            Some(gtid)
        })
    }

    /// One round of replication for every running replica whose source it can reach.
    pub fn replicate(&self) {
        let network = self.network.clone();
        self.with(|servers| {
            let logs: BTreeMap<String, (bool, Vec<Gtid>, usize)> = servers
                .iter()
                .map(|(host, server)| (host.clone(), (server.alive, server.binlog.clone(), server.purged)))
                .collect();
            for (host, server) in servers.iter_mut() {
                let Some(source) = server.source.clone().filter(|_| server.alive && server.replicating) else {
                    continue;
                };
                let Some((true, source_log, purged)) = logs.get(&source).filter(|_| network.connected(host, &source))
                else {
                    continue;
                };
                let start = match server.last() {
                    None => 0,
                    Some(last) => match source_log.iter().position(|gtid| *gtid == last) {
                        Some(index) => index + 1,
                        None => {
                            server.io_error = Some((
                                ER_SOURCE_FATAL_READING_BINLOG,
                                format!("connecting slave requested to start from GTID {last}, which is not in the master's binlog"),
                            ));
                            server.replicating = false;
                            continue;
                        }
                    },
                };
                if start < *purged && start < source_log.len() {
                    server.io_error = Some((
                        ER_SOURCE_FATAL_READING_BINLOG,
                        "Could not find GTID state requested by slave in any binlog files. Probably the slave state is too old and required binlog files have been purged.".into(),
                    ));
                    server.replicating = false;
                    continue;
                }
                server.binlog.extend_from_slice(&source_log[start..]);
            }
        });
    }
}

/// One host's view of its own model server: what the agent's `DbBackend` talks to.
pub struct ModelDb {
    pub cluster: ModelCluster,
    pub host: String,
}

impl ModelDb {
    fn down(&self) -> DbError {
        DbError::Connect {
            target: format!("{}:3306", self.host),
            message: "Connection refused (model server is down)".into(),
        }
    }

    fn change(&self, f: impl FnOnce(&mut ModelServer)) -> Result<(), DbError> {
        let changed = self.cluster.with(|servers| {
            let server = servers.get_mut(&self.host).filter(|server| server.alive)?;
            f(server);
            Some(())
        });
        changed.ok_or_else(|| self.down())
    }
}

impl ModelDb {
    fn reach(&self, host: &str) -> Result<(), DbError> {
        let alive = self
            .cluster
            .with(|servers| servers.get(host).is_some_and(|server| server.alive));
        if alive && self.cluster.network.connected(&self.host, host) {
            return Ok(());
        }
        Err(DbError::Connect {
            target: format!("{host}:3306"),
            message: "unreachable (partition or down)".into(),
        })
    }

    /// The agent's merge: this server's transactions the winner lacks are saved, and each is
    /// written again on the winner as a new transaction (the merged rows).
    pub fn merge_into(&mut self, winner: &str) -> Result<(), DbError> {
        self.reach(winner)?;
        let saved = self.cluster.with(|servers| {
            let me = servers.get(&self.host).filter(|server| server.alive)?;
            let (mine, setup) = (me.binlog.clone(), me.setup.clone());
            let target = servers.get_mut(winner)?;
            let present: BTreeSet<Gtid> = target.binlog.iter().copied().collect();
            let missing: Vec<Gtid> = mine.into_iter().filter(|gtid| !present.contains(gtid)).collect();
            // Setup transactions (users, grants) are saved, but have no rows to merge.
            let with_rows = missing.iter().filter(|gtid| !setup.contains(gtid)).count();
            for _ in 0..with_rows {
                let seq = target.binlog.iter().map(|gtid| gtid.seq).max().unwrap_or(0) + 1;
                let server = target.server_id;
                target.binlog.push(Gtid { server, seq });
            }
            Some(missing)
        });
        let saved = saved.ok_or_else(|| self.down())?;
        self.cluster.saved.lock().expect("model saved set").extend(saved);
        Ok(())
    }

    /// The agent's save before a rebuild: every transaction this server holds (its binary log
    /// and a dump of its databases) is kept for the operator.
    pub fn save_everything(&mut self) -> Result<(), DbError> {
        let held = self.cluster.with(|servers| {
            servers
                .get(&self.host)
                .filter(|server| server.alive)
                .map(|server| server.binlog.clone())
        });
        let held = held.ok_or_else(|| self.down())?;
        self.cluster.saved.lock().expect("model saved set").extend(held);
        Ok(())
    }

    /// The agent's resync: this server becomes a copy of the winner, read-only, not replicating.
    pub fn resync_from(&mut self, winner: &str) -> Result<(), DbError> {
        self.reach(winner)?;
        let copy = self.cluster.with(|servers| {
            servers
                .get(winner)
                .map(|server| (server.binlog.clone(), server.setup.clone()))
        });
        let (copy, setup) = copy.ok_or_else(|| self.down())?;
        self.change(|server| {
            // A rebuilt server starts a fresh binary log: it holds none of the copied history's.
            server.purged = copy.len();
            server.setup = setup;
            server.binlog = copy;
            server.read_only = true;
            server.source = None;
            server.replicating = false;
            server.io_error = None;
        })
    }
}

impl DbBackend for ModelDb {
    async fn probe(&mut self) -> Result<DbProbe, DbError> {
        let server = self
            .cluster
            .with(|servers| servers.get(&self.host).cloned())
            .filter(|server| server.alive)
            .ok_or_else(|| self.down())?;
        let sources = self.cluster.snapshot();
        let replica = server.source.as_ref().map(|source| {
            let reachable = self.cluster.network.connected(&self.host, source)
                && sources.get(source).is_some_and(|source| source.alive);
            let io_state = match (&server.io_error, server.replicating, reachable) {
                (Some(_), _, _) | (None, false, _) => "No",
                (None, true, true) => "Yes",
                (None, true, false) => "Connecting",
            };
            ReplicaProbe {
                source: sources.get(source).map(|s| s.advertise.clone()).unwrap_or_default(),
                io_state: io_state.into(),
                sql_running: server.replicating,
                lag_seconds: Some(0),
                relay_applied: true,
                io_errno: server.io_error.as_ref().map_or(0, |(errno, _)| *errno),
                sql_errno: 0,
                last_error: server.io_error.as_ref().map(|(_, message)| message.clone()),
            }
        });
        Ok(DbProbe {
            read_only: server.read_only,
            binlog_enabled: true,
            // As the example server configuration ships: merges read exact row images.
            binlog_format: BinlogFormat::Row,
            binlog_row_image: BinlogRowImage::Full,
            version: "10.11-model-MariaDB".into(),
            gtid: server.last().map(|gtid| gtid.to_string()).unwrap_or_default(),
            gtid_history: server.waypoints(),
            databases: server.databases(),
            replica,
        })
    }

    async fn set_read_only(&mut self) -> Result<(), DbError> {
        self.change(|server| server.read_only = true)
    }

    async fn promote(&mut self) -> Result<(), DbError> {
        self.change(|server| {
            server.source = None;
            server.replicating = false;
            server.io_error = None;
            server.read_only = false;
        })
    }

    async fn replicate_from(&mut self, source: &ReplicationSource) -> Result<(), DbError> {
        let source_host = source.host.clone();
        self.change(|server| {
            server.read_only = true;
            server.source = Some(source_host);
            server.replicating = true;
            server.io_error = None;
        })
    }

    async fn stop_replication(&mut self) -> Result<(), DbError> {
        self.change(|server| server.replicating = false)
    }

    async fn fence(&mut self, host: &str, _port: u16, _connect_timeout: std::time::Duration) -> Result<(), DbError> {
        if !self.cluster.network.connected(&self.host, host) {
            return Err(DbError::Connect {
                target: format!("{host}:3306"),
                message: "unreachable (partition)".into(),
            });
        }
        let fenced = self.cluster.with(|servers| {
            let server = servers.get_mut(host).filter(|server| server.alive)?;
            server.read_only = true;
            Some(())
        });
        fenced.ok_or_else(|| DbError::Connect {
            target: format!("{host}:3306"),
            message: "Connection refused (model server is down)".into(),
        })
    }
}
