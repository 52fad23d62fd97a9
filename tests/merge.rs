//! The split-brain merge against real MariaDB servers (issue #13), called as the DB worker calls
//! it: a loser and a winner with Pandora's own table definitions and data of their own, the
//! loser's divergent transactions written after the fork as Pandora writes them (late-dated
//! rows, NULLs, quotes, unicode, a 200 KB text, the same row twice, changes to tables that are
//! not merged), then `repair::merge`. The rows must arrive exactly once, whatever their time.

mod common;

use std::time::{Duration, Instant};

use common::mariadb::{sql, MariaDb};
use gossip_ha::config::MergeTable;
use gossip_ha::core::db::MergePlan;
use gossip_ha::db::repair::{self, Progress, RepairContext};

/// Divergent rows are told apart from the servers' own data by their module or agent id.
const MARK: u32 = 900;

fn context(dir: &std::path::Path, loser: &MariaDb, batch_rows: usize) -> RepairContext {
    let table = |name: &str, fresh_id: Option<&str>| MergeTable {
        name: name.into(),
        time_column: "utimestamp".into(),
        fresh_id: fresh_id.map(str::to_string),
    };
    RepairContext {
        node: "loser".into(),
        local: mysql_async::Opts::from_url(&loser.admin_url()).unwrap(),
        database: "pandora".into(),
        tables: vec![
            table("tagente_datos", None),
            table("tagente_datos_string", None),
            table("tevento", Some("id_evento")),
        ],
        batch_rows,
        state_dir: dir.join("state"),
        statement_timeout: Duration::from_secs(30),
        resync_timeout: Duration::from_secs(300),
        physical: None,
    }
}

/// A loser and a winner, each with Pandora's tables and 20 rows of its own; the fork is the
/// loser's position before its divergent writes.
fn servers(dir: &std::path::Path) -> (MariaDb, MariaDb, String) {
    let loser = MariaDb::install(dir, "loser", 1);
    let winner = MariaDb::install(dir, "winner", 2);
    loser.load_pandora(20);
    winner.load_pandora(20);
    winner.admin(&["SET GLOBAL read_only = OFF"]);
    let fork = loser.query_root("SELECT @@gtid_binlog_pos").trim().to_string();
    (loser, winner, fork)
}

fn plan(winner: &MariaDb, fork: &str) -> MergePlan {
    MergePlan {
        winner: "winner".into(),
        winner_addr: winner.advertise(),
        fork_gtid: fork.into(),
        // The old selection: five minutes before the fork.
        window_start_unix_ms: (unix_s() - 300) * 1000,
    }
}

fn unix_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Writes on the loser as its (writable) primary would have, one transaction per line.
fn write_on(db: &MariaDb, script: &str) {
    db.admin(&["SET GLOBAL read_only = OFF"]);
    db.admin_script("pandora", script);
    db.admin(&["SET GLOBAL read_only = ON"]);
}

/// The merge's summary; a merge that says it left rows unsaved fails here (see `run_merge_of`).
fn run_merge(ctx: &RepairContext, plan: &MergePlan) -> Result<String, String> {
    let merged = run_merge_of(ctx, plan)?;
    assert_eq!(merged.unsaved, None, "an exact merge leaves nothing unsaved");
    Ok(merged.summary)
}

fn run_merge_of(ctx: &RepairContext, plan: &MergePlan) -> Result<repair::Merged, String> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (sender, _receiver) = tokio::sync::mpsc::channel(1024);
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    runtime
        .block_on(repair::merge(ctx, plan, &mut Progress::new(sender), &stop))
        .map_err(|err| err.to_string())
}

