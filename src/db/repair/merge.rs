//! The merge: the loser's transactions since the fork are saved to a file (replayable, with the
//! rows decoded in comments); the rows those transactions inserted into the merged tables are
//! copied into the winner exactly, read from the loser's binary log (`divergent`), each batch
//! committed with the winner's ledger lines (`ledger`, by the rows' origin transactions), so a
//! merge cut anywhere and run again, or another loser's merge of the same transactions, copies
//! nothing twice and skips nothing; merges into one winner take turns. Where the log cannot say which rows were written
//! (statement events, a purged log), the table's time window is copied instead (`window`).
//! Everything not merged is counted in the summary, which names the file that holds it.

use std::path::Path;
use std::time::Instant;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use tokio::sync::watch;

use super::divergent::{self, LogReading, MergedTable};
use super::ledger;
use super::literal::ColumnKind;
use super::save::{self, local_error};
use super::window::{self, WindowCopy};
use super::{ident, prepare_merge_session, rate, run, Progress, RepairContext};
use crate::core::db::MergePlan;
use crate::db::DbError;

/// Where a split-brain loser's transactions are saved, whatever could be read of its log.
const DIVERGENT_FILE: &str = "divergent-transactions.sql";

/// One column as `information_schema.COLUMNS` describes it.
#[derive(Debug, Clone)]
struct Column {
    name: String,
    data_type: String,
    column_type: String,
}

/// A merge done: its summary, and what it could neither copy nor save (a binary log purged
/// past the fork), which the rebuild must then save before it wipes this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    pub summary: String,
    pub unsaved: Option<String>,
}

pub async fn merge(
    ctx: &RepairContext,
    plan: &MergePlan,
    progress: &mut Progress,
    stop: &watch::Receiver<bool>,
) -> Result<Merged, DbError> {
    let started = Instant::now();
    let dir = save::private_dir(&ctx.state_dir, "splitbrain", &format!("lost-to-{}", plan.winner))?;
    // The save and the copy run at once: the copy only adds to the winner, and nothing of this
    // node is replaced before both have finished (the rebuild comes after the merge).
    let (saved, copied) = tokio::join!(save_divergent(ctx, plan, &dir), copy(ctx, plan, progress, stop));
    let saved = match saved {
        Ok(saved) => saved,
        Err(err) => {
            save::remove_if_empty(&dir);
            return Err(err);
        }
    };
    progress.finish(format!("saved this node's transactions since the fork: {saved}"));
    let (reading, windows) = copied?;
    let copied: u64 =
        reading.rows_copied.iter().sum::<u64>() + windows.iter().map(|(_, copy)| copy.copied).sum::<u64>();
    let summary = format!(
        "merged into {} in {:.1} s ({:.0} rows/s): {}; {saved}",
        plan.winner,
        started.elapsed().as_secs_f64(),
        rate(copied as f64, started),
        describe(ctx, plan, &reading, &windows, &dir.join(DIVERGENT_FILE))
    );
    write_report(&dir, &summary)?;
    let unsaved = reading.gap.map(|gap| {
        format!("this node's binary log no longer holds all its transactions since the fork ({gap}), so rows outside the window are neither merged nor in the saved file")
    });
    Ok(Merged { summary, unsaved })
}

/// The rows from the log, then the windows of the tables the log could not say for.
async fn copy(
    ctx: &RepairContext,
    plan: &MergePlan,
    progress: &mut Progress,
    stop: &watch::Receiver<bool>,
) -> Result<(LogReading, Vec<(usize, WindowCopy)>), DbError> {
    let mut local = ctx.connect_local().await?;
    let mut winner = ctx.connect_to(&plan.winner_addr).await?;
    prepare_merge_session(ctx, &mut local, &ctx.local_target()).await?;
    prepare_merge_session(ctx, &mut winner, &plan.winner_addr).await?;
    // Another loser of the same split (the losing primary's replica, or the primary) may be
    // merging the same transactions: one at a time, each reading the ledger the last one left.
    ledger::take_turn(ctx, &mut winner, &plan.winner_addr, stop).await?;
    let (tables, columns) = merged_tables(ctx, plan, &mut local, &mut winner).await?;
    let reading = divergent::merge_from_log(
        ctx,
        &plan.fork_gtid,
        &tables,
        &mut winner,
        &plan.winner_addr,
        &plan.winner,
        progress,
        stop,
    )
    .await?;
    let by_window: Vec<usize> = match reading.gap {
        Some(_) => (0..tables.len()).collect(),
        None => reading.statement_tables.iter().copied().collect(),
    };
    let mut windows = Vec::new();
    for index in by_window {
        let table = &ctx.tables[index];
        if !columns[index].contains(&table.time_column) {
            return Err(DbError::Unreadable {
                target: ctx.local_target(),
                what: format!("merged table {}.{}", ctx.database, table.name),
                message: format!(
                    "no column `{}` on both sides to select the window by",
                    table.time_column
                ),
            });
        }
        let copy = window::copy_table(
            ctx,
            plan,
            table,
            &columns[index],
            &mut local,
            &mut winner,
            progress,
            stop,
        )
        .await?;
        windows.push((index, copy));
    }
    let _ = local.disconnect().await;
    let _ = winner.disconnect().await;
    Ok((reading, windows))
}

