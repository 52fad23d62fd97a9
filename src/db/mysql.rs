//! `DbBackend` over mysql_async, for MariaDB and MySQL 8 / Percona 8. One connection, made
//! lazily and dropped on any error or timeout, so a stale handle never makes a dead server look
//! alive (a known weakness of pandora_ha).

use std::time::{Duration, Instant};

use gossip_ha_proto::db::DatabaseContent;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Row};

use super::dialect::{Dialect, Statement};
use super::{DbBackend, DbError, DbProbe, ReplicaProbe, ReplicationSource};
use crate::core::db::{binlog_warning, BinlogFormat, BinlogRowImage};

pub struct MySqlBackend {
    opts: Opts,
    /// host:port or socket path, never with credentials: what errors name.
    target: String,
    conn: Option<Conn>,
    dialect: Option<Dialect>,
    connect_timeout: Duration,
    query_timeout: Duration,
    /// The user databases as last read, and when.
    content: Option<(Instant, Vec<DatabaseContent>)>,
}

/// How often the user databases are read again.
/// How long a promotion waits, after fencing the old primary, for this replica to hold all it
/// holds (under the 10-s statement bound).
const FENCE_CATCH_UP: Duration = Duration::from_secs(5);
const CONTENT_REFRESH: Duration = Duration::from_secs(3);

impl MySqlBackend {
    /// `url` is `mysql://user:password@host:port/` (or `?socket=/path`); it is checked by the
    /// configuration, which is why a bad one is a plain error here.
    pub fn new(url: &str, connect_timeout: Duration, query_timeout: Duration) -> Result<Self, String> {
        let opts = Opts::from_url(url).map_err(|_| "not a valid mysql:// URL".to_string())?;
        let target = match opts.socket() {
            Some(socket) => socket.to_string(),
            None => format!("{}:{}", opts.ip_or_hostname(), opts.tcp_port()),
        };
        // Without this, mysql_async reconnects over the server's own socket when it can: the
        // agent must talk to exactly the address it was given.
        let opts = Opts::from(OptsBuilder::from_opts(opts).prefer_socket(false));
        Ok(MySqlBackend {
            opts,
            target,
            conn: None,
            dialect: None,
            connect_timeout,
            query_timeout,
            content: None,
        })
    }

    pub fn target(&self) -> &str {
        &self.target
    }

    async fn connection(&mut self) -> Result<&mut Conn, DbError> {
        if self.conn.is_none() {
            let connect = Conn::new(self.opts.clone());
            let conn = match tokio::time::timeout(self.connect_timeout, connect).await {
                Ok(Ok(conn)) => conn,
                Ok(Err(err)) => {
                    return Err(DbError::Connect {
                        target: self.target.clone(),
                        message: err.to_string(),
                    })
                }
                Err(_) => {
                    return Err(DbError::Connect {
                        target: self.target.clone(),
                        message: format!("no answer within {} ms", self.connect_timeout.as_millis()),
                    })
                }
            };
            self.conn = Some(conn);
        }
        Ok(self.conn.as_mut().expect("connection was just made"))
    }

    fn fail(&mut self, what: &str, err: Option<mysql_async::Error>) -> DbError {
        // Any failure drops the connection: the next call starts from a fresh one.
        self.conn = None;
        self.content = None;
        match err {
            None => DbError::Timeout {
                target: self.target.clone(),
                what: what.to_string(),
                timeout_ms: self.query_timeout.as_millis() as u64,
            },
            Some(err) => DbError::Query {
                target: self.target.clone(),
                what: what.to_string(),
                message: err.to_string(),
            },
        }
    }

    async fn rows(&mut self, sql: &str) -> Result<Vec<Row>, DbError> {
        let timeout = self.query_timeout;
        let conn = self.connection().await?;
        match tokio::time::timeout(timeout, conn.query::<Row, _>(sql)).await {
            Ok(Ok(rows)) => Ok(rows),
            Ok(Err(err)) => Err(self.fail(sql, Some(err))),
            Err(_) => Err(self.fail(sql, None)),
        }
    }

