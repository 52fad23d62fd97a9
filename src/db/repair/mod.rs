//! Repairing a node that diverged (DESIGN §2): save its transactions since the fork for the
//! operator, merge the rows those transactions inserted into the Pandora data tables into the
//! winner, and rebuild the node from the winner. MariaDB only: the tools and the GTID statements are its own.

mod divergent;
mod estimate;
mod ledger;
mod literal;
mod merge;
mod physical;
mod resync;
pub mod save;
mod statement;
pub mod tools;
mod window;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};
use tokio::sync::{mpsc, watch};

pub use merge::{merge, Merged};
pub use physical::PhysicalSetup;

use super::DbError;
use crate::config::MergeTable;
use crate::core::db::SaveFirst;

/// What a repair needs besides the plan: where the local database is, which tables to merge,
/// where to save what cannot be merged.
#[derive(Debug, Clone)]
pub struct RepairContext {
    /// This node's name: the winner's merge ledger knows each loser by it.
    pub node: String,
    /// The local database, with the admin user (the same credentials reach the winner).
    pub local: Opts,
    pub database: String,
    pub tables: Vec<MergeTable>,
    pub batch_rows: usize,
    /// Saved transactions go under `<state_dir>/splitbrain/`.
    pub state_dir: PathBuf,
    pub statement_timeout: Duration,
    /// Bounds a whole dump-and-load.
    pub resync_timeout: Duration,
    /// Set when this node can be rebuilt by physical copy (its data directory and how to stop
    /// and start its server are configured).
    pub physical: Option<PhysicalSetup>,
}

/// Rebuilds this node from the winner: by physical copy over the transfer channel when both
/// sides can, otherwise by a logical copy; saving first what `save_first` asks.
pub async fn resync(
    ctx: &RepairContext,
    winner: &str,
    winner_addr: &str,
    transfer: Option<&str>,
    save_first: SaveFirst,
    progress: &mut Progress,
    stop: &watch::Receiver<bool>,
) -> Result<String, DbError> {
    let saved = match save_first {
        SaveFirst::Nothing => None,
        SaveFirst::BinlogAndDump => {
            let dir = save::private_dir(&ctx.state_dir, "saved", &format!("before-rebuild-from-{winner}"))?;
            progress.finish(format!(
                "saving this node's data to {} before the rebuild",
                dir.display()
            ));
            let saved = save::save_everything(ctx, &dir).await;
            save::remove_if_empty(&dir);
            let saved = saved?;
            progress.finish(format!("saved before the rebuild: {saved}"));
            Some(saved)
        }
    };
    let physical = ctx.physical.as_ref().zip(transfer.and_then(|addr| addr.parse().ok()));
    let rebuilt = match physical {
        Some((setup, transfer)) => physical::resync(ctx, setup, winner, winner_addr, transfer, progress, stop).await,
        None => resync::resync(ctx, winner, winner_addr, progress, stop).await,
    };
    match (rebuilt, saved) {
        (Ok(line), Some(saved)) => Ok(format!("{line}; before it, {saved}")),
        (Err(err), Some(saved)) => Err(DbError::Query {
            target: ctx.local_target(),
            what: "rebuild".into(),
            message: format!("{err} (this node's data was saved first: {saved})"),
        }),
        (result, None) => result,
    }
}

impl RepairContext {
    fn local_target(&self) -> String {
        match self.local.socket() {
            Some(socket) => socket.to_string(),
            None => format!("{}:{}", self.local.ip_or_hostname(), self.local.tcp_port()),
        }
    }

    async fn connect_local(&self) -> Result<Conn, DbError> {
        self.connect(self.local.clone(), self.local_target()).await
    }

    /// The winner's database, with this node's admin credentials.
    async fn connect_to(&self, addr: &str) -> Result<Conn, DbError> {
        let (host, port) = crate::address::split_host_port(addr).ok_or_else(|| DbError::Unreadable {
            target: addr.to_string(),
            what: "winner address".into(),
            message: "expected host:port".into(),
        })?;
        let opts = OptsBuilder::from_opts(self.local.clone())
            .ip_or_hostname(host)
            .tcp_port(port)
            .socket(None::<String>)
            .prefer_socket(false);
        self.connect(opts.into(), addr.to_string()).await
    }

    async fn connect(&self, opts: Opts, target: String) -> Result<Conn, DbError> {
        match tokio::time::timeout(self.statement_timeout, Conn::new(opts)).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(err)) => Err(DbError::Connect {
                target,
                message: err.to_string(),
            }),
            Err(_) => Err(DbError::Connect {
                target,
                message: format!("no answer within {} ms", self.statement_timeout.as_millis()),
            }),
        }
    }
}

/// Runs one statement on `conn` within the context's time bound.
async fn run<T, F>(timeout: Duration, target: &str, what: &str, work: F) -> Result<T, DbError>
where
    F: std::future::Future<Output = Result<T, mysql_async::Error>>,
{
    match tokio::time::timeout(timeout, work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(DbError::Query {
            target: target.to_string(),
            what: what.to_string(),
            message: err.to_string(),
        }),
        Err(_) => Err(DbError::Timeout {
            target: target.to_string(),
            what: what.to_string(),
            timeout_ms: timeout.as_millis() as u64,
        }),
    }
}

