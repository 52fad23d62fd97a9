//! The merge: the loser's transactions since the fork are saved to a file (replayable, with the
//! rows decoded in comments), then the merged tables' rows of the window that the winner lacks
//! are copied into it in batches. A row is copied only if the winner has no row equal in every
//! copied column, so a merge interrupted and run again copies nothing twice.

use std::path::{Path, PathBuf};
use std::time::Instant;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Params, Row, Value};
use tokio::sync::watch;

use super::{ident, rate, run, stopped, tools, Progress, RepairContext};
use crate::config::MergeTable;
use crate::core::db::MergePlan;
use crate::db::DbError;

/// MariaDB refuses statements with more placeholders than this.
const MAX_PLACEHOLDERS: usize = 60_000;

pub async fn merge(
    ctx: &RepairContext,
    plan: &MergePlan,
    progress: &mut Progress,
    stop: &watch::Receiver<bool>,
) -> Result<String, DbError> {
    let started = Instant::now();
    let dir = repair_dir(&ctx.state_dir, &plan.winner)?;
    let saved = save_divergent(ctx, plan, &dir).await?;
    progress.finish(format!("saved this node's transactions since the fork: {saved}"));
    let mut local = ctx.connect_local().await?;
    let mut winner = ctx.connect_to(&plan.winner_addr).await?;
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

fn repair_dir(state_dir: &Path, winner: &str) -> Result<PathBuf, DbError> {
    let stamp = crate::agent::unix_ms();
    let safe: String = winner
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let dir = state_dir.join("splitbrain").join(format!("{stamp}-lost-to-{safe}"));
    std::fs::create_dir_all(&dir).map_err(|err| local_error(&dir, "create the split-brain directory", err))?;
    Ok(dir)
}

fn local_error(path: &Path, what: &str, err: std::io::Error) -> DbError {
    DbError::Query {
        target: path.display().to_string(),
        what: what.into(),
        message: err.to_string(),
    }
}

fn write_report(dir: &Path, summary: &str) -> Result<(), DbError> {
    let path = dir.join("merge-report.txt");
    crate::fsutil::write_atomic(&path, format!("{summary}\n").as_bytes())
        .map_err(|err| local_error(&path, "write the merge report", err))
}

/// Every transaction of this node after the fork, exported from its binary log with
/// `mariadb-binlog` (replayable; rows decoded in comments).
async fn save_divergent(ctx: &RepairContext, plan: &MergePlan, dir: &Path) -> Result<String, DbError> {
    let mut local = ctx.connect_local().await?;
    let target = ctx.local_target();
    let logs: Vec<Row> = run(
        ctx.statement_timeout,
        &target,
        "SHOW BINARY LOGS",
        local.query("SHOW BINARY LOGS"),
    )
    .await?;
    let _ = local.disconnect().await;
    let first: Option<String> = logs.first().and_then(|row| row.get(0));
    let Some(first) = first else {
        return Ok("no binary log on this node: nothing to save".into());
    };
    let path = dir.join("divergent-transactions.sql");
    let bytes = tools::export_binlog(ctx, dir, &first, &plan.fork_gtid, &path).await?;
    let from = if plan.fork_gtid.is_empty() {
        "the whole binary log (fork unknown)".to_string()
    } else {
        format!("after GTID {}", plan.fork_gtid)
    };
    Ok(format!(
        "{bytes} bytes of binary log {from} saved to {}",
        path.display()
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
    let Some(time_index) = copied_columns.iter().position(|column| *column == table.time_column) else {
        return Err(DbError::Unreadable {
            target: local_target,
            what: format!("merged table {}.{}", ctx.database, table.name),
            message: format!(
                "no column `{}` on both sides to select the window by",
                table.time_column
            ),
        });
    };
    let qualified = format!("{}.{}", ident(&ctx.database), ident(&table.name));
    let column_list = copied_columns.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ");
    let time = ident(&table.time_column);
    let page = format!(
        "SELECT {column_list} FROM {qualified} WHERE {time} >= ? ORDER BY {time} LIMIT {}",
        ctx.batch_rows
    );
    let same_time = format!("SELECT {column_list} FROM {qualified} WHERE {time} = ?");
    let started = Instant::now();
    let mut cursor: i64 = (plan.window_start_unix_ms / 1000) as i64;
    let (mut read, mut copied) = (0u64, 0u64);
    loop {
        stopped(stop, "merge")?;
        let rows: Vec<Row> = run(
            ctx.statement_timeout,
            &local_target,
            "read the window's rows",
            local.exec(&page, (cursor,)),
        )
        .await?;
        if rows.is_empty() {
            break;
        }
        let full = rows.len() == ctx.batch_rows;
        let stamp = |row: &Row| row.get::<Option<i64>, _>(time_index).flatten().unwrap_or(i64::MIN);
        let (rows, next) = if !full {
            (rows, None)
        } else {
            let (first, last) = (stamp(&rows[0]), stamp(&rows[rows.len() - 1]));
            if first == last {
                // One time value fills the page: take all its rows at once, then move past it.
                let all: Vec<Row> = run(
                    ctx.statement_timeout,
                    &local_target,
                    "read the window's rows",
                    local.exec(&same_time, (last,)),
                )
                .await?;
                (all, Some(last + 1))
            } else {
                // The last time value may go on in the next page: leave it whole for that one.
                (rows.into_iter().filter(|row| stamp(row) < last).collect(), Some(last))
            }
        };
        read += rows.len() as u64;
        copied += insert_missing(ctx, winner, winner_target, &qualified, &copied_columns, rows).await?;
        progress.report(|| {
            format!(
                "merging {}: {read} rows read, {copied} copied into {} ({:.0} rows/s)",
                table.name,
                plan.winner,
                rate(read as f64, started)
            )
        });
        match next {
            Some(next) => cursor = next,
            None => break,
        }
    }
    progress.finish(format!(
        "merged {}: {copied} of {read} rows copied into {}",
        table.name, plan.winner
    ));
    Ok((read, copied))
}

/// One statement per chunk: the rows go in as a derived table and only those the winner has no
/// equal of are inserted (`<=>` so NULLs compare equal).
async fn insert_missing(
    ctx: &RepairContext,
    winner: &mut Conn,
    target: &str,
    qualified: &str,
    columns: &[String],
    rows: Vec<Row>,
) -> Result<u64, DbError> {
    let per_chunk = (MAX_PLACEHOLDERS / columns.len().max(1)).clamp(1, ctx.batch_rows.max(1));
    let mut copied = 0;
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<Row> = rows.by_ref().take(per_chunk).collect();
        let sql = insert_statement(qualified, columns, chunk.len());
        let values: Vec<Value> = chunk.into_iter().flat_map(Row::unwrap).collect();
        run(
            ctx.statement_timeout,
            target,
            "insert the missing rows",
            winner.exec_drop(&sql, Params::Positional(values)),
        )
        .await?;
        copied += winner.affected_rows();
    }
    Ok(copied)
}

fn insert_statement(qualified: &str, columns: &[String], rows: usize) -> String {
    let names: Vec<String> = columns.iter().map(|c| ident(c)).collect();
    let first = names
        .iter()
        .map(|name| format!("? AS {name}"))
        .collect::<Vec<_>>()
        .join(", ");
    let other = vec!["?"; names.len()].join(", ");
    let mut derived = format!("SELECT {first}");
    for _ in 1..rows {
        derived.push_str(" UNION ALL SELECT ");
        derived.push_str(&other);
    }
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
        "INSERT INTO {qualified} ({}) SELECT {picked} FROM ({derived}) AS d WHERE NOT EXISTS (SELECT 1 FROM {qualified} AS x WHERE {equal})",
        names.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::insert_statement;

    #[test]
    fn the_insert_only_adds_rows_the_winner_lacks() {
        let sql = insert_statement("`pandora`.`tevento`", &["a".into(), "b".into()], 2);
        assert_eq!(
            sql,
            "INSERT INTO `pandora`.`tevento` (`a`, `b`) SELECT d.`a`, d.`b` FROM (SELECT ? AS `a`, ? AS `b` UNION ALL SELECT ?, ?) AS d \
             WHERE NOT EXISTS (SELECT 1 FROM `pandora`.`tevento` AS x WHERE x.`a` <=> d.`a` AND x.`b` <=> d.`b`)"
        );
    }
}
