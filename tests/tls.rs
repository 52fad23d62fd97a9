//! Gossip over mutual TLS between real agents; every kind of unwelcome peer is refused, named in
//! an event, kept out of status, and the agent keeps running with bounded memory.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::procfs::rss_kib;
use common::*;
use gossip_ha::tls::certs::{init_ca, issue_pem, HostRequest};
use gossip_ha_proto::api::EventKind;
use gossip_ha_proto::wire::Hello;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

fn tls_spec(name: &str, dir: &Path, ca: &Path) -> AgentSpec {
    AgentSpec::new(name, 1, 1.0).with_tls(dir, ca)
}

/// A hand-made TLS client: trusts `ca`, presents `identity` (cert and key PEM) if given.
fn client(ca: &Path, identity: Option<(String, String)>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca.join("ca.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    Arc::new(match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    })
}

/// Connects to the agent's gossip port and sends `frames` (already framed bytes) after the
/// handshake. Errors are expected: the agent hangs up on refused peers.
fn send_over_tls(config: Arc<rustls::ClientConfig>, port: u16, frames: &[Vec<u8>]) {
    let server_name = ServerName::IpAddress("127.0.0.1".parse::<std::net::IpAddr>().unwrap().into());
    let mut connection = rustls::ClientConnection::new(config, server_name).unwrap();
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut stream = rustls::Stream::new(&mut connection, &mut tcp);
    for frame in frames {
        if stream.write_all(frame).is_err() {
            return;
        }
    }
    let _ = stream.flush();
}

fn frame(payload: &[u8]) -> Vec<u8> {
    gossip_ha::tls::frame::encode(payload).unwrap()
}

fn hello(name: &str) -> Vec<u8> {
    frame(
        &Hello {
            version: gossip_ha_proto::PROTOCOL_VERSION,
            cluster_id: "test".into(),
            node_name: name.into(),
            advertise: "127.0.0.1:1".parse().unwrap(),
        }
        .encode(),
    )
}

fn refused(agent: &Agent, fragment: &str) -> bool {
    agent
        .events()
        .iter()
        .any(|event| event.kind == EventKind::PeerRefused && event.reason.contains(fragment))
}

#[test]
fn agents_converge_over_tls_and_refuse_everyone_else() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    init_ca(&ca, "test", false).unwrap();
    let mut specs: Vec<AgentSpec> = ["n1", "n2", "n3"]
        .iter()
        .map(|name| tls_spec(name, dir.path(), &ca))
        .collect();
    let first = specs[0].port;
    for spec in specs.iter_mut().skip(1) {
        spec.seeds = vec![first];
    }
    let mut agents: Vec<Agent> = specs.iter().map(|spec| Agent::start(dir.path(), spec)).collect();
    for agent in &agents {
        wait_until(
            &format!("{} to see all three over TLS", agent.name),
            Duration::from_secs(15),
            || alive_names(&agent.status()) == ["n1", "n2", "n3"],
        );
    }

    // An agent whose certificate comes from another CA.
    let other_ca = dir.path().join("other-ca");
    init_ca(&other_ca, "test", false).unwrap();
    let mut intruder = tls_spec("n4", dir.path(), &other_ca);
    intruder.seeds = vec![first];
    let _intruder = Agent::start(dir.path(), &intruder);

    // Hand-made clients: an expired certificate, one for another name, none, garbage, and an
    // oversized frame from a peer that is otherwise fine.
    let now = time::OffsetDateTime::now_utc();
    let expired = HostRequest {
        not_before: now - time::Duration::days(10),
        not_after: now - time::Duration::days(1),
        ..HostRequest::valid_for_days("n5", vec![], vec![], 1)
    };
    let expired = issue_pem(&ca, &expired).unwrap();
    send_over_tls(client(&ca, Some(expired.clone())), first, &[hello("n5")]);
    // Again a second later: rustls's own text would differ by the time of the attempt.
    std::thread::sleep(Duration::from_millis(1_100));
    send_over_tls(client(&ca, Some(expired)), first, &[hello("n5")]);
    let n9 = issue_pem(&ca, &HostRequest::valid_for_days("n9", vec![], vec![], 1)).unwrap();
    send_over_tls(client(&ca, Some(n9.clone())), first, &[hello("n2")]);
    send_over_tls(client(&ca, None), first, &[hello("n6")]);
    let mut oversized = hello("n9");
    oversized.extend(u32::MAX.to_be_bytes());
    send_over_tls(client(&ca, Some(n9)), first, &[oversized]);
    // A real chitchat message in plain text, as an old or misconfigured agent would send it,
    // over TCP and over UDP.
    let mut plain = Vec::new();
    chitchat::Serializable::serialize(&chitchat::ChitchatMessage::BadCluster, &mut plain);
    if let Ok(mut tcp) = TcpStream::connect(("127.0.0.1", first)) {
        let _ = tcp.write_all(&frame(&plain));
    }
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let _ = udp.send_to(&plain, ("127.0.0.1", first));
    let before_kib = rss_kib(agents[0].pid());
    for _ in 0..200 {
        if let Ok(mut tcp) = TcpStream::connect(("127.0.0.1", first)) {
            let _ = tcp.write_all(b"\x00\x00\x00\x10 plain-text chitchat SYN? no: garbage \xff\xfe");
        }
    }

    let n1 = &agents[0];
    wait_until("every refusal to be reported", Duration::from_secs(10), || {
        refused(n1, "not from this cluster's CA")
    });
    for (what, fragment) in [
        // Named by its date, not with the time of the attempt: one event however many tries.
        ("an expired certificate", "its certificate expired on "),
        (
            "a certificate for another name",
            "gossips as `n2` but its certificate is for another name",
        ),
        ("no certificate", "peer sent no certificates"),
        ("an oversized frame", "4294967295-byte frame"),
    ] {
        let reasons = || -> Vec<String> {
            let events = n1
                .events()
                .into_iter()
                .filter(|event| event.kind == EventKind::PeerRefused);
            events.map(|event| event.reason).collect()
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !refused(n1, fragment) {
            assert!(
                std::time::Instant::now() < deadline,
                "no refusal of {what}; refusals: {:#?}",
                reasons()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let refusals = n1
        .events()
        .iter()
        .filter(|event| event.kind == EventKind::PeerRefused)
        .count();
    assert!(
        refusals < 50,
        "refusals are reported once per peer and reason, not per attempt: {refusals}"
    );
    let expired_events = n1
        .events()
        .iter()
        .filter(|event| event.kind == EventKind::PeerRefused && event.reason.contains("expired"))
        .count();
    assert_eq!(expired_events, 1, "two attempts with an expired certificate, one event");

    std::thread::sleep(Duration::from_secs(2));
    for agent in agents.iter_mut() {
        assert!(agent.is_running(), "{} died:\n{}", agent.name, agent.log_text());
        let report = agent.status();
        assert_eq!(alive_names(&report), ["n1", "n2", "n3"]);
        assert!(report
            .nodes
            .iter()
            .all(|node| !["n4", "n5", "n6", "n9"].contains(&node.name.as_str())));
    }
    let after_kib = rss_kib(agents[0].pid());
    assert!(
        after_kib < before_kib + 32 * 1024,
        "memory grew from {before_kib} KiB to {after_kib} KiB"
    );
}

#[test]
fn off_loopback_without_tls_the_agent_refuses_to_start_and_says_why() {
    let output = cli(&["run", "--node-name", "x", "--listen", "198.18.0.1:7946"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("needs mutual TLS") && stderr.contains("--tls-ca"),
        "{stderr}"
    );
}

#[test]
fn a_connection_that_closes_without_a_byte_is_a_reachability_check_not_a_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    init_ca(&ca, "test", false).unwrap();
    let spec = tls_spec("n1", dir.path(), &ca);
    let agent = Agent::start(dir.path(), &spec);
    for _ in 0..20 {
        drop(TcpStream::connect(("127.0.0.1", spec.port)).unwrap());
    }
    // A handshake that fails is reported: the checks above were taken, and are not.
    if let Ok(mut tcp) = TcpStream::connect(("127.0.0.1", spec.port)) {
        let _ = tcp.write_all(b"not TLS at all");
    }
    wait_until("the failed handshake to be reported", Duration::from_secs(10), || {
        refused(&agent, "TLS handshake failed")
    });
    let refusals: Vec<String> = agent
        .events()
        .into_iter()
        .filter(|event| event.kind == EventKind::PeerRefused)
        .map(|event| event.reason)
        .collect();
    assert_eq!(refusals.len(), 1, "{refusals:#?}");
}
