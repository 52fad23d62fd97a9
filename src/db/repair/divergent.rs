//! Reading a split-brain loser's own binary log after the fork, transaction by transaction, as a
//! replica would (mysql_async's binlog stream; MariaDB GTID events read here). A transaction is
//! divergent when neither the fork nor the winner's history (read from the winner as the merge
//! starts) holds it (`core::db::Divergence`). The rows that divergent transactions inserted
//! into the merged tables are copied into the winner exactly, whatever their time column says,
//! in batches committed with the winner's ledger lines, unless the ledger has them by their
//! origin already (a losing primary and its replica log the same transactions); every other
//! change is counted (and already saved, by the caller, in the divergent-transactions file).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use mysql_async::binlog::events::{Event, EventData, RowsEventData, TableMapEvent};
use mysql_async::binlog::row::BinlogRow;
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStream, BinlogStreamRequest, Conn, Row};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::ledger;
use super::literal::{push_literal, ColumnKind};
use super::statement::{self, Statement, Verb};
use super::{rate, run, stopped, Progress, RepairContext};
use crate::core::db::{Divergence, LedgerLine, OriginRow, RowLedger};
use crate::core::gtid::GtidSet;
use crate::db::DbError;

/// MariaDB's own event types (mysql_common reads MySQL's).
const MARIADB_GTID_EVENT: u8 = 162;
/// `QUERY_COMPRESSED_EVENT` … `DELETE_ROWS_COMPRESSED_EVENT_V1` (`log_bin_compress`).
const MARIADB_COMPRESSED_EVENTS: std::ops::RangeInclusive<u8> = 165..=171;
/// A GTID event's flag: a transaction of one statement, with no COMMIT or XID event after it.
const FL_STANDALONE: u8 = 1;
/// `@mariadb_slave_capability` of a replica that reads GTID events as they are.
const CAPABILITY_GTID: u32 = 4;
/// The server id this reader announces: far above any a deployment numbers its servers with.
const READER_SERVER_ID: u32 = 4_000_000_017;
/// One batch (all its inserts, one round trip, one transaction) stays well under MariaDB's
/// default `max_allowed_packet` (16 MiB).
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Connections committing batches on the winner at once.
const COPY_CONNECTIONS: usize = 2;

/// A merged table as both sides hold it.
#[derive(Debug, Clone)]
pub struct MergedTable {
    pub name: String,
    /// Columns of the loser's table: a logged row image has one value per column, in order.
    pub loser_columns: usize,
    /// The image's columns written to the winner (both sides have them; not the fresh id), in
    /// the order of `insert_prefix`.
    pub copied: Vec<(usize, ColumnKind)>,
    /// `INSERT INTO db.table (copied columns…) VALUES `
    pub insert_prefix: String,
}

/// How many rows, statements and transactions of one table (`db.table`) were not merged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Untouched {
    pub inserted: u64,
    pub updated: u64,
    pub deleted: u64,
    pub statements: u64,
}

/// What reading the log since the fork found.
#[derive(Debug, Clone, Default)]
pub struct LogReading {
    /// Divergent transactions read.
    pub transactions: u64,
    /// Of those, the ones with a change not merged (other tables, updates, deletes, statements).
    pub transactions_not_merged: u64,
    /// Rows of each merged table copied by this run, by index into the tables.
    pub rows_copied: Vec<u64>,
    /// Rows found in already (the ledger said so: an earlier run of this merge, or another
    /// node's merge of the same transactions).
    pub rows_copied_before: u64,
    /// Changes not merged, per `db.table`.
    pub untouched: BTreeMap<String, Untouched>,
    /// Merged tables written by statements (not row images): copied by their time window instead.
    pub statement_tables: BTreeSet<usize>,
    /// Why the log could not be read from the fork at all: every table falls back to the window.
    pub gap: Option<String>,
}

/// One divergent transaction being read.
#[derive(Debug, Default)]
struct Transaction {
    /// Its GTID, the origin's: (domain, server id, sequence number).
    origin: (u32, u32, u64),
    divergent: bool,
    standalone: bool,
    not_merged: bool,
    /// Its rows of merged tables met so far (the next one's place).
    merged_rows: u64,
}

