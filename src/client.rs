//! Client side of the local socket, used by `gossip-ha status` and `gossip-ha events`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gossip_ha_proto::api::{Command, Event, EventKind, Request, Response};
use gossip_ha_proto::PROTOCOL_VERSION;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

const MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no agent answers on {path}: {source}")]
    Connect { path: PathBuf, source: std::io::Error },
    /// This user may not reach the socket: `why` names what stops it, its group and the fix.
    #[error("cannot reach the agent's socket {path}: {source}; {why}")]
    Denied {
        path: PathBuf,
        source: std::io::Error,
        why: String,
    },
    #[error("the agent on {path} did not answer within {timeout:?}")]
    Timeout { path: PathBuf, timeout: Duration },
    #[error("talking to the agent on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the agent on {path} sent an answer this client cannot read: {message}")]
    Malformed { path: PathBuf, message: String },
    #[error("the agent refused: {0}")]
    Refused(String),
    /// The agent turned the connection away (its socket's caps) and said why.
    #[error("the agent is busy: {0}")]
    Busy(String),
    #[error("the agent on {path} is busy or closed the connection before answering; try again")]
    Closed { path: PathBuf },
    /// The command was carried out and failed (`gossip-ha resync`'s first step).
    #[error("{0}")]
    Failed(String),
}

/// What the agent says when it turns a connection away (`socket.rs`).
const BUSY_PREFIX: &str = "busy: ";

pub async fn request(path: &Path, command: Command, timeout: Duration) -> Result<Response, ClientError> {
    let exchange = async {
        let stream = UnixStream::connect(path).await.map_err(|source| match source.kind() {
            std::io::ErrorKind::PermissionDenied => ClientError::Denied {
                path: path.to_path_buf(),
                why: explain_denied(path),
                source,
            },
            _ => ClientError::Connect {
                path: path.to_path_buf(),
                source,
            },
        })?;
        let io = |source| ClientError::Io {
            path: path.to_path_buf(),
            source,
        };
        let (reader, mut writer) = stream.into_split();
        let mut line = serde_json::to_vec(&Request {
            v: PROTOCOL_VERSION,
            command,
        })
        .expect("requests always serialise");
        line.push(b'\n');
        // An agent that turned us away may have written its reason and closed before our
        // request went out: the write fails (EPIPE, ECONNRESET), the reason is still there to read.
        let written = writer.write_all(&line).await;
        let mut answer = Vec::new();
        let read = BufReader::new(reader)
            .take(MAX_RESPONSE_BYTES)
            .read_until(b'\n', &mut answer)
            .await;
        if answer.is_empty() {
            return Err(match (written, read) {
                (Err(err), _) | (Ok(()), Err(err)) if !closed_by_agent(&err) => io(err),
                _ => ClientError::Closed {
                    path: path.to_path_buf(),
                },
            });
        }
        let response: Response = serde_json::from_slice(&answer).map_err(|err| ClientError::Malformed {
            path: path.to_path_buf(),
            message: err.to_string(),
        })?;
        match (response.ok, &response.error) {
            (false, Some(message)) => Err(match message.strip_prefix(BUSY_PREFIX) {
                Some(why) => ClientError::Busy(why.to_string()),
                None => ClientError::Refused(message.clone()),
            }),
            _ => Ok(response),
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| ClientError::Timeout {
            path: path.to_path_buf(),
            timeout,
        })?
}

/// The errors a write or read sees when the agent closed its end first.
fn closed_by_agent(err: &std::io::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    matches!(
        err.kind(),
        BrokenPipe | ConnectionReset | ConnectionAborted | UnexpectedEof
    )
}

/// Why this user cannot reach `socket`: the first directory on the way it may not enter, or else
/// the socket itself, with its owner, group and mode, and what would let this user in.
fn explain_denied(socket: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let mut directories: Vec<&Path> = socket
        .ancestors()
        .skip(1)
        .filter(|dir| !dir.as_os_str().is_empty())
        .collect();
    directories.reverse();
    let blocked_dir = directories
        .into_iter()
        .find(|dir| nix::unistd::access(*dir, nix::unistd::AccessFlags::X_OK).is_err());
    let (what, blocker) = match blocked_dir {
        Some(dir) => ("its directory", dir),
        None => ("the socket", socket),
    };
    let Ok(metadata) = std::fs::metadata(blocker) else {
        return format!("{what} {} cannot be examined by this user", blocker.display());
    };
    let gid = nix::unistd::Gid::from_raw(metadata.gid());
    let group = group_name(gid);
    let owner = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(metadata.uid()))
        .ok()
        .flatten()
        .map_or_else(|| metadata.uid().to_string(), |user| user.name);
    let head = format!(
        "{what} {} is {owner}:{group}, mode {:o}",
        blocker.display(),
        metadata.mode() & 0o7777
    );
    let only = match owner.as_str() {
        "root" => "only root".to_string(),
        owner => format!("only {owner} and root"),
    };
    let fix = if listed_but_not_in_session(gid) {
        format!("this user is listed in group `{group}` but this login session does not carry it yet: log in again, or run `newgrp {group}`")
    } else if gid.as_raw() != 0 {
        format!("{only} and members of group `{group}` (the agent's `socket_group`) may pass: `usermod -aG {group} USER`, then log in again")
    } else if let Some(dir) = blocked_dir {
        format!(
            "{only} may pass. With a `socket_group`, the agent gives it the directory only when it made the directory \
             or it is its runtime directory; here run `chgrp GROUP {}`; without one, set `socket_group` in the agent's \
             configuration and restart it",
            dir.display()
        )
    } else {
        format!("{only} may pass; to let a group read status, set `socket_group` in the agent's configuration and restart it")
    };
    format!("{head}; {fix}")
}