    async fn execute(&mut self, statements: Vec<Statement>) -> Result<(), DbError> {
        let timeout = self.query_timeout;
        for statement in statements {
            let conn = self.connection().await?;
            match tokio::time::timeout(timeout, conn.query_drop(statement.sql.as_str())).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => return Err(self.fail(&statement.shown, Some(err))),
                Err(_) => return Err(self.fail(&statement.shown, None)),
            }
        }
        Ok(())
    }

    async fn dialect(&mut self) -> Result<Dialect, DbError> {
        if let Some(dialect) = self.dialect {
            return Ok(dialect);
        }
        let rows = self.rows("SELECT @@version").await?;
        let version: String = rows.first().and_then(|row| row.get(0)).unwrap_or_default();
        let dialect = Dialect::detect(&version);
        self.dialect = Some(dialect);
        Ok(dialect)
    }

    /// The user databases, read again at most every `CONTENT_REFRESH`: what a server holds
    /// changes slowly, and the query opens every table's statistics.
    async fn databases(&mut self, dialect: Dialect) -> Result<Vec<DatabaseContent>, DbError> {
        if let Some((at, databases)) = &self.content {
            if at.elapsed() < CONTENT_REFRESH {
                return Ok(databases.clone());
            }
        }
        let sql = dialect.user_databases();
        let rows = self.rows(&sql).await?;
        let databases: Vec<DatabaseContent> = rows
            .iter()
            .filter_map(|row| {
                Some(DatabaseContent {
                    name: row.get::<Option<String>, _>(0).flatten()?,
                    tables: row.get::<Option<u64>, _>(1).flatten().unwrap_or(0),
                    approx_rows: row.get::<Option<u64>, _>(2).flatten().unwrap_or(0),
                })
            })
            .collect();
        self.content = Some((Instant::now(), databases.clone()));
        Ok(databases)
    }

    fn unreadable(&self, what: &str, message: impl Into<String>) -> DbError {
        DbError::Unreadable {
            target: self.target.clone(),
            what: what.to_string(),
            message: message.into(),
        }
    }
}

/// The binary log format and row image of a `probe_variables` row. Never an error: they only
/// decide a warning, and a probe that failed on them would make the database look down.
fn binlog_columns(row: &Row) -> (BinlogFormat, BinlogRowImage) {
    let column = |index: usize| row.get::<Option<String>, _>(index).flatten().unwrap_or_default();
    (BinlogFormat::parse(&column(5)), BinlogRowImage::parse(&column(6)))
}

fn text(row: &Row, column: &str) -> Option<String> {
    row.get_opt::<Option<String>, _>(column).and_then(Result::ok).flatten()
}

fn number(row: &Row, column: &str) -> Option<u64> {
    text(row, column).and_then(|value| value.trim().parse().ok())
}

impl DbBackend for MySqlBackend {
    fn content_changed(&mut self) {
        self.content = None;
    }

    async fn probe(&mut self) -> Result<DbProbe, DbError> {
        let dialect = self.dialect().await?;
        let what = dialect.probe_variables();
        let rows = self.rows(what).await?;
        let row = rows.first().ok_or_else(|| self.unreadable(what, "no row"))?;
        let version: String = row.get(0).ok_or_else(|| self.unreadable(what, "no version"))?;
        let read_only: i64 = row.get(1).ok_or_else(|| self.unreadable(what, "no read_only"))?;
        let log_bin: i64 = row.get(2).ok_or_else(|| self.unreadable(what, "no log_bin"))?;
        let gtid: String = row.get::<Option<String>, _>(3).flatten().unwrap_or_default();
        let gtid_history: String = row.get::<Option<String>, _>(4).flatten().unwrap_or_default();
        let (binlog_format, binlog_row_image) = binlog_columns(row);
        let databases = self.databases(dialect).await?;

        let status = self.rows(dialect.replica_status()).await?;
        let columns = dialect.replica_columns();
        let replica = status.first().and_then(|row| {
            let host = text(row, columns.source_host).filter(|host| !host.is_empty())?;
            let io_state = text(row, columns.io_running).unwrap_or_else(|| "No".into());
            let sql_running = text(row, columns.sql_running).is_some_and(|v| v.eq_ignore_ascii_case("yes"));
            let relay_applied = text(row, columns.read_file) == text(row, columns.exec_file)
                && number(row, columns.read_pos) == number(row, columns.exec_pos);
            let io_errno = number(row, "Last_IO_Errno").unwrap_or(0) as u32;
            let sql_errno = number(row, "Last_SQL_Errno").unwrap_or(0) as u32;
            let last_error = [text(row, "Last_IO_Error"), text(row, "Last_SQL_Error")]
                .into_iter()
                .flatten()
                .filter(|error| !error.is_empty())
                .collect::<Vec<_>>();
            Some(ReplicaProbe {
                source: format!("{host}:{}", number(row, columns.source_port).unwrap_or(3306)),
                io_state,
                sql_running,
                lag_seconds: number(row, columns.lag_seconds),
                relay_applied,
                io_errno,
                sql_errno,
                last_error: (!last_error.is_empty()).then(|| last_error.join("; ")),
            })
        });
        Ok(DbProbe {
            read_only: read_only != 0,
            binlog_enabled: log_bin != 0,
            binlog_format,
            binlog_row_image,
            version,
            gtid,
            gtid_history,
            databases,
            replica,
        })
    }

    async fn set_read_only(&mut self) -> Result<(), DbError> {
        let dialect = self.dialect().await?;
        self.execute(dialect.set_read_only()).await
    }

