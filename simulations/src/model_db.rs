//! A model of a MariaDB server with GTID replication, behind the same `DbBackend` trait as the
//! real one: a binary log of `domain-server-seq` GTIDs, read-only at boot, replication that
//! copies what the source has after the replica's last GTID — and refuses (error 1236) when
//! that GTID is not in the source's log, as MariaDB does for a replica with transactions the
//! source lacks, or when the source has purged the logs the replica needs. A server may start
//! with setup transactions of its own (users and grants created with the binary log on): they
//! hold no user database. Every other transaction inserts one row into a merged table (Pandora's
//! `tagente_datos`), stamped with the writing client's wall clock, or older: agents buffer data
//! while no server answers and deliver it late with its own times.
//!
//! Faults beyond the network: purged logs, servers reinstalled on their own (another server id
//! and GTID domain, an empty database), a host whose descriptors run out (its agent's connections
//! fail while mysqld runs and replicates on), and per-host wall-clock jumps.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gossip_ha::core::authority::Grants;
use gossip_ha::core::db::{BinlogFormat, BinlogRowImage, DbProbe, ReplicaProbe, ER_SOURCE_FATAL_READING_BINLOG};
use gossip_ha::db::{DbBackend, DbError, ReplicationSource};
use gossip_ha_proto::db::DatabaseContent;
use tokio::time::Instant;

use crate::network::SimNetwork;

/// The daemon's default `splitbrain_lookback`: a window merge opens this long before the
/// winner's promotion (the model stands in for the daemon, whose plans carry wall times).
const LOOKBACK_MS: u64 = 300_000;
/// Wall-clock time (unix ms) at the start of every run, before any jump.
const WALL_START_UNIX_MS: u64 = 1_800_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Gtid {
    pub domain: u32,
    pub server: u32,
    pub seq: u64,
}

impl std::fmt::Display for Gtid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server, self.seq)
    }
}

/// The row a transaction inserted: named by its origin (the transaction that first wrote it,
/// as the real merge's ledger names rows), stamped with the time Pandora stores for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    pub origin: Gtid,
    pub unix_ms: u64,
}

#[derive(Debug, Clone)]
pub struct ModelServer {
    pub server_id: u32,
    /// `gtid_domain_id`: the domain its own transactions are numbered in.
    pub domain: u32,
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
    /// Its wall clock when it last became writable: a merge's time window opens the daemon's
    /// look-back before it.
    pub promoted_unix_ms: Option<u64>,
}

impl ModelServer {
    fn last(&self) -> Option<Gtid> {
        self.binlog.last().copied()
    }

    /// The next GTID it writes: sequence numbers run per domain.
    fn next_gtid(&self) -> Gtid {
        let domain = self.domain;
        let seq = self
            .binlog
            .iter()
            .filter(|gtid| gtid.domain == domain)
            .map(|gtid| gtid.seq)
            .max()
            .unwrap_or(0)
            + 1;
        Gtid {
            domain,
            server: self.server_id,
            seq,
        }
    }

