//! Rebuilding a node from the winner with a logical copy: `mariadb-dump` of the winner's user
//! databases (one consistent snapshot, with the GTID it was taken at) streamed straight into
//! this node's server, without touching its binary log, then the replica position set to that
//! GTID. A winner holding no user database yet gives nothing to copy: the position is its binary
//! log's. Nothing is staged on disk; the dump never holds credentials on a command line. Users
//! and grants (the `mysql` schema) are not copied: operators create them on every server.

use std::time::Instant;

use mysql_async::prelude::Queryable;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use super::estimate::size_text;
use super::tools::{self, ClientOptions};
use super::{dump_tables, exec_drop, forget_history, rate, run, stopped, user_databases, Progress, RepairContext};
use crate::db::DbError;

const CHUNK_BYTES: usize = 256 * 1024;
/// `mariadb-dump --gtid --master-data` names the snapshot's GTID at the very end of the dump
/// ("deferred"): the last bytes are kept to read it.
const TAIL_BYTES: usize = 64 * 1024;

pub async fn resync(
    ctx: &RepairContext,
    winner: &str,
    winner_addr: &str,
    progress: &mut Progress,
    stop: &watch::Receiver<bool>,
) -> Result<String, DbError> {
    let started = Instant::now();
    let target = ctx.local_target();
    let (host, port) = crate::address::split_host_port(winner_addr).ok_or_else(|| DbError::Unreadable {
        target: winner_addr.to_string(),
        what: "winner address".into(),
        message: "expected host:port".into(),
    })?;
    let mut remote = ctx.connect_to(winner_addr).await?;
    let databases = user_databases(ctx, &mut remote, winner_addr).await?;
    let mut local = ctx.connect_local().await?;
    // Read-only stays on: only this admin session writes, and it writes no binary log.
    forget_history(ctx, &mut local).await?;
    if databases.is_empty() {
        let position: Option<String> = run(
            ctx.statement_timeout,
            winner_addr,
            "SELECT @@gtid_binlog_pos",
            remote.query_first("SELECT @@gtid_binlog_pos"),
        )
        .await?;
        let gtid = position.unwrap_or_default();
        let set_position = format!("SET GLOBAL gtid_slave_pos = {}", crate::db::dialect::quote(&gtid));
        exec_drop(&mut local, ctx.statement_timeout, &target, &set_position).await?;
        let _ = remote.disconnect().await;
        let _ = local.disconnect().await;
        let line = format!("rebuilt from {winner}: it holds no user database yet; replicating from GTID {gtid}");
        progress.finish(line.clone());
        return Ok(line);
    }

    let mut tables = dump_tables(ctx, &mut remote, winner_addr, &databases).await?;
    let dir = ctx.state_dir.clone();
    std::fs::create_dir_all(&dir).map_err(|err| tools::tool_error("state directory", err.to_string()))?;
    let remote_options = ClientOptions::write(&dir, "winner", &ctx.local, Some((&host, port)))?;
    let local_options = ClientOptions::write(&dir, "local", &ctx.local, None)?;
    let mut dump_args = vec![
        remote_options.arg(),
        "--single-transaction".into(),
        "--gtid".into(),
        "--master-data=2".into(),
        "--add-drop-database".into(),
        "--routines".into(),
        "--triggers".into(),
        "--events".into(),
        "--databases".into(),
    ];
    dump_args.extend(databases.iter().cloned());
    let load_args = vec![local_options.arg(), "--binary-mode".into()];
    let mut dump = tools::spawn("mariadb-dump", &dump_args, false, true)?;
    let mut load = tools::spawn("mariadb", &load_args, true, false)?;
    let mut source = dump.stdout.take().expect("stdout is piped");
    let mut sink = load.stdin.take().expect("stdin is piped");

    let copy = async {
        let write_error = |err: std::io::Error| tools::tool_error("mariadb", format!("loading stopped: {err}"));
        sink.write_all(b"SET SESSION sql_log_bin = 0;\n")
            .await
            .map_err(write_error)?;
        let mut buffer = vec![0u8; CHUNK_BYTES];
        let mut tail: Vec<u8> = Vec::with_capacity(2 * TAIL_BYTES);
        let mut copied: u64 = 0;
        // Rates and ETAs count from the first byte: the dump's own start is no copying.
        let mut first_byte: Option<Instant> = None;
        let label = format!("resync from {winner}");
        loop {
            stopped(stop, "resync")?;
            let read = source
                .read(&mut buffer)
                .await
                .map_err(|err| tools::tool_error("mariadb-dump", err.to_string()))?;
            if read == 0 {
                tables.end();
                break;
            }
            let copying = first_byte.get_or_insert_with(Instant::now).elapsed();
            tables.feed(&buffer[..read]);
            tail.extend_from_slice(&buffer[..read]);
            if tail.len() > 2 * TAIL_BYTES {
                tail.drain(..tail.len() - TAIL_BYTES);
            }
            sink.write_all(&buffer[..read]).await.map_err(write_error)?;
            copied += read as u64;
            progress.report(|| tables.line(&label, copied, copying));
        }
        sink.shutdown().await.map_err(write_error)?;
        drop(sink);
        Ok::<(u64, Vec<u8>), DbError>((copied, tail))
    };
    let (copied, tail) = match tokio::time::timeout(ctx.resync_timeout, copy).await {
        Ok(result) => result?,
        Err(_) => {
            return Err(tools::tool_error(
                "resync",
                format!("did not finish within {} s", ctx.resync_timeout.as_secs()),
            ))
        }
    };
    tools::finish("mariadb-dump", dump).await?;
    tools::finish("mariadb", load).await?;
    let gtid = dump_gtid(&String::from_utf8_lossy(&tail)).ok_or_else(|| {
        tools::tool_error(
            "mariadb-dump",
            "the dump names no gtid_slave_pos to replicate from".into(),
        )
    })?;
    let set_position = format!("SET GLOBAL gtid_slave_pos = {}", crate::db::dialect::quote(&gtid));
    exec_drop(&mut local, ctx.statement_timeout, &target, &set_position).await?;

    let count = format!(
        "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA IN ({})",
        databases
            .iter()
            .map(|name| crate::db::dialect::quote(name))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let theirs: Option<u64> = run(
        ctx.statement_timeout,
        winner_addr,
        "count tables",
        remote.query_first(count.as_str()),
    )
    .await?;
    let mine: Option<u64> = run(
        ctx.statement_timeout,
        &target,
        "count tables",
        local.query_first(count.as_str()),
    )
    .await?;
    let _ = remote.disconnect().await;
    let _ = local.disconnect().await;
    if theirs != mine {
        return Err(tools::tool_error(
            "resync check",
            format!(
                "{winner} has {theirs:?} tables in {} but this node {mine:?} after the load",
                databases.join(", ")
            ),
        ));
    }
    let line = format!(
        "rebuilt from {winner}: {} copied in {:.1} s ({}/s), {} tables, replicating from GTID {gtid}",
        size_text(copied),
        started.elapsed().as_secs_f64(),
        size_text(rate(copied as f64, started) as u64),
        theirs.unwrap_or(0)
    );
    progress.finish(line.clone());
    Ok(line)
}

/// `-- SET GLOBAL gtid_slave_pos='0-1-42';` as `mariadb-dump --gtid --master-data=2` writes it
/// (the last such line, at the start of a line: data rows cannot fake one).
fn dump_gtid(tail: &str) -> Option<String> {
    tail.lines().rev().find_map(|line| {
        if !line.starts_with("-- SET GLOBAL gtid_slave_pos") {
            return None;
        }
        let rest = line.split_once("gtid_slave_pos")?.1;
        let start = rest.find('\'')? + 1;
        let end = start + rest[start..].find('\'')?;
        Some(rest[start..end].to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::dump_gtid;

    #[test]
    fn the_dump_gtid_is_read_from_its_end() {
        let tail = "INSERT INTO t VALUES ('x\n-- SET GLOBAL gtid_slave_pos=9-9-9');\n-- Preferably use GTID to start replication from GTID position:\n\n-- SET GLOBAL gtid_slave_pos='0-1-42,1-2-3';\n/*!40103 SET TIME_ZONE=@OLD_TIME_ZONE */;";
        assert_eq!(dump_gtid(tail).as_deref(), Some("0-1-42,1-2-3"));
        assert_eq!(dump_gtid("-- nothing here\n"), None);
        assert_eq!(dump_gtid("-- SET GLOBAL gtid_slave_pos='';\n").as_deref(), Some(""));
    }
}
