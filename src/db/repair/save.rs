//! Saving what a rebuild would wipe, before it does: the node's binary log and a logical dump of
//! its user databases, under `state_dir` (directories 0700, files 0600: they hold the
//! application's rows). Used before a clone of a setup-only node, on `gossip-ha resync` of a
//! node with an unrelated history, and by a merge whose fork cannot be read from the binary log.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use mysql_async::prelude::Queryable;
use mysql_async::Row;

use super::tools::{self, ClientOptions};
use super::{run, RepairContext};
use crate::db::DbError;

/// `<state_dir>/<area>/<unix ms>-<label>`, made 0700 (its parents too, where this creates them).
pub fn private_dir(state_dir: &Path, area: &str, label: &str) -> Result<PathBuf, DbError> {
    let safe: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let dir = state_dir.join(area).join(format!("{}-{safe}", crate::clock::unix_ms()));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|err| local_error(&dir, "create the directory for saved data", err))?;
    for path in [state_dir.join(area), dir.clone()] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))
            .map_err(|err| local_error(&path, "make the directory private", err))?;
    }
    Ok(dir)
}

/// Removes `dir` when nothing worth keeping landed in it (no file with content): a failed
/// repair leaves no empty folders behind.
pub fn remove_if_empty(dir: &Path) {
    let worth_keeping = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .any(|entry| entry.metadata().is_ok_and(|meta| meta.len() > 0))
        })
        .unwrap_or(true);
    if !worth_keeping {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// An empty 0600 file for a tool to write into (the tools keep an existing file's mode).
pub fn private_file(path: &Path) -> Result<(), DbError> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map(drop)
        .map_err(|err| local_error(path, "create a private file", err))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|err| local_error(path, "make the file private", err))
}

pub fn local_error(path: &Path, what: &str, err: std::io::Error) -> DbError {
    DbError::Query {
        target: path.display().to_string(),
        what: what.into(),
        message: err.to_string(),
    }
}

/// Saves everything of this node into `dir`: its whole binary log and a dump of every user
/// database. Returns a line naming what was saved where.
pub async fn save_everything(ctx: &RepairContext, dir: &Path) -> Result<String, DbError> {
    save_log_and_dump(ctx, dir, "binary-log.sql").await
}

/// The whole binary log into `dir/<log_file>`, and a dump of every user database beside it.
pub async fn save_log_and_dump(ctx: &RepairContext, dir: &Path, log_file: &str) -> Result<String, DbError> {
    let log = save_binlog(ctx, dir, "", log_file).await?;
    let dump = save_dump(ctx, dir).await?;
    Ok(format!("{log}; {dump}"))
}

/// This node's binary log after `from_gtid` (all of it when empty) into `dir/<file>`.
pub async fn save_binlog(ctx: &RepairContext, dir: &Path, from_gtid: &str, file: &str) -> Result<String, DbError> {
    let Some(first) = first_binlog(ctx).await? else {
        return Ok("no binary log on this node".into());
    };
    let path = dir.join(file);
    private_file(&path)?;
    let bytes = export_binlog(ctx, dir, &first, from_gtid, &path).await?;
    let from = if from_gtid.is_empty() {
        format!("all of it, from {first}")
    } else {
        format!("after GTID {from_gtid}")
    };
    Ok(format!(
        "{bytes} bytes of binary log ({from}) saved to {}",
        path.display()
    ))
}

async fn first_binlog(ctx: &RepairContext) -> Result<Option<String>, DbError> {
    let mut local = ctx.connect_local().await?;
    let target = ctx.local_target();
    let on: Option<u64> = run(
        ctx.statement_timeout,
        &target,
        "SELECT @@log_bin",
        local.query_first("SELECT @@log_bin"),
    )
    .await?;
    let logs: Vec<Row> = if on == Some(1) {
        run(
            ctx.statement_timeout,
            &target,
            "SHOW BINARY LOGS",
            local.query("SHOW BINARY LOGS"),
        )
        .await?
    } else {
        Vec::new()
    };
    let _ = local.disconnect().await;
    Ok(logs.first().and_then(|row| row.get(0)))
}

/// A logical dump of every user database into `dir/user-databases.sql` (one consistent
/// snapshot, replayable with `mariadb < file`).
pub async fn save_dump(ctx: &RepairContext, dir: &Path) -> Result<String, DbError> {
    let databases = local_user_databases(ctx).await?;
    if databases.is_empty() {
        return Ok("no user database to dump".into());
    }
    let path = dir.join("user-databases.sql");
    private_file(&path)?;
    let options = ClientOptions::write(dir, "local", &ctx.local, None)?;
    let mut args = vec![
        options.arg(),
        "--single-transaction".into(),
        "--routines".into(),
        "--triggers".into(),
        "--events".into(),
        format!("--result-file={}", path.display()),
        "--databases".into(),
    ];
    args.extend(databases.iter().cloned());
    let child = tools::spawn("mariadb-dump", &args, false, false)?;
    match tokio::time::timeout(ctx.resync_timeout, tools::finish("mariadb-dump", child)).await {
        Ok(result) => result?,
        Err(_) => {
            return Err(tools::tool_error(
                "mariadb-dump",
                format!("did not finish within {} s", ctx.resync_timeout.as_secs()),
            ))
        }
    }
    let bytes = std::fs::metadata(&path).map(|meta| meta.len()).unwrap_or(0);
    Ok(format!(
        "a dump of {} ({bytes} bytes) saved to {}",
        databases.join(", "),
        path.display()
    ))
}

async fn local_user_databases(ctx: &RepairContext) -> Result<Vec<String>, DbError> {
    let mut local = ctx.connect_local().await?;
    let names = super::user_databases(ctx, &mut local, &ctx.local_target()).await;
    let _ = local.disconnect().await;
    names
}

/// This node's binary log after `fork_gtid` (all of it when the fork is unknown), read from
/// the running server from `first_log` on, into `path`. Returns its size in bytes.
async fn export_binlog(
    ctx: &RepairContext,
    dir: &Path,
    first_log: &str,
    fork_gtid: &str,
    path: &Path,
) -> Result<u64, DbError> {
    let options = ClientOptions::write(dir, "local", &ctx.local, None)?;
    let mut args = vec![
        options.arg(),
        "--read-from-remote-server".into(),
        "--to-last-log".into(),
        "--verbose".into(),
        format!("--result-file={}", path.display()),
    ];
    if !fork_gtid.is_empty() {
        args.push(format!("--start-position={fork_gtid}"));
    }
    args.push(first_log.to_string());
    let child = tools::spawn("mariadb-binlog", &args, false, false)?;
    match tokio::time::timeout(ctx.resync_timeout, tools::finish("mariadb-binlog", child)).await {
        Ok(result) => result?,
        Err(_) => {
            return Err(tools::tool_error(
                "mariadb-binlog",
                format!("did not finish within {} s", ctx.resync_timeout.as_secs()),
            ))
        }
    }
    std::fs::metadata(path)
        .map(|meta| meta.len())
        .map_err(|err| tools::tool_error("mariadb-binlog", format!("{}: {err}", path.display())))
}
