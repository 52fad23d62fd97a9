//! Idle floods without any certificate against the real binary: the transfer port, the gossip
//! listener and the status socket. After each the agent still answers `status`, its peers are
//! heard, refusals are a handful of events, and its memory stays bounded. The floods run one at
//! a time: each takes a thousand descriptors and, for the gossip one, a core.

mod common;

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::IntoRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::procfs::rss_kib;
use common::*;
use gossip_ha::tls::certs::init_ca;
use gossip_ha_proto::api::{EventKind, NodeLiveness};

static ONE_FLOOD_AT_A_TIME: Mutex<()> = Mutex::new(());

const RSS_GROWTH_LIMIT_KIB: u64 = 64 * 1024;
/// systemd's default soft limit, which the transfer flood exhausted.
const SYSTEMD_DEFAULT_NOFILE: u64 = 1024;

fn one_flood_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_FLOOD_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// This test process holds the flood's connections: its soft limit goes up to the hard one.
fn raise_own_open_files() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
}

fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |entries| entries.count())
}

/// Runs `command` to its end within `timeout`, killed otherwise.
fn bounded_output(mut command: Command, timeout: Duration) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the command");
    let deadline = Instant::now() + timeout;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn tls_dir() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    init_ca(&ca, "test", false).unwrap();
    (dir, ca)
}

/// A DB agent over TLS serving backups on `transfer_port`; its database is not there, which
/// the transfer port does not need to turn strangers away.
fn transfer_agent(dir: &Path, ca: &Path, transfer_port: u16) -> AgentSpec {
    let config = dir.join("transfer.toml");
    std::fs::write(&config, format!("[db]\ntransfer_port = {transfer_port}\n")).unwrap();
    let db = AgentSpec {
        roles: "db".into(),
        ..AgentSpec::new("db1", 0, 1.0)
    };
    let mut spec = db.with_tls(dir, ca);
    spec.extra.extend(
        [
            "--config",
            config.to_str().unwrap(),
            "--db-url",
            "mysql://root:unused@127.0.0.1:1/",
            "--db-advertise",
            "127.0.0.1:1",
            "--repl-user",
            "repl",
            "--repl-password",
            "unused",
            "--state-dir",
            dir.join("state-db1").to_str().unwrap(),
        ]
        .map(String::from),
    );
    spec
}

/// Up to `count` connections to `target`; gives up after a few in a row fail.
fn idle_connections(target: SocketAddr, count: usize) -> Vec<TcpStream> {
    let mut opened = Vec::with_capacity(count);
    let mut failures_in_a_row = 0;
    while opened.len() < count && failures_in_a_row < 5 {
        match TcpStream::connect_timeout(&target, Duration::from_secs(2)) {
            Ok(stream) => {
                opened.push(stream);
                failures_in_a_row = 0;
            }
            Err(_) => failures_in_a_row += 1,
        }
    }
    opened
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
    let limit = format!("--nofile={SYSTEMD_DEFAULT_NOFILE}:{SYSTEMD_DEFAULT_NOFILE}");
    let mut prlimit = Command::new("prlimit");
    prlimit.args(["--pid", &agent.pid().to_string(), &limit]);
    assert!(bounded_output(prlimit, Duration::from_secs(10)).status.success());
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
    let after_kib = rss_kib(agent.pid());
    assert!(
        after_kib < before_kib + RSS_GROWTH_LIMIT_KIB,
        "memory grew from {before_kib} KiB to {after_kib} KiB"
    );
}