    /// The newest GTID of each server id of each domain in its log, as `gtid_binlog_state`
    /// shows it.
    fn waypoints(&self) -> String {
        let mut newest: BTreeMap<(u32, u32), u64> = BTreeMap::new();
        for gtid in &self.binlog {
            let seq = newest.entry((gtid.domain, gtid.server)).or_insert(gtid.seq);
            *seq = (*seq).max(gtid.seq);
        }
        newest
            .iter()
            .map(|((domain, server), seq)| format!("{domain}-{server}-{seq}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The last GTID applied in each domain, as `gtid_current_pos` shows it.
    fn position(&self) -> String {
        let mut last: BTreeMap<u32, Gtid> = BTreeMap::new();
        for gtid in &self.binlog {
            last.insert(gtid.domain, *gtid);
        }
        last.values().map(Gtid::to_string).collect::<Vec<_>>().join(",")
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

/// Everything the model cluster holds, under one lock.
#[derive(Default)]
struct ModelState {
    servers: BTreeMap<String, ModelServer>,
    /// The row each data transaction inserted (a merge's copy carries the original's origin).
    rows: BTreeMap<Gtid, Row>,
    /// Transactions a merge or a save kept for the operator (the binlog export, a dump).
    saved: BTreeSet<Gtid>,
    /// Rows kept for the operator in a file and not merged: a dump before a rebuild, the backup
    /// an operator took before reinstalling a server, the export of a log a window merge
    /// could not read the rows from.
    saved_rows: BTreeSet<Gtid>,
    /// Data a rebuild wiped that nobody else held and nothing saved: one line per wipe.
    discarded: Vec<String>,
    /// Hosts whose processes cannot open another descriptor, until then.
    exhausted_until: BTreeMap<String, Instant>,
    wall_offset_ms: BTreeMap<String, i64>,
    /// Writes carry times this much older than their client's clock (agents' buffered data).
    late_rows_ms: u64,
    grants: BTreeMap<String, Grants>,
}

impl ModelState {
    /// The origins of the rows `server` holds.
    fn rows_of(&self, server: &ModelServer) -> BTreeSet<Gtid> {
        server
            .binlog
            .iter()
            .filter_map(|gtid| self.rows.get(gtid).map(|row| row.origin))
            .collect()
    }

    /// Whether the data of transaction `gtid` (held by `host`) is anywhere but there: another
    /// server's log (running or not: its disk keeps it), the row on another server, or saved.
    fn held_elsewhere(&self, host: &str, gtid: Gtid) -> bool {
        let origin = self.rows.get(&gtid).map(|row| row.origin);
        self.saved.contains(&gtid)
            || origin.is_some_and(|origin| self.saved_rows.contains(&origin))
            || self
                .servers
                .iter()
                .filter(|(name, _)| name.as_str() != host)
                .any(|(_, server)| {
                    server.binlog.contains(&gtid) || origin.is_some_and(|origin| self.rows_of(server).contains(&origin))
                })
    }
}

#[derive(Clone)]
pub struct ModelCluster {
    state: Arc<Mutex<ModelState>>,
    network: SimNetwork,
    /// The simulated clock's start (tokio's paused clock): the base of every wall clock.
    started: Instant,
}

impl ModelCluster {
    pub fn new(network: SimNetwork) -> Self {
        ModelCluster {
            state: Arc::new(Mutex::new(ModelState::default())),
            network,
            started: Instant::now(),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut ModelState) -> T) -> T {
        f(&mut self.state.lock().expect("model state"))
    }

    fn with_servers<T>(&self, f: impl FnOnce(&mut BTreeMap<String, ModelServer>) -> T) -> T {
        self.with(|state| f(&mut state.servers))
    }

    /// A new server whose users and grants were created with the binary log on: `setup`
    /// transactions of its own, `<domain>-<server_id>-1…`, then `data` transactions of user data
    /// of its own (a server that ran something before it joined). Returns the data transactions.
    pub fn add(&self, host: &str, server_id: u32, domain: u32, setup: u64, data: u64) -> Vec<Gtid> {
        let own = |seq| Gtid {
            domain,
            server: server_id,
            seq,
        };
        let binlog: Vec<Gtid> = (1..=setup + data).map(own).collect();
        let data_gtids = binlog[setup as usize..].to_vec();
        let unix_ms = self.wall_ms(host);
        self.with(|state| {
            for gtid in &data_gtids {
                state.rows.insert(*gtid, Row { origin: *gtid, unix_ms });
            }
            state.servers.insert(
                host.to_string(),
                ModelServer {
                    server_id,
                    domain,
                    advertise: format!("{host}:3306"),
                    alive: true,
                    read_only: true,
                    setup: binlog[..setup as usize].iter().copied().collect(),
                    binlog,
                    source: None,
                    replicating: false,
                    io_error: None,
                    purged: 0,
                    promoted_unix_ms: None,
                },
            )
        });
        data_gtids
    }

    /// An operator reinstalls `host`'s server by hand: a fresh install with its own setup
    /// transactions under a new server id and domain, no user data, read-only. What the old
    /// server held goes to the operator's backup first.
    pub fn reinstall(&self, host: &str, setup: u64) {
        let old = self.with(|state| {
            let old = state.servers.get(host)?.clone();
            let rows = state.rows_of(&old);
            state.saved.extend(old.binlog.iter().copied());
            state.saved_rows.extend(rows);
            Some(old)
        });
        let Some(old) = old else { return };
        let server_id = old.server_id + 100;
        self.add(host, server_id, server_id, setup, 0);
    }

    /// `PURGE BINARY LOGS` up to now, as operators run it to free disk: everything this server
    /// executed stays, no log file before the current one does (setup and any fork included).
    pub fn purge(&self, host: &str) {
        self.with_servers(|servers| servers.get_mut(host).map(|server| server.purged = server.binlog.len()));
    }

    /// `host`'s processes cannot open a descriptor for `duration` (too many open files): its
    /// agent's connections fail, its mysqld runs on and keeps replicating.
    pub fn exhaust(&self, host: &str, duration: Duration) {
        let until = Instant::now() + duration;
        self.with(|state| state.exhausted_until.insert(host.to_string(), until));
    }

    /// Some host's descriptor shortage is still running: its end is a change still to come.
    pub fn any_exhausted(&self) -> bool {
        let now = Instant::now();
        self.with(|state| state.exhausted_until.values().any(|until| now < *until))
    }

    fn exhausted(&self, host: &str) -> bool {
        self.with(|state| {
            state
                .exhausted_until
                .get(host)
                .is_some_and(|until| Instant::now() < *until)
        })
    }

    /// `host`'s wall clock jumps by `delta_ms` (NTP stepping it, an operator setting it).
    pub fn clock_jump(&self, host: &str, delta_ms: i64) {
        self.with(|state| *state.wall_offset_ms.entry(host.to_string()).or_default() += delta_ms);
    }

    /// How far `host`'s wall clock is from true time.
    pub fn wall_offset_ms(&self, host: &str) -> i64 {
        self.with(|state| state.wall_offset_ms.get(host).copied().unwrap_or(0))
    }

    /// `host`'s wall clock now, unix ms.
    pub fn wall_ms(&self, host: &str) -> u64 {
        let true_ms = WALL_START_UNIX_MS + self.started.elapsed().as_millis() as u64;
        true_ms.saturating_add_signed(self.wall_offset_ms(host))
    }

    /// From now on, writes carry times `age_ms` older than their client's clock (0: current).
    pub fn late_rows(&self, age_ms: u64) {
        self.with(|state| state.late_rows_ms = age_ms);
    }

    /// What each host's certificate would grant: the simulated agents hold peers' gossip to it.
    pub fn set_grants(&self, grants: BTreeMap<String, Grants>) {
        self.with(|state| state.grants = grants);
    }

    /// For the node's `Authority::plain_grants` (node.rs is the lead's to wire it in).
    pub fn grants(&self) -> BTreeMap<String, Grants> {
        self.with(|state| state.grants.clone())
    }

    /// The DB hosts (other than `host` itself) that `host`'s reachability check reaches: the
    /// network passes both ways (a TCP handshake needs both). Whether their mysqld runs does not
    /// matter: the check dials the agent port on the database's address, never mysqld.
    pub fn reachable_from(&self, host: &str) -> Vec<String> {
        let network = self.network.clone();
        self.with_servers(|servers| {
            servers
                .keys()
                .filter(|name| name.as_str() != host && network.connected(host, name) && network.connected(name, host))
                .cloned()
                .collect()
        })
    }

    /// Rows kept for the operator in a file, not merged (dumps, backups, a window merge's export).
    pub fn saved_rows(&self) -> BTreeSet<Gtid> {
        self.with(|state| state.saved_rows.clone())
    }

    /// The origins of the rows `host`'s server holds.
    pub fn rows_on(&self, host: &str) -> BTreeSet<Gtid> {
        self.with(|state| {
            state
                .servers
                .get(host)
                .map(|server| state.rows_of(server))
                .unwrap_or_default()
        })
    }

    /// Wipes found since the last call that discarded data nobody else held, unsaved.
    pub fn take_discarded(&self) -> Vec<String> {
        self.with(|state| std::mem::take(&mut state.discarded))
    }

    pub fn snapshot(&self) -> BTreeMap<String, ModelServer> {
        self.with_servers(|servers| servers.clone())
    }

    pub fn kill(&self, host: &str) {
        self.with_servers(|servers| servers.get_mut(host).map(|server| server.alive = false));
    }

    /// mysqld starts again: data kept, read-only at boot, replication resumes if configured.
    pub fn start(&self, host: &str) {
        self.with_servers(|servers| {
            if let Some(server) = servers.get_mut(host).filter(|server| !server.alive) {
                server.alive = true;
                server.read_only = true;
            }
        });
    }

    /// A client on `client_host` writes to `host`: acknowledged only if the server is reachable,
    /// alive and writable. The row carries the client's clock, less any lateness.
    pub fn write(&self, client_host: &str, host: &str) -> Option<Gtid> {
        if !self.network.connected(client_host, host) {
            return None;
        }
        let client_ms = self.wall_ms(client_host);
        self.with(|state| {
            let server = state
                .servers
                .get_mut(host)
                .filter(|server| server.alive && !server.read_only)?;
            let gtid = server.next_gtid();
            server.binlog.push(gtid);
            let unix_ms = client_ms.saturating_sub(state.late_rows_ms);
            state.rows.insert(gtid, Row { origin: gtid, unix_ms });
            Some(gtid)
        })
    }

    /// One round of replication for every running replica whose source it can reach.
    pub fn replicate(&self) {
        let network = self.network.clone();
        self.with_servers(|servers| {
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
                replicate_one(server, source_log, *purged);
            }
        });
    }
}

/// `server` applies what `source_log` holds after its last GTID, or stops with error 1236.
fn replicate_one(server: &mut ModelServer, source_log: &[Gtid], purged: usize) {
    let start = match server.last() {
        None => 0,
        Some(last) => match source_log.iter().position(|gtid| *gtid == last) {
            Some(index) => index + 1,
            None => {
                server.io_error = Some((
                    ER_SOURCE_FATAL_READING_BINLOG,
                    format!(
                        "connecting slave requested to start from GTID {last}, which is not in the master's binlog"
                    ),
                ));
                server.replicating = false;
                return;
            }
        },
    };
    if start < purged && start < source_log.len() {
        server.io_error = Some((
            ER_SOURCE_FATAL_READING_BINLOG,
            "Could not find GTID state requested by slave in any binlog files. Probably the slave state is too old and required binlog files have been purged.".into(),
        ));
        server.replicating = false;
        return;
    }
    server.binlog.extend_from_slice(&source_log[start..]);
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

    /// Every connection this host's agent opens needs a descriptor: none while they run out.
    fn descriptor(&self, target: &str) -> Result<(), DbError> {
        if self.cluster.exhausted(&self.host) {
            return Err(DbError::Connect {
                target: format!("{target}:3306"),
                message: "Too many open files (os error 24)".into(),
            });
        }
        Ok(())
    }

    fn change(&self, f: impl FnOnce(&mut ModelServer)) -> Result<(), DbError> {
        self.descriptor(&self.host)?;
        let changed = self.cluster.with_servers(|servers| {
            let server = servers.get_mut(&self.host).filter(|server| server.alive)?;
            f(server);
            Some(())
        });
        changed.ok_or_else(|| self.down())
    }

    fn reach(&self, host: &str) -> Result<(), DbError> {
        self.descriptor(host)?;
        let alive = self
            .cluster
            .with_servers(|servers| servers.get(host).is_some_and(|server| server.alive));
        if alive && self.cluster.network.connected(&self.host, host) {
            return Ok(());
        }
        Err(DbError::Connect {
            target: format!("{host}:3306"),
            message: "unreachable (partition or down)".into(),
        })
    }

    /// The agent's merge. This server's transactions the winner lacks are its divergent ones:
    /// their binary log is saved (what is not purged of it), and every row they inserted is
    /// written again on the winner as a new transaction, whatever its time. When part of them
    /// is purged the log cannot say which rows they wrote: the window fallback copies the rows
    /// dated from the winner's promotion on that the winner lacks, and misses older ones.
    /// `Ok(Some(why))` when part of the divergent history was purged: the window copied what
    /// it could, and the rest is neither merged nor saved (the rebuild must save it).
    pub fn merge_into(&mut self, winner: &str) -> Result<Option<String>, DbError> {
        self.reach(winner)?;
        self.descriptor(&self.host)?;
        let host = self.host.clone();
        let merged = self.cluster.with(|state| {
            let me = state.servers.get(&host).filter(|server| server.alive)?.clone();
            let target = state.servers.get(winner)?;
            let present: BTreeSet<Gtid> = target.binlog.iter().copied().collect();
            let target_rows = state.rows_of(target);
            let window_start_ms = target.promoted_unix_ms.map_or(0, |at| at.saturating_sub(LOOKBACK_MS));
            let purged: BTreeSet<Gtid> = me.binlog[..me.purged].iter().copied().collect();
            let missing: Vec<Gtid> = me
                .binlog
                .iter()
                .copied()
                .filter(|gtid| !present.contains(gtid))
                .collect();
            let exact = missing.iter().all(|gtid| !purged.contains(gtid));
            // Exactly the divergent transactions' rows, or by the window every row held.
            let candidates: Vec<Row> = if exact {
                missing
                    .iter()
                    .filter_map(|gtid| state.rows.get(gtid).copied())
                    .collect()
            } else {
                let rows: Vec<Row> = me
                    .binlog
                    .iter()
                    .filter_map(|gtid| state.rows.get(gtid).copied())
                    .collect();
                rows.into_iter().filter(|row| row.unix_ms >= window_start_ms).collect()
            };
            let mut copied = BTreeSet::new();
            if !exact {
                // Rows of the export's transactions the window misses: saved, not merged.
                let exported = missing.iter().filter(|gtid| !purged.contains(gtid));
                let rows: Vec<Row> = exported.filter_map(|gtid| state.rows.get(gtid).copied()).collect();
                let missed = rows.into_iter().filter(|row| row.unix_ms < window_start_ms);
                state.saved_rows.extend(missed.map(|row| row.origin));
            }
            for row in candidates {
                if target_rows.contains(&row.origin) || !copied.insert(row.origin) {
                    continue;
                }
                let target = state.servers.get_mut(winner)?;
                let gtid = target.next_gtid();
                target.binlog.push(gtid);
                state.rows.insert(gtid, row);
            }
            state
                .saved
                .extend(missing.into_iter().filter(|gtid| !purged.contains(gtid)));
            Some((!exact).then(|| "the binary log was purged past the fork".to_string()))
        });
        merged.ok_or_else(|| self.down())
    }

    /// The agent's save before a rebuild: every transaction this server holds (its binary log
    /// and a dump of its databases) is kept for the operator.
    pub fn save_everything(&mut self) -> Result<(), DbError> {
        self.descriptor(&self.host)?;
        let host = self.host.clone();
        let saved = self.cluster.with(|state| {
            let server = state.servers.get(&host).filter(|server| server.alive)?;
            let rows = state.rows_of(server);
            let log = server.binlog[server.purged..].to_vec();
            state.saved.extend(log);
            state.saved_rows.extend(rows);
            Some(())
        });
        saved.ok_or_else(|| self.down())
    }

    /// The agent's resync: this server becomes a copy of the winner, read-only, not replicating.
    /// Wiping data that no other server holds and nothing saved is recorded as discarded.
    pub fn resync_from(&mut self, winner: &str) -> Result<(), DbError> {
        self.reach(winner)?;
        self.descriptor(&self.host)?;
        let host = self.host.clone();
        let copied = self.cluster.with(|state| {
            let (copy, setup) = state
                .servers
                .get(winner)
                .map(|server| (server.binlog.clone(), server.setup.clone()))?;
            let me = state.servers.get(&host).filter(|server| server.alive)?;
            let lost: Vec<Gtid> = me
                .binlog
                .iter()
                .copied()
                .filter(|gtid| !me.setup.contains(gtid) && !state.held_elsewhere(&host, *gtid))
                .collect();
            if !lost.is_empty() {
                state.discarded.push(discard_line(&host, winner, &lost));
            }
            let server = state.servers.get_mut(&host)?;
            // A rebuilt server starts a fresh binary log: it holds none of the copied history's.
            server.purged = copy.len();
            server.setup = setup;
            server.binlog = copy;
            server.read_only = true;
            server.source = None;
            server.replicating = false;
            server.io_error = None;
            Some(())
        });
        copied.ok_or_else(|| self.down())
    }
}

fn discard_line(host: &str, winner: &str, lost: &[Gtid]) -> String {
    let named: Vec<String> = lost.iter().take(5).map(Gtid::to_string).collect();
    format!(
        "{host} was rebuilt from {winner}, wiping {} transactions that no other server held and nothing saved: {}",
        lost.len(),
        named.join(", ")
    )
}

impl DbBackend for ModelDb {
    async fn probe(&mut self) -> Result<DbProbe, DbError> {
        self.descriptor(&self.host)?;
        let server = self
            .cluster
            .with_servers(|servers| servers.get(&self.host).cloned())
            .filter(|server| server.alive)
            .ok_or_else(|| self.down())?;
        let sources = self.cluster.snapshot();
        let replica = server.source.as_ref().map(|source| {
            let connected = self.cluster.network.connected(&self.host, source);
            let source_alive = sources.get(source).is_some_and(|source| source.alive);
            let io_state = match (&server.io_error, server.replicating, connected && source_alive) {
                (Some(_), _, _) | (None, false, _) => "No",
                (None, true, true) => "Yes",
                (None, true, false) => "Connecting",
            };
            // What MariaDB's IO thread says while it retries: refused by a host whose mysqld is
            // down, timed out across a cut.
            let retrying = (server.io_error.is_none() && server.replicating && io_state == "Connecting").then(|| {
                let why = if connected { "111 \"Connection refused\"" } else { "110 \"Connection timed out\"" };
                (2003, format!("error reconnecting to master 'repl@{source}:3306' - retry-time: 60  maximum-retries: 86400  message: Can't connect to MySQL server on '{source}' ({why})"))
            });
            let io_error = server.io_error.clone().or(retrying);
            ReplicaProbe {
                source: sources.get(source).map(|s| s.advertise.clone()).unwrap_or_default(),
                io_state: io_state.into(),
                sql_running: server.replicating,
                lag_seconds: Some(0),
                relay_applied: true,
                io_errno: io_error.as_ref().map_or(0, |(errno, _)| *errno),
                sql_errno: 0,
                last_error: io_error.map(|(_, message)| message),
            }
        });
        Ok(DbProbe {
            read_only: server.read_only,
            binlog_enabled: true,
            // As the example server configuration ships: merges read exact row images.
            binlog_format: BinlogFormat::Row,
            binlog_row_image: BinlogRowImage::Full,
            version: "10.11-model-MariaDB".into(),
            gtid: server.position(),
            gtid_history: server.waypoints(),
            databases: server.databases(),
            replica,
        })
    }

    async fn set_read_only(&mut self) -> Result<(), DbError> {
        self.change(|server| server.read_only = true)
    }

    async fn promote(&mut self) -> Result<(), DbError> {
        let unix_ms = self.cluster.wall_ms(&self.host);
        self.change(|server| {
            server.source = None;
            server.replicating = false;
            server.io_error = None;
            server.read_only = false;
            server.promoted_unix_ms = Some(unix_ms);
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
        self.descriptor(host)?;
        if !self.cluster.network.connected(&self.host, host) {
            return Err(DbError::Connect {
                target: format!("{host}:3306"),
                message: "unreachable (partition)".into(),
            });
        }
        let fenced = self.cluster.with_servers(|servers| {
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