impl Transaction {
    fn gtid(&self) -> String {
        let (domain, server, seq) = self.origin;
        format!("{domain}-{server}-{seq}")
    }
}

/// Rows waiting to be committed on the winner, one INSERT per table (their ledger lines are
/// the `RowLedger`'s).
struct Batch {
    inserts: Vec<String>,
    rows: Vec<u64>,
    bytes: usize,
    max_rows: usize,
}

impl Batch {
    fn new(tables: &[MergedTable], max_rows: usize) -> Self {
        Batch {
            inserts: vec![String::new(); tables.len()],
            rows: vec![0; tables.len()],
            bytes: 0,
            max_rows,
        }
    }

    /// `positions[column]` is where the image holds that column (`None`: left out of it).
    fn push(
        &mut self,
        index: usize,
        table: &MergedTable,
        positions: &[Option<usize>],
        row: &BinlogRow,
    ) -> Result<(), String> {
        let insert = &mut self.inserts[index];
        let before = insert.len();
        insert.push_str(if insert.is_empty() { &table.insert_prefix } else { "," });
        insert.push('(');
        for (position, &(column, kind)) in table.copied.iter().enumerate() {
            if position > 0 {
                insert.push(',');
            }
            let value = positions.get(column).copied().flatten().and_then(|at| row.as_ref(at));
            push_literal(insert, value, kind).map_err(|err| format!("{}: {err}", table.name))?;
        }
        insert.push(')');
        self.bytes += insert.len() - before;
        self.rows[index] += 1;
        Ok(())
    }

    fn full(&self) -> bool {
        self.bytes >= MAX_BATCH_BYTES || self.rows.iter().sum::<u64>() >= self.max_rows as u64
    }

    fn is_empty(&self) -> bool {
        self.rows.iter().all(|rows| *rows == 0)
    }

    /// One transaction: every table's rows and the ledger lines saying which they are. Empties
    /// the batch.
    fn take_statement(&mut self, lines: &[LedgerLine], merged_by: &str) -> String {
        let mut sql = String::with_capacity(self.bytes + 512);
        sql.push_str("START TRANSACTION;");
        for insert in self.inserts.iter_mut().filter(|insert| !insert.is_empty()) {
            sql.push_str(insert);
            sql.push(';');
            insert.clear();
        }
        for line in lines {
            sql.push_str(&ledger::record_statement(line, merged_by));
            sql.push(';');
        }
        sql.push_str("COMMIT");
        self.bytes = 0;
        self.rows.iter_mut().for_each(|rows| *rows = 0);
        sql
    }
}

/// Batches committed on the winner over a few connections at once, in any order (each carries
/// its own ledger lines): InnoDB takes inserts from two sessions on two cores.
struct Pool {
    free: Vec<Conn>,
    busy: JoinSet<(Conn, Result<(), DbError>)>,
    timeout: Duration,
    target: String,
}

impl Pool {
    async fn open(ctx: &RepairContext, winner_addr: &str) -> Result<Pool, DbError> {
        let mut free = Vec::new();
        for _ in 0..COPY_CONNECTIONS {
            let mut conn = ctx.connect_to(winner_addr).await?;
            super::prepare_merge_session(ctx, &mut conn, winner_addr).await?;
            free.push(conn);
        }
        Ok(Pool {
            free,
            busy: JoinSet::new(),
            timeout: ctx.statement_timeout,
            target: winner_addr.to_string(),
        })
    }

    async fn submit(&mut self, sql: String) -> Result<(), DbError> {
        let mut conn = match self.free.pop() {
            Some(conn) => conn,
            None => self.finish_one().await?,
        };
        let (timeout, target) = (self.timeout, self.target.clone());
        self.busy.spawn(async move {
            let result = run(
                timeout,
                &target,
                "copy a batch of rows with its ledger lines",
                conn.query_drop(sql),
            )
            .await;
            (conn, result)
        });
        Ok(())
    }

