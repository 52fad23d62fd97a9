//! Pandora's own HA view: the console's "Manage Database HA" page reads `tdatabase`, which
//! `pandora_ha` used to keep filled. Here the primary's agent writes one row per `ha_hosts`
//! entry from its `StatusReport`, and every DB agent reads its own row's `disabled` (set from
//! the console) from its local server, so a replica the console disabled stays out of
//! promotion even when the primary is gone.
//!
//! `rows_from` is pure; `ViewWriter` runs inside the DB worker task, between its actions, so
//! a write never interleaves with the worker setting the server read-only (a switchover's
//! handover GTID then holds every row this agent wrote).

use std::time::{Duration, Instant};

use gossip_ha_proto::api::{NodeLiveness, NodeStatus, StatusReport};
use gossip_ha_proto::db::DbRole;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};

use crate::address::{bare_host, host_of, split_host_port};

/// `mysql_version` is a VARCHAR(10) in Pandora's schema.
const VERSION_CHARS: usize = 10;
/// Rows unchanged but for `utimestamp` are written again this often, so the console sees the
/// view is alive without a transaction in the binary log every second.
const REFRESH: Duration = Duration::from_secs(10);
/// MySQL's "table doesn't exist" and "unknown database".
const NO_SUCH_TABLE: u16 = 1146;
const NO_SUCH_DATABASE: u16 = 1049;

/// One `tdatabase` row as this agent sees the node behind a `ha_hosts` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaRow {
    /// The `ha_hosts` entry, as Pandora's `pandora_ha` matches rows (`WHERE host = …`).
    pub host: String,
    /// The node's name; empty when no node answers for the entry (an existing label is kept).
    pub label: String,
    pub db_port: u16,
    /// 1 while the node's agent is alive.
    pub status: u8,
    /// 1 while its database answers.
    pub db_status: u8,
    /// 1 for a primary that answers and for a replica whose IO and SQL threads both run.
    pub replication_status: u8,
    /// A replica's lag in seconds, from GTIDs (`status`'s lag); 0 for the primary.
    pub replication_delay_seconds: i64,
    /// 1 for the DB primary.
    pub master: u8,
    pub mysql_version: String,
    pub last_error: String,
}

/// The rows are the same but for the columns that move on their own (lag, error text).
fn same_but_for_moving(written: &[HaRow], rows: &[HaRow]) -> bool {
    let settled = |row: &HaRow| HaRow {
        replication_delay_seconds: 0,
        last_error: String::new(),
        ..row.clone()
    };
    written.len() == rows.len() && written.iter().zip(rows).all(|(a, b)| settled(a) == settled(b))
}

/// What one round asks of the worker: read this node's own row, and (the primary only) write
/// the rows.
#[derive(Debug, Clone)]
pub struct ViewJob {
    pub own_host: String,
    pub rows: Option<Vec<HaRow>>,
    pub now_unix_seconds: i64,
}

/// What a round found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViewOutcome {
    /// The own row's `disabled` (`None`: no row for this host), and how many rows were written.
    Done {
        disabled: Option<bool>,
        written: usize,
    },
    /// `tdatabase` (or the database) does not exist: nothing to keep.
    TableAbsent,
    Failed(String),
}

/// The `ha_hosts` entry naming this node: exactly its name or advertised address first, then
/// the same host (an entry without a port); its advertised address when none does.
pub fn own_host(ha_hosts: &[String], node: &str, advertise: &str) -> String {
    entry_for(ha_hosts, node, advertise).unwrap_or_else(|| advertise.to_string())
}

fn entry_for(ha_hosts: &[String], node: &str, advertise: &str) -> Option<String> {
    let exact = ha_hosts
        .iter()
        .find(|entry| entry.trim() == node || entry.trim() == advertise);
    // On one host several servers share the address: a host-only match counts when unique.
    let host = host_of(advertise);
    let mut same_host = ha_hosts.iter().filter(|entry| bare_host(entry.trim()) == host);
    let unique = match (same_host.next(), same_host.next()) {
        (Some(entry), None) => Some(entry),
        _ => None,
    };
    exact.or(unique).map(|entry| entry.trim().to_string())
}

