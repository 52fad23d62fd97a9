//! Idle floods without any certificate against the real binary: the transfer port, the gossip
//! listener and the status socket. After each the agent still answers `status`, its peers are
//! heard, refusals are a handful of events, and its memory stays bounded. The floods run one at
//! a time: each takes a thousand descriptors and, for the gossip one, a core.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use common::flood::*;
use common::procfs::{open_files, rss_kib};
use common::*;
use gossip_ha_proto::api::{EventKind, NodeLiveness};

static ONE_FLOOD_AT_A_TIME: Mutex<()> = Mutex::new(());

const RSS_GROWTH_LIMIT_KIB: u64 = 64 * 1024;

/// The flood cost the agent less than `RSS_GROWTH_LIMIT_KIB` of memory since `before_kib`.
fn assert_memory_bounded(agent: &Agent, before_kib: u64) {
    let after_kib = rss_kib(agent.pid());
    assert!(
        after_kib < before_kib + RSS_GROWTH_LIMIT_KIB,
        "{}: memory grew from {before_kib} KiB to {after_kib} KiB",
        agent.name
    );
}

fn one_flood_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_FLOOD_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn transfer_reports(agent: &Agent) -> Vec<String> {
    let events = agent
        .events()
        .into_iter()
        .filter(|event| event.kind == EventKind::Repair);
    events
        .map(|event| event.reason)
        .filter(|reason| reason.starts_with("backup for"))
        .collect()
}

#[test]
fn a_transfer_port_flood_leaves_status_answering_and_makes_a_few_events() {
    let _flood = one_flood_at_a_time();
    raise_own_open_files();
    let (dir, ca) = tls_dir();
    let transfer_port = free_port();
    let agent = Agent::start(dir.path(), &transfer_agent(dir.path(), &ca, transfer_port));
    // As under systemd without LimitNOFILE: the agent has 1,024 descriptors in all.
    limit_open_files(agent.pid(), SYSTEMD_DEFAULT_NOFILE);
    let before_kib = rss_kib(agent.pid());

    let flood = idle_connections(SocketAddr::from(([127, 0, 0, 1], transfer_port)), 1_100);
    assert!(flood.len() >= 1_000, "only {} flood connections opened", flood.len());

    let status = cli(&["status", "--socket", agent.socket.to_str().unwrap()]);
    assert!(
        status.status.success(),
        "status under the flood: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    let held = open_files(agent.pid());
    assert!(held < 300, "the agent holds {held} descriptors under the flood");

    drop(flood);
    wait_until("the flood's refusal to be reported", Duration::from_secs(10), || {
        !transfer_reports(&agent).is_empty()
    });
    // The connections the agent did take end within their handshake timeout, reported too.
    std::thread::sleep(Duration::from_secs(1));
    let reports = transfer_reports(&agent);
    assert!(
        reports.len() <= 10,
        "1,100 connections made {} events: {reports:#?}",
        reports.len()
    );
    let distinct: std::collections::HashSet<&String> = reports.iter().collect();
    assert_eq!(distinct.len(), reports.len(), "repeated: {reports:#?}");
    assert!(
        reports.iter().all(|reason| !reason.contains("127.0.0.1:")),
        "a report names the peer's port: {reports:#?}"
    );
    assert!(agent.try_status().is_some());
    assert_memory_bounded(&agent, before_kib);
}

#[test]
fn a_restarted_peer_is_heard_again_through_a_gossip_port_flood() {
    let _flood = one_flood_at_a_time();
    raise_own_open_files();
    let (dir, ca) = tls_dir();
    let (a, b, agent_a, mut agent_b) = start_seeded_pair(dir.path(), &ca);
    let first_generation = generation_of(&agent_a.status(), "b");
    let before_kib = rss_kib(agent_a.pid());

    // 1,000 connections from 250 addresses, four each: per-source caps alone would let them
    // fill every slot; the slots kept for known peers must hold.
    let _flood = GossipFlood::start(a.port, 1_000, 250);
    wait_for_gossip_flood_refused(&agent_a);
    agent_b.kill();
    wait_until("a to see b down", Duration::from_secs(15), || {
        state_of(&agent_a.status(), "b") != Some(NodeLiveness::Alive)
    });
    agent_b = Agent::start(dir.path(), &b);
    wait_until("a to hear the restarted b", Duration::from_secs(15), || {
        let report = agent_a.status();
        state_of(&report, "b") == Some(NodeLiveness::Alive) && generation_of(&report, "b") > first_generation
    });
    wait_until("b to hear a", Duration::from_secs(15), || {
        alive_names(&agent_b.status()) == ["a", "b"]
    });
    assert_memory_bounded(&agent_a, before_kib);
}

#[test]
fn idle_socket_connections_from_readers_leave_root_answered_and_readers_told_busy() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root to act as other users"
    );
    let _flood = one_flood_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(dir.path(), &socket_agent(dir.path()));
    let socket = agent.socket.to_str().unwrap();
    let before_kib = rss_kib(agent.pid());

    // 72 idle connections from eight readers (uids that are not admins), nine each.
    let _idle = readers_holding(&agent.socket);

    let over_its_cap = cli_as(60_001, &["status", "--socket", socket]);
    let stderr = String::from_utf8_lossy(&over_its_cap.stderr);
    assert!(
        stderr.contains("the agent is busy: 8 connections from uid 60001 already open"),
        "{stderr}"
    );
    let reader = cli_as(NOGROUP, &["status", "--socket", socket]);
    let stderr = String::from_utf8_lossy(&reader.stderr);
    assert!(
        stderr.contains("the agent is busy") && stderr.contains("kept for admins"),
        "{stderr}"
    );
    let root = cli(&["status", "--socket", socket]);
    assert!(root.status.success(), "root: {}", String::from_utf8_lossy(&root.stderr));

    // Connections that never send a request are closed: readers get in again.
    wait_until("a reader to be answered again", Duration::from_secs(20), || {
        cli_as(NOGROUP, &["status", "--socket", socket]).status.success()
    });
    assert_memory_bounded(&agent, before_kib);
}

#[test]
fn an_open_file_limit_below_the_bounds_is_refused_at_start_naming_limitnofile() {
    let dir = tempfile::tempdir().unwrap();
    let spec = AgentSpec::new("cramped", 1, 1.0);
    let mut command = Command::new("prlimit");
    command.args(["--nofile=256:256", BINARY, "run", "--node-name", "cramped"]);
    command.args(["--listen", &format!("127.0.0.1:{}", spec.port)]);
    command.args(["--socket", dir.path().join("cramped.sock").to_str().unwrap()]);
    let output = bounded_output(command, Duration::from_secs(10));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("LimitNOFILE") && stderr.contains("256 (hard)"),
        "{stderr}"
    );
}