    /// Waits for a batch to commit; its failure fails the merge (the batches still in flight are
    /// dropped with their connections, uncommitted).
    async fn finish_one(&mut self) -> Result<Conn, DbError> {
        match self.busy.join_next().await {
            Some(Ok((conn, Ok(())))) => Ok(conn),
            Some(Ok((_, Err(err)))) => Err(err),
            Some(Err(err)) => Err(DbError::Query {
                target: self.target.clone(),
                what: "copy a batch of rows".into(),
                message: err.to_string(),
            }),
            None => Err(DbError::Query {
                target: self.target.clone(),
                what: "copy a batch of rows".into(),
                message: "no connection left".into(),
            }),
        }
    }

    /// Waits for every batch in flight, whatever its outcome (each is bounded by the timeout).
    async fn settle(&mut self) {
        while self.busy.join_next().await.is_some() {}
    }

    async fn finish_all(mut self) -> Result<(), DbError> {
        while !self.busy.is_empty() {
            match self.finish_one().await {
                Ok(conn) => self.free.push(conn),
                Err(err) => {
                    // As on a stop: the other batch in flight finishes before the error returns.
                    self.settle().await;
                    return Err(err);
                }
            }
        }
        for conn in self.free {
            let _ = conn.disconnect().await;
        }
        Ok(())
    }
}

/// A row image holds only the columns its bitmap marks, packed in table order (a MINIMAL or
/// NOBLOB image leaves some out): where each of the table's `columns` is in it. No bitmap: all.
fn packed_positions(present: Option<&[bool]>, columns: usize) -> Vec<Option<usize>> {
    let Some(present) = present else {
        return (0..columns).map(Some).collect();
    };
    let mut next = 0;
    (0..columns)
        .map(|column| {
            present.get(column).copied().unwrap_or(false).then(|| {
                next += 1;
                next - 1
            })
        })
        .collect()
}

/// Where the merge stands while it reads.
struct Reader<'a> {
    ctx: &'a RepairContext,
    tables: &'a [MergedTable],
    divergence: Divergence,
    pool: Pool,
    winner_name: &'a str,
    reading: LogReading,
    batch: Batch,
    /// Which rows are in already, and the lines of those the batch takes.
    ledger: RowLedger,
    started: Instant,
}

/// Copies every row the loser's divergent transactions inserted into the merged tables, from
/// its log after `fork_gtid`, into the winner (`winner`, on which the caller holds the merge's
/// turn), and counts everything else.
#[allow(clippy::too_many_arguments)]
pub async fn merge_from_log(
    ctx: &RepairContext,
    fork_gtid: &str,
    tables: &[MergedTable],
    winner: &mut Conn,
    winner_target: &str,
    winner_name: &str,
    progress: &mut Progress,
    stop: &watch::Receiver<bool>,
) -> Result<LogReading, DbError> {
    let mut reading = LogReading {
        rows_copied: vec![0; tables.len()],
        ..LogReading::default()
    };
    let winner_history = winner_history(ctx, winner, winner_target).await?;
    let divergence = match Divergence::new(fork_gtid, &winner_history) {
        Ok(divergence) => divergence,
        Err(why) => {
            reading.gap = Some(why);
            return Ok(reading);
        }
    };
    let mut local = ctx.connect_local().await?;
    let first_file = match start_file(ctx, &mut local, &divergence, fork_gtid).await? {
        Ok(file) => file,
        Err(gap) => {
            reading.gap = Some(gap);
            return Ok(reading);
        }
    };
    let ledger = ledger::read(ctx, winner, winner_target).await?;
    let pool = Pool::open(ctx, winner_target).await?;
    let mut stream = open_stream(ctx, local, &first_file).await?;
    let mut reader = Reader {
        ctx,
        tables,
        divergence,
        pool,
        winner_name,
        reading,
        batch: Batch::new(tables, ctx.batch_rows),
        ledger,
        started: Instant::now(),
    };
    let read = reader.read_all(&mut stream, progress, stop).await;
    let _ = stream.close().await;
    match read {
        Ok(()) => {
            reader.pool.finish_all().await?;
            reader.reading.rows_copied_before = reader.ledger.rows_in_already;
            Ok(reader.reading)
        }
        Err(err) => {
            // Batches already sent finish (or fail) before the merge says it stopped: nothing
            // of this merge is still landing on the winner once it has returned.
            reader.pool.settle().await;
            Err(err)
        }
    }
}

