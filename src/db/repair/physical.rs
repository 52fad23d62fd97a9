//! Rebuilding a node with a physical copy: the winner's agent streams `mariabackup` over the
//! transfer channel straight into `mbstream -x` here, the copy is prepared, the local server is
//! stopped, its data directory set aside (kept, never deleted) and replaced, the server started
//! again and pointed at the GTID the backup was taken at.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gossip_ha_proto::wire::TransferRequest;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use super::estimate::{physical_line, size_text};
use super::tools::{self, tool_error};
use super::{backup_bytes, exec_drop, forget_history, rate, Progress, RepairContext};
use crate::db::DbError;
use crate::tls::identity::IdentityHandle;

/// How long the local server may take to stop, or to answer again after a start.
const SERVER_WAIT: Duration = Duration::from_secs(120);

/// What a physical resync needs besides the repair context.
#[derive(Clone)]
pub struct PhysicalSetup {
    pub datadir: PathBuf,
    pub stop_command: Vec<String>,
    pub start_command: Vec<String>,
    pub tls: Option<IdentityHandle>,
    pub cluster_id: String,
    pub node_name: String,
}

impl std::fmt::Debug for PhysicalSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PhysicalSetup")
            .field("datadir", &self.datadir)
            .field("stop_command", &self.stop_command)
            .field("start_command", &self.start_command)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

fn sibling(datadir: &Path, suffix: &str) -> PathBuf {
    let name = datadir
        .file_name()
        .map(|name| name.to_string_lossy().to_string())
        .unwrap_or_default();
    datadir.with_file_name(format!("{name}.{suffix}"))
}

pub async fn resync(
    ctx: &RepairContext,
    setup: &PhysicalSetup,
    winner: &str,
    winner_db: &str,
    transfer: SocketAddr,
    progress: &mut Progress,
    stop: &watch::Receiver<bool>,
) -> Result<String, DbError> {
    let started = Instant::now();
    let target = ctx.local_target();
    let mut remote = ctx.connect_to(winner_db).await?;
    let about_total = backup_bytes(ctx, &mut remote, winner_db).await;
    let _ = remote.disconnect().await;

    let fresh = sibling(&setup.datadir, "gossip-ha-new");
    if fresh.exists() {
        std::fs::remove_dir_all(&fresh).map_err(|err| tool_error("resync", format!("{}: {err}", fresh.display())))?;
    }
    std::fs::create_dir_all(&fresh).map_err(|err| tool_error("resync", format!("{}: {err}", fresh.display())))?;

    // 1. Receive the stream into mbstream: nothing but the extracted files lands on disk.
    let mut extract = tools::spawn(
        "mbstream",
        &["-x".into(), "-C".into(), fresh.display().to_string()],
        true,
        false,
    )?;
    let mut sink = extract.stdin.take().expect("stdin is piped");
    let request = TransferRequest {
        version: gossip_ha_proto::PROTOCOL_VERSION,
        cluster_id: setup.cluster_id.clone(),
        node_name: setup.node_name.clone(),
    };
    let label = format!("resync from {winner} (physical)");
    // Rates and ETAs count from the first byte: the source's backup takes a moment to start.
    let mut first_byte: Option<Instant> = None;
    let received = tokio::time::timeout(
        ctx.resync_timeout,
        crate::transfer::fetch_backup(
            transfer,
            winner,
            setup.tls.as_ref().map(|identity| identity.current()).as_deref(),
            &request,
            &mut sink,
            |bytes| {
                let copying = first_byte.get_or_insert_with(Instant::now).elapsed();
                progress.report(|| physical_line(&label, bytes, about_total, copying))
            },
            stop,
        ),
    )
    .await
    .map_err(|_| {
        tool_error(
            "resync",
            format!("the transfer took over {} s", ctx.resync_timeout.as_secs()),
        )
    })?
    .map_err(|message| tool_error("transfer", message))?;
    sink.shutdown()
        .await
        .map_err(|err| tool_error("mbstream", err.to_string()))?;
    drop(sink);
    tools::finish("mbstream", extract).await?;
    let copied_in = started.elapsed();

    // 2. Prepare it: a consistent data directory at the backup's GTID.
    let prepare = tools::spawn(
        "mariabackup",
        &["--prepare".into(), format!("--target-dir={}", fresh.display())],
        false,
        false,
    )?;
    tokio::time::timeout(ctx.resync_timeout, tools::finish("mariabackup --prepare", prepare))
        .await
        .map_err(|_| tool_error("mariabackup --prepare", "timed out".into()))??;
    let gtid = backup_gtid(&fresh)?;
    copy_owner(&setup.datadir, &fresh)?;

    // 3. Swap data directories with the server stopped; the old one is kept.
    progress.finish(format!(
        "resync from {winner}: copy prepared, restarting the local server on it"
    ));
    run_command("stop the local server", &setup.stop_command).await?;
    wait_for_server(ctx, false).await?;
    let kept = sibling(&setup.datadir, &format!("gossip-ha-old-{}", crate::clock::unix_ms()));
    std::fs::rename(&setup.datadir, &kept)
        .map_err(|err| tool_error("resync", format!("set aside {}: {err}", setup.datadir.display())))?;
    std::fs::rename(&fresh, &setup.datadir)
        .map_err(|err| tool_error("resync", format!("put the copy in place: {err}")))?;
    run_command("start the local server", &setup.start_command).await?;
    wait_for_server(ctx, true).await?;

    // 4. Its own binary log history is the old one's: forget it, replicate from the backup's GTID.
    let mut local = ctx.connect_local().await?;
    forget_history(ctx, &mut local).await?;
    let set_position = format!("SET GLOBAL gtid_slave_pos = {}", crate::db::dialect::quote(&gtid));
    exec_drop(&mut local, ctx.statement_timeout, &target, &set_position).await?;
    let _ = local.disconnect().await;
    let line = format!(
        "rebuilt from {winner} by physical copy: {} received in {:.1} s ({}/s), ready in {:.1} s; replicating from GTID {gtid}; the old data directory is kept at {}",
        size_text(received),
        copied_in.as_secs_f64(),
        size_text(rate(received as f64, started) as u64),
        started.elapsed().as_secs_f64(),
        kept.display()
    );
    progress.finish(line.clone());
    Ok(line)
}

