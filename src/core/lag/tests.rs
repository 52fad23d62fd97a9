use super::*;

const STALL_AFTER_MS: u64 = 2_000;

fn primary(gtid: &str) -> DbAnnouncement {
    DbAnnouncement {
        claims_primary: true,
        reachable: true,
        gtid: gtid.into(),
        ..DbAnnouncement::default()
    }
}

fn replica(gtid: &str, io: &str, sql: bool) -> DbAnnouncement {
    DbAnnouncement {
        role: DbRole::Replica,
        reachable: true,
        source: Some("198.18.0.11:3306".into()),
        io_state: Some(io.into()),
        io_running: Some(io == "Yes"),
        sql_running: Some(sql),
        gtid: gtid.into(),
        ..DbAnnouncement::default()
    }
}

/// One step at `at_ms` with `db1` primary at `primary_gtid` and `db2` replicating at `replica_db`.
fn step(
    book: &mut LagBook,
    at_ms: u64,
    primary_name: &str,
    primary_gtid: &str,
    replica_db: &DbAnnouncement,
) -> ReplicationLag {
    let primary_db = primary(primary_gtid);
    let primary_node = DbNode {
        name: primary_name,
        alive: true,
        db: &primary_db,
    };
    let nodes = [
        DbNode {
            name: primary_name,
            alive: true,
            db: &primary_db,
        },
        DbNode {
            name: "db2",
            alive: true,
            db: replica_db,
        },
    ];
    let mut lags = book.step(MonoMs(at_ms), Some(&primary_node), &nodes, STALL_AFTER_MS);
    assert_eq!(lags.len(), 1, "only the replica has a lag: {lags:?}");
    lags.remove("db2").expect("db2's lag")
}

#[test]
fn transactions_behind_come_from_the_histories_in_both_dialects() {
    const UUID: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    let cases: &[(&str, &str, Option<u64>, &str)] = &[
        (
            "0-2-390",
            "0-2-288",
            Some(102),
            "the issue's replica: 0 s by Seconds_Behind_Master",
        ),
        ("0-2-390", "0-2-390", Some(0), "caught up"),
        (
            "0-2-390",
            "0-2-390,0-3-5",
            Some(0),
            "errant transactions of its own do not make it behind",
        ),
        ("0-1-10", "", Some(10), "an empty replica"),
        (
            "0-1-100,0-2-150",
            "0-1-100",
            Some(50),
            "a new primary goes on with the domain's numbers",
        ),
        ("0-1-100,0-2-150", "0-1-130", None, "forked: a lag would mean nothing"),
        ("0-1-10", "1-7-10", None, "unrelated histories"),
        ("0-1-10", "garbage", None, "an unreadable position"),
        (
            &format!("{UUID}:1-100"),
            &format!("{UUID}:1-90"),
            Some(10),
            "MySQL sets, counted exactly",
        ),
        (
            &format!("{UUID}:1-100"),
            &format!("{UUID}:1-50:61-100"),
            Some(10),
            "MySQL with a gap",
        ),
        (
            &format!("{UUID}:1-100"),
            &format!("{UUID}:1-100"),
            Some(0),
            "MySQL caught up",
        ),
    ];
    for (primary_gtid, replica_gtid, expected, why) in cases {
        let mut book = LagBook::default();
        let lag = step(&mut book, 0, "db1", primary_gtid, &replica(replica_gtid, "Yes", true));
        assert_eq!(lag.transactions_behind, *expected, "{why}");
    }
}

#[test]
fn seconds_behind_are_the_age_of_the_oldest_primary_position_the_replica_lacks() {
    // The primary announces 0-1-10 at 0 ms, 0-1-20 at 1000 ms, 0-1-30 at 2000 ms (as this
    // observer first sees them); the replica is then seen at 2500 ms.
    let cases: &[(&str, Option<u64>, bool, &str)] = &[
        ("0-1-30", Some(0), false, "holds the newest: no lag"),
        ("0-1-25", Some(500), false, "lacks only 0-1-30, first seen 500 ms ago"),
        ("0-1-20", Some(500), false, "holds 0-1-20 exactly"),
        ("0-1-15", Some(1_500), false, "lacks 0-1-20, first seen 1.5 s ago"),
        (
            "0-1-5",
            Some(2_500),
            true,
            "lacks even the first position seen: at least that old",
        ),
    ];
    for (replica_gtid, lag_ms, at_least, why) in cases {
        let mut book = LagBook::default();
        let held = replica("0-1-0", "Yes", true);
        for (at_ms, position) in [(0, "0-1-10"), (1_000, "0-1-20"), (2_000, "0-1-30")] {
            step(&mut book, at_ms, "db1", position, &held);
        }
        let lag = step(&mut book, 2_500, "db1", "0-1-30", &replica(replica_gtid, "Yes", true));
        assert_eq!((lag.lag_ms, lag.lag_at_least), (*lag_ms, *at_least), "{why}");
    }
}