/// Each configured table as both sides hold it, and the names of the columns copied.
async fn merged_tables(
    ctx: &RepairContext,
    plan: &MergePlan,
    local: &mut Conn,
    winner: &mut Conn,
) -> Result<(Vec<MergedTable>, Vec<Vec<String>>), DbError> {
    let local_target = ctx.local_target();
    let mut tables = Vec::new();
    let mut names = Vec::new();
    for table in &ctx.tables {
        let mine = columns(ctx, local, &local_target, &table.name).await?;
        let theirs = columns(ctx, winner, &plan.winner_addr, &table.name).await?;
        let copied: Vec<(usize, &Column)> = mine
            .iter()
            .enumerate()
            .filter(|(_, column)| {
                theirs.iter().any(|their| their.name == column.name) && Some(&column.name) != table.fresh_id.as_ref()
            })
            .collect();
        let list: Vec<String> = copied.iter().map(|(_, column)| ident(&column.name)).collect();
        tables.push(MergedTable {
            name: table.name.clone(),
            loser_columns: mine.len(),
            copied: copied
                .iter()
                .map(|(index, column)| (*index, ColumnKind::of(&column.data_type, &column.column_type)))
                .collect(),
            insert_prefix: format!(
                "INSERT INTO {}.{} ({}) VALUES ",
                ident(&ctx.database),
                ident(&table.name),
                list.join(", ")
            ),
        });
        names.push(copied.iter().map(|(_, column)| column.name.clone()).collect());
    }
    Ok((tables, names))
}

async fn columns(ctx: &RepairContext, conn: &mut Conn, target: &str, table: &str) -> Result<Vec<Column>, DbError> {
    let sql = "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE FROM information_schema.COLUMNS \
               WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION";
    let rows: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> = run(
        ctx.statement_timeout,
        target,
        "list the merged table's columns",
        conn.exec(sql, (ctx.database.as_str(), table)),
    )
    .await?;
    if rows.is_empty() {
        return Err(DbError::Unreadable {
            target: target.to_string(),
            what: format!("merged table {}.{table}", ctx.database),
            message: "no such table".into(),
        });
    }
    let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
    Ok(rows
        .into_iter()
        .map(|(name, data_type, column_type)| Column {
            name: text(name),
            data_type: text(data_type),
            column_type: text(column_type),
        })
        .collect())
}

/// "5 rows of tagente_datos, 0 of tagente_datos_string, 5 of tevento from this node's binary log
/// since the fork at 0-1-100 (12 transactions); not merged, saved in FILE: 2 transactions
/// (pandora.tconfig: 1 row updated; …)".
fn describe(
    ctx: &RepairContext,
    plan: &MergePlan,
    reading: &LogReading,
    windows: &[(usize, WindowCopy)],
    file: &Path,
) -> String {
    let mut parts = Vec::new();
    if reading.gap.is_none() {
        let rows: Vec<String> = ctx
            .tables
            .iter()
            .zip(&reading.rows_copied)
            .enumerate()
            .map(|(index, (table, rows))| {
                let unit = if index == 0 { " rows" } else { "" };
                format!("{rows}{unit} of {}", table.name)
            })
            .collect();
        let earlier = match reading.rows_copied_before {
            0 => String::new(),
            rows => format!(
                "; {rows} were in already from an earlier run (of this merge, or of another node's holding the same transactions)"
            ),
        };
        parts.push(format!(
            "{} exactly as this node's binary log has them since the fork at {} ({} transactions{earlier})",
            rows.join(", "),
            plan.fork_gtid,
            reading.transactions
        ));
    }
    if let Some(gap) = &reading.gap {
        parts.push(format!("no exact merge: {gap}"));
    }
    for (index, copy) in windows {
        parts.push(format!(
            "{} by its time window from unix time {}: {} of {} rows copied (rows dated earlier are not; they are in {})",
            ctx.tables[*index].name,
            plan.window_start_unix_ms / 1000,
            copy.copied,
            copy.read,
            file.display()
        ));
    }
    if reading.transactions_not_merged > 0 {
        let detail: Vec<String> = reading
            .untouched
            .iter()
            .map(|(table, untouched)| {
                let counts = [
                    (untouched.inserted, "inserted"),
                    (untouched.updated, "updated"),
                    (untouched.deleted, "deleted"),
                ];
                let mut said: Vec<String> = counts
                    .iter()
                    .filter(|(count, _)| *count > 0)
                    .map(|(count, verb)| format!("{count} rows {verb}"))
                    .collect();
                if untouched.statements > 0 {
                    said.push(format!("{} statements", untouched.statements));
                }
                format!("{table}: {}", said.join(", "))
            })
            .collect();
        parts.push(format!(
            "not merged, saved in {}: {} transactions touching other tables or not inserting ({})",
            file.display(),
            reading.transactions_not_merged,
            detail.join("; ")
        ));
    }
    parts.join("; ")
}

fn write_report(dir: &Path, summary: &str) -> Result<(), DbError> {
    let path = dir.join("merge-report.txt");
    // It names tables and rows of the application: 0600 like the saved transactions.
    save::private_file(&path)?;
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