/// The marked rows of each merged table, every byte shown (hex), the fresh id left out.
fn marked_rows(db: &MariaDb) -> Vec<Vec<Vec<Option<String>>>> {
    let queries = [
        format!("SELECT id_agente_modulo, datos, utimestamp FROM pandora.tagente_datos WHERE id_agente_modulo >= {MARK} ORDER BY 1, 2, 3"),
        format!("SELECT id_agente_modulo, HEX(datos), utimestamp FROM pandora.tagente_datos_string WHERE id_agente_modulo >= {MARK} ORDER BY 1, 2, 3"),
        format!("SELECT id_agente, HEX(evento), utimestamp, timestamp, event_type, criticity, estado, HEX(id_usuario) FROM pandora.tevento WHERE id_agente >= {MARK} ORDER BY 1, 2, 3"),
    ];
    queries
        .iter()
        .map(|query| sql(&db.admin_url(), &[query]).unwrap())
        .collect()
}

fn scalar_root(db: &MariaDb, query: &str) -> String {
    db.query_root(query).trim().to_string()
}

/// Pandora's writes during a split: samples of now, of an hour and a day ago (buffered by an
/// agent that could not reach a server), odd values, and changes to tables the merge leaves.
fn divergent_script() -> String {
    let now = unix_s();
    let (hour, day) = (now - 3_600, now - 86_400);
    let big: String = "0123456789abcdef".repeat(200 * 1024 / 16);
    format!(
        "SET NAMES utf8mb4;\n\
         INSERT INTO tagente_datos VALUES ({MARK}, 1.5, {now}), ({MARK}, 2.5, {hour}), ({MARK}, 3.5, {day});\n\
         INSERT INTO tagente_datos VALUES ({m1}, NULL, {hour}), ({m1}, -0.000001, {day}), ({m1}, 1e300, {now});\n\
         INSERT INTO tagente_datos VALUES ({m2}, 7.25, {day});\n\
         INSERT INTO tagente_datos VALUES ({m2}, 7.25, {day});\n\
         INSERT INTO tagente_datos_string VALUES ({MARK}, 'it''s a \\\\ back\\nslash\\ttab \"q\"', {hour}), ({MARK}, 'ünïcødé ✓ 日本 🚀', {day}), ({MARK}, NULL, {now});\n\
         INSERT INTO tagente_datos_string VALUES ({m1}, '{big}', {hour});\n\
         INSERT INTO tevento (id_agente, evento, utimestamp, timestamp, event_type, criticity, id_usuario) VALUES \
           ({MARK}, 'late event ✓', {day}, FROM_UNIXTIME({day}), 'going_up_critical', 4, 'admin'), \
           ({MARK}, 'now', {now}, NOW(), 'system', 0, 'o''brien');\n\
         SET SESSION binlog_row_image = 'MINIMAL';\n\
         INSERT INTO tevento (id_agente, evento, criticity, utimestamp) VALUES ({MARK}, 'minimal image', 3, {hour});\n\
         SET SESSION binlog_row_image = 'FULL';\n\
         INSERT INTO tconfig (token, value) VALUES ('split_token', 'loser side');\n\
         UPDATE tconfig SET value = 'changed on the loser' WHERE token = 'split_token';\n\
         INSERT INTO tagente_estado (id_agente_modulo, datos, utimestamp) VALUES ({MARK}, 'x', {now});\n\
         BEGIN; INSERT INTO tagente_datos VALUES ({m3}, 42, {day}); UPDATE tagente_estado SET datos = 'y' WHERE id_agente_modulo = {MARK}; COMMIT;\n\
         DELETE FROM tagente_datos WHERE id_agente_modulo = 1 LIMIT 1;\n",
        m1 = MARK + 1,
        m2 = MARK + 2,
        m3 = MARK + 3,
    )
}

