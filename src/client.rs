//! Client side of the local socket, used by `gossip-ha status` and `gossip-ha events`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gossip_ha_proto::api::{Command, Request, Response};
use gossip_ha_proto::PROTOCOL_VERSION;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

const MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no agent answers on {path}: {source}")]
    Connect { path: PathBuf, source: std::io::Error },
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
}

/// What the agent says when it turns a connection away (`socket.rs`).
const BUSY_PREFIX: &str = "busy: ";

pub async fn request(path: &Path, command: Command, timeout: Duration) -> Result<Response, ClientError> {
    let exchange = async {
        let stream = UnixStream::connect(path).await.map_err(|source| ClientError::Connect {
            path: path.to_path_buf(),
            source,
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