    async fn promote(&mut self) -> Result<(), DbError> {
        let dialect = self.dialect().await?;
        self.execute(dialect.promote()).await
    }

    async fn replicate_from(&mut self, source: &ReplicationSource) -> Result<(), DbError> {
        let dialect = self.dialect().await?;
        self.execute(dialect.replicate_from(source)).await
    }

    async fn stop_replication(&mut self) -> Result<(), DbError> {
        let dialect = self.dialect().await?;
        self.execute(dialect.stop_replication()).await
    }

    async fn fence(&mut self, host: &str, port: u16, connect_timeout: Duration) -> Result<(), DbError> {
        let dialect = self.dialect().await?;
        let target = format!("{host}:{port}");
        let opts = OptsBuilder::from_opts(self.opts.clone())
            .ip_or_hostname(host)
            .tcp_port(port)
            .socket(None::<String>);
        let mut conn = match tokio::time::timeout(connect_timeout, Conn::new(opts)).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(err)) => {
                return Err(DbError::Connect {
                    target,
                    message: err.to_string(),
                })
            }
            Err(_) => {
                return Err(DbError::Timeout {
                    target,
                    what: "fence (connect)".into(),
                    timeout_ms: connect_timeout.as_millis() as u64,
                })
            }
        };
        let work = async {
            for statement in dialect.set_read_only() {
                conn.query_drop(statement.sql.as_str()).await?;
            }
            conn.query_first::<Option<String>, _>(dialect.executed_position()).await
        };
        let outcome = match tokio::time::timeout(self.query_timeout, work).await {
            Ok(Ok(position)) => Ok(position.flatten()),
            Ok(Err(err)) => Err(DbError::Query {
                target: target.clone(),
                what: "fence (set read-only)".into(),
                message: err.to_string(),
            }),
            Err(_) => Err(DbError::Timeout {
                target: target.clone(),
                what: "fence (set read-only)".into(),
                timeout_ms: self.query_timeout.as_millis() as u64,
            }),
        };
        // A polite goodbye (no aborted client in the server's log), bounded like any call.
        let _ = tokio::time::timeout(self.query_timeout, conn.disconnect()).await;
        match outcome? {
            Some(position) if !position.is_empty() => self.catch_up_with(&target, &position, dialect).await,
            _ => Ok(()),
        }
    }
}

/// `check-config`: one look at the server's binary log settings, connecting, asking and closing
/// all within `timeout`. `Ok(None)`: a merge could copy its rows exactly.
pub async fn check_binlog(url: &str, timeout: Duration) -> Result<Option<String>, String> {
    let mut backend = MySqlBackend::new(url, timeout, timeout)?;
    let target = backend.target().to_string();
    let work = async {
        let warning = backend.binlog_warning().await?;
        backend.close().await;
        Ok::<_, DbError>(warning)
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(checked) => checked.map_err(|err| err.to_string()),
        Err(_) => Err(format!("{target} gave no answer within {} ms", timeout.as_millis())),
    }
}

impl MySqlBackend {
    /// Why a split-brain merge of this server's writes could not be exact, if it could not:
    /// only the variables row is read (not the user databases a probe opens every table of).
    pub async fn binlog_warning(&mut self) -> Result<Option<String>, DbError> {
        let dialect = self.dialect().await?;
        let what = dialect.probe_variables();
        let rows = self.rows(what).await?;
        let row = rows.first().ok_or_else(|| self.unreadable(what, "no row"))?;
        let log_bin: i64 = row.get(2).ok_or_else(|| self.unreadable(what, "no log_bin"))?;
        let (format, row_image) = binlog_columns(row);
        Ok(binlog_warning(log_bin != 0, &format, &row_image))
    }

    /// Ends the connection politely (no aborted client in the server's log), bounded.
    pub async fn close(&mut self) {
        if let Some(conn) = self.conn.take() {
            let _ = tokio::time::timeout(self.query_timeout, conn.disconnect()).await;
        }
    }

    /// After a fence: if this server replicates from the fenced one, waits (bounded) until it
    /// executed everything the fenced server holds, so writes it took while this agent could not
    /// see it come over before this node is promoted instead of staying there. Not caught up in
    /// time is no error: what is missing stays in the fenced server's binary log for the merge.
    async fn catch_up_with(&mut self, fenced: &str, position: &str, dialect: Dialect) -> Result<(), DbError> {
        let follows_it = self
            .probe()
            .await
            .is_ok_and(|probe| probe.replica.is_some_and(|replica| replica.source == fenced));
        if follows_it {
            let wait = dialect.wait_for_position(position, FENCE_CATCH_UP.as_secs());
            if let Err(err) = self.rows(&wait).await {
                tracing::warn!("waiting to hold {fenced}'s transactions ({position}): {err}");
            }
        }
        Ok(())
    }
}