/// A thousand connections to a gossip port from `sources` loopback addresses, each sending one
/// byte and then nothing; each is opened again as soon as the agent closes it. Stopped and
/// closed on drop.
struct GossipFlood {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl GossipFlood {
    fn start(port: u16, connections: usize, sources: u8) -> GossipFlood {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            // One thread: the flood takes at most one core from the agents.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                for index in 0..connections {
                    let source = IpAddr::from([127, 0, 0, 2 + (index % sources as usize) as u8]);
                    tokio::spawn(hold_open(source, SocketAddr::from(([127, 0, 0, 1], port))));
                }
                let _ = stopped.await;
            });
        });
        GossipFlood {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

async fn hold_open(source: IpAddr, target: SocketAddr) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        let Ok(socket) = tokio::net::TcpSocket::new_v4() else {
            return;
        };
        let connected = match socket.bind(SocketAddr::new(source, 0)) {
            Ok(()) => tokio::time::timeout(Duration::from_secs(2), socket.connect(target)).await,
            Err(_) => return,
        };
        match connected {
            Ok(Ok(mut stream)) => {
                // The first byte of a TLS record, then nothing: a handshake begun and left.
                let _ = stream.write_all(&[0x16]).await;
                // Until the agent closes it (or a minute passes): then at once again, as an
                // attacker keeping a thousand connections open would.
                let mut byte = [0u8; 1];
                let _ = tokio::time::timeout(Duration::from_secs(60), stream.read(&mut byte)).await;
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

impl Drop for GossipFlood {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn a_restarted_peer_is_heard_again_through_a_gossip_port_flood() {
    let _flood = one_flood_at_a_time();
    raise_own_open_files();
    let (dir, ca) = tls_dir();
    let mut a = AgentSpec::new("a", 1, 1.0).with_tls(dir.path(), &ca);
    let mut b = AgentSpec::new("b", 2, 1.0).with_tls(dir.path(), &ca);
    // Each lists the other as a seed, as every host of a cluster does.
    (a.seeds, b.seeds) = (vec![b.port], vec![a.port]);
    let agent_a = Agent::start(dir.path(), &a);
    let mut agent_b = Agent::start(dir.path(), &b);
    wait_until("a and b to see each other", Duration::from_secs(15), || {
        alive_names(&agent_a.status()) == ["a", "b"] && alive_names(&agent_b.status()) == ["a", "b"]
    });
    let first_generation = generation_of(&agent_a, "b");
    let before_kib = rss_kib(agent_a.pid());

    // 1,000 connections from 250 addresses, four each: per-source caps alone would let them
    // fill every slot; the slots kept for known peers must hold.
    let _flood = GossipFlood::start(a.port, 1_000, 250);
    wait_until("the flood to be refused", Duration::from_secs(20), || {
        agent_a.events().iter().any(|event| {
            event.kind == EventKind::PeerRefused
                && event
                    .node
                    .as_deref()
                    .is_some_and(|peer| peer.starts_with("127.0.0.") && peer != "127.0.0.1")
        })
    });
    agent_b.kill();
    wait_until("a to see b down", Duration::from_secs(15), || {
        state_of(&agent_a.status(), "b") != Some(NodeLiveness::Alive)
    });
    agent_b = Agent::start(dir.path(), &b);
    wait_until("a to hear the restarted b", Duration::from_secs(15), || {
        let report = agent_a.status();
        state_of(&report, "b") == Some(NodeLiveness::Alive) && generation_of(&agent_a, "b") > first_generation
    });
    wait_until("b to hear a", Duration::from_secs(15), || {
        alive_names(&agent_b.status()) == ["a", "b"]
    });
    let after_kib = rss_kib(agent_a.pid());
    assert!(
        after_kib < before_kib + RSS_GROWTH_LIMIT_KIB,
        "memory grew from {before_kib} KiB to {after_kib} KiB"
    );
}

fn generation_of(agent: &Agent, name: &str) -> u64 {
    let report = agent.status();
    report
        .nodes
        .iter()
        .find(|node| node.name == name)
        .map_or(0, |node| node.generation)
}

const NOGROUP: u32 = 65534;

/// `sleep` running as `uid` (group nogroup) and holding `count` connections to `socket`
/// that never send a byte; killed on drop.
struct IdleConnections(Child);

impl IdleConnections {
    fn open(socket: &Path, uid: u32, count: usize) -> IdleConnections {
        let socket = socket.to_path_buf();
        let mut command = Command::new("sleep");
        command.arg("120").stdin(Stdio::null());
        // SAFETY: after fork, only system calls on this child's own credentials and sockets.
        unsafe {
            command.pre_exec(move || {
                use nix::unistd::{setgid, setgroups, setuid, Gid, Uid};
                setgroups(&[Gid::from_raw(NOGROUP)])?;
                setgid(Gid::from_raw(NOGROUP))?;
                setuid(Uid::from_raw(uid))?;
                for _ in 0..count {
                    let fd = std::os::unix::net::UnixStream::connect(&socket)?.into_raw_fd();
                    // Kept across exec: `sleep` holds them.
                    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()))?;
                }
                Ok(())
            });
        }
        IdleConnections(command.spawn().expect("open idle connections as another user"))
    }
}

impl Drop for IdleConnections {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The CLI as `uid` (group nogroup, no other groups).
fn cli_as(uid: u32, args: &[&str]) -> Output {
    let mut command = Command::new("setpriv");
    command
        .args([
            &format!("--reuid={uid}"),
            &format!("--regid={NOGROUP}"),
            "--clear-groups",
            BINARY,
        ])
        .args(args)
        .env("NO_COLOR", "1");
    bounded_output(command, Duration::from_secs(20))
}

#[test]
fn idle_socket_connections_from_readers_leave_root_answered_and_readers_told_busy() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root to act as other users"
    );
    let _flood = one_flood_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, "socket_group = \"nogroup\"\n").unwrap();
    let mut spec = AgentSpec::new("guarded", 1, 1.0);
    spec.extra.extend(["--config".into(), config.display().to_string()]);
    let agent = Agent::start(dir.path(), &spec);
    let socket = agent.socket.to_str().unwrap();
    let before_kib = rss_kib(agent.pid());

    // 72 idle connections from eight readers (uids that are not admins), nine each.
    let _idle: Vec<IdleConnections> = (60_001..=60_008)
        .map(|uid| IdleConnections::open(&agent.socket, uid, 9))
        .collect();

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
    let after_kib = rss_kib(agent.pid());
    assert!(
        after_kib < before_kib + RSS_GROWTH_LIMIT_KIB,
        "memory grew from {before_kib} KiB to {after_kib} KiB"
    );
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
