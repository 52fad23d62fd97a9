//! The HTTP listener (issue #17) seen from outside, over real TCP: each health path's code on
//! the primary, a replica, a held-back replica and a node whose database is down; `/metrics`
//! scraped and checked line by line before and after a failover; malformed, oversized and slow
//! requests refused while the listener keeps serving. Real agents and real MariaDB.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::db_cluster::{create_schema, insert, wait_formed, Cluster};
use common::haproxy::{write_through, HaProxy};
use common::mariadb::MariaDb;
use common::{free_port, Agent, AgentSpec};

/// Status code and body of one request sent as `raw`, or `None` when the connection is closed
/// without an answer.
fn exchange(port: u16, raw: &[u8]) -> Option<(u16, String)> {
    exchange_on(TcpStream::connect(("127.0.0.1", port)).ok()?, raw)
}

fn exchange_on(mut stream: TcpStream, raw: &[u8]) -> Option<(u16, String)> {
    stream.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    stream.write_all(raw).ok()?;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let code = answer.split_whitespace().nth(1)?.parse().ok()?;
    let body = answer.split_once("\r\n\r\n").map(|(_, body)| body.to_string())?;
    Some((code, body))
}

/// As `exchange`, from the loopback address `source` (another client host).
fn exchange_from(source: &str, port: u16, raw: &[u8]) -> Option<(u16, String)> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
    let local: std::net::SocketAddr = format!("{source}:0").parse().ok()?;
    socket.bind(&local.into()).ok()?;
    let target: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().ok()?;
    socket.connect_timeout(&target.into(), Duration::from_secs(5)).ok()?;
    exchange_on(socket.into(), raw)
}

fn get(port: u16, path: &str) -> (u16, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    exchange(port, request.as_bytes()).unwrap_or((0, "no answer".into()))
}

fn code(port: u16, path: &str) -> u16 {
    get(port, path).0
}

/// A DB cluster whose DB agents serve HTTP; the ports by node name.
fn http_cluster(db_count: usize) -> (Cluster, HashMap<String, u16>) {
    let dir = tempfile::tempdir().unwrap();
    let dbs: Vec<MariaDb> = (0..db_count)
        .map(|index| MariaDb::install(dir.path(), &format!("db{}", index + 1), index as u32 + 1))
        .collect();
    let ports: HashMap<String, u16> = dbs.iter().map(|db| (db.name.clone(), free_port())).collect();
    let config = |db: &MariaDb| format!("http_listen = \"127.0.0.1:{}\"\n", ports[&db.name]);
    let cluster = wait_formed(Cluster::start_on(dir, dbs, true, config));
    create_schema(cluster.db("db1"));
    (cluster, ports)
}

const PATHS: [&str; 4] = ["/primary", "/replica", "/read-only", "/health"];

fn codes(port: u16) -> Vec<u16> {
    PATHS.iter().map(|path| code(port, path)).collect()
}

#[test]
fn health_paths_answer_on_the_primary_a_replica_a_held_back_replica_and_a_dead_database() {
    let (mut cluster, ports) = http_cluster(2);
    let (db1, db2) = (ports["db1"], ports["db2"]);
    assert_eq!(codes(db1), [200, 503, 200, 200], "{:?}", get(db1, "/replica"));
    assert_eq!(codes(db2), [503, 200, 200, 200], "{:?}", get(db2, "/replica"));
    let (_, reason) = get(db2, "/primary");
    assert_eq!(reason, "the DB primary is db1, not this node\n");
    assert_eq!(code(db2, "/replica?lag=10"), 200);
    assert_eq!(code(db2, "/replica?lag=1000trx"), 200);
    assert_eq!(code(db2, "/replica?lag=ten"), 400);
    assert_eq!(code(db1, "/liveness"), 200);

    // Held back: the IO thread receives, the SQL thread applies nothing.
    cluster.db("db2").admin(&["STOP SLAVE SQL_THREAD"]);
    for id in 1..=20 {
        insert(cluster.db("db1"), id).unwrap_or_else(|err| panic!("write {id}: {err}"));
    }
    cluster.wait("db2's /replica to refuse", Duration::from_secs(20), |_| {
        code(db2, "/replica?lag=5trx") == 503 && code(db2, "/replica") == 503
    });
    assert_eq!(codes(db2), [503, 503, 200, 200]);
    cluster.db("db2").admin(&["START SLAVE SQL_THREAD"]);
    cluster.wait(
        "db2 caught up to answer /replica?lag=0trx",
        Duration::from_secs(20),
        |_| code(db2, "/replica?lag=0trx") == 200,
    );

    // The replica's database dies: only the agent still answers for itself.
    cluster.db_mut("db2").kill();
    cluster.wait("db2's /health to fail", Duration::from_secs(20), |_| {
        code(db2, "/health") == 503
    });
    assert_eq!(codes(db2), [503, 503, 503, 503]);
    assert_eq!(code(db2, "/liveness"), 200);
    assert_eq!(codes(db1), [200, 503, 200, 200]);
}