/// A merge's session: literals carry backslash escapes; strings are the bytes the loser stored
/// (no conversion on the way); `TIMESTAMP` values are written as seconds since the epoch, in UTC.
async fn prepare_merge_session(ctx: &RepairContext, conn: &mut Conn, target: &str) -> Result<(), DbError> {
    let sql =
        "SET SESSION sql_mode = REPLACE(@@sql_mode, 'NO_BACKSLASH_ESCAPES', ''), NAMES binary, time_zone = '+00:00'";
    run(ctx.statement_timeout, target, sql, conn.query_drop(sql)).await
}

/// Read-only, no replication, and no binary log history of its own: the state a rebuilt server
/// starts replicating from (the divergent history was saved by the merge before).
async fn forget_history(ctx: &RepairContext, conn: &mut Conn) -> Result<(), DbError> {
    let target = ctx.local_target();
    for sql in [
        "SET GLOBAL read_only = ON",
        "STOP SLAVE",
        "RESET SLAVE ALL",
        "RESET MASTER",
    ] {
        exec_drop(conn, ctx.statement_timeout, &target, sql).await?;
    }
    Ok(())
}

/// The user databases of the server on `conn` (system schemas left out).
pub(crate) async fn user_databases(ctx: &RepairContext, conn: &mut Conn, target: &str) -> Result<Vec<String>, DbError> {
    let names: Vec<String> = run(
        ctx.statement_timeout,
        target,
        "list the user databases",
        conn.query("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA ORDER BY SCHEMA_NAME"),
    )
    .await?;
    Ok(names
        .into_iter()
        .filter(|name| !crate::db::dialect::SYSTEM_SCHEMAS.contains(&name.as_str()))
        .collect())
}

async fn exec_drop(conn: &mut Conn, timeout: Duration, target: &str, sql: &str) -> Result<(), DbError> {
    run(timeout, target, sql, conn.query_drop(sql)).await
}

/// Progress lines for status and events, at most one a second (the last one always goes).
pub struct Progress {
    sender: mpsc::Sender<String>,
    last_sent: Option<Instant>,
}

impl Progress {
    pub fn new(sender: mpsc::Sender<String>) -> Self {
        Progress {
            sender,
            last_sent: None,
        }
    }

    pub fn report(&mut self, line: impl FnOnce() -> String) {
        if self.last_sent.is_some_and(|at| at.elapsed() < Duration::from_secs(1)) {
            return;
        }
        self.last_sent = Some(Instant::now());
        // A full queue drops the line: progress is a view, the next one will say more.
        let _ = self.sender.try_send(line());
    }

    fn finish(&mut self, line: String) {
        let _ = self.sender.try_send(line);
    }
}

fn stopped(stop: &watch::Receiver<bool>, what: &str) -> Result<(), DbError> {
    if *stop.borrow() {
        return Err(DbError::Query {
            target: "agent".into(),
            what: what.into(),
            message: "interrupted by shutdown; it starts over (copying nothing twice) when asked again".into(),
        });
    }
    Ok(())
}

/// A `db.table` name is only ever letters, digits, `_` and `$` (checked by the configuration).
fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// The tables a dump of `databases` on `target` will hold (views are no tables), with the bytes
/// InnoDB says each takes: the weights of a logical copy's progress.
async fn dump_tables(
    ctx: &RepairContext,
    conn: &mut Conn,
    target: &str,
    databases: &[String],
) -> Result<estimate::DumpTables, DbError> {
    let names = databases
        .iter()
        .map(|name| crate::db::dialect::quote(name))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT TABLE_SCHEMA, TABLE_NAME, CAST(COALESCE(DATA_LENGTH, 0) AS UNSIGNED) FROM information_schema.TABLES \
         WHERE TABLE_SCHEMA IN ({names}) AND TABLE_TYPE <> 'VIEW'"
    );
    let tables: Vec<(String, String, u64)> = run(
        ctx.statement_timeout,
        target,
        "list the tables to copy",
        conn.query(sql.as_str()),
    )
    .await?;
    Ok(estimate::DumpTables::new(tables))
}

/// Roughly what `mariabackup` on `target` streams: its InnoDB tablespace files (the system one
/// included, the temporary one not) and its other engines' tables. `None` when the server
/// cannot say (the progress then shows no share rather than a wrong one).
async fn backup_bytes(ctx: &RepairContext, conn: &mut Conn, target: &str) -> Option<u64> {
    let sql = "SELECT CAST( \
           COALESCE((SELECT SUM(FILE_SIZE) FROM information_schema.INNODB_SYS_TABLESPACES \
                     WHERE NAME <> 'innodb_temporary'), 0) \
         + COALESCE((SELECT SUM(DATA_LENGTH + INDEX_LENGTH) FROM information_schema.TABLES \
                     WHERE ENGINE <> 'InnoDB' AND TABLE_SCHEMA NOT IN ('information_schema', 'performance_schema')), 0) \
         AS UNSIGNED)";
    let size: Result<Option<u64>, DbError> = run(
        ctx.statement_timeout,
        target,
        "estimate the backup's size",
        conn.query_first(sql),
    )
    .await;
    match size {
        Ok(size) => size.filter(|size| *size > 0),
        Err(err) => {
            tracing::warn!("the physical copy's progress shows no share: {err}");
            None
        }
    }
}

fn rate(amount: f64, since: Instant) -> f64 {
    amount / since.elapsed().as_secs_f64().max(0.001)
}
