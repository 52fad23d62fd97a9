//! The merge: the loser's transactions since the fork are saved to a file (replayable, with the
//! rows decoded in comments), then the merged tables' rows of the window that the winner lacks
//! are copied into it in batches. A row is copied only if the winner has no row equal in every
//! copied column, so a merge interrupted and run again copies nothing twice.

use std::path::Path;
use std::time::Instant;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use tokio::sync::watch;

use super::save::{self, local_error};
use super::{ident, rate, run, stopped, Progress, RepairContext};
use crate::config::MergeTable;
use crate::core::db::MergePlan;
use crate::db::DbError;

/// Where a split-brain loser's transactions are saved, whatever could be read of its log.
const DIVERGENT_FILE: &str = "divergent-transactions.sql";

/// Keeps each insert well under MariaDB's default `max_allowed_packet` (16 MiB).
const MAX_STATEMENT_BYTES: usize = 4 * 1024 * 1024;

pub async fn merge(
    ctx: &RepairContext,
    plan: &MergePlan,
    progress: &mut Progress,
    stop: &watch::Receiver<bool>,
) -> Result<String, DbError> {
    let started = Instant::now();
    let dir = save::private_dir(&ctx.state_dir, "splitbrain", &format!("lost-to-{}", plan.winner))?;
    let saved = save_divergent(ctx, plan, &dir).await;
    if saved.is_err() {
        save::remove_if_empty(&dir);
    }
    let saved = saved?;
    progress.finish(format!("saved this node's transactions since the fork: {saved}"));
    let mut local = ctx.connect_local().await?;
    let mut winner = ctx.connect_to(&plan.winner_addr).await?;
    // The inserts carry literals escaped with backslashes.
    let escapes = "SET SESSION sql_mode = REPLACE(@@sql_mode, 'NO_BACKSLASH_ESCAPES', '')";
    run(
        ctx.statement_timeout,
        &plan.winner_addr,
        escapes,
        winner.query_drop(escapes),
    )
    .await?;
    let mut copied_total = 0u64;
    let mut lines = Vec::new();
    for table in &ctx.tables {
        let (read, copied) = copy_table(ctx, plan, table, &mut local, &mut winner, progress, stop).await?;
        copied_total += copied;
        lines.push(format!("{}: {copied} of {read} rows copied", table.name));
    }
    let _ = local.disconnect().await;
    let _ = winner.disconnect().await;
    let summary = format!(
        "merged into {} in {:.1} s ({:.0} rows/s): {}; {saved}",
        plan.winner,
        started.elapsed().as_secs_f64(),
        rate(copied_total as f64, started),
        lines.join(", ")
    );
    write_report(&dir, &summary)?;
    Ok(summary)
}

fn write_report(dir: &Path, summary: &str) -> Result<(), DbError> {
    let path = dir.join("merge-report.txt");
    crate::fsutil::write_atomic(&path, format!("{summary}\n").as_bytes())
        .map_err(|err| local_error(&path, "write the merge report", err))
}

/// Every transaction of this node after the fork, exported from its binary log with
/// `mariadb-binlog` (replayable; rows decoded in comments). When the log cannot be read from the
/// fork (the fork is not in this node's log: it never wrote it there, or purged it), all of the
/// log is saved instead, and a dump of the user databases beside it: never a repair that fails
/// forever at its save step.
async fn save_divergent(ctx: &RepairContext, plan: &MergePlan, dir: &Path) -> Result<String, DbError> {
    if plan.fork_gtid.is_empty() {
        let all = save::save_binlog(ctx, dir, "", DIVERGENT_FILE).await?;
        return Ok(format!("{all} (the fork is unknown)"));
    }
    let from_fork = save::save_binlog(ctx, dir, &plan.fork_gtid, DIVERGENT_FILE).await;
    let Err(err) = from_fork else {
        return from_fork;
    };
    // The same file holds all of the log then, the divergent part included.
    let everything = save::save_log_and_dump(ctx, dir, DIVERGENT_FILE).await?;
    Ok(format!(
        "the binary log could not be read from the fork at GTID {} ({err}), so instead {everything}",
        plan.fork_gtid
    ))
}

async fn columns(conn: &mut Conn, ctx: &RepairContext, target: &str, table: &str) -> Result<Vec<String>, DbError> {
    let sql = "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION";
    run(
        ctx.statement_timeout,
        target,
        "list the merged table's columns",
        conn.exec(sql, (ctx.database.as_str(), table)),
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn copy_table(
    ctx: &RepairContext,
    plan: &MergePlan,
    table: &MergeTable,
    local: &mut Conn,
    winner: &mut Conn,
    progress: &mut Progress,
    stop: &watch::Receiver<bool>,
) -> Result<(u64, u64), DbError> {
    let local_target = ctx.local_target();
    let winner_target = plan.winner_addr.as_str();
    let mine = columns(local, ctx, &local_target, &table.name).await?;
    let theirs = columns(winner, ctx, winner_target, &table.name).await?;
    let missing = |target: &str| DbError::Unreadable {
        target: target.to_string(),
        what: format!("merged table {}.{}", ctx.database, table.name),
        message: "no such table".into(),
    };
    if mine.is_empty() {
        return Err(missing(&local_target));
    }
    if theirs.is_empty() {
        return Err(missing(winner_target));
    }
    let copied_columns: Vec<String> = mine
        .into_iter()
        .filter(|column| theirs.contains(column) && Some(column) != table.fresh_id.as_ref())
        .collect();
    if !copied_columns.contains(&table.time_column) {
        return Err(DbError::Unreadable {
            target: local_target,
            what: format!("merged table {}.{}", ctx.database, table.name),
            message: format!(
                "no column `{}` on both sides to select the window by",
                table.time_column
            ),
        });
    }
    let qualified = format!("{}.{}", ident(&ctx.database), ident(&table.name));
    let column_list = copied_columns.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ");
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
        let mut batch = Vec::with_capacity(ctx.batch_rows);
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
        copied += insert_missing(ctx, winner, winner_target, &qualified, &copied_columns, batch).await?;
        progress.report(|| {
            format!(
                "merging {}: {read} rows read, {copied} copied into {} ({:.0} rows/s)",
                table.name,
                plan.winner,
                rate(read as f64, started)
            )
        });
    }
    drop(result);
    progress.finish(format!(
        "merged {}: {copied} of {read} rows copied into {}",
        table.name, plan.winner
    ));
    Ok((read, copied))
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