#[test]
fn the_memory_of_primary_positions_is_bounded_and_starts_again_with_another_primary() {
    let mut book = LagBook::default();
    let behind = replica("0-1-3", "Yes", true);
    for index in 0..(REMEMBERED_POSITIONS as u64 + 10) {
        step(&mut book, index * 100, "db1", &format!("0-1-{}", index + 1), &behind);
    }
    assert_eq!(book.positions.len(), REMEMBERED_POSITIONS);
    // 0-1-4 was forgotten: the oldest remembered is 0-1-11, first seen at 1000 ms.
    let lag = step(&mut book, 8_000, "db1", "0-1-74", &behind);
    assert_eq!((lag.lag_ms, lag.lag_at_least), (Some(7_000), true));

    let cases: &[(&str, &str, &str)] = &[
        ("db3", "0-1-80", "another primary: its positions are counted from now"),
        (
            "db1",
            "0-1-2",
            "the primary's history went back (rebuilt): counted from now",
        ),
    ];
    for (primary_name, position, why) in cases {
        let mut book = book.clone();
        let lag = step(&mut book, 9_000, primary_name, position, &replica("0-1-1", "Yes", true));
        assert_eq!(book.positions.len(), 1, "{why}");
        assert_eq!((lag.lag_ms, lag.lag_at_least), (Some(0), true), "{why}");
    }
}

#[test]
fn a_replica_nothing_reaches_is_stalled() {
    // (IO state, SQL running, replica position at 0 ms and 3000 ms, stall expected at 3000 ms)
    type Case<'a> = (&'a str, bool, &'a str, &'a str, Option<Stall>, &'a str);
    let cases: &[Case] = &[
        (
            "No",
            true,
            "0-1-10",
            "0-1-10",
            Some(Stall::IoStopped),
            "IO thread stopped",
        ),
        (
            "No",
            true,
            "0-1-50",
            "0-1-50",
            Some(Stall::IoStopped),
            "stopped, even when caught up",
        ),
        (
            "Connecting",
            true,
            "0-1-10",
            "0-1-10",
            Some(Stall::IoConnecting),
            "IO thread connecting",
        ),
        (
            "Yes",
            true,
            "0-1-10",
            "0-1-10",
            Some(Stall::NoProgress),
            "behind and not moving",
        ),
        ("Yes", true, "0-1-10", "0-1-20", None, "behind but moving"),
        ("Yes", true, "0-1-50", "0-1-50", None, "caught up: nothing to move"),
        (
            "Yes",
            false,
            "0-1-10",
            "0-1-10",
            None,
            "SQL thread stopped: the table says so",
        ),
    ];
    for (io, sql, before, after, expected, why) in cases {
        let mut book = LagBook::default();
        step(&mut book, 0, "db1", "0-1-50", &replica(before, io, *sql));
        let lag = step(&mut book, 3_000, "db1", "0-1-50", &replica(after, io, *sql));
        assert_eq!(lag.stalled, *expected, "{why}");
    }
    let mut book = LagBook::default();
    step(&mut book, 0, "db1", "0-1-50", &replica("0-1-10", "Yes", true));
    let early = step(&mut book, 1_000, "db1", "0-1-50", &replica("0-1-10", "Yes", true));
    assert_eq!((early.stalled, early.no_progress_ms), (None, Some(1_000)), "not yet");

    // Idle and caught up for a minute, then behind: stuck only from the last step it was not.
    let mut book = LagBook::default();
    let idle = replica("0-1-10", "Yes", true);
    step(&mut book, 0, "db1", "0-1-10", &idle);
    step(&mut book, 60_000, "db1", "0-1-10", &idle);
    let fell_behind = step(&mut book, 60_100, "db1", "0-1-20", &idle);
    assert_eq!((fell_behind.stalled, fell_behind.no_progress_ms), (None, Some(100)));
    let stuck = step(&mut book, 62_200, "db1", "0-1-20", &idle);
    assert_eq!(
        (stuck.stalled, stuck.no_progress_ms),
        (Some(Stall::NoProgress), Some(2_200))
    );
}

#[test]
fn only_live_replicas_have_a_lag() {
    let mut book = LagBook::default();
    let primary_db = primary("0-1-50");
    let down = replica("0-1-10", "Yes", true);
    let repaired = DbAnnouncement {
        role: DbRole::NeedsResync,
        ..replica("0-1-60", "No", false)
    };
    let nodes = [
        DbNode {
            name: "db1",
            alive: true,
            db: &primary_db,
        },
        DbNode {
            name: "db2",
            alive: false,
            db: &down,
        },
        DbNode {
            name: "db3",
            alive: true,
            db: &repaired,
        },
    ];
    let lags = book.step(MonoMs(0), Some(&nodes[0]), &nodes, STALL_AFTER_MS);
    assert!(lags.is_empty(), "{lags:?}");
    let lags = book.step(MonoMs(0), None, &nodes[1..], STALL_AFTER_MS);
    assert!(lags.is_empty(), "{lags:?}");
}