/// Each line of an OpenMetrics text is a comment of a known form, or `name{labels} value`
/// with a name declared by a `# TYPE` line above it; the text ends with `# EOF`.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    let mut declared: Vec<String> = Vec::new();
    let mut samples = HashMap::new();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "no # EOF at the end:\n{text}");
    for line in &lines[..lines.len() - 1] {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or_else(|| panic!("bad TYPE line: {line}"));
            assert!(["gauge", "counter"].contains(&kind), "{line}");
            declared.push(name.to_string());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad sample: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value: {line}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad name: {line}"
        );
        if let Some(labels) = series.strip_prefix(name).filter(|labels| !labels.is_empty()) {
            assert!(labels.starts_with('{') && labels.ends_with('}'), "bad labels: {line}");
            for pair in labels[1..labels.len() - 1].split("\",").filter(|pair| !pair.is_empty()) {
                let (key, value) = pair.split_once("=\"").unwrap_or_else(|| panic!("bad label: {line}"));
                assert!(!key.is_empty() && !value.contains('\n'), "bad label: {line}");
            }
        }
        assert!(
            declared
                .iter()
                .any(|family| name == family || name.strip_prefix(family.as_str()) == Some("_total")),
            "{name} not declared by a # TYPE line: {line}"
        );
        assert!(samples.insert(series.to_string(), value).is_none(), "repeated: {line}");
    }
    samples
}

fn scrape(port: u16) -> HashMap<String, f64> {
    let (code, text) = get(port, "/metrics");
    assert_eq!(code, 200, "{text}");
    parse_metrics(&text)
}

