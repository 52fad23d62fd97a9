//! The local status socket: a Unix stream socket speaking JSON lines (proto/PROTOCOL.md).
//! Bounded everywhere: request length, connections at once, idle time per connection.

use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gossip_ha_proto::api::{Command, Request, Response, StatusReport, MAX_REQUEST_BYTES};
use gossip_ha_proto::PROTOCOL_VERSION;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::events::EventLog;

pub const MAX_CONNECTIONS: usize = 64;
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

/// Binds the socket. A leftover socket file nobody answers on is removed; one where an agent
/// answers is left alone and the start refused.
pub fn bind(path: &Path) -> Result<UnixListener, SocketError> {
    if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        if !parent.exists() {
            std::fs::create_dir_all(parent).map_err(io_error(parent))?;
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o750)).map_err(io_error(parent))?;
        }
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
    Ok(listener)
}

/// What the socket serves; the driver loop publishes into it.
#[derive(Clone)]
pub struct ApiState {
    pub status: watch::Receiver<Arc<StatusReport>>,
    pub events: Arc<Mutex<EventLog>>,
}

impl ApiState {
    fn answer(&self, line: &[u8]) -> Response {
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
        match request.command {
            Command::Status => Response::status(StatusReport::clone(&self.status.borrow())),
            Command::Events { limit } => {
                let events = self.events.lock().map(|log| log.recent(limit)).unwrap_or_default();
                Response::events(events)
            }
        }
    }
}

/// Serves until `stop` turns true; then every connection task is ended too.
pub async fn serve(listener: UnixListener, state: ApiState, mut stop: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => match slots.clone().try_acquire_owned() {
                    Ok(slot) => {
                        let state = state.clone();
                        connections.spawn(async move {
                            serve_connection(stream, state).await;
                            drop(slot);
                        });
                    }
                    Err(_) => {
                        let mut stream = stream;
                        let _ = tokio::time::timeout(WRITE_TIMEOUT, write_response(&mut stream, &Response::error("too many connections; try again"))).await;
                    }
                },
                Err(err) => {
                    tracing::warn!("status socket accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    connections.abort_all();
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

async fn serve_connection(stream: UnixStream, state: ApiState) {
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        let limited = (&mut reader).take(MAX_REQUEST_BYTES as u64 + 1);
        let read = match tokio::time::timeout(IDLE_TIMEOUT, read_line(limited, &mut line)).await {
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
            (state.answer(trimmed), true)
        };
        let written = tokio::time::timeout(WRITE_TIMEOUT, write_response(&mut writer, &response)).await;
        if !matches!(written, Ok(Ok(()))) || !keep_open {
            return;
        }
    }
}

async fn read_line(mut reader: impl AsyncBufReadExt + Unpin, line: &mut Vec<u8>) -> std::io::Result<usize> {
    reader.read_until(b'\n', line).await
}
