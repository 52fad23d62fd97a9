//! State an operator set must survive the agent, and a command must not say it worked before it
//! has (issue #14, "lost or misleading state"): maintenance through an agent restart, in both of
//! its forms, and `gossip-ha resync` failing with the reason. Real agents, real MariaDB.

mod common;

use std::time::{Duration, Instant};

use common::db_cluster::{db_of, formed, has_event, Cluster, THRESHOLD};
use common::mariadb::{scalar, sql};
use common::{cli, generation_of};
use gossip_ha_proto::api::EventKind;
use gossip_ha_proto::db::DbRole;

fn socket(cluster: &Cluster, name: &str) -> String {
    cluster.agent(name).socket.display().to_string()
}

fn maintenance(cluster: &Cluster, args: &[&str], on: &str) {
    let mut argv = vec!["maintenance"];
    argv.extend_from_slice(args);
    let asked = cli(&argv);
    let said = String::from_utf8_lossy(&asked.stdout);
    assert!(asked.status.success(), "{argv:?}: {asked:?}\n{}", cluster.logs());
    assert!(said.contains(&format!("{on} maintenance")), "{argv:?}: {said}");
}

/// Kills db2's agent (nothing is written on the way out) and starts it again; waits until it
/// reports its own database from the new run.
fn restart_db2(cluster: &mut Cluster) {
    let before = generation_of(&cluster.agent("db2").status(), "db2");
    cluster.agent_mut("db2").kill();
    cluster.restart_agent("db2");
    cluster.wait("db2's new run to report its database", Duration::from_secs(15), |c| {
        let report = c.agent("db2").status();
        generation_of(&report, "db2") > before && db_of(&report, "db2").is_some()
    });
}

fn db2_in_maintenance(cluster: &Cluster) -> bool {
    db_of(&cluster.agent("db2").status(), "db2").is_some_and(|db| db.maintenance)
}

#[test]
fn maintenance_set_either_way_survives_an_agent_restart_and_keeps_the_node_from_promotion() {
    let mut cluster = formed(2, true);
    let srv = socket(&cluster, "srv");

    // Relayed: asked on the witness, carried out (and kept) by db2.
    maintenance(&cluster, &["on", "db2", "--socket", &srv], "is in");
    restart_db2(&mut cluster);
    assert!(db2_in_maintenance(&cluster), "forgotten on restart\n{}", cluster.logs());
    assert!(
        has_event(
            cluster.agent("db2"),
            EventKind::AdminCommand,
            "maintenance kept from before the restart (set at "
        ),
        "{}",
        cluster.logs()
    );

    // On the node itself: off, then on again; the last command is the one kept.
    let db2 = socket(&cluster, "db2");
    maintenance(&cluster, &["off", "--socket", &db2], "out of");
    maintenance(&cluster, &["on", "--socket", &db2], "is in");
    restart_db2(&mut cluster);
    assert!(db2_in_maintenance(&cluster), "forgotten on restart\n{}", cluster.logs());
    let table = cli(&["status", "--socket", &socket(&cluster, "db2")]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("[maintenance]"), "{text}");

    // The primary's host dies: db2, in maintenance, is not promoted.
    cluster.agent_mut("db1").kill();
    cluster.db_mut("db1").kill();
    std::thread::sleep(Duration::from_secs_f64(8.0 * THRESHOLD));
    let report = cluster.agent("srv").status();
    assert_ne!(report.db_primary.as_deref(), Some("db2"), "{}", cluster.logs());
    assert_eq!(
        scalar(&cluster.db("db2").admin_url(), "SELECT @@read_only").as_deref(),
        Some("1"),
        "db2 promoted while in maintenance\n{}",
        cluster.logs()
    );

    // `maintenance off` clears it: now db2 takes over.
    maintenance(&cluster, &["off", "--socket", &socket(&cluster, "db2")], "out of");
    cluster.wait("db2 promoted once out of maintenance", Duration::from_secs(20), |c| {
        db_of(&c.agent("srv").status(), "db2").is_some_and(|db| db.role == DbRole::Primary)
    });
}

#[test]
fn a_resync_whose_copy_fails_at_once_fails_the_command_with_the_reason() {
    let cluster = formed(2, false);
    // A view over a table that is gone: `mariadb-dump` of db1 stops at it.
    sql(
        &cluster.db("db1").admin_url(),
        &[
            "CREATE TABLE pandora.gone (id INT)",
            "CREATE VIEW pandora.broken AS SELECT * FROM pandora.gone",
            "DROP TABLE pandora.gone",
        ],
    )
    .unwrap();

    let asked_at = Instant::now();
    let asked = cli(&["resync", "--socket", &socket(&cluster, "db2")]);
    let (out, err) = (
        String::from_utf8_lossy(&asked.stdout),
        String::from_utf8_lossy(&asked.stderr),
    );
    assert!(
        !asked.status.success(),
        "exit 0 for a failed resync: {out}{err}\n{}",
        cluster.logs()
    );
    assert!(
        err.contains("resync failed: resync from db1") && err.contains("pandora.broken"),
        "the reason: {err}"
    );
    // While it waited it showed what the agent did.
    assert!(err.contains("… resync from db1"), "progress: {err}");
    println!("`gossip-ha resync` failed after {:?}: {err}", asked_at.elapsed());
}
