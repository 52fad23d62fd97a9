//! SQL for the two replication dialects (DESIGN §2): MariaDB (`CHANGE MASTER TO …
//! MASTER_USE_GTID`, `SHOW SLAVE STATUS`) and MySQL 8 / Percona 8 (`CHANGE REPLICATION SOURCE TO
//! … SOURCE_AUTO_POSITION`, `SHOW REPLICA STATUS`, `super_read_only`). Pure: no connection here.

use crate::secret::Secret;

/// Schemas every server has: never user data.
pub const SYSTEM_SCHEMAS: [&str; 4] = ["mysql", "information_schema", "performance_schema", "sys"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    MariaDb,
    MySql,
}

/// Column names of the replica status row in each dialect.
#[derive(Debug, Clone, Copy)]
pub struct ReplicaColumns {
    pub io_running: &'static str,
    pub sql_running: &'static str,
    pub lag_seconds: &'static str,
    pub source_host: &'static str,
    pub source_port: &'static str,
    pub read_file: &'static str,
    pub read_pos: &'static str,
    pub exec_file: &'static str,
    pub exec_pos: &'static str,
}

/// Where a replica connects, with the credentials of the replication user.
#[derive(Debug, Clone)]
pub struct ReplicationSource {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Secret,
}

/// A statement and the text that may be shown of it (passwords masked).
#[derive(Clone, PartialEq, Eq)]
pub struct Statement {
    pub sql: String,
    pub shown: String,
}

impl std::fmt::Debug for Statement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl From<&str> for Statement {
    fn from(sql: &str) -> Self {
        Statement {
            sql: sql.to_string(),
            shown: sql.to_string(),
        }
    }
}

/// A SQL string literal. Backslash and quote are escaped, so a password cannot end the literal.
pub fn quote(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('\'');
    for c in text.chars() {
        match c {
            '\\' => quoted.push_str("\\\\"),
            '\'' => quoted.push_str("\\'"),
            '\0' => quoted.push_str("\\0"),
            _ => quoted.push(c),
        }
    }
    quoted.push('\'');
    quoted
}

impl Dialect {
    pub fn detect(version: &str) -> Dialect {
        if version.to_ascii_lowercase().contains("mariadb") {
            Dialect::MariaDb
        } else {
            Dialect::MySql
        }
    }

