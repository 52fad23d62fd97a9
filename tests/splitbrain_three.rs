//! Split-brain with three DB hosts (issue #14, the soak's doubled rows): the primary is cut off
//! from the two others, which promote one of them and keep the third as its replica; both sides
//! take writes (late-dated rows too), and the old primary takes more, so it wins when the cut
//! heals. The losing side is then a primary *and* its replica, both holding the same divergent
//! transactions (the replica logs them with `log-slave-updates`), and the replica never claimed
//! anything. Every acknowledged row must end up on the final primary exactly once: none of the
//! rows from before the cut copied again, none of the loser's rows merged twice.

mod common;

use std::time::Duration;

use common::db_cluster::{db_of, has_event, replicating_from, wait_formed, Cluster};
use common::mariadb::{scalar, sql, MariaDb, PANDORA_TABLES};
use gossip_ha_proto::api::EventKind;
use gossip_ha_proto::db::DbRole;

/// A row's number is its `datos` (samples, strings) or its `evento` text (events): unique over
/// the whole test, so a doubled row shows as a repeated number.
fn write_rows(db: &MariaDb, module: u32, numbers: std::ops::Range<u32>, age_seconds: u64) {
    for number in numbers {
        let statements = [
            format!(
                "INSERT INTO pandora.tagente_datos VALUES ({module}, {number}, UNIX_TIMESTAMP() - {age_seconds})"
            ),
            format!(
                "INSERT INTO pandora.tagente_datos_string VALUES ({module}, 'row {number}', UNIX_TIMESTAMP() - {age_seconds})"
            ),
            format!(
                "INSERT INTO pandora.tevento (id_agente, evento, utimestamp) VALUES ({module}, 'row {number}', UNIX_TIMESTAMP() - {age_seconds})"
            ),
        ];
        for statement in &statements {
            sql(&db.app_url(), &[statement]).unwrap_or_else(|err| panic!("write on {}: {err}", db.name));
        }
    }
}

/// (rows, distinct row numbers) of each merged table on `db`.
fn tally(db: &MariaDb) -> [(u64, u64); 3] {
    [
        "SELECT COUNT(*), COUNT(DISTINCT datos) FROM pandora.tagente_datos",
        "SELECT COUNT(*), COUNT(DISTINCT datos) FROM pandora.tagente_datos_string",
        "SELECT COUNT(*), COUNT(DISTINCT evento) FROM pandora.tevento",
    ]
    .map(|query| {
        let row = sql(&db.admin_url(), &[query]).unwrap_or_else(|err| panic!("{query} on {}: {err}", db.name));
        let number = |index: usize| row[0][index].as_deref().unwrap_or("0").parse::<u64>().unwrap();
        (number(0), number(1))
    })
}

fn writable_primary(cluster: &Cluster, observer: &str, name: &str) -> bool {
    cluster
        .agent(observer)
        .try_status()
        .and_then(|report| db_of(&report, name))
        .is_some_and(|db| db.role == DbRole::Primary && db.read_only == Some(false))
}

/// The newest event number of `name`'s agent: events after it are new.
fn last_event(cluster: &Cluster, name: &str) -> u64 {
    cluster
        .agent(name)
        .events()
        .iter()
        .map(|event| event.seq)
        .max()
        .unwrap_or(0)
}

/// `name` was repaired after its event `since` (a replica is also cloned once when the cluster
/// forms) and now replicates from `primary`, with no repair left.
fn rebuilt_from(cluster: &Cluster, name: &str, primary: &str, since: u64) -> bool {
    let Some(report) = cluster.agent(primary).try_status() else {
        return false;
    };
    let rebuilt = format!("rebuilt from {primary}: rejoining");
    cluster
        .agent(name)
        .events()
        .iter()
        .any(|event| event.seq > since && event.kind == EventKind::Repair && event.reason.contains(&rebuilt))
        && replicating_from(&report, name, cluster.db(primary))
        && db_of(&report, name).is_some_and(|db| db.repair.is_none())
}

#[test]
fn a_losing_primary_and_its_replica_merge_each_divergent_row_once_and_nothing_from_before_the_cut() {
    let cluster = wait_formed(Cluster::start_in_lab(3, false));
    let (db1, db2, db3) = (cluster.db("db1"), cluster.db("db2"), cluster.db("db3"));
    db1.admin(&["CREATE DATABASE IF NOT EXISTS pandora"]);
    db1.admin_script("pandora", PANDORA_TABLES);
    // Before the cut: 30 rows per table, some dated a day back, on all three.
    write_rows(db1, 1, 0..20, 0);
    write_rows(db1, 1, 20..30, 86_400);
    cluster.wait("the first rows on db2 and db3", Duration::from_secs(20), |_| {
        tally(db2) == [(30, 30); 3] && tally(db3) == [(30, 30); 3]
    });

    // db1 cut off from both: db2 and db3 witness for each other, db2 (the higher priority)
    // promotes and db3 follows it; db1 stays primary on its own.
    cluster.lab().isolate("db1");
    cluster.wait("db2 to promote and db3 to follow it", Duration::from_secs(30), |c| {
        writable_primary(c, "db3", "db2")
            && c.agent("db3")
                .try_status()
                .is_some_and(|report| replicating_from(&report, "db3", c.db("db2")))
    });
    assert!(writable_primary(&cluster, "db1", "db1"), "{}", cluster.logs());
    // Both sides write; db1 more, so it stays primary when the cut heals.
    write_rows(db2, 3, 1000..1006, 0);
    write_rows(db2, 3, 1006..1010, 3_600);
    write_rows(db1, 2, 2000..2020, 0);
    write_rows(db1, 2, 2020..2025, 86_400);
    cluster.wait("db2's rows on its replica db3", Duration::from_secs(20), |_| {
        tally(db3) == [(40, 40); 3]
    });

    let since = [last_event(&cluster, "db2"), last_event(&cluster, "db3")];
    cluster.lab().heal();
    cluster.wait("db2 and db3 repaired from db1", Duration::from_secs(240), |c| {
        rebuilt_from(c, "db2", "db1", since[0]) && rebuilt_from(c, "db3", "db1", since[1])
    });
    for name in ["db2", "db3"] {
        assert!(
            has_event(cluster.agent(name), EventKind::SplitBrain, "merged into db1"),
            "{name} merged its side's rows\n{}",
            cluster.logs()
        );
    }

    if std::env::var_os("SHOW_MERGES").is_some() {
        for name in ["db2", "db3"] {
            for event in cluster.agent(name).events() {
                if event.kind == EventKind::SplitBrain || event.reason.contains("merge") {
                    eprintln!("{name} {:?}: {}", event.kind, event.reason);
                }
            }
        }
    }
    // 30 from before the cut, 25 of db1's, 10 of db2's: each once.
    assert_eq!(
        tally(db1),
        [(65, 65); 3],
        "every acknowledged row on the final primary exactly once\n{}",
        cluster.logs()
    );
    let events = scalar(
        &db1.admin_url(),
        "SELECT COUNT(DISTINCT id_evento) FROM pandora.tevento",
    )
    .unwrap();
    assert_eq!(events, "65", "every event has its own id");
    cluster.wait("the rebuilt replicas to hold the same", Duration::from_secs(20), |_| {
        tally(db2) == [(65, 65); 3] && tally(db3) == [(65, 65); 3]
    });
}