#[test]
fn metrics_parse_and_count_a_failover() {
    let (mut cluster, ports) = http_cluster(2);
    let db2 = ports["db2"];
    let before = scrape(db2);
    assert_eq!(before["gossip_ha_failovers_total"], 0.0, "{before:?}");
    assert_eq!(before[r#"gossip_ha_db_primary{node="db1"}"#], 1.0);
    assert_eq!(before[r#"gossip_ha_db_role{node="db2",role="replica"}"#], 1.0);
    assert_eq!(before[r#"gossip_ha_db_read_only{node="db2"}"#], 1.0);
    assert_eq!(before[r#"gossip_ha_replication_lag_transactions{node="db2"}"#], 0.0);
    assert_eq!(before[r#"gossip_ha_node_up{node="srv"}"#], 1.0);

    cluster.db_mut("db1").kill();
    cluster.wait("db2 to answer /primary", Duration::from_secs(30), |_| {
        code(db2, "/primary") == 200
    });
    let after = scrape(db2);
    assert_eq!(after["gossip_ha_failovers_total"], 1.0, "{after:?}");
    assert_eq!(after[r#"gossip_ha_db_primary{node="db2"}"#], 1.0);
    assert_eq!(after[r#"gossip_ha_db_read_only{node="db2"}"#], 0.0);
    assert!(after[r#"gossip_ha_events_total{kind="db_primary_changed"}"#] >= 1.0);
    assert_eq!(code(ports["db1"], "/primary"), 503);
}

/// A server-only agent serving HTTP on a port of its own.
fn http_agent(dir: &tempfile::TempDir) -> (Agent, u16) {
    let port = free_port();
    let config = dir.path().join("http.toml");
    std::fs::write(&config, format!("http_listen = \"127.0.0.1:{port}\"\n")).unwrap();
    let mut spec = AgentSpec::new("solo", 1, 1.0);
    spec.extra.extend(["--config".into(), config.display().to_string()]);
    (Agent::start(dir.path(), &spec), port)
}

#[test]
fn malformed_oversized_and_slow_requests_are_refused_and_the_listener_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (_agent, port) = http_agent(&dir);
    assert_eq!(code(port, "/liveness"), 200);
    assert_eq!(exchange(port, b"NONSENSE\r\n\r\n").map(|(code, _)| code), Some(400));
    let huge = format!("GET /liveness HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(64 * 1024));
    assert_eq!(exchange(port, huge.as_bytes()).map(|(code, _)| code), Some(431));
    let with_body = b"GET /liveness HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
    assert_eq!(exchange(port, with_body).map(|(code, _)| code), Some(413));
    let post = b"POST /primary HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(exchange(port, post).map(|(code, _)| code), Some(405));

    // Slowloris: more connections than the cap, each sending a header line now and then. Those
    // past the cap are closed at accept, the others when the header timeout ends.
    let mut slow: Vec<TcpStream> = (0..80)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    for stream in &mut slow {
        let _ = stream.write_all(b"GET /liveness HTTP/1.1\r\n");
    }
    // They all come from 127.0.0.1: a load balancer's check from another address still gets in.
    let check = b"GET /liveness HTTP/1.1\r\nHost: localhost\r\n\r\n";
    assert_eq!(
        exchange_from("127.0.0.2", port, check).map(|(code, _)| code),
        Some(200),
        "one address holding its places leaves room for others"
    );
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        for stream in &mut slow {
            let _ = stream.write_all(b"X-Slow: 1\r\n");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let mut closed = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    for stream in &mut slow {
        stream
            .set_read_timeout(Some(
                deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(10)),
            ))
            .unwrap();
        let mut answer = Vec::new();
        // Closed by the listener: EOF (after a 408 or nothing) or a reset; a timeout is not.
        match stream.read_to_end(&mut answer) {
            Ok(_) => closed += 1,
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => closed += 1,
            Err(_) => {}
        }
    }
    assert_eq!(closed, slow.len(), "every slow connection closed by the header timeout");
    assert_eq!(code(port, "/liveness"), 200, "the listener still serves");
}

#[test]
fn a_client_writing_through_haproxy_keeps_writing_across_a_kill_of_the_primary_database() {
    let (mut cluster, ports) = http_cluster(3);
    let haproxy = HaProxy::start(&cluster, &ports);
    let (before, _) = write_through(&haproxy.url(), 1, 20, Duration::from_secs(20));
    assert_eq!(before.len(), 20, "writes through HAProxy before the kill");

    cluster.db_mut("db1").kill();
    let (after, longest_gap) = write_through(&haproxy.url(), 1_000, 20, Duration::from_secs(60));
    assert_eq!(
        after.len(),
        20,
        "writes through HAProxy after db1's mysqld was killed\n{}",
        cluster.logs()
    );
    println!("longest gap in acknowledged writes through HAProxy: {longest_gap:?}");
    // Every write acknowledged after the failover is on the new primary.
    let new_primary = cluster.agent("db2").status().db_primary.expect("a new primary");
    let on_primary = common::mariadb::scalar(
        &cluster.db(&new_primary).admin_url(),
        "SELECT COUNT(*) FROM pandora.tagente_datos WHERE id >= 1000",
    );
    assert_eq!(on_primary, Some(after.len().to_string()), "{after:?}");
    assert!(longest_gap < Duration::from_secs(30), "{longest_gap:?}");
}

#[test]
fn with_http_tls_the_listener_serves_over_tls_with_the_cluster_certificate_only() {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};

    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    gossip_ha::tls::certs::init_ca(&ca, "gossip-ha-test", false).unwrap();
    let port = free_port();
    let config = dir.path().join("http.toml");
    std::fs::write(
        &config,
        format!("http_listen = \"127.0.0.1:{port}\"\nhttp_tls = true\n"),
    )
    .unwrap();
    let mut spec = AgentSpec::new("solo", 1, 1.0).with_tls(dir.path(), &ca);
    spec.extra.extend(["--config".into(), config.display().to_string()]);
    let _agent = Agent::start(dir.path(), &spec);

    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(dir.path().join("certs-solo/ca.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    // No client certificate: checks and scrapers are not asked for one.
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let connection = rustls::ClientConnection::new(Arc::new(client), name).unwrap();
    let mut tcp = None;
    common::wait_until("the TLS listener", Duration::from_secs(10), || {
        tcp = TcpStream::connect(("127.0.0.1", port)).ok();
        tcp.is_some()
    });
    let tcp = tcp.unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    tls.write_all(b"GET /liveness HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    // Plain HTTP on the TLS port gets no HTTP answer.
    assert_eq!(exchange(port, b"GET /liveness HTTP/1.1\r\n\r\n"), None);
}
