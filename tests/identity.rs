//! A certificate is an identity, not a permission: a peer holding only a console host's
//! certificate, gossiping whatever it likes, changes nothing in a real cluster (real agents,
//! real MariaDB, mutual TLS) and is named in events; it cannot fetch a backup either.
//!
//! The liar is not the shipped binary (which refuses to start with roles its certificate does
//! not grant): it is this test process running the product's own gossip code with forged keys,
//! as an attacker who broke into the console host and patched the agent would.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::db_cluster::*;
use common::mariadb::MariaDb;
use common::*;
use gossip_ha::core::authority::Grants;
use gossip_ha::gossip::{Authority, Gossip, GossipParams};
use gossip_ha::tls::identity::{IdentityHandle, TlsFiles, TlsIdentity};
use gossip_ha::tls::transport::{RefusalSink, TlsTransport};
use gossip_ha_proto::api::{EventKind, NodeLiveness};
use gossip_ha_proto::db::{DbAnnouncement, DbRole};
use gossip_ha_proto::gossip::{Announcement, ClusterRequest, ClusterRequestKind, Role, KEY_DB, KEY_REQUEST};
use gossip_ha_proto::wire::TransferRequest;

const LIAR: &str = "console1";

fn grants(roles: &[Role], admin: bool) -> Grants {
    Grants {
        roles: roles.iter().copied().collect(),
        admin,
    }
}

/// Issues `name` a certificate granting `grants` from the cluster's CA and loads it.
fn identity(cluster: &Cluster, name: &str, grants: Grants) -> TlsIdentity {
    let dir = cluster.dir.path();
    let spec = AgentSpec::new(name, 0, THRESHOLD).with_tls_grants(dir, &dir.join("ca"), grants);
    let out = dir.join(format!("certs-{}", spec.name));
    let files = TlsFiles {
        ca: out.join("ca.pem"),
        cert: out.join("cert.pem"),
        key: out.join("key.pem"),
    };
    let roles: BTreeSet<Role> = [Role::Console].into_iter().collect();
    TlsIdentity::load(&files, name, &roles).expect("the liar's own certificate loads")
}

/// The forged primary claim: writable, a huge epoch, the best priority.
fn forged_primary_claim() -> String {
    serde_json::to_string(&DbAnnouncement {
        role: DbRole::Primary,
        claims_primary: true,
        reachable: true,
        read_only: Some(false),
        gtid: "0-99-100000".into(),
        gtid_history: "0-99-100000".into(),
        epoch: 1_000_000,
        priority: 255,
        promotable: true,
        advertise: format!("127.0.0.1:{}", free_port()),
        ..DbAnnouncement::default()
    })
    .unwrap()
}

fn forged_request(kind: ClusterRequestKind) -> String {
    serde_json::to_string(&ClusterRequest {
        id: gossip_ha::clock::unix_ms(),
        kind,
    })
    .unwrap()
}

/// Gossips as `LIAR` with `identity`: the roles db and server, master 7, a primary claim.
async fn start_liar(identity: TlsIdentity, seed: &AgentSpec) -> Gossip {
    let port = free_port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let params = GossipParams {
        node_name: LIAR.into(),
        cluster_id: "test".into(),
        listen: addr,
        advertise: addr,
        seeds: vec![format!("127.0.0.1:{}", seed.port)],
        threshold_ms: 1_000,
        generation: gossip_ha::clock::unix_ms(),
        certificate: Some(identity.gossiped_certificate()),
        rounds: Default::default(),
    };
    let announcement = Announcement {
        roles: [Role::Db, Role::Server, Role::Console].into_iter().collect(),
        master: 7,
        threshold_ms: 1_000,
        started_unix_ms: 0,
    };
    let refusals: RefusalSink = Arc::new(|_, _| {});
    let handle = IdentityHandle::new(identity);
    let transport = TlsTransport::new(handle.clone(), "test", LIAR, addr, refusals, &params.seeds);
    // Its own state, sealed with its own key: it is heard as what it is, a console.
    let authority = Authority {
        certificates: Some(handle),
        ..Authority::default()
    };
    let gossip = Gossip::start(&params, &announcement, &transport, authority)
        .await
        .expect("the liar's gossip starts");
    gossip
        .set_keys(&[
            (KEY_DB, forged_primary_claim()),
            (
                KEY_REQUEST,
                forged_request(ClusterRequestKind::Maintenance {
                    node: "db2".into(),
                    on: true,
                }),
            ),
        ])
        .await
        .unwrap();
    gossip
}