    /// One row: version, read-only (0/1), binary log on (0/1), executed GTIDs, (MariaDB) the
    /// history's waypoints: the newest GTID of each server id in the binary log and in the
    /// replica position, then the binary log format and row image. Those two are the global
    /// values, what new sessions (Pandora's) log with: the agent's own session keeps the ones
    /// it connected with after a `SET GLOBAL`.
    pub fn probe_variables(self) -> &'static str {
        match self {
            Dialect::MariaDb => {
                "SELECT @@version, @@read_only, @@log_bin, @@gtid_current_pos, \
                 CONCAT_WS(',', NULLIF(@@gtid_binlog_state, ''), NULLIF(@@gtid_slave_pos, '')), \
                 @@GLOBAL.binlog_format, @@GLOBAL.binlog_row_image"
            }
            Dialect::MySql => {
                "SELECT @@version, @@read_only OR @@super_read_only, @@log_bin, @@gtid_executed, '', \
                 @@GLOBAL.binlog_format, @@GLOBAL.binlog_row_image"
            }
        }
    }

    /// A server's executed GTIDs: read from a fenced old primary once it is read-only, so this
    /// replica can wait to hold all it took.
    pub fn executed_position(self) -> &'static str {
        match self {
            Dialect::MariaDb => "SELECT @@GLOBAL.gtid_binlog_pos",
            Dialect::MySql => "SELECT @@GLOBAL.gtid_executed",
        }
    }

    /// Waits on this replica until it executed `position`, at most `seconds`: 0 when it did.
    pub fn wait_for_position(self, position: &str, seconds: u64) -> String {
        match self {
            Dialect::MariaDb => format!("SELECT MASTER_GTID_WAIT({}, {seconds})", quote(position)),
            Dialect::MySql => format!("SELECT WAIT_FOR_EXECUTED_GTID_SET({}, {seconds})", quote(position)),
        }
    }

    /// Rows of (user database, tables, estimated rows), largest first: what a server holds
    /// besides its system schemas. Both dialects.
    pub fn user_databases(self) -> String {
        format!(
            "SELECT s.SCHEMA_NAME, COUNT(t.TABLE_NAME), CAST(COALESCE(SUM(t.TABLE_ROWS), 0) AS UNSIGNED) \
             FROM information_schema.SCHEMATA s LEFT JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = s.SCHEMA_NAME \
             WHERE s.SCHEMA_NAME NOT IN ({}) GROUP BY s.SCHEMA_NAME ORDER BY 3 DESC, 1 LIMIT {}",
            SYSTEM_SCHEMAS.iter().map(|name| quote(name)).collect::<Vec<_>>().join(", "),
            gossip_ha_proto::db::MAX_ANNOUNCED_DATABASES
        )
    }

    pub fn replica_status(self) -> &'static str {
        match self {
            Dialect::MariaDb => "SHOW SLAVE STATUS",
            Dialect::MySql => "SHOW REPLICA STATUS",
        }
    }

    pub fn replica_columns(self) -> ReplicaColumns {
        match self {
            Dialect::MariaDb => ReplicaColumns {
                io_running: "Slave_IO_Running",
                sql_running: "Slave_SQL_Running",
                lag_seconds: "Seconds_Behind_Master",
                source_host: "Master_Host",
                source_port: "Master_Port",
                read_file: "Master_Log_File",
                read_pos: "Read_Master_Log_Pos",
                exec_file: "Relay_Master_Log_File",
                exec_pos: "Exec_Master_Log_Pos",
            },
            Dialect::MySql => ReplicaColumns {
                io_running: "Replica_IO_Running",
                sql_running: "Replica_SQL_Running",
                lag_seconds: "Seconds_Behind_Source",
                source_host: "Source_Host",
                source_port: "Source_Port",
                read_file: "Source_Log_File",
                read_pos: "Read_Source_Log_Pos",
                exec_file: "Relay_Source_Log_File",
                exec_pos: "Exec_Source_Log_Pos",
            },
        }
    }

    pub fn set_read_only(self) -> Vec<Statement> {
        match self {
            Dialect::MariaDb => vec!["SET GLOBAL read_only = ON".into()],
            // super_read_only also stops users with SUPER, and implies read_only.
            Dialect::MySql => vec!["SET GLOBAL super_read_only = ON".into()],
        }
    }

    pub fn stop_replication(self) -> Vec<Statement> {
        match self {
            Dialect::MariaDb => vec!["STOP SLAVE".into()],
            Dialect::MySql => vec!["STOP REPLICA".into()],
        }
    }

    /// The manual's promotion: stop and forget replication, then writable.
    pub fn promote(self) -> Vec<Statement> {
        match self {
            Dialect::MariaDb => vec![
                "STOP SLAVE".into(),
                "RESET SLAVE ALL".into(),
                "SET GLOBAL read_only = OFF".into(),
            ],
            Dialect::MySql => vec![
                "STOP REPLICA".into(),
                "RESET REPLICA ALL".into(),
                "SET GLOBAL super_read_only = OFF".into(),
                "SET GLOBAL read_only = OFF".into(),
            ],
        }
    }

    /// Read-only first, then replicate from `source` with GTID auto-positioning. MariaDB uses
    /// `current_pos`, so a former primary resumes from what it executed itself; a node holding
    /// transactions the source lacks is then refused by the source (error 1236), never merged.
    pub fn replicate_from(self, source: &ReplicationSource) -> Vec<Statement> {
        let change = |password: &str| match self {
            Dialect::MariaDb => format!(
                "CHANGE MASTER TO MASTER_HOST={}, MASTER_PORT={}, MASTER_USER={}, MASTER_PASSWORD={}, \
                 MASTER_USE_GTID=current_pos, MASTER_CONNECT_RETRY=1",
                quote(&source.host),
                source.port,
                quote(&source.user),
                password
            ),
            Dialect::MySql => format!(
                "CHANGE REPLICATION SOURCE TO SOURCE_HOST={}, SOURCE_PORT={}, SOURCE_USER={}, SOURCE_PASSWORD={}, \
                 SOURCE_AUTO_POSITION=1, SOURCE_CONNECT_RETRY=1, GET_SOURCE_PUBLIC_KEY=1",
                quote(&source.host),
                source.port,
                quote(&source.user),
                password
            ),
        };
        let mut statements = self.set_read_only();
        statements.extend(self.stop_replication());
        statements.push(Statement {
            sql: change(&quote(source.password.expose())),
            shown: change(&quote(crate::secret::MASK)),
        });
        statements.push(match self {
            Dialect::MariaDb => "START SLAVE".into(),
            Dialect::MySql => "START REPLICA".into(),
        });
        statements
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> ReplicationSource {
        ReplicationSource {
            host: "198.18.0.2".into(),
            port: 3306,
            user: "repl".into(),
            password: Secret::new("it's\\secret"),
        }
    }

    fn sql(statements: &[Statement]) -> Vec<&str> {
        statements.iter().map(|s| s.sql.as_str()).collect()
    }

    #[test]
    fn dialect_is_detected_from_the_version() {
        assert_eq!(Dialect::detect("10.11.19-MariaDB-0+deb12u1"), Dialect::MariaDb);
        assert_eq!(Dialect::detect("8.0.36-28"), Dialect::MySql);
        assert_eq!(Dialect::detect("8.4.0"), Dialect::MySql);
    }

    #[test]
    fn mariadb_statements() {
        assert_eq!(
            sql(&Dialect::MariaDb.promote()),
            ["STOP SLAVE", "RESET SLAVE ALL", "SET GLOBAL read_only = OFF"]
        );
        let statements = Dialect::MariaDb.replicate_from(&source());
        assert_eq!(statements[0].sql, "SET GLOBAL read_only = ON");
        assert_eq!(statements[1].sql, "STOP SLAVE");
        assert_eq!(
            statements[2].sql,
            "CHANGE MASTER TO MASTER_HOST='198.18.0.2', MASTER_PORT=3306, MASTER_USER='repl', \
             MASTER_PASSWORD='it\\'s\\\\secret', MASTER_USE_GTID=current_pos, MASTER_CONNECT_RETRY=1"
        );
        assert_eq!(statements[3].sql, "START SLAVE");
        assert_eq!(Dialect::MariaDb.replica_status(), "SHOW SLAVE STATUS");
        assert_eq!(Dialect::MariaDb.replica_columns().lag_seconds, "Seconds_Behind_Master");
    }

    #[test]
    fn mysql_statements() {
        assert_eq!(
            sql(&Dialect::MySql.promote()),
            [
                "STOP REPLICA",
                "RESET REPLICA ALL",
                "SET GLOBAL super_read_only = OFF",
                "SET GLOBAL read_only = OFF"
            ]
        );
        assert_eq!(
            sql(&Dialect::MySql.set_read_only()),
            ["SET GLOBAL super_read_only = ON"]
        );
        let statements = Dialect::MySql.replicate_from(&source());
        assert_eq!(statements[0].sql, "SET GLOBAL super_read_only = ON");
        assert_eq!(statements[1].sql, "STOP REPLICA");
        assert!(statements[2]
            .sql
            .starts_with("CHANGE REPLICATION SOURCE TO SOURCE_HOST='198.18.0.2'"));
        assert!(statements[2].sql.contains("SOURCE_AUTO_POSITION=1"));
        assert_eq!(statements[3].sql, "START REPLICA");
        assert!(Dialect::MySql.probe_variables().contains("@@gtid_executed"));
        for dialect in [Dialect::MariaDb, Dialect::MySql] {
            assert!(
                dialect
                    .probe_variables()
                    .ends_with("@@GLOBAL.binlog_format, @@GLOBAL.binlog_row_image"),
                "{dialect:?}: the binary log columns come last (5 and 6)"
            );
        }
        assert_eq!(Dialect::MySql.replica_columns().io_running, "Replica_IO_Running");
    }

    #[test]
    fn waiting_for_a_fenced_servers_position_is_bounded_and_quoted() {
        assert_eq!(
            Dialect::MariaDb.wait_for_position("0-1-42,1-2-7", 5),
            "SELECT MASTER_GTID_WAIT('0-1-42,1-2-7', 5)"
        );
        assert_eq!(
            Dialect::MySql.wait_for_position("3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5", 5),
            "SELECT WAIT_FOR_EXECUTED_GTID_SET('3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5', 5)"
        );
        assert!(Dialect::MariaDb
            .wait_for_position("x' OR '1", 5)
            .contains("'x\\' OR \\'1'"));
    }

    #[test]
    fn passwords_never_show() {
        for dialect in [Dialect::MariaDb, Dialect::MySql] {
            for statement in dialect.replicate_from(&source()) {
                assert!(!statement.shown.contains("secret"), "{}", statement.shown);
                assert!(!format!("{statement:?}").contains("secret"));
            }
        }
    }

    #[test]
    fn quoting_cannot_be_escaped() {
        assert_eq!(quote("a'b"), "'a\\'b'");
        assert_eq!(quote("a\\"), "'a\\\\'");
        assert_eq!(quote("x\0y"), "'x\\0y'");
    }
}