fn group_name(gid: nix::unistd::Gid) -> String {
    nix::unistd::Group::from_gid(gid)
        .ok()
        .flatten()
        .map_or_else(|| gid.to_string(), |group| group.name)
}

/// Whether the group file lists this user in `gid` while this process does not hold it: the
/// user was added after logging in.
fn listed_but_not_in_session(gid: nix::unistd::Gid) -> bool {
    let held = nix::unistd::getegid() == gid || nix::unistd::getgroups().is_ok_and(|groups| groups.contains(&gid));
    if held {
        return false;
    }
    let user = nix::unistd::User::from_uid(nix::unistd::getuid()).ok().flatten();
    let group = nix::unistd::Group::from_gid(gid).ok().flatten();
    matches!((user, group), (Some(user), Some(group)) if user.gid == gid || group.mem.contains(&user.name))
}

/// How the agent's answer to `gossip-ha resync` starts when the step it waited for failed.
pub const RESYNC_FAILED_PREFIX: &str = "resync failed: ";
/// How often `gossip-ha resync` reads the agent's events while it waits for its answer.
const RESYNC_PROGRESS_POLL: Duration = Duration::from_secs(1);
/// Bounds each of those reads: progress is a view, a slow read is skipped.
const RESYNC_PROGRESS_TIMEOUT: Duration = Duration::from_secs(2);

/// `gossip-ha resync`: the agent answers once the repair's first step has finished (or after
/// its own bound); meanwhile the repair's events of this run are handed to `show`.
pub async fn resync(path: &Path, timeout: Duration, mut show: impl FnMut(&Event)) -> Result<Response, ClientError> {
    let mut seen = newest_events(path, Some(1)).await?.last().map_or(0, |event| event.seq);
    let answer = request(path, Command::Resync, timeout);
    tokio::pin!(answer);
    let mut poll = tokio::time::interval(RESYNC_PROGRESS_POLL);
    loop {
        tokio::select! {
            answer = &mut answer => {
                show_repair_events(path, &mut seen, &mut show).await;
                return answer.map_err(|err| match err {
                    ClientError::Refused(text) if text.starts_with(RESYNC_FAILED_PREFIX) => ClientError::Failed(text),
                    other => other,
                });
            }
            _ = poll.tick() => show_repair_events(path, &mut seen, &mut show).await,
        }
    }
}

async fn newest_events(path: &Path, limit: Option<usize>) -> Result<Vec<Event>, ClientError> {
    let response = request(path, Command::Events { limit }, RESYNC_PROGRESS_TIMEOUT).await?;
    Ok(response.events.unwrap_or_default())
}

/// The repair's events newer than `seen`: its actions, progress lines and outcome.
async fn show_repair_events(path: &Path, seen: &mut u64, show: &mut impl FnMut(&Event)) {
    // At most one progress line a second is recorded: 64 cover a poll with room to spare.
    let Ok(events) = newest_events(path, Some(64)).await else {
        return;
    };
    let since = *seen;
    for event in events.iter().filter(|event| event.seq > since) {
        if matches!(
            event.kind,
            EventKind::Repair | EventKind::DbAction | EventKind::DbNeedsResync
        ) {
            show(event);
        }
        *seen = event.seq;
    }
}