fn heard_liar(cluster: &Cluster, observer: &str) -> bool {
    cluster
        .agent(observer)
        .try_status()
        .is_some_and(|report| state_of(&report, LIAR) == Some(NodeLiveness::Alive))
}

fn assert_unmoved(cluster: &Cluster) {
    for observer in ["db1", "db2", "srv"] {
        let report = cluster.agent(observer).status();
        assert_eq!(report.db_primary.as_deref(), Some("db1"), "{observer}: {report:?}");
        assert_eq!(report.server_master.as_deref(), Some("srv"), "{observer}: {report:?}");
        let liar = report.nodes.iter().find(|node| node.name == LIAR).unwrap();
        assert_eq!(liar.roles, [Role::Console], "{observer} believes only the certificate");
        assert_eq!((liar.master, liar.db.is_some()), (0, false), "{observer}");
    }
    let report = cluster.agent("db1").status();
    let db1 = db_of(&report, "db1").unwrap();
    assert_eq!((db1.role, db1.read_only), (DbRole::Primary, Some(false)));
    let db2 = db_of(&report, "db2").unwrap();
    assert!(!db2.maintenance, "the liar put db2 in maintenance: {db2:?}");
    assert!(replicating_from(&report, "db2", cluster.db("db1")), "{report:?}");
}

#[test]
fn a_console_certificate_claiming_db_primary_master_and_admin_changes_nothing() {
    let cluster = wait_formed(Cluster::start_tls(2, true, |_| String::new()));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let liar_identity = identity(&cluster, LIAR, grants(&[Role::Console], false));
    let liar = runtime.block_on(start_liar(liar_identity, &cluster.specs[0]));
    cluster.wait("everyone to hear the liar", Duration::from_secs(15), |c| {
        ["db1", "db2", "srv"].iter().all(|name| heard_liar(c, name))
    });
    // Every observer has screened the claims; without the screen they took effect within one
    // DOWN window of being heard, so two of them are the window to see nothing move.
    cluster.wait("everyone to refuse the liar's db role", Duration::from_secs(10), |c| {
        ["db1", "db2", "srv"]
            .iter()
            .all(|name| has_event(c.agent(name), EventKind::PeerIgnored, "gossips the db role"))
    });
    std::thread::sleep(Duration::from_secs_f64(4.0 * THRESHOLD));
    assert_unmoved(&cluster);

    runtime
        .block_on(liar.set_keys(&[(
            KEY_REQUEST,
            forged_request(ClusterRequestKind::Switchover { to: "db2".into() }),
        )]))
        .unwrap();
    cluster.wait("db1 to refuse the liar's switchover", Duration::from_secs(10), |c| {
        has_event(c.agent("db1"), EventKind::PeerIgnored, "asks for a switchover to db2")
    });
    std::thread::sleep(Duration::from_secs_f64(4.0 * THRESHOLD));
    assert_unmoved(&cluster);
    for (observer, claim) in [
        (
            "db1",
            "gossips the db role, which its certificate does not grant (it grants console)",
        ),
        (
            "srv",
            "gossips the server role, which its certificate does not grant (it grants console)",
        ),
        ("db1", "asks for maintenance on for db2"),
        ("db1", "asks for a switchover to db2"),
    ] {
        assert!(
            has_event(cluster.agent(observer), EventKind::PeerIgnored, claim),
            "{observer} names `{claim}`: {:?}",
            cluster.agent(observer).events()
        );
    }
    let named: Vec<_> = cluster
        .agent("db1")
        .events()
        .into_iter()
        .filter(|event| event.kind == EventKind::PeerIgnored && event.reason.contains("gossips the db role"))
        .collect();
    assert_eq!(named.len(), 1, "one event per (peer, reason): {named:?}");
    runtime.block_on(liar.shutdown());
}

