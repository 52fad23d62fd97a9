//! DB failover against real MariaDB servers and real agent processes on loopback (issue #3):
//! the agents keep exactly one writable primary, promote a replica when the primary dies, and
//! bring the old primary back as a replica.

mod common;

use std::time::{Duration, Instant};

use common::db_cluster::*;
use common::mariadb::{scalar, sql, MariaDb};
use common::*;
use gossip_ha_proto::api::EventKind;
use gossip_ha_proto::db::DbRole;

#[test]
fn fresh_cluster_elects_the_first_host_and_replicates() {
    let cluster = formed(3, false);
    let db1 = cluster.db("db1");
    assert_eq!(scalar(&db1.admin_url(), "SELECT @@read_only").as_deref(), Some("0"));
    for replica in ["db2", "db3"] {
        let db = cluster.db(replica);
        assert_eq!(scalar(&db.admin_url(), "SELECT @@read_only").as_deref(), Some("1"));
        assert!(
            insert(db, 99).unwrap_err().contains("read-only"),
            "{replica} refuses writes"
        );
    }
    insert(db1, 1).unwrap();
    cluster.wait("the row on every replica", Duration::from_secs(10), |c| {
        c.dbs.iter().all(|db| row_count(db) == 1)
    });
    let report = cluster.agent("db2").status();
    let primary = db_of(&report, "db1").unwrap();
    assert_eq!(
        (primary.role, primary.epoch, primary.read_only),
        (DbRole::Primary, 1, Some(false))
    );
    assert!(has_event(cluster.agent("db1"), EventKind::DbAction, "fresh cluster"));
    let table = cli(&["status", "--socket", cluster.agent("db2").socket.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("Database primary: db1") && text.contains("IO Yes / SQL Yes"),
        "{text}"
    );
}

#[test]
fn killed_primary_mysqld_fails_over_and_the_old_primary_rejoins_clean() {
    let mut cluster = formed(3, false);
    write_and_replicate(&cluster, "db1", 1..=20, &["db2", "db3"]);

    // Scenario 2: kill -9 the primary's mysqld; its agent lives on and reports it unreachable.
    let killed_at = Instant::now();
    cluster.db_mut("db1").kill();
    let db2 = cluster.db("db2");
    let mut writable_after = None;
    while writable_after.is_none() && killed_at.elapsed() < Duration::from_secs(20) {
        if insert(db2, 1000).is_ok() {
            writable_after = Some(killed_at.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let writable_after = writable_after.unwrap_or_else(|| panic!("db2 never became writable\n{}", cluster.logs()));
    assert!(
        writable_after >= Duration::from_secs_f64(2.0 * THRESHOLD),
        "promoted {writable_after:?} after the kill: sooner than 2 × threshold"
    );
    cluster.wait("db2 primary for every agent", Duration::from_secs(10), |c| {
        c.all_see_primary(&["db1", "db2", "db3"], "db2")
    });
    assert_eq!(
        row_count(cluster.db("db2")),
        21,
        "no acknowledged, replicated write lost"
    );
    assert!(insert(cluster.db("db3"), 1001).is_err(), "db3 stays read-only");
    cluster.wait("db3 to follow db2", Duration::from_secs(10), |c| {
        replicating_from(&c.agent("db2").status(), "db3", c.db("db2"))
    });
    insert(cluster.db("db2"), 1002).unwrap();
    cluster.wait("db3 to get db2's writes", Duration::from_secs(10), |c| {
        row_count(c.db("db3")) == 22
    });
    let report = cluster.agent("db3").status();
    assert_eq!(db_of(&report, "db2").unwrap().epoch, 2);
    assert!(has_event(
        cluster.agent("db2"),
        EventKind::DbAction,
        "primary db1 is down"
    ));

    // Scenario 4: the old primary's mysqld comes back. Read-only before anything else.
    cluster.db_mut("db1").start();
    assert_eq!(
        scalar(&cluster.db("db1").admin_url(), "SELECT @@read_only").as_deref(),
        Some("1")
    );
    cluster.wait("db1 to replicate from db2", Duration::from_secs(15), |c| {
        replicating_from(&c.agent("db2").status(), "db1", c.db("db2"))
    });
    cluster.wait("db1 to catch up", Duration::from_secs(10), |c| {
        row_count(c.db("db1")) == 22
    });
    let gtid_db1 = scalar(&cluster.db("db1").admin_url(), "SELECT @@gtid_current_pos").unwrap();
    let gtid_db2 = scalar(&cluster.db("db2").admin_url(), "SELECT @@gtid_current_pos").unwrap();
    assert_eq!(gtid_db1, gtid_db2, "no errant transactions on the old primary");
    assert!(
        insert(cluster.db("db1"), 1003).is_err(),
        "the old primary stays read-only"
    );
    let report = cluster.agent("db1").status();
    assert_eq!(report.db_primary.as_deref(), Some("db2"));
    println!("failover: db2 writable {writable_after:?} after db1's mysqld was killed (threshold {THRESHOLD} s)");
}

#[test]
fn dead_primary_host_fails_over() {
    let mut cluster = formed(3, false);
    write_and_replicate(&cluster, "db1", 1..=10, &["db2", "db3"]);
    // Scenario 3: the whole host dies: agent and mysqld.
    cluster.agent_mut("db1").kill();
    cluster.db_mut("db1").kill();
    cluster.wait("db2 writable", Duration::from_secs(20), |c| {
        insert(c.db("db2"), 500).is_ok()
    });
    cluster.wait("db2 primary for the survivors", Duration::from_secs(10), |c| {
        c.all_see_primary(&["db2", "db3"], "db2")
    });
    assert_eq!(row_count(cluster.db("db2")), 11);
    cluster.wait("db3 to follow db2", Duration::from_secs(10), |c| {
        replicating_from(&c.agent("db2").status(), "db3", c.db("db2"))
    });

    // The host comes back whole: mysqld first (read-only), then its agent, whose persisted epoch
    // (1) loses to db2's (2).
    cluster.db_mut("db1").start();
    cluster.restart_agent("db1");
    cluster.wait("db1 to rejoin as a replica of db2", Duration::from_secs(15), |c| {
        replicating_from(&c.agent("db2").status(), "db1", c.db("db2"))
    });
    cluster.wait("db1 to catch up", Duration::from_secs(10), |c| {
        row_count(c.db("db1")) == 11
    });
}

#[test]
fn a_stale_replica_is_not_promoted_while_an_up_to_date_one_exists() {
    // db3 has a higher priority than db2 here, but its SQL thread is stopped: it falls behind.
    let mut cluster = formed(3, false);
    let db3 = cluster.db("db3");
    sql(&db3.admin_url(), &["STOP SLAVE SQL_THREAD"]).unwrap();
    // Restart db3's agent with priority 5: the most preferred, but stale.
    let spec = cluster.specs.iter_mut().find(|spec| spec.name == "db3").unwrap();
    let priority = spec.extra.iter().position(|arg| arg == "--db-priority").unwrap() + 1;
    spec.extra[priority] = "5".into();
    cluster.agent_mut("db3").kill();
    cluster.restart_agent("db3");
    write_and_replicate(&cluster, "db1", 1..=10, &["db2"]);
    assert_eq!(row_count(cluster.db("db3")), 0, "db3 is behind");

    cluster.db_mut("db1").kill();
    cluster.wait("a new primary", Duration::from_secs(20), |c| {
        ["db2", "db3"].iter().any(|name| {
            c.agent(name)
                .try_status()
                .and_then(|report| report.db_primary)
                .is_some_and(|primary| primary != "db1")
        })
    });
    cluster.wait("db2 primary everywhere", Duration::from_secs(10), |c| {
        c.all_see_primary(&["db1", "db2", "db3"], "db2")
    });
    assert_eq!(
        scalar(&cluster.db("db3").admin_url(), "SELECT @@read_only").as_deref(),
        Some("1")
    );
    // db3 may or may not have evaluated candidates before db2's claim arrived; either way it
    // must never have tried to promote itself.
    assert!(
        !has_event(cluster.agent("db3"), EventKind::DbAction, "promote"),
        "{}",
        cluster.logs()
    );
    // The stale one re-points to db2 and gets everything it missed.
    cluster.wait("db3 caught up from db2", Duration::from_secs(15), |c| {
        row_count(c.db("db3")) == 10
    });
}

/// Drops every UDP datagram to or from `port` on loopback, in a table of its own that is
/// removed when the guard drops.
struct GossipCut {
    table: String,
}

impl GossipCut {
    fn isolate(port: u16) -> GossipCut {
        let table = format!("gossip_ha_test_{port}");
        let rules = format!(
            "table inet {table} {{\n chain output {{ type filter hook output priority 0; udp dport {port} drop; udp sport {port} drop; }}\n}}\n"
        );
        let output = std::process::Command::new("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(rules.as_bytes())?;
                child.wait_with_output()
            })
            .unwrap_or_else(|err| panic!("nft is needed to cut gossip (install nftables; `.ci/run` does): {err}"));
        assert!(
            output.status.success(),
            "nft refused the rules (root and nftables are needed): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        GossipCut { table }
    }
}

impl Drop for GossipCut {
    fn drop(&mut self) {
        let _ = std::process::Command::new("nft")
            .args(["delete", "table", "inet", &self.table])
            .status();
    }
}

#[test]
fn an_isolated_replica_does_not_promote_while_a_witness_sees_the_primary() {
    let cluster = formed(2, true);
    write_and_replicate(&cluster, "db1", 1..=3, &["db2"]);
    let db2_port = cluster.specs.iter().find(|spec| spec.name == "db2").unwrap().port;
    let cut = GossipCut::isolate(db2_port);
    cluster.wait("db2 to see everyone down", Duration::from_secs(10), |c| {
        let report = c.agent("db2").status();
        report.db_primary.is_none() && alive_names(&report) == ["db2"]
    });
    // Several DOWN windows pass; db2 must stay a read-only replica.
    std::thread::sleep(Duration::from_secs_f64(4.0 * THRESHOLD));
    assert_eq!(
        scalar(&cluster.db("db2").admin_url(), "SELECT @@read_only").as_deref(),
        Some("1")
    );
    assert!(
        has_event(cluster.agent("db2"), EventKind::DbNote, "isolated"),
        "{}",
        cluster.logs()
    );
    assert_eq!(cluster.agent("srv").status().db_primary.as_deref(), Some("db1"));
    insert(cluster.db("db1"), 4).unwrap();
    cluster.wait("db2 still replicating", Duration::from_secs(10), |c| {
        row_count(c.db("db2")) == 4
    });

    drop(cut);
    cluster.wait("db2 to see db1 again", Duration::from_secs(10), |c| {
        c.agent("db2").status().db_primary.as_deref() == Some("db1")
    });
}

#[test]
fn broken_databases_are_reported_and_never_promoted() {
    let dir = tempfile::tempdir().unwrap();
    // db1: wrong password. db2: no binary log. db3: nothing listening at first.
    let db1 = MariaDb::install(dir.path(), "db1", 1);
    let db2 = MariaDb::install_with(dir.path(), "db2", 2, false);
    let mut specs = vec![
        AgentSpec::for_db("db1", THRESHOLD, &db1, 3, dir.path()),
        AgentSpec::for_db("db2", THRESHOLD, &db2, 2, dir.path()),
        AgentSpec::new("srv", 1, THRESHOLD),
    ];
    let url = specs[0].extra.iter().position(|arg| arg == "--db-url").unwrap() + 1;
    specs[0].extra[url] = db1.admin_url().replace("gha-pass", "wrong");
    let absent_port = free_port();
    let mut db3_spec = AgentSpec::for_db("db3", THRESHOLD, &db1, 1, dir.path());
    let url = db3_spec.extra.iter().position(|arg| arg == "--db-url").unwrap() + 1;
    db3_spec.extra[url] = format!("mysql://gha:gha-pass@127.0.0.1:{absent_port}/");
    let advertise = db3_spec.extra.iter().position(|arg| arg == "--db-advertise").unwrap() + 1;
    db3_spec.extra[advertise] = format!("127.0.0.1:{absent_port}");
    specs.push(db3_spec);
    let first = specs[0].port;
    for spec in specs.iter_mut().skip(1) {
        spec.seeds = vec![first];
    }
    let mut agents: Vec<Agent> = specs.iter().map(|spec| Agent::start(dir.path(), spec)).collect();

    // Several DOWN windows: nobody may become primary, and each says why.
    std::thread::sleep(Duration::from_secs_f64(5.0 * THRESHOLD));
    for agent in agents.iter_mut() {
        assert!(agent.is_running(), "{} crashed:\n{}", agent.name, agent.log_text());
    }
    let report = agents[2].status();
    assert_eq!(report.db_primary, None, "a broken node was promoted");
    let db1_state = db_of(&report, "db1").unwrap();
    assert_eq!(db1_state.role, DbRole::Unreachable);
    assert!(
        db1_state.last_error.as_deref().unwrap().contains("Access denied"),
        "{db1_state:?}"
    );
    assert!(
        !agents[0].log_text().contains("wrong"),
        "the password never appears in logs"
    );
    let db3_state = db_of(&report, "db3").unwrap();
    assert_eq!((db3_state.role, db3_state.reachable), (DbRole::Unreachable, false));
    assert!(
        has_event(&agents[1], EventKind::DbNote, "binary log disabled"),
        "{}",
        agents[1].log_text()
    );
    assert!(has_event(&agents[0], EventKind::DbUnreachable, "Access denied"));
    assert_eq!(scalar(&db2.admin_url(), "SELECT @@read_only").as_deref(), Some("1"));
    let json = cli(&["status", "--json", "--socket", agents[0].socket.to_str().unwrap()]);
    assert!(
        !String::from_utf8_lossy(&json.stdout).contains("gha-pass"),
        "no password in status"
    );
}

#[test]
fn without_autofix_a_diverged_old_primary_stays_read_only_and_waits_for_a_resync() {
    let mut cluster = formed_with(2, true, "[db]\nsplitbrain_autofix = false\n");
    write_and_replicate(&cluster, "db1", 1..=5, &["db2"]);
    // db2 stops fetching: the next writes on db1 exist only there.
    sql(&cluster.db("db2").admin_url(), &["STOP SLAVE IO_THREAD"]).unwrap();
    for id in 6..=8 {
        insert(cluster.db("db1"), id).unwrap();
    }
    cluster.db_mut("db1").kill();
    cluster.wait("db2 writable", Duration::from_secs(20), |c| {
        insert(c.db("db2"), 100).is_ok()
    });

    cluster.db_mut("db1").start();
    cluster.wait("db1 marked needs_resync", Duration::from_secs(15), |c| {
        db_of(&c.agent("srv").status(), "db1").is_some_and(|db| db.role == DbRole::NeedsResync)
    });
    let db1 = cluster.db("db1");
    assert_eq!(scalar(&db1.admin_url(), "SELECT @@read_only").as_deref(), Some("1"));
    assert_eq!(
        row_count(db1),
        8,
        "the divergent rows are kept for the merge, not dropped"
    );
    assert!(
        has_event(cluster.agent("db1"), EventKind::DbNeedsResync, "transactions db2 lacks"),
        "{}",
        cluster.logs()
    );
    // It keeps waiting: several DOWN windows later it is still read-only and not replicating.
    std::thread::sleep(Duration::from_secs_f64(3.0 * THRESHOLD));
    let state = db_of(&cluster.agent("db1").status(), "db1").unwrap();
    assert_eq!((state.role, state.read_only), (DbRole::NeedsResync, Some(true)));
    assert_ne!(
        state.io_running,
        Some(true),
        "never replicating on top of divergent data"
    );
    assert_eq!(cluster.agent("srv").status().db_primary.as_deref(), Some("db2"));
}

#[test]
fn a_node_in_maintenance_is_not_promoted_until_taken_out() {
    let mut cluster = formed(2, true);
    write_and_replicate(&cluster, "db1", 1..=3, &["db2"]);
    let socket = cluster.agent("db2").socket.display().to_string();
    let on = cli(&["maintenance", "on", "--socket", &socket]);
    assert!(
        String::from_utf8_lossy(&on.stdout).contains("db2 is in maintenance"),
        "{on:?}"
    );
    cluster.wait("db2 shown in maintenance", Duration::from_secs(5), |c| {
        db_of(&c.agent("srv").status(), "db2").is_some_and(|db| db.maintenance && !db.promotable)
    });

    cluster.db_mut("db1").kill();
    std::thread::sleep(Duration::from_secs_f64(4.0 * THRESHOLD));
    assert!(
        insert(cluster.db("db2"), 10).is_err(),
        "a node in maintenance was promoted"
    );
    assert!(
        has_event(cluster.agent("db2"), EventKind::DbNote, "in maintenance"),
        "{}",
        cluster.logs()
    );

    cli(&["maintenance", "off", "--socket", &socket]);
    cluster.wait("db2 promoted once out of maintenance", Duration::from_secs(10), |c| {
        insert(c.db("db2"), 11).is_ok()
    });
    assert!(has_event(
        cluster.agent("db2"),
        EventKind::AdminCommand,
        "out of maintenance"
    ));
}

#[test]
fn a_dead_primary_agent_is_fenced_and_a_restarted_one_resumes_without_failover() {
    let mut cluster = formed(2, true);
    write_and_replicate(&cluster, "db1", 1..=3, &["db2"]);

    // The primary's agent restarts quickly: the primary stays where it is, writable throughout.
    cluster.agent_mut("db1").kill();
    cluster.restart_agent("db1");
    cluster.wait("db1 to resume as primary", Duration::from_secs(10), |c| {
        has_event(c.agent("db1"), EventKind::DbNote, "resuming as primary")
    });
    std::thread::sleep(Duration::from_secs_f64(3.0 * THRESHOLD));
    insert(cluster.db("db1"), 4).expect("db1 stayed writable across its agent's restart");
    assert!(insert(cluster.db("db2"), 5).is_err(), "no failover happened");

    // The primary's agent dies for good while its mysqld runs on: db2 fences db1, then promotes.
    cluster.agent_mut("db1").kill();
    cluster.wait("db2 writable", Duration::from_secs(20), |c| {
        insert(c.db("db2"), 6).is_ok()
    });
    assert_eq!(
        scalar(&cluster.db("db1").admin_url(), "SELECT @@read_only").as_deref(),
        Some("1"),
        "db1 was fenced before db2 took writes"
    );
    assert!(
        has_event(cluster.agent("db2"), EventKind::DbAction, "fence db1"),
        "{}",
        cluster.logs()
    );
    assert!(insert(cluster.db("db1"), 7).is_err(), "never two writable primaries");
}

/// `Aborted_connects` (closed before or during the handshake) and `Aborted_clients` (dropped
/// without a goodbye): each is also a warning line in the server's error log.
fn aborted(db: &MariaDb) -> (u64, u64) {
    let status = |name: &str| -> u64 {
        scalar(
            &db.admin_url(),
            &format!("SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = '{name}'"),
        )
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("{name} is not readable"))
    };
    (status("ABORTED_CONNECTS"), status("ABORTED_CLIENTS"))
}

#[test]
fn the_agents_never_abort_a_connection_on_a_database() {
    // Every agent checks every DB host twice a threshold, and DB agents probe their own database
    // as often. A connection to mysqld closed before the MySQL handshake is an aborted connect:
    // a warning in the error log and a strike against max_connect_errors, after which MariaDB
    // blocks the host — Pandora's own connections from it included. One dropped without a
    // goodbye is an aborted client, also a warning.
    let cluster = formed(2, true);
    let before: Vec<(u64, u64)> = cluster.dbs.iter().map(aborted).collect();
    // Not a wait for an event: six rounds of checks at threshold 1 s, each of which must not count.
    std::thread::sleep(Duration::from_secs(3));
    let after: Vec<(u64, u64)> = cluster.dbs.iter().map(aborted).collect();
    assert_eq!(
        before,
        after,
        "the agents left aborted connections (connects, clients) on the databases; db1's error log ends with:\n{}",
        tail(&cluster.db("db1").error_log(), 5)
    );
    assert!(cluster.all_see_primary(&["db2", "srv"], "db1"), "{}", cluster.logs());
}

/// `gossip-ha check-config` for the DB agent `spec` describes.
fn check_config(spec: &AgentSpec) -> (Option<i32>, String) {
    let mut args = vec!["check-config", "--node-name", &spec.name, "--roles", "db"];
    args.extend(spec.extra.iter().map(String::as_str));
    let output = cli(&args);
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn own_warnings(agent: &Agent) -> Vec<String> {
    let report = agent.status();
    let me = report.nodes.into_iter().find(|node| node.is_self);
    me.map(|node| node.db_warnings).unwrap_or_default()
}

#[test]
fn a_server_logging_mixed_events_is_warned_about_in_status_events_and_check_config() {
    // Pandora's manual sets binlog_format=MIXED: a split-brain merge then cannot copy every row
    // exactly. The agent says so (status, one event) and check-config too, failing nothing.
    let dir = tempfile::tempdir().unwrap();
    let mut db = MariaDb::install(dir.path(), "db1", 1);
    let spec = AgentSpec::for_db("db1", THRESHOLD, &db, 1, dir.path());
    let (code, stderr) = check_config(&spec);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        !stderr.contains("binlog"),
        "ROW with full images: nothing to say: {stderr}"
    );

    let agent = Agent::start(dir.path(), &spec);
    wait_until("db1's agent to probe it", Duration::from_secs(10), || {
        db_of(&agent.status(), "db1").is_some_and(|db| db.reachable)
    });
    assert!(own_warnings(&agent).is_empty(), "{:?}", own_warnings(&agent));

    db.restart_with(&["--binlog-format=MIXED"]);
    wait_until("the MIXED warning in status", Duration::from_secs(20), || {
        own_warnings(&agent)
            .iter()
            .any(|warning| warning.contains("binlog_format=MIXED"))
    });
    let table = cli(&["status", "--socket", agent.socket.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("Database warnings:\n  db1: this server logs binlog_format=MIXED: a split-brain merge"),
        "{text}"
    );
    // Probed every 200 ms: a second of probes says it no more than once.
    std::thread::sleep(Duration::from_secs(1));
    let said: Vec<_> = agent
        .events()
        .into_iter()
        .filter(|event| event.kind == EventKind::DbWarning)
        .collect();
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(said[0]
        .reason
        .contains("set binlog_format=ROW and binlog_row_image=FULL"));

    let before = aborted(&db);
    let (code, stderr) = check_config(&spec);
    assert_eq!(aborted(&db), before, "check-config says goodbye to the server");
    assert_eq!(code, Some(0), "a warning fails no check: {stderr}");
    assert!(
        stderr.contains("gossip-ha: warning: this server logs binlog_format=MIXED"),
        "{stderr}"
    );
    println!("{text}\n$ gossip-ha check-config …\n{stderr}");

    // Fixed at runtime: new sessions log ROW events, and the warning goes.
    db.admin(&["SET GLOBAL binlog_format = 'ROW'"]);
    wait_until("the warning to clear", Duration::from_secs(10), || {
        own_warnings(&agent).is_empty()
    });
    assert!(has_event(
        &agent,
        EventKind::DbNote,
        "no longer limits a split-brain merge"
    ));

    let mut unreachable = spec;
    let url = unreachable.extra.iter().position(|arg| arg == "--db-url").unwrap() + 1;
    unreachable.extra[url] = format!("mysql://gha:gha-pass@127.0.0.1:{}/", free_port());
    let (code, stderr) = check_config(&unreachable);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("binlog_format and binlog_row_image were not checked: cannot connect"),
        "{stderr}"
    );
}