impl Reader<'_> {
    async fn read_all(
        &mut self,
        stream: &mut BinlogStream,
        progress: &mut Progress,
        stop: &watch::Receiver<bool>,
    ) -> Result<(), DbError> {
        let mut transaction = Transaction::default();
        while let Some(event) = next_event(self.ctx, stream).await? {
            stopped(stop, "merge")?;
            self.read_event(&event, stream, &mut transaction)?;
            if self.batch.full() {
                self.flush().await?;
                progress.report(|| self.progress_line());
            }
        }
        self.finish_transaction(&mut transaction);
        self.flush().await
    }

    fn read_event(
        &mut self,
        event: &Event,
        stream: &BinlogStream,
        transaction: &mut Transaction,
    ) -> Result<(), DbError> {
        let kind = event.header().event_type_raw();
        if kind == MARIADB_GTID_EVENT {
            self.finish_transaction(transaction);
            *transaction = self.begin_transaction(event)?;
            return Ok(());
        }
        if !transaction.divergent {
            return Ok(());
        }
        if MARIADB_COMPRESSED_EVENTS.contains(&kind) {
            // Compressed events are not read here: every table falls back to its window.
            transaction.not_merged = true;
            self.reading.statement_tables.extend(0..self.tables.len());
            self.untouched("(compressed events: log_bin_compress)").statements += 1;
            return Ok(());
        }
        let data = event.read_data().map_err(|err| self.unreadable(&err.to_string()))?;
        match data {
            Some(EventData::RowsEvent(rows)) => {
                let table_map = stream
                    .get_tme(rows.table_id())
                    .ok_or_else(|| self.unreadable("a rows event without its table map"))?;
                self.read_rows(&rows, table_map, transaction)?;
            }
            Some(EventData::QueryEvent(query)) => {
                let sql = query.query();
                let schema = query.schema();
                self.read_statement(&sql, &schema, transaction);
                if transaction.standalone || sql.trim().eq_ignore_ascii_case("COMMIT") {
                    self.finish_transaction(transaction);
                }
            }
            Some(EventData::XidEvent(_)) => self.finish_transaction(transaction),
            _ => {}
        }
        Ok(())
    }

    /// A MariaDB GTID event: sequence number (8 bytes), domain (4), flags (1); the server id is
    /// the event header's.
    fn begin_transaction(&mut self, event: &Event) -> Result<Transaction, DbError> {
        let data = event.data();
        if data.len() < 13 {
            return Err(self.unreadable("a GTID event shorter than 13 bytes"));
        }
        let seq = u64::from_le_bytes(data[0..8].try_into().expect("8 bytes"));
        let domain = u32::from_le_bytes(data[8..12].try_into().expect("4 bytes"));
        let server = event.header().server_id();
        let divergent = self.divergence.is_divergent(domain, server, seq);
        if divergent {
            self.reading.transactions += 1;
        }
        Ok(Transaction {
            origin: (domain, server, seq),
            divergent,
            standalone: data[12] & FL_STANDALONE != 0,
            not_merged: false,
            merged_rows: 0,
        })
    }

    fn finish_transaction(&mut self, transaction: &mut Transaction) {
        if transaction.divergent && transaction.not_merged {
            self.reading.transactions_not_merged += 1;
        }
        transaction.divergent = false;
        transaction.not_merged = false;
    }

    fn read_rows(
        &mut self,
        rows: &RowsEventData<'_>,
        table_map: &TableMapEvent<'_>,
        transaction: &mut Transaction,
    ) -> Result<(), DbError> {
        let database = table_map.database_name();
        let table_name = table_map.table_name();
        let merged = (database == self.ctx.database.as_str())
            .then(|| self.tables.iter().position(|table| table.name == table_name))
            .flatten()
            .filter(|&index| table_map.columns_count() as usize == self.tables[index].loser_columns);
        let inserts = matches!(
            rows,
            RowsEventData::WriteRowsEvent(_) | RowsEventData::WriteRowsEventV1(_)
        );
        let (Some(index), true) = (merged, inserts) else {
            let count = rows.rows(table_map).count() as u64;
            let untouched = self.untouched(&format!("{database}.{table_name}"));
            match rows {
                RowsEventData::WriteRowsEvent(_) | RowsEventData::WriteRowsEventV1(_) => untouched.inserted += count,
                RowsEventData::DeleteRowsEvent(_) | RowsEventData::DeleteRowsEventV1(_) => untouched.deleted += count,
                _ => untouched.updated += count,
            }
            transaction.not_merged = true;
            return Ok(());
        };
        let table = &self.tables[index];
        let present: Option<Vec<bool>> = rows
            .columns_after_image()
            .map(|bits| bits.iter().map(|bit| *bit).collect());
        let positions = packed_positions(present.as_deref(), table.loser_columns);
        for row in rows.rows(table_map) {
            let (_, after) = row.map_err(|err| self.unreadable(&err.to_string()))?;
            let after = after.ok_or_else(|| self.unreadable("an insert without its row image"))?;
            let (domain, server, seq) = transaction.origin;
            let origin = OriginRow {
                domain,
                server,
                seq,
                row: transaction.merged_rows,
            };
            transaction.merged_rows += 1;
            if !self.ledger.take(origin) {
                continue;
            }
            self.batch
                .push(index, table, &positions, &after)
                .map_err(|err| self.unreadable(&format!("{err} (transaction {})", transaction.gtid())))?;
            self.reading.rows_copied[index] += 1;
        }
        Ok(())
    }

    /// A statement event: a merged table's rows written this way are copied by their window.
    fn read_statement(&mut self, sql: &str, schema: &str, transaction: &mut Transaction) {
        match statement::classify(sql, schema) {
            Statement::TransactionControl => {}
            Statement::Write { verb, database, table } => {
                let merged = (database == self.ctx.database)
                    .then(|| self.tables.iter().position(|merged| merged.name == table))
                    .flatten();
                if let (Some(index), Verb::Insert) = (merged, verb) {
                    self.reading.statement_tables.insert(index);
                }
                transaction.not_merged = true;
                self.untouched(&format!("{database}.{table}")).statements += 1;
            }
            Statement::Other(word) => {
                transaction.not_merged = true;
                self.untouched(&format!("({word} statements)")).statements += 1;
            }
        }
    }

    fn untouched(&mut self, name: &str) -> &mut Untouched {
        self.reading.untouched.entry(name.to_string()).or_default()
    }

    async fn flush(&mut self) -> Result<(), DbError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let lines = self.ledger.take_lines();
        let sql = self.batch.take_statement(&lines, &self.ctx.node);
        self.pool.submit(sql).await
    }

    fn progress_line(&self) -> String {
        let copied: u64 = self.reading.rows_copied.iter().sum();
        format!(
            "merging from the binary log: {copied} rows copied into {} ({:.0} rows/s), {} transactions read",
            self.winner_name,
            rate(copied as f64, self.started),
            self.reading.transactions
        )
    }

    fn unreadable(&self, message: &str) -> DbError {
        DbError::Unreadable {
            target: self.ctx.local_target(),
            what: "the binary log after the fork".into(),
            message: message.to_string(),
        }
    }
}