/// The rows the primary keeps: one per `ha_hosts` entry, or per DB node heard when there is no
/// `ha_hosts` (its advertised address as `host`).
pub fn rows_from(report: &StatusReport, ha_hosts: &[String]) -> Vec<HaRow> {
    let db_nodes: Vec<&NodeStatus> = report.nodes.iter().filter(|node| node.db.is_some()).collect();
    let advertised = |node: &NodeStatus| node.db.as_ref().map(|db| db.advertise.clone()).unwrap_or_default();
    let hosts: Vec<String> = if ha_hosts.is_empty() {
        db_nodes.iter().map(|node| advertised(node)).collect()
    } else {
        ha_hosts.iter().map(|entry| entry.trim().to_string()).collect()
    };
    hosts
        .into_iter()
        .map(|host| {
            let node = db_nodes.iter().find(|node| {
                let listed = if ha_hosts.is_empty() {
                    std::slice::from_ref(&host)
                } else {
                    ha_hosts
                };
                entry_for(listed, &node.name, &advertised(node)).as_deref() == Some(host.as_str())
            });
            match node {
                Some(node) => row_for(report, node, host),
                None => absent_row(host),
            }
        })
        .collect()
}

fn row_for(report: &StatusReport, node: &NodeStatus, host: String) -> HaRow {
    let db = node.db.as_ref().expect("only DB nodes are matched");
    let alive = node.state == NodeLiveness::Alive;
    let answers = alive && db.reachable;
    let replicating = db.io_running == Some(true) && db.sql_running == Some(true);
    let is_primary = report.db_primary.as_deref() == Some(node.name.as_str());
    let replication_status = match db.role {
        DbRole::Primary => answers,
        DbRole::Replica => answers && replicating,
        _ => false,
    };
    let replication_delay_seconds = match (&node.replication, is_primary) {
        (Some(lag), false) => lag.lag_ms.map_or(0, |ms| (ms / 1_000) as i64),
        _ => 0,
    };
    HaRow {
        db_port: port_of(&db.advertise),
        host,
        label: node.name.clone(),
        status: alive.into(),
        db_status: answers.into(),
        replication_status: replication_status.into(),
        replication_delay_seconds,
        master: is_primary.into(),
        mysql_version: short_version(db.version.as_deref().unwrap_or_default()),
        last_error: db.last_error.clone().unwrap_or_default(),
    }
}

fn absent_row(host: String) -> HaRow {
    HaRow {
        db_port: port_of(&host),
        host,
        label: String::new(),
        status: 0,
        db_status: 0,
        replication_status: 0,
        replication_delay_seconds: 0,
        master: 0,
        mysql_version: String::new(),
        last_error: "no gossip-ha agent answers for this host".into(),
    }
}

fn port_of(address: &str) -> u16 {
    split_host_port(address).map_or(3306, |(_, port)| port)
}

/// "10.11.6-MariaDB-0+deb12u1-log" → "10.11.6": the column holds ten characters.
fn short_version(version: &str) -> String {
    version
        .split('-')
        .next()
        .unwrap_or_default()
        .chars()
        .take(VERSION_CHARS)
        .collect()
}

/// Its own connection to the local server (same bounds as the worker's), used only from the
/// worker task.
pub struct ViewWriter {
    opts: Opts,
    database: String,
    conn: Option<Conn>,
    connect_timeout: Duration,
    query_timeout: Duration,
    /// The rows last written and when: unchanged rows wait for `REFRESH`.
    last_written: Option<(Vec<HaRow>, Instant)>,
}

impl ViewWriter {
    /// `database` is a plain identifier (checked by the configuration).
    pub fn new(url: &str, database: &str, connect_timeout: Duration, query_timeout: Duration) -> Option<ViewWriter> {
        let opts = Opts::from_url(url).ok()?;
        Some(ViewWriter {
            opts: Opts::from(OptsBuilder::from_opts(opts).prefer_socket(false)),
            database: database.to_string(),
            conn: None,
            connect_timeout,
            query_timeout,
            last_written: None,
        })
    }

    /// One round, bounded as a whole by the statement timeout (the worker's actions wait).
    pub async fn run(&mut self, job: &ViewJob) -> ViewOutcome {
        let round = tokio::time::timeout(self.query_timeout, self.round(job)).await;
        match round.unwrap_or(Err(Failure::Timeout)) {
            Ok(outcome) => outcome,
            Err(err) => {
                // Any failure drops the connection, as the worker's own does.
                self.conn = None;
                self.last_written = None;
                let absent =
                    matches!(&err, Failure::Server(code, _) if *code == NO_SUCH_TABLE || *code == NO_SUCH_DATABASE);
                if absent {
                    ViewOutcome::TableAbsent
                } else {
                    ViewOutcome::Failed(err.to_string())
                }
            }
        }
    }

