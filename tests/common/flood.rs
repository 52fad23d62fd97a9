//! Idle floods without any certificate, shared by `tests/floods.rs` and `benches/floods.rs`:
//! connections held open on the transfer port, on a gossip port (from many loopback source
//! addresses, reconnecting when closed) and on the status socket (as other users). Everything
//! started here stops on drop; every wait is bounded.

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::IntoRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use gossip_ha::tls::certs::init_ca;
use gossip_ha_proto::api::EventKind;

use super::{alive_names, wait_until, Agent, AgentSpec, BINARY};

/// systemd's default soft limit, which the transfer flood exhausted.
pub const SYSTEMD_DEFAULT_NOFILE: u64 = 1024;

/// The group of the users the socket flood runs as.
pub const NOGROUP: u32 = 65534;

/// This process holds the flood's connections: its soft limit goes up to the hard one.
pub fn raise_own_open_files() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
}

/// Sets the open-file limit of the running process `pid` (soft and hard) with `prlimit`.
pub fn limit_open_files(pid: u32, limit: u64) {
    let mut prlimit = Command::new("prlimit");
    prlimit.args(["--pid", &pid.to_string(), &format!("--nofile={limit}:{limit}")]);
    let output = bounded_output(prlimit, Duration::from_secs(10));
    assert!(
        output.status.success(),
        "prlimit: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs `command` to its end within `timeout`, killed otherwise.
pub fn bounded_output(mut command: Command, timeout: Duration) -> Output {
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

/// A temporary directory holding a fresh cluster CA (in `ca`).
pub fn tls_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    init_ca(&ca, "test", false).unwrap();
    (dir, ca)
}

/// A DB agent over TLS serving backups on `transfer_port`; its database is not there, which
/// the transfer port does not need to turn strangers away.
pub fn transfer_agent(dir: &Path, ca: &Path, transfer_port: u16) -> AgentSpec {
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

/// Two TLS agents, `a` (master 1) and `b` (master 2), each listing the other as a seed, as every
/// host of a cluster does, started and seeing each other: their specs (to start one again) and
/// the agents.
pub fn start_seeded_pair(dir: &Path, ca: &Path) -> (AgentSpec, AgentSpec, Agent, Agent) {
    let mut a = AgentSpec::new("a", 1, 1.0).with_tls(dir, ca);
    let mut b = AgentSpec::new("b", 2, 1.0).with_tls(dir, ca);
    (a.seeds, b.seeds) = (vec![b.port], vec![a.port]);
    let agent_a = Agent::start(dir, &a);
    let agent_b = Agent::start(dir, &b);
    wait_until("a and b to see each other", Duration::from_secs(15), || {
        alive_names(&agent_a.status()) == ["a", "b"] && alive_names(&agent_b.status()) == ["a", "b"]
    });
    (a, b, agent_a, agent_b)
}

/// Waits (bounded) until `agent` has reported refusing a connection from a flood address
/// (127.0.0.2 on), that is until the gossip flood is on.
pub fn wait_for_gossip_flood_refused(agent: &Agent) {
    wait_until("the flood to be refused", Duration::from_secs(20), || {
        agent.events().iter().any(|event| {
            event.kind == EventKind::PeerRefused
                && event
                    .node
                    .as_deref()
                    .is_some_and(|peer| peer.starts_with("127.0.0.") && peer != "127.0.0.1")
        })
    });
}

/// Up to `count` connections to `target`; gives up after a few in a row fail.
pub fn idle_connections(target: SocketAddr, count: usize) -> Vec<TcpStream> {
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

/// `connections` connections to a gossip port from `sources` loopback addresses (127.0.0.2 on),
/// each sending one byte and then nothing; each is opened again as soon as the agent closes it.
/// Stopped and closed on drop.
pub struct GossipFlood {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl GossipFlood {
    pub fn start(port: u16, connections: usize, sources: u8) -> GossipFlood {
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

/// `sleep` running as `uid` (group nogroup) and holding `count` connections to `socket`
/// that never send a byte; killed on drop.
pub struct IdleConnections(Child);

impl IdleConnections {
    pub fn open(socket: &Path, uid: u32, count: usize) -> IdleConnections {
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

/// An agent whose socket is open to the group nogroup (readers): `dir` is made 0755 so that other
/// users reach the socket in it.
pub fn socket_agent(dir: &Path) -> AgentSpec {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.join("agent.toml");
    std::fs::write(&config, "socket_group = \"nogroup\"\n").unwrap();
    let mut spec = AgentSpec::new("guarded", 1, 1.0);
    spec.extra.extend(["--config".into(), config.display().to_string()]);
    spec
}

/// The readers of the socket flood: uids that are not admins.
pub const READER_UIDS: std::ops::RangeInclusive<u32> = 60_001..=60_008;

/// 72 idle connections to `socket` from eight readers, nine each: one more than a reader's cap.
pub fn readers_holding(socket: &Path) -> Vec<IdleConnections> {
    READER_UIDS.map(|uid| IdleConnections::open(socket, uid, 9)).collect()
}

/// The CLI as `uid` (group nogroup, no other groups).
pub fn cli_as(uid: u32, args: &[&str]) -> Output {
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
