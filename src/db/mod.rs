//! The local database: the `DbBackend` trait (the simulations' model database implements it
//! too), its mysql_async implementation, the SQL of both dialects, and the worker task that
//! owns the connection so the driver loop never waits on the database.

pub mod dialect;
pub mod mysql;
pub mod pandora_view;
pub mod repair;
pub mod worker;

use std::future::Future;
use std::time::Duration;

pub use dialect::{Dialect, ReplicationSource};

pub use crate::core::db::{DbProbe, ReplicaProbe};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DbError {
    #[error("cannot connect to {target}: {message}")]
    Connect { target: String, message: String },
    #[error("`{what}` on {target} timed out after {timeout_ms} ms")]
    Timeout {
        target: String,
        what: String,
        timeout_ms: u64,
    },
    #[error("`{what}` on {target} failed: {message}")]
    Query {
        target: String,
        what: String,
        message: String,
    },
    #[error("{target} answered `{what}` with something unreadable: {message}")]
    Unreadable {
        target: String,
        what: String,
        message: String,
    },
}

/// Everything the agent does to its local database. Each call is bounded in time by the
/// implementation and leaves the connection usable or dropped (never half-open).
pub trait DbBackend: Send + 'static {
    fn probe(&mut self) -> impl Future<Output = Result<DbProbe, DbError>> + Send;
    /// A repair may have replaced what the server holds: the next probe reads it afresh.
    fn content_changed(&mut self) {}
    fn set_read_only(&mut self) -> impl Future<Output = Result<(), DbError>> + Send;
    /// Stop and reset replication, then writable.
    fn promote(&mut self) -> impl Future<Output = Result<(), DbError>> + Send;
    /// Read-only, then replicate from `source` with GTID auto-positioning.
    fn replicate_from(&mut self, source: &ReplicationSource) -> impl Future<Output = Result<(), DbError>> + Send;
    fn stop_replication(&mut self) -> impl Future<Output = Result<(), DbError>> + Send;
    /// Sets the database at `host:port` (another node's) read-only, with this node's admin
    /// credentials: the fence before a promotion when that node's agent is down. Connecting is
    /// bounded by `connect_timeout`, the statements by the backend's own query timeout.
    fn fence(
        &mut self,
        host: &str,
        port: u16,
        connect_timeout: Duration,
    ) -> impl Future<Output = Result<(), DbError>> + Send;
}
