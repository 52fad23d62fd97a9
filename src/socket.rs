//! The local status socket: a Unix stream socket speaking JSON lines (proto/PROTOCOL.md).
//! Bounded everywhere: request length, connections at once and per uid (some kept for admins),
//! time to the first request and idle time per connection. A connection refused is told why
//! in one JSON line ("busy: …") and closed, with no task started for it.

use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gossip_ha_proto::api::{Command, Request, Response, StatusReport, MAX_REQUEST_BYTES};
use gossip_ha_proto::PROTOCOL_VERSION;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use crate::events::EventLog;
use crate::tls::refusals::{Counts, Held, Place};

pub const MAX_CONNECTIONS: usize = 64;
/// Places only admins may take: users who may merely read hold at most the rest together.
const RESERVED_FOR_ADMINS: usize = 16;
/// Connections one non-admin uid may hold; the CLI uses one per command.
const MAX_CONNECTIONS_PER_UID: usize = 8;
/// The CLI writes its request as soon as it connects; an idle connector is closed soon.
const FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Between requests on a connection kept open.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
const SOCKET_MODE: u32 = 0o660;

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("another agent is already listening on {0}; stop it or choose another `socket`")]
    InUse(PathBuf),
    #[error("{0} exists and is not a socket; refusing to remove it")]
    NotASocket(PathBuf),
    #[error("cannot prepare socket {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> SocketError + '_ {
    move |source| SocketError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Binds the socket, mode 0660, group `group` when given. A leftover socket file nobody answers
/// on is removed; one where an agent answers is left alone and the start refused.
pub fn bind(path: &Path, group: Option<nix::unistd::Gid>) -> Result<UnixListener, SocketError> {
    if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        prepare_directory(parent, group)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(metadata) if !metadata.file_type().is_socket() => return Err(SocketError::NotASocket(path.to_path_buf())),
        Ok(_) => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => return Err(SocketError::InUse(path.to_path_buf())),
            Err(err) if err.kind() == ErrorKind::ConnectionRefused => {
                tracing::info!("removing stale socket {}", path.display());
                std::fs::remove_file(path).map_err(io_error(path))?;
            }
            Err(err) => return Err(io_error(path)(err)),
        },
        Err(err) if err.kind() == ErrorKind::NotFound => {}
        Err(err) => return Err(io_error(path)(err)),
    }
    let listener = UnixListener::bind(path).map_err(io_error(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE)).map_err(io_error(path))?;
    if let Some(group) = group {
        nix::unistd::chown(path, None, Some(group)).map_err(|err| io_error(path)(err.into()))?;
    }
    Ok(listener)
}

/// The socket's mode lets `socket_group` in only if its directory does too. Directories the agent
/// makes, and its runtime directory (which systemd makes root:root, knowing nothing of the
/// group), become 0750 with the group; any other directory is the operator's: left as it is, with
/// a warning when the group cannot pass it.
fn prepare_directory(dir: &Path, group: Option<nix::unistd::Gid>) -> Result<(), SocketError> {
    let mut ours = create_missing(dir)?;
    if ours.is_empty() && is_runtime_directory(dir) && group.is_some() {
        ours.push(dir.to_path_buf());
    }
    for made in &ours {
        std::fs::set_permissions(made, std::fs::Permissions::from_mode(0o750)).map_err(io_error(made))?;
        if let Some(group) = group {
            nix::unistd::chown(made.as_path(), None, Some(group)).map_err(|err| io_error(made)(err.into()))?;
        }
    }
    if let Some(group) = group {
        warn_if_closed(dir, group);
    }
    Ok(())
}

/// Creates `dir` and its missing ancestors one by one; returns those made, outermost first.
fn create_missing(dir: &Path) -> Result<Vec<PathBuf>, SocketError> {
    let mut missing: Vec<PathBuf> = dir
        .ancestors()
        .take_while(|ancestor| !ancestor.as_os_str().is_empty() && !ancestor.exists())
        .map(Path::to_path_buf)
        .collect();
    missing.reverse();
    let mut made = Vec::with_capacity(missing.len());
    for path in missing {
        match std::fs::create_dir(&path) {
            Ok(()) => made.push(path),
            // Made by someone else meanwhile: not ours to change.
            Err(err) if err.kind() == ErrorKind::AlreadyExists => {}
            Err(err) => return Err(io_error(&path)(err)),
        }
    }
    Ok(made)
}