/// Asks `db`'s transfer service for a backup as `node_name`, with `identity`.
fn fetch(runtime: &tokio::runtime::Runtime, port: u16, identity: &TlsIdentity, node_name: &str) -> Result<u64, String> {
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let request = TransferRequest {
        version: gossip_ha_proto::PROTOCOL_VERSION,
        cluster_id: "test".into(),
        node_name: node_name.into(),
    };
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut sink = tokio::io::sink();
    runtime.block_on(gossip_ha::transfer::fetch_backup(
        addr,
        "db1",
        Some(identity),
        &request,
        &mut sink,
        |_| {},
        &stop,
    ))
}

#[test]
fn a_backup_goes_only_to_a_db_certificate_that_names_the_asking_node() {
    let port = free_port();
    let config = move |db: &MariaDb| {
        if db.name == "db1" {
            format!("[db]\ntransfer_port = {port}\n")
        } else {
            String::new()
        }
    };
    let cluster = wait_formed(Cluster::start_tls(2, false, config));
    let runtime = tokio::runtime::Runtime::new().unwrap();

    let console = identity(&cluster, LIAR, grants(&[Role::Console], true));
    let refused = fetch(&runtime, port, &console, LIAR).unwrap_err();
    assert!(refused.contains("grants console, admin, not db"), "{refused}");
    // The name in the request is checked against the certificate: no borrowing db2's.
    let refused = fetch(&runtime, port, &console, "db2").unwrap_err();
    assert!(refused.contains("not db"), "{refused}");

    let db3 = identity(&cluster, "db3", grants(&[Role::Db, Role::Console], false));
    let refused = fetch(&runtime, port, &db3, "db2").unwrap_err();
    assert!(refused.contains("the certificate is for another node"), "{refused}");
    let refusals: Vec<_> = cluster
        .agent("db1")
        .events()
        .into_iter()
        .filter(|event| event.reason.contains("backup for") && event.reason.contains("not sent"))
        .collect();
    assert_eq!(refusals.len(), 3, "{refusals:?}");
}

/// `check-config` and `run` with the TLS files of `spec`, on loopback; returns (exit code,
/// stderr) of each and how long `run` took to give up.
fn start_up(spec: &AgentSpec) -> Vec<(String, i32, String, Duration)> {
    ["check-config", "run"]
        .into_iter()
        .map(|command| {
            let mut args: Vec<String> = [command, "--node-name", &spec.name, "--roles", &spec.roles]
                .iter()
                .map(|arg| arg.to_string())
                .collect();
            args.extend(["--listen".into(), format!("127.0.0.1:{}", free_port())]);
            args.extend(spec.extra.iter().cloned());
            let started = std::time::Instant::now();
            let arguments: Vec<&str> = args.iter().map(String::as_str).collect();
            let output = cli(&arguments);
            let stderr = String::from_utf8_lossy(&output.stderr).to_string();
            (
                command.to_string(),
                output.status.code().unwrap_or(-1),
                stderr,
                started.elapsed(),
            )
        })
        .collect()
}

fn set_flag(spec: &mut AgentSpec, flag: &str, value: &str) {
    let at = spec.extra.iter().position(|arg| arg == flag).unwrap();
    spec.extra[at + 1] = value.to_string();
}

#[test]
fn check_config_refuses_what_run_refuses_naming_the_file_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    gossip_ha::tls::certs::init_ca(&ca, "test", false).unwrap();
    let server_spec = |name: &str| AgentSpec::new(name, 1, 1.0);

    // A certificate that grants console, for an agent configured as a Pandora server.
    let console = server_spec("srv1").with_tls_grants(dir.path(), &ca, grants(&[Role::Console], true));
    // A CA path that never ends: refused at once, not read forever.
    let mut endless_ca = server_spec("srv2").with_tls(dir.path(), &ca);
    set_flag(&mut endless_ca, "--tls-ca", "/dev/zero");
    // A key readable by others.
    let exposed = server_spec("srv3").with_tls(dir.path(), &ca);
    let key = exposed.extra[exposed.extra.iter().position(|arg| arg == "--tls-key").unwrap() + 1].clone();
    let cases: [(&AgentSpec, &[&str]); 2] = [
        (
            &console,
            &[
                "cert.pem",
                "grants console, admin, not server",
                "--role server",
                "--renew",
            ],
        ),
        (&endless_ca, &["/dev/zero", "not a regular file"]),
    ];
    for (spec, expected) in cases {
        for (command, code, stderr, took) in start_up(spec) {
            assert_eq!(code, 2, "{command}: {stderr}");
            for fragment in expected {
                assert!(stderr.contains(fragment), "{command}: `{fragment}` in {stderr}");
            }
            assert!(took < Duration::from_secs(5), "{command} took {took:?}");
        }
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    for (command, code, stderr, _) in start_up(&exposed) {
        assert_eq!(code, 2, "{command}: {stderr}");
        assert!(
            stderr.contains("readable by others") && stderr.contains("chmod 600"),
            "{command}: {stderr}"
        );
    }
}

