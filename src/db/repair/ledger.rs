//! The winner's record of merges (`gossip_ha.merged_rows`): which rows of divergent
//! transactions are in it, known by their origin (the transaction's GTID and the row's place in
//! it, `core::db::OriginRow`), not by the node that merged them, so a losing primary and its
//! replica, which log the same transactions, never both copy a row. One line per run of rows a
//! batch copied, committed in the batch's transaction: batches may commit in any order (several
//! connections copy at once) and a merge cut at any point and run again, by this node or
//! another, skips exactly what is in and copies exactly what is not, with no scan of the
//! winner's tables. Merges into one winner take turns (a named lock on it): two losers reading
//! the ledger at once would both find a row missing.

use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use tokio::sync::watch;

use super::{run, stopped, RepairContext};
use crate::core::db::{LedgerLine, OriginRow, RowLedger};
use crate::db::DbError;

/// gossip-ha's own schema on the winner (replicated like any other).
pub const SCHEMA: &str = "gossip_ha";
const TABLE: &str = "`gossip_ha`.`merged_rows`";
/// The named lock merges into one server take turns with (held by the merge's first connection
/// to the winner until it disconnects; released by the server if that connection dies).
const LOCK: &str = "gossip_ha.merge";
/// How long one wait for the lock lasts before the stop flag is looked at again.
const LOCK_POLL: Duration = Duration::from_secs(1);

/// Waits (up to `ctx.resync_timeout`, which bounds a whole copy) until no other merge into this
/// winner runs, then holds the lock on `winner` until it disconnects.
pub async fn take_turn(
    ctx: &RepairContext,
    winner: &mut Conn,
    target: &str,
    stop: &watch::Receiver<bool>,
) -> Result<(), DbError> {
    let started = Instant::now();
    let sql = format!("SELECT GET_LOCK('{LOCK}', {})", LOCK_POLL.as_secs());
    loop {
        stopped(stop, "merge")?;
        let got: Option<Option<u8>> = run(
            ctx.statement_timeout + LOCK_POLL,
            target,
            "wait for the other merges into the winner (GET_LOCK)",
            winner.query_first(&sql),
        )
        .await?;
        if got == Some(Some(1)) {
            return Ok(());
        }
        if started.elapsed() >= ctx.resync_timeout {
            return Err(DbError::Timeout {
                target: target.to_string(),
                what: "wait for another node's merge into the winner to finish".into(),
                timeout_ms: ctx.resync_timeout.as_millis() as u64,
            });
        }
    }
}

/// Creates the ledger if it is missing; returns what it holds.
pub async fn read(ctx: &RepairContext, winner: &mut Conn, target: &str) -> Result<RowLedger, DbError> {
    for sql in [
        format!("CREATE DATABASE IF NOT EXISTS `{SCHEMA}`"),
        format!(
            "CREATE TABLE IF NOT EXISTS {TABLE} (\
             origin_domain INT UNSIGNED NOT NULL, \
             origin_server INT UNSIGNED NOT NULL, \
             first_seq BIGINT UNSIGNED NOT NULL, \
             first_row BIGINT UNSIGNED NOT NULL, \
             last_seq BIGINT UNSIGNED NOT NULL, \
             last_row BIGINT UNSIGNED NOT NULL, \
             rows_in_batch BIGINT UNSIGNED NOT NULL, \
             merged_by VARCHAR(191) CHARACTER SET utf8mb4 NOT NULL, \
             committed_unix_s BIGINT NOT NULL, \
             PRIMARY KEY (origin_domain, origin_server, first_seq, first_row)) ENGINE=InnoDB"
        ),
    ] {
        run(
            ctx.statement_timeout,
            target,
            "create the merge ledger",
            winner.query_drop(sql),
        )
        .await?;
    }
    let lines: Vec<(u32, u32, u64, u64, u64, u64)> = run(
        ctx.statement_timeout,
        target,
        "read the merge ledger",
        winner.query(format!(
            "SELECT origin_domain, origin_server, first_seq, first_row, last_seq, last_row FROM {TABLE}"
        )),
    )
    .await?;
    Ok(RowLedger::new(lines.into_iter().map(
        |(domain, server, first_seq, first_row, last_seq, last_row)| {
            let at = |seq, row| OriginRow {
                domain,
                server,
                seq,
                row,
            };
            (at(first_seq, first_row), at(last_seq, last_row))
        },
    )))
}

/// The statement that records a run of rows in the same transaction as the rows. The node name
/// is plain text: quoted with mysql_async's own escaping.
pub fn record_statement(line: &LedgerLine, merged_by: &str) -> String {
    let quote = |text: &str| mysql_async::Value::from(text).as_sql(false);
    let (first, last) = (line.first, line.last);
    format!(
        "INSERT INTO {TABLE} (origin_domain, origin_server, first_seq, first_row, last_seq, last_row, rows_in_batch, merged_by, committed_unix_s) \
         VALUES ({}, {}, {}, {}, {}, {}, {}, {}, UNIX_TIMESTAMP())",
        first.domain,
        first.server,
        first.seq,
        first.row,
        last.seq,
        last.row,
        line.rows,
        quote(merged_by)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ledger_line_names_its_origin_not_the_node_that_merged_it() {
        let at = |seq, row| OriginRow {
            domain: 0,
            server: 2,
            seq,
            row,
        };
        let line = LedgerLine {
            first: at(336, 0),
            last: at(340, 1),
            rows: 10,
        };
        assert_eq!(
            record_statement(&line, "db'3"),
            "INSERT INTO `gossip_ha`.`merged_rows` (origin_domain, origin_server, first_seq, first_row, last_seq, last_row, rows_in_batch, merged_by, committed_unix_s) \
             VALUES (0, 2, 336, 0, 340, 1, 10, 'db\\'3', UNIX_TIMESTAMP())"
        );
    }
}