/// systemd's `RuntimeDirectory` (named in `$RUNTIME_DIRECTORY`), or the default socket's directory.
fn is_runtime_directory(dir: &Path) -> bool {
    let from_systemd = std::env::var_os("RUNTIME_DIRECTORY").unwrap_or_default();
    let from_systemd = from_systemd.to_string_lossy();
    let default = crate::config::default_socket_path();
    let candidates = from_systemd
        .split(':')
        .filter(|entry| !entry.is_empty())
        .map(PathBuf::from)
        .chain(default.parent().map(Path::to_path_buf));
    let canonical = std::fs::canonicalize(dir).ok();
    candidates
        .into_iter()
        .any(|candidate| candidate == dir || canonical.is_some() && std::fs::canonicalize(&candidate).ok() == canonical)
}

/// Says at start when members of `group` could not reach the socket: a directory on the way
/// lets neither the group nor others through.
fn warn_if_closed(dir: &Path, group: nix::unistd::Gid) {
    use std::os::unix::fs::MetadataExt;
    let closed = dir
        .ancestors()
        .filter(|ancestor| !ancestor.as_os_str().is_empty())
        .find(|ancestor| {
            std::fs::metadata(ancestor).is_ok_and(|metadata| {
                let mode = metadata.mode();
                mode & 0o001 == 0 && !(metadata.gid() == group.as_raw() && mode & 0o010 != 0)
            })
        });
    if let Some(closed) = closed {
        tracing::warn!(
            "members of socket_group (gid {group}) cannot reach the socket: {} lets neither that group nor others \
             through, and the agent changes only directories it made or its runtime directory; \
             run `chgrp {group} {}` and `chmod g+x` on it",
            closed.display(),
            closed.display()
        );
    }
}

/// A state-changing command for the driver loop, from a caller that was allowed to send it.
pub struct AdminRequest {
    pub command: Command,
    pub caller_uid: u32,
    pub reply: oneshot::Sender<Result<String, String>>,
}

/// Who may change things through the socket: root, the agent's own user, and members of the
/// admin group. Everyone who can open the socket (mode 0660) may read.
#[derive(Debug, Clone, Copy)]
pub struct AdminPolicy {
    pub admin_group: Option<nix::unistd::Gid>,
}

impl AdminPolicy {
    fn allows(&self, uid: u32, gid: u32) -> bool {
        if uid == 0 || uid == nix::unistd::geteuid().as_raw() {
            return true;
        }
        let Some(admin) = self.admin_group else { return false };
        if gid == admin.as_raw() {
            return true;
        }
        // SO_PEERCRED carries only the primary group; supplementary ones come from the group.
        let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten();
        let group = nix::unistd::Group::from_gid(admin).ok().flatten();
        matches!((user, group), (Some(user), Some(group)) if group.mem.contains(&user.name))
    }
}

/// The driver answers a switchover once the cluster shows it (or at its own deadline).
const ADMIN_REPLY_TIMEOUT: Duration = Duration::from_secs(3_700);

/// What the socket serves; the driver loop publishes into it and takes admin requests.
#[derive(Clone)]
pub struct ApiState {
    pub status: watch::Receiver<Arc<StatusReport>>,
    pub events: Arc<Mutex<EventLog>>,
    pub admin: mpsc::Sender<AdminRequest>,
    pub policy: AdminPolicy,
}

impl ApiState {
    async fn answer(&self, line: &[u8], caller: Option<(u32, u32)>) -> Response {
        let request: Request = match serde_json::from_slice(line) {
            Ok(request) => request,
            Err(err) => return Response::error(format!("bad request: {err}")),
        };
        if request.v != PROTOCOL_VERSION {
            return Response::error(format!(
                "protocol version {} is not supported; this agent speaks {PROTOCOL_VERSION}",
                request.v
            ));
        }
        if !request.command.changes_state() {
            return self.answer_read(request.command);
        }
        let Some((uid, _)) = caller.filter(|(uid, gid)| self.policy.allows(*uid, *gid)) else {
            return Response::error(
                "permission denied: this command changes the agent; run it as root or as a member of its admin_group",
            );
        };
        let (reply, answer) = oneshot::channel();
        let sent = self.admin.try_send(AdminRequest {
            command: request.command,
            caller_uid: uid,
            reply,
        });
        if sent.is_err() {
            return Response::error("the agent is busy with other commands; try again");
        }
        match tokio::time::timeout(ADMIN_REPLY_TIMEOUT, answer).await {
            Ok(Ok(Ok(done))) => Response::done(done),
            Ok(Ok(Err(refused))) => Response::error(refused),
            _ => Response::error("the agent did not answer in time"),
        }
    }

