//! Servers set up as operators set them up (issue "Real servers have histories"): users and
//! grants created with the binary log on, Pandora's real tables, early binary logs purged,
//! servers that ran something else. Real MariaDB, real agents.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::cli;
use common::db_cluster::{
    db_of, formed, has_event, physical_config, replicating_from, show_walkthrough, Cluster, THRESHOLD,
};
use common::mariadb::{scalar, MariaDb, Setup};
use gossip_ha_proto::api::EventKind;
use gossip_ha_proto::db::DbRole;

fn count(db: &MariaDb, table: &str) -> u64 {
    scalar(&db.admin_url(), &format!("SELECT COUNT(*) FROM {table}"))
        .and_then(|count| count.parse().ok())
        .unwrap_or(0)
}

/// Files under `<state dir of node>/saved/*/`.
fn saved_files(cluster: &Cluster, node: &str) -> Vec<PathBuf> {
    let saved = cluster.dir.path().join(format!("state-{node}")).join("saved");
    let Ok(dirs) = std::fs::read_dir(&saved) else {
        return Vec::new();
    };
    dirs.flatten()
        .flat_map(|dir| std::fs::read_dir(dir.path()).into_iter().flatten().flatten())
        .map(|entry| entry.path())
        .collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Bytes in "38 KiB", "7.5 MiB", "1.25 GiB" at the start of `text`.
fn bytes_at(text: &str) -> Option<f64> {
    let mut words = text.split_whitespace();
    let number: f64 = words.next()?.parse().ok()?;
    let unit = match words.next()?.trim_end_matches([',', ';']) {
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(number * unit)
}

/// The progress lines `node` recorded for a copy (`label` …) are sane: what was copied and the
/// share never go down, no share is over 100 %, a total they name is neither one the copy had
/// already passed nor far from what the final line (`done` …) says was copied.
fn assert_sane_progress(cluster: &Cluster, node: &str, label: &str, done: &str) {
    let events = cluster.agent(node).events();
    let lines: Vec<&str> = events
        .iter()
        .filter(|event| event.kind == EventKind::Repair)
        .filter_map(|event| event.reason.strip_prefix(label))
        .collect();
    let final_size = events
        .iter()
        .filter(|event| event.kind == EventKind::Repair)
        .find_map(|event| bytes_at(event.reason.strip_prefix(done)?))
        .unwrap_or_else(|| panic!("no final line `{done}…`\n{}", cluster.logs()));
    assert!(!lines.is_empty(), "no progress line `{label}…`\n{}", cluster.logs());
    let (mut copied_before, mut share_before) = (0.0, 0.0);
    for line in &lines {
        let copied = bytes_at(line).unwrap_or_else(|| panic!("no size in `{line}`"));
        assert!(copied >= copied_before, "copied went down: {lines:#?}");
        copied_before = copied;
        let words: Vec<&str> = line.split_whitespace().collect();
        for pair in words.windows(2).filter(|pair| pair[1].starts_with('%')) {
            let share: f64 = pair[0].parse().unwrap_or_else(|_| panic!("share in `{line}`"));
            assert!(share <= 100.0 && share >= share_before, "share {share}: {lines:#?}");
            share_before = share;
        }
        if let Some((_, total)) = line.split_once("% of ") {
            let total = bytes_at(total.trim_start_matches("about ")).unwrap_or_else(|| panic!("total in `{line}`"));
            assert!(total >= copied, "a total the copy had passed: `{line}`");
            assert!(
                total <= 2.0 * final_size && 2.0 * total >= final_size,
                "a total far from the {final_size} bytes copied: `{line}`"
            );
        }
    }
    println!("{node}'s progress: {lines:#?}, then {final_size} bytes copied");
    // The last line rounds to a tenth of its unit.
    assert!(
        final_size * 1.05 + 52_429.0 >= copied_before,
        "{lines:#?}, final {final_size}"
    );
}

fn wait_replicating(cluster: &Cluster, replica: &str, primary: &str, timeout: Duration) {
    let source = cluster.db(primary);
    cluster.wait(&format!("{replica} replicating from {primary}"), timeout, |c| {
        replicating_from(&c.agent(primary).status(), replica, source)
    });
}

#[test]
fn an_unrelated_server_with_data_is_never_primary_nor_wiped_until_the_operator_asks() {
    let dir = tempfile::tempdir().unwrap();
    // x1 (first of ha_hosts) holds Pandora; x2 ran 300 statements of its own elsewhere: its
    // sequence numbers are higher, which must not matter.
    let db1 = MariaDb::install_as_operators(dir.path(), "db1", 1);
    db1.load_pandora(200);
    let db2 = MariaDb::install_as_operators(dir.path(), "db2", 2);
    db2.run_scratch(300);
    let cluster = Cluster::start_on(dir, vec![db1, db2], true, |_| String::new());

    cluster.wait("db1 elected primary everywhere", Duration::from_secs(20), |c| {
        c.all_see_primary(&["db1", "db2", "srv"], "db1")
    });
    cluster.wait("db2 waiting as needs_resync", Duration::from_secs(15), |c| {
        db_of(&c.agent("srv").status(), "db2").is_some_and(|db| db.role == DbRole::NeedsResync)
    });
    assert!(
        has_event(cluster.agent("db2"), EventKind::DbNeedsResync, "scratch (1 table"),
        "{}",
        cluster.logs()
    );
    assert!(has_event(
        cluster.agent("db2"),
        EventKind::DbNeedsResync,
        "gossip-ha resync"
    ));
    // Several DOWN windows later nothing was rebuilt by itself.
    std::thread::sleep(Duration::from_secs_f64(4.0 * THRESHOLD));
    let (db1, db2) = (cluster.db("db1"), cluster.db("db2"));
    assert_eq!(count(db2, "scratch.notes"), 298, "{}", cluster.logs());
    assert_eq!(scalar(&db2.admin_url(), "SELECT @@read_only").as_deref(), Some("1"));
    assert_eq!(
        count(db1, "pandora.tagente_datos"),
        200,
        "the data server was never touched"
    );

    let socket = cluster.agent("db2").socket.display().to_string();
    let asked = cli(&["resync", "--socket", &socket]);
    assert!(asked.status.success(), "{asked:?}");
    // The command waited for the rebuild (one step here) and says how it went.
    let said = String::from_utf8_lossy(&asked.stdout);
    assert!(said.contains("rebuilt from db1"), "{said}");
    assert_sane_progress(&cluster, "db2", "resync from db1: ", "rebuilt from db1: ");
    wait_replicating(&cluster, "db2", "db1", Duration::from_secs(60));
    cluster.wait("db2 to hold Pandora's rows", Duration::from_secs(10), |_| {
        count(db2, "pandora.tagente_datos") == 200
    });
    let saved = saved_files(&cluster, "db2");
    let dump = saved
        .iter()
        .find(|path| path.ends_with("user-databases.sql"))
        .unwrap_or_else(|| panic!("no dump saved: {saved:?}\n{}", cluster.logs()));
    assert_eq!(mode(dump), 0o600);
    assert_eq!(mode(dump.parent().unwrap()), 0o700);
    let text = std::fs::read_to_string(dump).unwrap();
    assert!(text.contains("INSERT INTO `notes`"), "the scratch rows are in the dump");
    let named = dump.parent().unwrap().display().to_string();
    assert!(
        has_event(cluster.agent("db2"), EventKind::Repair, &named)
            || has_event(cluster.agent("db2"), EventKind::DbAction, &named),
        "an event names {named}:\n{}",
        cluster.logs()
    );
}

#[test]
fn a_setup_only_server_first_in_ha_hosts_yields_to_the_data_and_is_cloned() {
    let dir = tempfile::tempdir().unwrap();
    // Two DB hosts alone: db1 (first of ha_hosts) only has its users and grants; db2 holds
    // Pandora.
    let db1 = MariaDb::install_as_operators(dir.path(), "db1", 1);
    let db2 = MariaDb::install_as_operators(dir.path(), "db2", 2);
    db2.load_pandora(300);
    let cluster = Cluster::start_on(dir, vec![db1, db2], false, |_| String::new());

    cluster.wait("db2 elected primary everywhere", Duration::from_secs(20), |c| {
        c.all_see_primary(&["db1", "db2"], "db2")
    });
    wait_replicating(&cluster, "db1", "db2", Duration::from_secs(60));
    let (db1, db2) = (cluster.db("db1"), cluster.db("db2"));
    assert_eq!(
        count(db2, "pandora.tagente_datos"),
        300,
        "nothing of the data server was wiped"
    );
    cluster.wait("db1 to hold Pandora's rows", Duration::from_secs(10), |_| {
        count(db1, "pandora.tevento") == 300
    });
    assert!(
        has_event(cluster.agent("db1"), EventKind::DbNeedsResync, "setup only"),
        "{}",
        cluster.logs()
    );
    // Its own transactions (the users) were saved before the clone.
    let saved = saved_files(&cluster, "db1");
    let binlog = saved
        .iter()
        .find(|path| path.ends_with("binary-log.sql"))
        .unwrap_or_else(|| panic!("no binary log saved: {saved:?}\n{}", cluster.logs()));
    assert!(std::fs::read_to_string(binlog).unwrap().contains("CREATE USER"));
    // And it follows: a new row on db2 reaches it.
    common::db_cluster::insert_pandora_row(db2);
    cluster.wait("the new row on db1", Duration::from_secs(10), |_| {
        count(db1, "pandora.tagente_datos") == 301
    });
}

#[test]
fn a_new_server_is_cloned_from_a_primary_whose_early_logs_are_purged() {
    let dir = tempfile::tempdir().unwrap();
    let db1 = MariaDb::install_as_operators(dir.path(), "db1", 1);
    db1.load_pandora(500);
    db1.purge_binlogs();
    // A brand-new, empty server (its users created without logging, as the lab does).
    let db2 = MariaDb::install_set_up(dir.path(), "db2", 2, true, "127.0.0.1", None, Setup::Clean);
    let cluster = Cluster::start_on(dir, vec![db1, db2], true, |_| String::new());

    cluster.wait("db1 elected primary everywhere", Duration::from_secs(20), |c| {
        c.all_see_primary(&["db1", "db2", "srv"], "db1")
    });
    wait_replicating(&cluster, "db2", "db1", Duration::from_secs(60));
    let (db1, db2) = (cluster.db("db1"), cluster.db("db2"));
    cluster.wait("db2 to hold db1's rows", Duration::from_secs(10), |_| {
        count(db2, "pandora.tagente_datos") == 500
    });
    assert!(
        has_event(
            cluster.agent("db2"),
            EventKind::DbNeedsResync,
            "no longer has the binary logs"
        ),
        "{}",
        cluster.logs()
    );
    assert!(
        !has_event(cluster.agent("db2"), EventKind::SplitBrain, ""),
        "a clone is no split-brain"
    );
    common::db_cluster::insert_pandora_row(db1);
    cluster.wait("the new row on db2", Duration::from_secs(10), |_| {
        count(db2, "pandora.tagente_datos") == 501
    });
    show_walkthrough(&cluster, "db2", &["status", "events"]);
}

#[test]
fn an_agent_restarted_while_it_hears_nobody_does_not_promote_beside_the_primary() {
    let mut cluster = formed(2, true);
    // db2's host loses everyone: db1's and the witness's agents are gone (db1's mysqld still
    // runs, writable), and db2's agent restarts in that state.
    cluster.agent_mut("srv").kill();
    cluster.agent_mut("db1").kill();
    cluster.agent_mut("db2").kill();
    cluster.restart_agent("db2");
    std::thread::sleep(Duration::from_secs_f64(6.0 * THRESHOLD));
    let db2 = cluster.db("db2");
    assert_eq!(
        scalar(&db2.admin_url(), "SELECT @@read_only").as_deref(),
        Some("1"),
        "two writable primaries: {}",
        cluster.logs()
    );
    assert!(
        has_event(cluster.agent("db2"), EventKind::DbNote, "isolated, not bereaved"),
        "{}",
        cluster.logs()
    );
    // Once the others are back it follows db1 again.
    cluster.restart_agent("db1");
    cluster.restart_agent("srv");
    wait_replicating(&cluster, "db2", "db1", Duration::from_secs(20));
}

#[test]
fn a_new_server_whose_own_users_collide_with_the_primary_s_history_is_cloned() {
    let dir = tempfile::tempdir().unwrap();
    // db1's binary log still holds everything, its users included; db2 created the same users
    // itself, unlogged: replaying db1's history stops on `CREATE USER` (error 1396).
    let db1 = MariaDb::install_as_operators(dir.path(), "db1", 1);
    db1.load_pandora(100);
    let db2 = MariaDb::install_set_up(dir.path(), "db2", 2, true, "127.0.0.1", None, Setup::Clean);
    let cluster = Cluster::start_on(dir, vec![db1, db2], true, |_| String::new());

    wait_replicating(&cluster, "db2", "db1", Duration::from_secs(60));
    let db2 = cluster.db("db2");
    cluster.wait("db2 to hold db1's rows", Duration::from_secs(10), |_| {
        count(db2, "pandora.tevento") == 100
    });
    assert!(
        has_event(cluster.agent("db2"), EventKind::DbNeedsResync, "CREATE USER"),
        "{}",
        cluster.logs()
    );
}

#[test]
fn a_new_server_behind_purged_logs_is_cloned_physically_over_mutual_tls() {
    // Two hosts in their own namespaces; db1 has run for a while and purged its early logs,
    // db2 is new. Both agents can stop and start their servers and serve backups.
    let cluster = Cluster::start_in_lab_prepared(2, false, physical_config, |db| {
        if db.name == "db1" {
            db.load_pandora(2_000);
            db.purge_binlogs();
        }
    });
    cluster.wait("db1 elected primary everywhere", Duration::from_secs(20), |c| {
        c.all_see_primary(&["db1", "db2"], "db1")
    });
    wait_replicating(&cluster, "db2", "db1", Duration::from_secs(120));
    let db2 = cluster.db("db2");
    cluster.wait("db2 to hold db1's rows", Duration::from_secs(10), |_| {
        count(db2, "pandora.tagente_datos") == 2_000
    });
    // The rebuild replicates before its worker reports it: the event may follow the rows.
    cluster.wait(
        "db2 to say it was rebuilt by physical copy",
        Duration::from_secs(10),
        |c| has_event(c.agent("db2"), EventKind::DbAction, "by physical copy"),
    );
    assert_sane_progress(
        &cluster,
        "db2",
        "resync from db1 (physical): ",
        "rebuilt from db1 by physical copy: ",
    );
    // Its own users were logged (the harness sets servers up as operators do): a setup-only
    // history the primary cannot take, cloned all the same.
    assert!(has_event(
        cluster.agent("db2"),
        EventKind::DbNeedsResync,
        "cloning it from db1"
    ));
}