/// Everything the winner holds, as its server says now: a transaction in it is not divergent.
async fn winner_history(ctx: &RepairContext, winner: &mut Conn, target: &str) -> Result<String, DbError> {
    let sql = "SELECT @@GLOBAL.gtid_binlog_state, @@GLOBAL.gtid_slave_pos, @@GLOBAL.gtid_current_pos";
    let row: Option<(String, String, String)> = run(
        ctx.statement_timeout,
        target,
        "read the winner's GTID history",
        winner.query_first(sql),
    )
    .await?;
    let (state, slave, current) = row.unwrap_or_default();
    let parts: Vec<&str> = [state.as_str(), slave.as_str(), current.as_str()]
        .into_iter()
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect();
    Ok(parts.join(","))
}

/// The newest binary log file that starts before any divergent transaction (its `Gtid_list`
/// holds nothing divergent), or why there is none: the log after the fork was purged, or there
/// is no log.
async fn start_file(
    ctx: &RepairContext,
    local: &mut Conn,
    divergence: &Divergence,
    fork: &str,
) -> Result<Result<String, String>, DbError> {
    let target = ctx.local_target();
    let logs: Vec<Row> = match run(
        ctx.statement_timeout,
        &target,
        "SHOW BINARY LOGS",
        local.query("SHOW BINARY LOGS"),
    )
    .await
    {
        Ok(logs) => logs,
        Err(err) => return Ok(Err(format!("this node's binary logs cannot be listed ({err})"))),
    };
    let files: Vec<String> = logs.iter().filter_map(|row| row.get::<String, _>(0)).collect();
    let mut oldest_start = None;
    for file in files.iter().rev() {
        let sql = format!(
            "SHOW BINLOG EVENTS IN {} LIMIT 4",
            mysql_async::Value::from(file.as_str()).as_sql(false)
        );
        let events: Vec<Row> = run(
            ctx.statement_timeout,
            &target,
            "read a binary log's start",
            local.query(sql),
        )
        .await?;
        let list = events.iter().find_map(|row| {
            let kind: String = row.get("Event_type")?;
            let info: String = row.get("Info")?;
            (kind == "Gtid_list").then(|| info.trim_matches(|c| c == '[' || c == ']').to_string())
        });
        let Some(list) = list else { continue };
        let Ok(GtidSet::MariaDb(domains)) = GtidSet::parse(&list) else {
            continue;
        };
        if divergence.starts_before(&GtidSet::MariaDb(domains)) {
            return Ok(Ok(file.clone()));
        }
        oldest_start = Some(list);
    }
    Ok(Err(match oldest_start {
        Some(list) => format!(
            "this node's binary log starts at {list}, after the fork at {fork}: the transactions between were purged"
        ),
        None => "this node has no binary log to read the transactions since the fork from".into(),
    }))
}

