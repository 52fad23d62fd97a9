//! The winner's record of a merge: which of the loser's logged rows (numbered in log order from
//! the fork) are already in it, one line per batch (its first row and how many). Each batch is
//! committed in one transaction with its line, so batches may commit in any order (several
//! connections copy at once) and a merge cut at any point and run again skips exactly what is in
//! and copies exactly what is not, with no scan of the winner's tables.

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

/// Row numbers already in: sorted, disjoint `[first, first + rows)` ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Committed {
    ranges: Vec<(u64, u64)>,
    /// The first range that may still hold or follow the next row asked about.
    cursor: usize,
}

impl Committed {
    pub fn new(mut ranges: Vec<(u64, u64)>) -> Self {
        ranges.sort_unstable();
        Committed { ranges, cursor: 0 }
    }

    /// Whether row `row` is in; rows must be asked about in increasing order.
    pub fn contains(&mut self, row: u64) -> bool {
        while let Some(&(first, rows)) = self.ranges.get(self.cursor) {
            if row < first {
                return false;
            }
            if row < first + rows {
                return true;
            }
            self.cursor += 1;
        }
        false
    }

    pub fn total(&self) -> u64 {
        self.ranges.iter().map(|(_, rows)| rows).sum()
    }
}

/// Creates the ledger if it is missing; returns the rows of this merge already in.
pub async fn committed(
    ctx: &RepairContext,
    winner: &mut Conn,
    target: &str,
    key: &LedgerKey,
) -> Result<Committed, DbError> {
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
             first_row BIGINT UNSIGNED NOT NULL, \
             rows_in_batch BIGINT UNSIGNED NOT NULL, \
             last_gtid VARCHAR(64) CHARACTER SET ascii NOT NULL, \
             committed_unix_s BIGINT NOT NULL, \
             PRIMARY KEY (loser, fork_gtid, first_row)) ENGINE=InnoDB"
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
    let ranges: Vec<(u64, u64)> = run(
        ctx.statement_timeout,
        target,
        "read the merge ledger",
        winner.exec(
            format!("SELECT first_row, rows_in_batch FROM {TABLE} WHERE loser = ? AND fork_gtid = ?"),
            (key.loser.as_str(), key.fork_gtid.as_str()),
        ),
    )
    .await?;
    Ok(Committed::new(ranges))
}

/// The statement that records a batch (`rows` rows from row number `first_row`) in the same
/// transaction as its rows. Node names and GTIDs are plain text: quoted with mysql_async's own
/// escaping.
pub fn record_statement(key: &LedgerKey, first_row: u64, rows: u64, last_gtid: &str) -> String {
    let quote = |text: &str| mysql_async::Value::from(text).as_sql(false);
    format!(
        "INSERT INTO {TABLE} (loser, fork_gtid, first_row, rows_in_batch, last_gtid, committed_unix_s) \
         VALUES ({}, {}, {first_row}, {rows}, {}, UNIX_TIMESTAMP())",
        quote(&key.loser),
        quote(&key.fork_gtid),
        quote(last_gtid)
    )
}

#[cfg(test)]
mod tests {
    use super::Committed;

    #[test]
    fn committed_ranges_answer_for_rows_in_order() {
        let mut committed = Committed::new(vec![(10, 5), (0, 3), (20, 1)]);
        let inside: Vec<u64> = (0..25).filter(|row| committed.contains(*row)).collect();
        assert_eq!(inside, [0, 1, 2, 10, 11, 12, 13, 14, 20]);
        assert_eq!(committed.total(), 9);
        assert!(!Committed::default().contains(0));
    }
}