    fn answer_read(&self, command: Command) -> Response {
        match command {
            Command::Status => Response::status(StatusReport::clone(&self.status.borrow())),
            Command::Events { limit } => {
                let events = self.events.lock().map(|log| log.recent(limit)).unwrap_or_default();
                Response::events(events)
            }
            Command::Maintenance { .. } | Command::Resync | Command::Switchover { .. } => {
                Response::error("internal: a state-changing command took the read path")
            }
        }
    }
}

/// Serves until `stop` turns true; then every connection task is ended too.
pub async fn serve(listener: UnixListener, state: ApiState, mut stop: watch::Receiver<bool>) {
    let counts = Counts::<u32>::default();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let caller = stream.peer_cred().ok().map(|cred| (cred.uid(), cred.gid()));
                    match admit(&counts, caller, &state.policy) {
                        Ok(place) => {
                            let state = state.clone();
                            connections.spawn(async move {
                                serve_connection(stream, caller, state).await;
                                drop(place);
                            });
                        }
                        Err(busy) => refuse(&stream, &busy),
                    }
                }
                Err(err) => {
                    tracing::warn!("status socket accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    connections.abort_all();
}

/// A place for the caller, or the "busy" answer saying why not. Admins (looked up only when
/// the cheap check fails) may take the reserved places and are not capped per uid.
fn admit(counts: &Counts<u32>, caller: Option<(u32, u32)>, policy: &AdminPolicy) -> Result<Place<u32>, String> {
    // Without credentials the caller is nobody in particular: a non-admin of its own.
    let (uid, gid) = caller.unwrap_or((u32::MAX, u32::MAX));
    match counts.take(uid, |held| within_non_admin_share(held, uid)) {
        Ok(place) => Ok(place),
        Err(busy) if policy.allows(uid, gid) => counts.take(uid, within_all).map_err(|_| busy),
        Err(busy) => Err(busy),
    }
}

fn within_all(held: Held) -> Result<(), String> {
    match held.total < MAX_CONNECTIONS {
        true => Ok(()),
        false => Err(format!("busy: {MAX_CONNECTIONS} connections already open; try again")),
    }
}

fn within_non_admin_share(held: Held, uid: u32) -> Result<(), String> {
    within_all(held)?;
    if held.from_source >= MAX_CONNECTIONS_PER_UID {
        return Err(format!(
            "busy: {} connections from uid {uid} already open; try again",
            held.from_source
        ));
    }
    if held.total >= MAX_CONNECTIONS - RESERVED_FOR_ADMINS {
        return Err(format!(
            "busy: {} connections already open, the other {RESERVED_FOR_ADMINS} are kept for admins; try again",
            held.total
        ));
    }
    Ok(())
}

/// Tells a refused caller why, without waiting: a fresh socket's buffer takes one line.
fn refuse(stream: &UnixStream, busy: &str) {
    let mut line = serde_json::to_vec(&Response::error(busy)).unwrap_or_default();
    line.push(b'\n');
    let _ = stream.try_write(&line);
}

/// Waits for the stop flag; the guard `wait_for` returns must not live across an await.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

async fn write_response(stream: &mut (impl AsyncWriteExt + Unpin), response: &Response) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(response).unwrap_or_else(|_| b"{\"v\":1,\"ok\":false}".to_vec());
    line.push(b'\n');
    stream.write_all(&line).await
}

async fn serve_connection(stream: UnixStream, caller: Option<(u32, u32)>, state: ApiState) {
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    let mut line = Vec::with_capacity(256);
    let mut wait = FIRST_REQUEST_TIMEOUT;
    loop {
        line.clear();
        let limited = (&mut reader).take(MAX_REQUEST_BYTES as u64 + 1);
        let read = match tokio::time::timeout(wait, read_line(limited, &mut line)).await {
            Ok(Ok(read)) => read,
            Ok(Err(_)) | Err(_) => return,
        };
        if read == 0 {
            return;
        }
        let (response, keep_open) = if line.last() != Some(&b'\n') && line.len() > MAX_REQUEST_BYTES {
            let message = format!("request longer than {MAX_REQUEST_BYTES} bytes; closing");
            (Response::error(message), false)
        } else {
            let trimmed = line.trim_ascii();
            if trimmed.is_empty() {
                continue;
            }
            (state.answer(trimmed, caller).await, true)
        };
        let written = tokio::time::timeout(WRITE_TIMEOUT, write_response(&mut writer, &response)).await;
        if !matches!(written, Ok(Ok(()))) || !keep_open {
            return;
        }
        wait = IDLE_TIMEOUT;
    }
}

async fn read_line(mut reader: impl AsyncBufReadExt + Unpin, line: &mut Vec<u8>) -> std::io::Result<usize> {
    reader.read_until(b'\n', line).await
}