/// `xtrabackup_binlog_info` (`mariadb_backup_binlog_info` from MariaDB 11.x):
/// `binlog.000003<TAB>1234<TAB>0-1-42`.
fn backup_gtid(dir: &Path) -> Result<String, DbError> {
    let path = ["mariadb_backup_binlog_info", "xtrabackup_binlog_info"]
        .iter()
        .map(|name| dir.join(name))
        .find(|path| path.exists())
        .unwrap_or_else(|| dir.join("xtrabackup_binlog_info"));
    let text = std::fs::read_to_string(&path)
        .map_err(|err| tool_error("mariabackup", format!("{}: {err}", path.display())))?;
    parse_binlog_info(&text).ok_or_else(|| {
        tool_error(
            "mariabackup",
            format!("{}: no GTID in `{}`", path.display(), text.trim()),
        )
    })
}

fn parse_binlog_info(text: &str) -> Option<String> {
    let fields: Vec<&str> = text.split_whitespace().collect();
    match fields.as_slice() {
        [_, _, gtid, ..] => Some(gtid.to_string()),
        [_, _] => Some(String::new()),
        _ => None,
    }
}

/// The copy gets the owner of the data directory it replaces (mysqld runs as that user).
fn copy_owner(from: &Path, to: &Path) -> Result<(), DbError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(from).map_err(|err| tool_error("resync", format!("{}: {err}", from.display())))?;
    chown_tree(to, meta.uid(), meta.gid()).map_err(|err| tool_error("resync", format!("chown {}: {err}", to.display())))
}

fn chown_tree(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    if std::fs::symlink_metadata(path)?.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

async fn run_command(what: &str, argv: &[String]) -> Result<(), DbError> {
    let outcome = crate::command::run(argv, &[], SERVER_WAIT).await;
    if outcome.result.is_err() {
        return Err(tool_error(what, outcome.describe(argv)));
    }
    Ok(())
}

/// Waits until the local server answers (`up`) or stops answering.
async fn wait_for_server(ctx: &RepairContext, up: bool) -> Result<(), DbError> {
    let deadline = Instant::now() + SERVER_WAIT;
    loop {
        let answers =
            match tokio::time::timeout(Duration::from_secs(2), mysql_async::Conn::new(ctx.local.clone())).await {
                Ok(Ok(conn)) => {
                    let _ = conn.disconnect().await;
                    true
                }
                _ => false,
            };
        if answers == up {
            return Ok(());
        }
        if Instant::now() > deadline {
            let state = if up { "answer" } else { "stop" };
            return Err(tool_error(
                "resync",
                format!("the local server did not {state} within {} s", SERVER_WAIT.as_secs()),
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::parse_binlog_info;

    #[test]
    fn the_backup_gtid_is_read_from_its_binlog_info() {
        assert_eq!(
            parse_binlog_info("binlog.000003\t1234\t0-1-42,1-2-3\n").as_deref(),
            Some("0-1-42,1-2-3")
        );
        assert_eq!(parse_binlog_info("binlog.000001\t329\n").as_deref(), Some(""));
        assert_eq!(parse_binlog_info(""), None);
    }
}