#[test]
fn every_row_the_loser_inserted_since_the_fork_is_merged_once_whatever_its_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let (loser, winner, fork) = servers(dir.path());
    write_on(&loser, &divergent_script());
    // The winner, on its side of the split, wrote one of the very same rows: both stay.
    sql(
        &winner.admin_url(),
        &[&format!(
            "INSERT INTO pandora.tagente_datos VALUES ({}, 7.25, {})",
            MARK + 2,
            unix_s() - 86_400
        )],
    )
    .unwrap();
    let ctx = context(dir.path(), &loser, 1_000);
    let plan = plan(&winner, &fork);
    let summary = run_merge(&ctx, &plan).expect("the merge");
    println!("{summary}");

    let expected = {
        let mut rows = marked_rows(&loser);
        rows[0].push(vec![
            Some((MARK + 2).to_string()),
            Some("7.25".into()),
            Some((unix_s() - 86_400).to_string()),
        ]);
        rows
    };
    let merged = marked_rows(&winner);
    let sorted = |rows: &Vec<Vec<Option<String>>>| {
        let mut rows = rows.clone();
        rows.sort();
        rows
    };
    assert_eq!(merged[0].len(), 10, "{:?}", merged[0]);
    assert_eq!(sorted(&merged[0]), sorted(&expected[0]), "tagente_datos, late rows too");
    assert_eq!(merged[1], expected[1], "tagente_datos_string, byte for byte");
    assert_eq!(merged[2], expected[2], "tevento, with fresh ids");
    assert!(
        summary.contains("9 rows of tagente_datos, 4 of tagente_datos_string, 3 of tevento"),
        "{summary}"
    );
    assert!(summary.contains("pandora.tconfig"), "{summary}");
    assert!(summary.contains("pandora.tagente_estado"), "{summary}");
    assert!(summary.contains("5 transactions touching other tables"), "{summary}");
    assert!(
        summary.contains("1 rows deleted"),
        "the delete is reported, not replayed: {summary}"
    );
    assert_eq!(
        scalar_root(
            &winner,
            "SELECT COUNT(*) FROM pandora.tconfig WHERE token = 'split_token'"
        ),
        "0",
        "tconfig is not merged"
    );
    assert_eq!(
        scalar_root(&winner, "SELECT COUNT(*) FROM pandora.tevento WHERE id_agente < 900"),
        "20",
        "the winner's own events keep their ids"
    );
    let saved = std::fs::read_dir(dir.path().join("state/splitbrain"))
        .unwrap()
        .flatten()
        .map(|entry| std::fs::read_to_string(entry.path().join("divergent-transactions.sql")).unwrap())
        .collect::<String>();
    assert!(
        saved.contains("`pandora`.`tconfig`"),
        "what is not merged is in the saved file"
    );
    for entry in std::fs::read_dir(dir.path().join("state/splitbrain"))
        .unwrap()
        .flatten()
    {
        for file in std::fs::read_dir(entry.path()).unwrap().flatten() {
            use std::os::unix::fs::PermissionsExt;
            let mode = file.metadata().unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", file.path().display());
        }
    }

    // Run again: the ledger says everything is in; nothing is copied twice.
    let again = run_merge(&ctx, &plan).expect("the merge run again");
    assert!(
        again.contains("0 rows of tagente_datos, 0 of tagente_datos_string, 0 of tevento"),
        "{again}"
    );
    assert!(again.contains("16 were in already from an earlier run"), "{again}");
    assert_eq!(marked_rows(&winner), merged, "a second run changes nothing");
}