async fn open_stream(ctx: &RepairContext, mut local: Conn, file: &str) -> Result<BinlogStream, DbError> {
    let target = ctx.local_target();
    let capability = format!("SET @mariadb_slave_capability = {CAPABILITY_GTID}");
    run(
        ctx.statement_timeout,
        &target,
        &capability,
        local.query_drop(&capability),
    )
    .await?;
    let request = BinlogStreamRequest::new(READER_SERVER_ID)
        .with_filename(file.as_bytes())
        .with_pos(4u64)
        .with_non_blocking();
    run(
        ctx.statement_timeout,
        &target,
        "read the binary log as a replica (REPLICATION SLAVE privilege)",
        local.get_binlog_stream(request),
    )
    .await
}

async fn next_event(ctx: &RepairContext, stream: &mut BinlogStream) -> Result<Option<Event>, DbError> {
    let target = ctx.local_target();
    match tokio::time::timeout(ctx.statement_timeout.max(Duration::from_secs(1)), stream.next()).await {
        Ok(Some(Ok(event))) => Ok(Some(event)),
        Ok(Some(Err(err))) => Err(DbError::Query {
            target,
            what: "read the binary log after the fork".into(),
            message: err.to_string(),
        }),
        Ok(None) => Ok(None),
        Err(_) => Err(DbError::Timeout {
            target,
            what: "read the binary log after the fork".into(),
            timeout_ms: ctx.statement_timeout.as_millis() as u64,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::packed_positions;

    #[test]
    fn a_partial_image_packs_the_columns_it_holds() {
        assert_eq!(packed_positions(None, 3), [Some(0), Some(1), Some(2)]);
        assert_eq!(
            packed_positions(Some(&[true, false, true, true]), 4),
            [Some(0), None, Some(1), Some(2)]
        );
        assert_eq!(packed_positions(Some(&[false, true]), 3), [None, Some(0), None]);
    }
}