    async fn round(&mut self, job: &ViewJob) -> Result<ViewOutcome, Failure> {
        let table = format!("`{}`.`tdatabase`", self.database);
        let disabled: Option<i64> = self
            .bounded(|conn| {
                let sql = format!("SELECT `disabled` FROM {table} WHERE `host` = ? ORDER BY `id` LIMIT 1");
                let host = job.own_host.clone();
                Box::pin(async move { conn.exec_first::<i64, _, _>(sql, (host,)).await })
            })
            .await?;
        let disabled = disabled.map(|value| value != 0);
        let Some(rows) = &job.rows else {
            self.last_written = None;
            return Ok(ViewOutcome::Done { disabled, written: 0 });
        };
        // A lag and an error text move every second while a replica lags: they are refreshed
        // with the rest every REFRESH, not written on each change.
        let fresh = self
            .last_written
            .as_ref()
            .is_some_and(|(written, at)| same_but_for_moving(written, rows) && at.elapsed() < REFRESH);
        if fresh {
            return Ok(ViewOutcome::Done { disabled, written: 0 });
        }
        let written = self.write(&table, rows, job.now_unix_seconds).await?;
        self.last_written = Some((rows.clone(), Instant::now()));
        Ok(ViewOutcome::Done { disabled, written })
    }

    /// One transaction, and only while the server is writable: the worker may have set it
    /// read-only since the driver asked, and an admin account writes through read-only.
    async fn write(&mut self, table: &str, rows: &[HaRow], now_unix_seconds: i64) -> Result<usize, Failure> {
        self.bounded(|conn| Box::pin(conn.query_drop("START TRANSACTION")))
            .await?;
        let read_only: Option<i64> = self
            .bounded(|conn| Box::pin(conn.query_first("SELECT @@global.read_only")))
            .await?;
        if read_only != Some(0) {
            self.bounded(|conn| Box::pin(conn.query_drop("ROLLBACK"))).await?;
            return Ok(0);
        }
        for row in rows {
            self.upsert(table, row, now_unix_seconds).await?;
        }
        self.bounded(|conn| Box::pin(conn.query_drop("COMMIT"))).await?;
        Ok(rows.len())
    }

    async fn upsert(&mut self, table: &str, row: &HaRow, now_unix_seconds: i64) -> Result<(), Failure> {
        let find = format!("SELECT `id` FROM {table} WHERE `host` = ? ORDER BY `id` LIMIT 1 FOR UPDATE");
        let host = row.host.clone();
        let id: Option<u64> = self
            .bounded(|conn| Box::pin(async move { conn.exec_first::<u64, _, _>(find, (host,)).await }))
            .await?;
        let values = mysql_async::Params::Positional(vec![
            row.db_port.into(),
            row.status.into(),
            row.db_status.into(),
            row.replication_status.into(),
            row.replication_delay_seconds.into(),
            row.master.into(),
            now_unix_seconds.into(),
            row.mysql_version.clone().into(),
            row.last_error.clone().into(),
            row.label.clone().into(),
            row.host.clone().into(),
        ]);
        let columns = "`db_port` = ?, `status` = ?, `db_status` = ?, `replication_status` = ?, \
             `replication_delay` = ?, `master` = ?, `utimestamp` = ?, `mysql_version` = ?, `last_error` = ?";
        // The label is the console's to change: only filled where empty.
        let sql = match id {
            Some(id) => format!(
                "UPDATE {table} SET {columns}, `label` = IF(`label` = '' OR `label` IS NULL, ?, `label`) \
                 WHERE `host` = ? AND `id` = {id}"
            ),
            None => format!("INSERT INTO {table} SET {columns}, `label` = ?, `host` = ?"),
        };
        self.bounded(|conn| Box::pin(async move { conn.exec_drop(sql, values).await }))
            .await
    }

    /// Runs `call` on the connection (made first if needed), both bounded.
    async fn bounded<T>(&mut self, call: impl for<'c> FnOnce(&'c mut Conn) -> Call<'c, T>) -> Result<T, Failure> {
        if self.conn.is_none() {
            let connect = Conn::new(self.opts.clone());
            let conn = tokio::time::timeout(self.connect_timeout, connect)
                .await
                .map_err(|_| Failure::Timeout)?
                .map_err(Failure::from)?;
            self.conn = Some(conn);
        }
        let conn = self.conn.as_mut().expect("connection was just made");
        tokio::time::timeout(self.query_timeout, call(conn))
            .await
            .map_err(|_| Failure::Timeout)?
            .map_err(Failure::from)
    }
}

/// One statement on the writer's connection.
type Call<'c, T> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, mysql_async::Error>> + Send + 'c>>;

#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("no answer in time")]
    Timeout,
    #[error("server error {0}: {1}")]
    Server(u16, String),
    #[error("{0}")]
    Other(String),
}

impl From<mysql_async::Error> for Failure {
    fn from(err: mysql_async::Error) -> Self {
        match err {
            mysql_async::Error::Server(server) => Failure::Server(server.code, server.message),
            other => Failure::Other(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests;