#[test]
fn a_merge_stopped_between_batches_resumes_where_its_ledger_says_copying_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (loser, winner, fork) = servers(dir.path());
    const ROWS: u64 = 20_000;
    write_on(
        &loser,
        &format!(
            "INSERT INTO tagente_datos SELECT {MARK} + seq % 7, seq, {} - seq FROM seq_1_to_{ROWS};",
            unix_s()
        ),
    );
    let ctx = context(dir.path(), &loser, 100);
    let plan = plan(&winner, &fork);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (sender, _receiver) = tokio::sync::mpsc::channel(1024);
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let merging = {
        let (ctx, plan) = (ctx.clone(), plan.clone());
        runtime.spawn(async move { repair::merge(&ctx, &plan, &mut Progress::new(sender), &stop).await })
    };
    let marked = || {
        scalar_root(
            &winner,
            &format!("SELECT COUNT(*) FROM pandora.tagente_datos WHERE id_agente_modulo >= {MARK}"),
        )
        .parse::<u64>()
        .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while marked() == 0 {
        assert!(Instant::now() < deadline, "no batch arrived within 60 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    stop_tx.send(true).unwrap();
    let outcome = runtime.block_on(merging).unwrap();
    assert!(outcome.is_err(), "the merge was stopped: {outcome:?}");
    let part = marked();
    assert!(part > 0 && part < ROWS, "cut in the middle: {part} of {ROWS}");
    let ledger = scalar_root(&winner, "SELECT SUM(rows_in_batch) FROM gossip_ha.merged_rows");
    assert_eq!(
        ledger,
        part.to_string(),
        "the ledger counts exactly the rows committed with it"
    );

    let summary = run_merge(&ctx, &plan).expect("the merge run again");
    assert!(
        summary.contains(&format!("{} rows of tagente_datos", ROWS - part)),
        "{summary}"
    );
    assert_eq!(marked(), ROWS, "every row once");
    let distinct = scalar_root(
        &winner,
        &format!("SELECT COUNT(DISTINCT datos) FROM pandora.tagente_datos WHERE id_agente_modulo >= {MARK}"),
    );
    assert_eq!(distinct, ROWS.to_string(), "nothing twice, nothing skipped");
}

#[test]
fn statement_events_fall_back_to_the_window_and_say_what_it_may_miss() {
    let dir = tempfile::tempdir().unwrap();
    let (loser, winner, fork) = servers(dir.path());
    let now = unix_s();
    // Pandora's manual configures MIXED: these inserts are logged as statements.
    write_on(
        &loser,
        &format!(
            "SET SESSION binlog_format = 'STATEMENT';\n\
             INSERT INTO tagente_datos VALUES ({MARK}, 1, {now}), ({MARK}, 2, {});\n",
            now - 86_400
        ),
    );
    let ctx = context(dir.path(), &loser, 1_000);
    let summary = run_merge(&ctx, &plan(&winner, &fork)).expect("the merge");
    assert!(summary.contains("tagente_datos by its time window"), "{summary}");
    assert!(summary.contains("1 of 1 rows copied"), "{summary}");
    assert!(summary.contains("rows dated earlier are not"), "{summary}");
    assert!(summary.contains("divergent-transactions.sql"), "{summary}");
    assert_eq!(marked_rows(&winner)[0].len(), 1, "only the row inside the window");
}

/// `FLUSH` then `PURGE … TO` the new file; MariaDB keeps an old file until InnoDB's binlog
/// checkpoint has passed it, so the purge is asked again for a few seconds.
fn purge_all_but_the_current_log(db: &MariaDb) {
    db.admin(&["FLUSH BINARY LOGS"]);
    let status = db.query_root("SHOW MASTER STATUS");
    let newest = status
        .split_whitespace()
        .next()
        .expect("the current binary log")
        .to_string();
    for _ in 0..50 {
        db.admin(&[&format!("PURGE BINARY LOGS TO '{newest}'")]);
        if db.query_root("SHOW BINARY LOGS").split_whitespace().next() == Some(newest.as_str()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the binary logs before {newest} were never purged");
}

#[test]
fn a_log_purged_past_the_fork_makes_the_merge_say_what_it_could_not_save() {
    let dir = tempfile::tempdir().unwrap();
    let (loser, winner, fork) = servers(dir.path());
    let now = unix_s();
    // A late row (a day old, from an agent's buffer) during the split, then the operator's
    // routine purge: the log no longer reaches back to the fork.
    write_on(
        &loser,
        &format!(
            "INSERT INTO tagente_datos VALUES ({MARK}, 1, {now}), ({MARK}, 2, {});\n",
            now - 86_400
        ),
    );
    purge_all_but_the_current_log(&loser);
    let ctx = context(dir.path(), &loser, 1_000);
    let merged = run_merge_of(&ctx, &plan(&winner, &fork)).expect("the merge");
    assert_eq!(
        marked_rows(&winner)[0].len(),
        1,
        "only the row inside the window: {}",
        merged.summary
    );
    let unsaved = merged
        .unsaved
        .expect("the merge says the day-old row is neither merged nor saved");
    assert!(unsaved.contains("since the fork"), "{unsaved}");
}
