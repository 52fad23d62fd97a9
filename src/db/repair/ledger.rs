//! The winner's record of a merge: how many of the loser's logged rows (counted in log order,
//! from the fork) are already in it. Each batch of rows is committed in one transaction with
//! its ledger line, so a merge cut at any point and run again skips exactly what is in and
//! copies exactly what is not, with no scan of the winner's tables.

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use super::{run, RepairContext};
use crate::db::DbError;

/// gossip-ha's own schema on the winner (replicated like any other).
pub const SCHEMA: &str = "gossip_ha";
const TABLE: &str = "`gossip_ha`.`merge_ledger`";
/// The ledger's key holds the fork GTID text.
pub const MAX_FORK_TEXT: usize = 2048;

/// One merge: the loser's rows since one fork.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerKey {
    pub loser: String,
    pub fork_gtid: String,
}

/// Creates the ledger if it is missing; returns how many rows of this merge are already in.
pub async fn rows_already_merged(
    ctx: &RepairContext,
    winner: &mut Conn,
    target: &str,
    key: &LedgerKey,
) -> Result<u64, DbError> {
    if key.fork_gtid.len() > MAX_FORK_TEXT {
        return Err(DbError::Unreadable {
            target: target.to_string(),
            what: "merge ledger".into(),
            message: format!(
                "the fork GTID is {} characters, more than the ledger's {MAX_FORK_TEXT}",
                key.fork_gtid.len()
            ),
        });
    }
    for sql in [
        format!("CREATE DATABASE IF NOT EXISTS `{SCHEMA}`"),
        format!(
            "CREATE TABLE IF NOT EXISTS {TABLE} (\
             loser VARCHAR(191) CHARACTER SET utf8mb4 NOT NULL, \
             fork_gtid VARCHAR({MAX_FORK_TEXT}) CHARACTER SET ascii NOT NULL, \
             rows_merged BIGINT UNSIGNED NOT NULL, \
             last_gtid VARCHAR(64) CHARACTER SET ascii NOT NULL, \
             updated_unix_s BIGINT NOT NULL, \
             PRIMARY KEY (loser, fork_gtid)) ENGINE=InnoDB"
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
    let merged: Option<u64> = run(
        ctx.statement_timeout,
        target,
        "read the merge ledger",
        winner.exec_first(
            format!("SELECT rows_merged FROM {TABLE} WHERE loser = ? AND fork_gtid = ?"),
            (key.loser.as_str(), key.fork_gtid.as_str()),
        ),
    )
    .await?;
    Ok(merged.unwrap_or(0))
}

/// The statement that records `rows_merged` in the same transaction as the batch that got there.
/// Node names and GTIDs are plain text: quoted with mysql_async's own escaping.
pub fn record_statement(key: &LedgerKey, rows_merged: u64, last_gtid: &str) -> String {
    let quote = |text: &str| mysql_async::Value::from(text).as_sql(false);
    format!(
        "INSERT INTO {TABLE} (loser, fork_gtid, rows_merged, last_gtid, updated_unix_s) \
         VALUES ({}, {}, {rows_merged}, {}, UNIX_TIMESTAMP()) \
         ON DUPLICATE KEY UPDATE rows_merged = VALUES(rows_merged), last_gtid = VALUES(last_gtid), \
         updated_unix_s = VALUES(updated_unix_s)",
        quote(&key.loser),
        quote(&key.fork_gtid),
        quote(last_gtid)
    )
}