fn alive_in(agent: &Agent, name: &str) -> bool {
    agent
        .try_status()
        .is_some_and(|report| state_of(&report, name) == Some(NodeLiveness::Alive))
}

fn hang_up(agent: &Agent) {
    let pid = nix::unistd::Pid::from_raw(agent.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
}

#[test]
fn a_new_ca_and_a_renewed_certificate_are_taken_on_sighup_without_losing_a_peer() {
    use gossip_ha::tls::certs::{init_ca, issue, HostKey, HostRequest};
    let dir = tempfile::tempdir().unwrap();
    let (old_ca, new_ca) = (dir.path().join("ca"), dir.path().join("ca-new"));
    init_ca(&old_ca, "test", false).unwrap();
    init_ca(&new_ca, "test", false).unwrap();
    let n1 = AgentSpec::new("n1", 2, 1.0).with_tls(dir.path(), &old_ca);
    let mut n2 = AgentSpec::new("n2", 1, 1.0).with_tls(dir.path(), &old_ca);
    n2.seeds = vec![n1.port];
    let agents = [Agent::start(dir.path(), &n1), Agent::start(dir.path(), &n2)];
    wait_until("n1 and n2 to see each other", Duration::from_secs(10), || {
        alive_in(&agents[0], "n2") && alive_in(&agents[1], "n1")
    });

    // Rotation, step 1: every host trusts both CAs; a host with a certificate of the new CA
    // joins. Until the agents reload, they refuse it.
    let bundle = [&old_ca, &new_ca]
        .map(|ca| std::fs::read_to_string(ca.join("ca.pem")).unwrap())
        .concat();
    let trust_both = |name: &str| {
        gossip_ha::fsutil::write_atomic(&dir.path().join(format!("certs-{name}/ca.pem")), bundle.as_bytes()).unwrap()
    };
    let mut n3 = AgentSpec::new("n3", 0, 1.0).with_tls(dir.path(), &new_ca);
    n3.seeds = vec![n1.port];
    ["n1", "n2", "n3"].into_iter().for_each(trust_both);
    let joined = Agent::start(dir.path(), &n3);
    wait_until(
        "n1 to refuse n3's certificate of the new CA",
        Duration::from_secs(10),
        || {
            agents[0]
                .events()
                .iter()
                .any(|event| event.kind == EventKind::PeerRefused && event.reason.contains("invalid peer certificate"))
        },
    );
    assert!(!alive_in(&agents[0], "n3"), "n1 trusted the new CA before it reloaded");
    eprintln!("DEBUG {:#?}", agents[0].events());
    agents.iter().for_each(hang_up);
    wait_until("n1 and n2 to hear n3", Duration::from_secs(10), || {
        alive_in(&agents[0], "n3") && alive_in(&agents[1], "n3")
    });

    // Step 2: n1's certificate renewed by the new CA with the same key, picked up on SIGHUP.
    let request =
        HostRequest::valid_for_days("n1", vec!["127.0.0.1".parse().unwrap()], vec![], 7).with_grants(Grants {
            roles: [Role::Server].into_iter().collect(),
            admin: true,
        });
    issue(&new_ca, &request, &dir.path().join("certs-n1"), HostKey::Keep, false).unwrap();
    trust_both("n1");
    hang_up(&agents[0]);
    wait_until("n1 to reload its renewed certificate", Duration::from_secs(5), || {
        agents[0]
            .events()
            .iter()
            .filter(|event| event.kind == EventKind::IdentityReloaded)
            .count()
            == 2
    });
    std::thread::sleep(Duration::from_secs(3));
    for (agent, peers) in [
        (&agents[0], ["n2", "n3"]),
        (&agents[1], ["n1", "n3"]),
        (&joined, ["n1", "n2"]),
    ] {
        for peer in peers {
            assert!(
                alive_in(agent, peer),
                "{} lost {peer}:\n{}",
                agent.name,
                agent.log_text()
            );
        }
        let events = agent.events();
        assert!(
            events
                .iter()
                .all(|event| !matches!(event.kind, EventKind::NodeDown | EventKind::NodeRestarted)),
            "{}: a rotation is no failover: {events:#?}",
            agent.name
        );
    }
}

/// The liar gossips a whole state under db1's name: a newer generation, db1's real (public)
/// certificate, a primary claim with a huge epoch, sealed with the liar's own key.
async fn start_impostor(liar: TlsIdentity, cluster: &Cluster) -> Gossip {
    use base64::Engine;
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(cluster.dir.path().join("certs-db1/cert.pem")).unwrap();
    let db1_cert = rustls::pki_types::CertificateDer::from_pem_slice(&pem).unwrap();
    let port = free_port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let generation = gossip_ha::clock::unix_ms();
    let params = GossipParams {
        node_name: "db1".into(),
        cluster_id: "test".into(),
        listen: addr,
        advertise: addr,
        seeds: vec![format!("127.0.0.1:{}", cluster.specs[1].port)],
        threshold_ms: 1_000,
        generation,
        certificate: Some(base64::engine::general_purpose::STANDARD.encode(db1_cert.as_ref())),
        rounds: Default::default(),
    };
    let announcement = Announcement {
        roles: [Role::Db].into_iter().collect(),
        master: 0,
        threshold_ms: 1_000,
        started_unix_ms: 0,
    };
    let signing_key = liar.signing_key.clone();
    let refusals: RefusalSink = Arc::new(|_, _| {});
    let transport = TlsTransport::new(IdentityHandle::new(liar), "test", LIAR, addr, refusals, &params.seeds);
    let gossip = Gossip::start(&params, &announcement, &transport, Authority::default())
        .await
        .expect("the impostor's gossip starts");
    gossip.set_keys(&[(KEY_DB, forged_primary_claim())]).await.unwrap();
    // Sealed as well as the liar can: with its own key, over db1's keys as it gossips them.
    let mut keys: Vec<(String, String)> = announcement.to_key_values();
    keys.push((
        gossip_ha_proto::gossip::KEY_CERT.into(),
        params.certificate.clone().unwrap(),
    ));
    keys.push((KEY_DB.into(), forged_primary_claim()));
    let pairs = keys.iter().map(|(key, value)| (key.as_str(), value.as_str()));
    let message = gossip_ha::tls::seal::message("db1", generation, 1, pairs);
    let seal = gossip_ha::tls::seal::sign(signing_key.as_ref(), 1, &message).unwrap();
    gossip
        .set_keys(&[(gossip_ha_proto::gossip::KEY_SEAL, seal)])
        .await
        .unwrap();
    gossip
}

#[test]
fn a_member_cannot_forge_another_nodes_state_with_its_public_certificate() {
    let cluster = wait_formed(Cluster::start_tls(2, true, |_| String::new()));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let liar = identity(&cluster, LIAR, grants(&[Role::Console], false));
    let impostor = runtime.block_on(start_impostor(liar, &cluster));
    cluster.wait("db2 to refuse the forged db1", Duration::from_secs(15), |c| {
        has_event(
            c.agent("db2"),
            EventKind::PeerIgnored,
            "not heard at all: its seal does not verify",
        )
    });
    std::thread::sleep(Duration::from_secs(3));
    let real_db1 = cluster.db("db1").advertise();
    for observer in ["db2", "srv"] {
        let report = cluster.agent(observer).status();
        assert_eq!(report.db_primary.as_deref(), Some("db1"), "{observer}: {report:?}");
        let db1 = db_of(&report, "db1").unwrap();
        assert_eq!(
            (db1.epoch < 1_000, db1.advertise.as_str()),
            (true, real_db1.as_str()),
            "{observer}"
        );
    }
    assert!(replicating_from(
        &cluster.agent("db2").status(),
        "db2",
        cluster.db("db1")
    ));
    runtime.block_on(impostor.shutdown());
}
