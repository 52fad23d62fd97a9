//! The fallback where the log cannot say which rows the loser wrote (statement events under
//! `binlog_format=MIXED`, or a log purged past the fork): the merged table's rows whose time
//! column is inside the split-brain window and that the winner lacks are copied. A row is copied
//! only if the winner has no row equal in every copied column, so a run again copies nothing
//! twice; a row dated before the window (an agent's buffered data, delivered late) is missed,
//! and the summary says so.

use std::time::Instant;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use tokio::sync::watch;

use super::{ident, rate, run, stopped, Progress, RepairContext};
use crate::config::MergeTable;
use crate::core::db::MergePlan;
use crate::db::DbError;

/// Keeps each insert well under MariaDB's default `max_allowed_packet` (16 MiB).
const MAX_STATEMENT_BYTES: usize = 4 * 1024 * 1024;

/// Rows of `table` read from the window and copied into the winner.
pub struct WindowCopy {
    pub read: u64,
    pub copied: u64,
}

/// `columns` are the ones both sides have (the fresh id left out), and include the time column.
#[allow(clippy::too_many_arguments)]
pub async fn copy_table(
    ctx: &RepairContext,
    plan: &MergePlan,
    table: &MergeTable,
    columns: &[String],
    local: &mut Conn,
    winner: &mut Conn,
    progress: &mut Progress,
    stop: &watch::Receiver<bool>,
) -> Result<WindowCopy, DbError> {
    let local_target = ctx.local_target();
    let winner_target = plan.winner_addr.as_str();
    let qualified = format!("{}.{}", ident(&ctx.database), ident(&table.name));
    let column_list = columns.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ");
    let time = ident(&table.time_column);
    // One streamed read of the window: paging by the time column would rescan the table for
    // every page where that column has no index of its own.
    let window = format!("SELECT {column_list} FROM {qualified} WHERE {time} >= ?");
    let started = Instant::now();
    let window_start_s = (plan.window_start_unix_ms / 1000) as i64;
    let (mut read, mut copied) = (0u64, 0u64);
    let mut result = run(
        ctx.statement_timeout,
        &local_target,
        "read the window's rows",
        local.exec_iter(window.as_str(), (window_start_s,)),
    )
    .await?;
    loop {
        stopped(stop, "merge")?;
        let mut batch = Vec::with_capacity(ctx.batch_rows.min(10_000));
        while batch.len() < ctx.batch_rows {
            match run(
                ctx.statement_timeout,
                &local_target,
                "read the window's rows",
                result.next(),
            )
            .await?
            {
                Some(row) => batch.push(row),
                None => break,
            }
        }
        if batch.is_empty() {
            break;
        }
        read += batch.len() as u64;
        copied += insert_missing(ctx, winner, winner_target, &qualified, columns, batch).await?;
        progress.report(|| {
            format!(
                "merging {} by its time window: {read} rows read, {copied} copied into {} ({:.0} rows/s)",
                table.name,
                plan.winner,
                rate(read as f64, started)
            )
        });
    }
    drop(result);
    Ok(WindowCopy { read, copied })
}

/// One statement per chunk of rows (see `insert_statement`).
async fn insert_missing(
    ctx: &RepairContext,
    winner: &mut Conn,
    target: &str,
    qualified: &str,
    columns: &[String],
    rows: Vec<Row>,
) -> Result<u64, DbError> {
    let mut copied = 0;
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let mut literals = Vec::new();
        let mut bytes = 0;
        while let Some(row) = rows.next_if(|_| bytes < MAX_STATEMENT_BYTES && literals.len() < ctx.batch_rows) {
            let values: Vec<String> = row.unwrap().iter().map(|value| value.as_sql(false)).collect();
            let literal = format!("({})", values.join(", "));
            bytes += literal.len();
            literals.push(literal);
        }
        let sql = insert_statement(qualified, columns, &literals);
        run(
            ctx.statement_timeout,
            target,
            "insert the missing rows",
            winner.query_drop(&sql),
        )
        .await?;
        copied += winner.affected_rows();
    }
    Ok(copied)
}

/// The rows go in as a table value constructor named by a CTE (one statement, parsed once; a
/// `UNION ALL` of single-row selects is an order of magnitude slower, and MariaDB does not type
/// placeholders inside `VALUES`), and only those the winner has no equal of are inserted (`<=>`:
/// NULLs compare equal). `rows` are SQL literals made by mysql_async's own escaping, for a
/// session without `NO_BACKSLASH_ESCAPES` (set so when connecting).
fn insert_statement(qualified: &str, columns: &[String], rows: &[String]) -> String {
    let names: Vec<String> = columns.iter().map(|c| ident(c)).collect();
    let picked = names
        .iter()
        .map(|name| format!("d.{name}"))
        .collect::<Vec<_>>()
        .join(", ");
    let equal = names
        .iter()
        .map(|name| format!("x.{name} <=> d.{name}"))
        .collect::<Vec<_>>()
        .join(" AND ");
    format!(
        "INSERT INTO {qualified} ({list}) WITH d ({list}) AS (VALUES {values}) SELECT {picked} FROM d WHERE NOT EXISTS (SELECT 1 FROM {qualified} AS x WHERE {equal})",
        list = names.join(", "),
        values = rows.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use mysql_async::Value;

    use super::insert_statement;

    #[test]
    fn the_insert_only_adds_rows_the_winner_lacks() {
        let rows = [
            format!("({}, {})", Value::Int(1).as_sql(false), Value::NULL.as_sql(false)),
            format!(
                "({}, {})",
                Value::Int(2).as_sql(false),
                Value::from("it's").as_sql(false)
            ),
        ];
        let sql = insert_statement("`pandora`.`tevento`", &["a".into(), "b".into()], &rows);
        assert_eq!(
            sql,
            "INSERT INTO `pandora`.`tevento` (`a`, `b`) WITH d (`a`, `b`) AS (VALUES (1, NULL), (2, 'it\\'s')) SELECT d.`a`, d.`b` FROM d \
             WHERE NOT EXISTS (SELECT 1 FROM `pandora`.`tevento` AS x WHERE x.`a` <=> d.`a` AND x.`b` <=> d.`b`)"
        );
    }
}
