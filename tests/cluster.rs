//! Three real agents on loopback: they find each other, elect the server master, detect a
//! SIGKILLed master by the threshold×2 rule, elect another, and see the killed agent come back.

mod common;

use std::time::{Duration, Instant};

use common::*;
use gossip_ha_proto::api::{EventKind, NodeLiveness};

const THRESHOLD_SECONDS: f64 = 1.0;
/// Gossip runs every threshold/10; the last heartbeat seen may precede the kill by about that.
const GOSSIP_INTERVAL: Duration = Duration::from_millis(100);

/// n1 (master 1), n2 (master 5) and n3 (master 3), the last two seeded with n1.
fn three_specs() -> (AgentSpec, AgentSpec, AgentSpec) {
    let n1 = AgentSpec::new("n1", 1, THRESHOLD_SECONDS);
    let mut n2 = AgentSpec::new("n2", 5, THRESHOLD_SECONDS);
    let mut n3 = AgentSpec::new("n3", 3, THRESHOLD_SECONDS);
    n2.seeds = vec![n1.port];
    n3.seeds = vec![n1.port];
    (n1, n2, n3)
}

#[test]
fn kill_detection_reelection_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (n1, n2, n3) = three_specs();
    let a1 = Agent::start(dir.path(), &n1);
    let mut a2 = Agent::start(dir.path(), &n2);
    let a3 = Agent::start(dir.path(), &n3);

    let everyone = ["n1", "n2", "n3"];
    for agent in [&a1, &a2, &a3] {
        wait_until(
            &format!("{} to see all three alive with n2 master", agent.name),
            Duration::from_secs(15),
            || {
                let report = agent.status();
                alive_names(&report) == everyone && report.server_master.as_deref() == Some("n2")
            },
        );
    }
    let first_generation = a1
        .status()
        .nodes
        .iter()
        .find(|node| node.name == "n2")
        .unwrap()
        .generation;

    let killed_at = Instant::now();
    a2.kill();
    let mut detected = [None, None];
    let deadline = killed_at + Duration::from_secs(10);
    while detected.iter().any(Option::is_none) && Instant::now() < deadline {
        for (slot, agent) in detected.iter_mut().zip([&a1, &a3]) {
            if slot.is_none() {
                let report = agent.status();
                if state_of(&report, "n2") == Some(NodeLiveness::Down) {
                    let node = report.nodes.iter().find(|node| node.name == "n2").unwrap();
                    *slot = Some((killed_at.elapsed(), node.last_contact_ms));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let down_after = Duration::from_secs_f64(2.0 * THRESHOLD_SECONDS);
    for (agent, seen) in [&a1, &a3].iter().zip(detected) {
        let (elapsed, last_contact_ms) = seen.unwrap_or_else(|| panic!("{} never marked n2 down", agent.name));
        assert!(
            last_contact_ms > down_after.as_millis() as u64,
            "{} marked n2 down after only {last_contact_ms} ms of silence",
            agent.name
        );
        assert!(
            elapsed + GOSSIP_INTERVAL >= down_after,
            "{} marked n2 down {elapsed:?} after the kill: sooner than 2 × threshold",
            agent.name
        );
        assert!(
            elapsed <= down_after + GOSSIP_INTERVAL + Duration::from_secs(1),
            "{} took {elapsed:?} to mark n2 down",
            agent.name
        );
    }

    for agent in [&a1, &a3] {
        wait_until(&format!("{} to elect n3", agent.name), Duration::from_secs(2), || {
            agent.status().server_master.as_deref() == Some("n3")
        });
    }
    let events = a1.events();
    let down_event = events
        .iter()
        .find(|event| event.kind == EventKind::NodeDown && event.node.as_deref() == Some("n2"))
        .expect("a node_down event for n2");
    assert!(
        down_event.reason.contains("2 × server_threshold"),
        "{}",
        down_event.reason
    );
    assert!(events
        .iter()
        .any(|event| event.kind == EventKind::ServerMasterChanged && event.node.as_deref() == Some("n3")));

    // The same host comes back: a new generation, alive again everywhere, master again.
    let _a2 = Agent::start(dir.path(), &n2);
    for agent in [&a1, &a3] {
        wait_until(
            &format!("{} to see n2 back", agent.name),
            Duration::from_secs(10),
            || {
                let report = agent.status();
                let back = report.nodes.iter().any(|node| {
                    node.name == "n2" && node.state == NodeLiveness::Alive && node.generation > first_generation
                });
                back && report.server_master.as_deref() == Some("n2")
            },
        );
    }
    assert!(a1
        .events()
        .iter()
        .any(|event| event.kind == EventKind::NodeRestarted && event.node.as_deref() == Some("n2")));
}

#[test]
fn the_status_command_prints_the_documented_json() {
    let dir = tempfile::tempdir().unwrap();
    let spec = AgentSpec::new("solo", 2, 1.0);
    let agent = Agent::start(dir.path(), &spec);
    wait_until("solo to elect itself", Duration::from_secs(5), || {
        agent.status().server_master.as_deref() == Some("solo")
    });
    let output = cli(&["status", "--socket", agent.socket.to_str().unwrap(), "--json"]);
    assert!(output.status.success(), "{output:?}");
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["self"], "solo");
    assert_eq!(json["server_master"], "solo");
    let node = &json["nodes"][0];
    for field in ["name", "addr", "roles", "master", "state", "last_contact_ms"] {
        assert!(!node[field].is_null(), "node lacks `{field}`: {node}");
    }
    assert_eq!(node["state"], "alive");

    let table = cli(&["status", "--socket", agent.socket.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("Server master: solo") && text.contains("solo (master)"),
        "{text}"
    );
    let events = cli(&["events", "--socket", agent.socket.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&events.stdout).contains("agent_started"));
}

/// An agent joining a running cluster elects the server master it finds there, once: it waits
/// for its seeds' first answers instead of electing itself first (hooks and rewrites would fire
/// for a master that never was).
#[test]
fn a_joining_agent_elects_the_real_master_once() {
    let dir = tempfile::tempdir().unwrap();
    let (n1, n2, n3) = three_specs();
    let a1 = Agent::start(dir.path(), &n1);
    let a2 = Agent::start(dir.path(), &n2);
    wait_until("n1 to follow n2 as master", Duration::from_secs(15), || {
        a1.status().server_master.as_deref() == Some("n2")
    });
    let a3 = Agent::start(dir.path(), &n3);
    wait_until("n3 to see all three alive", Duration::from_secs(15), || {
        alive_names(&a3.status()) == ["n1", "n2", "n3"]
    });
    std::thread::sleep(Duration::from_secs_f64(THRESHOLD_SECONDS));
    for agent in [&a2, &a3] {
        let masters: Vec<String> = agent
            .events()
            .into_iter()
            .filter(|event| event.kind == EventKind::ServerMasterChanged)
            .map(|event| event.node.unwrap_or_default())
            .collect();
        assert_eq!(masters, ["n2"], "{}: server_master_changed events", agent.name);
    }
}
