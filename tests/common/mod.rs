//! Harness for tests that run the real `gossip-ha` binary. Every process started here is killed
//! when its handle drops, so a failing assertion never leaves an agent behind; every wait has a
//! deadline.
#![allow(dead_code)]

pub mod claims;
pub mod db_cluster;
pub mod flood;
pub mod haproxy;
pub mod mariadb;
pub mod netns;
pub mod procfs;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use gossip_ha_proto::api::{Command as ApiCommand, Event, NodeLiveness, Response, StatusReport};

pub const BINARY: &str = env!("CARGO_BIN_EXE_gossip-ha");

/// A loopback port, free for TCP and UDP, that no other test process was given.
pub fn free_port() -> u16 {
    claims::port()
}

pub fn cli(args: &[&str]) -> Output {
    let mut child = Command::new(BINARY)
        .args(args)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start gossip-ha");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("gossip-ha {args:?} did not finish within 20 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

pub struct AgentSpec {
    pub name: String,
    pub port: u16,
    pub master: u8,
    pub threshold_seconds: f64,
    pub seeds: Vec<u16>,
    pub roles: String,
    /// More flags for `gossip-ha run` (DB settings, state directory, …).
    pub extra: Vec<String>,
    /// Where it listens (and is dialled): loopback, or a lab host's address.
    pub ip: String,
    /// The lab host (network namespace) it runs in, if any.
    pub netns: Option<String>,
    /// Seeds as addresses, for agents off loopback (`seeds` are loopback ports).
    pub seed_addrs: Vec<String>,
}

impl AgentSpec {
    pub fn new(name: &str, master: u8, threshold_seconds: f64) -> Self {
        AgentSpec {
            name: name.to_string(),
            port: free_port(),
            master,
            threshold_seconds,
            seeds: Vec::new(),
            roles: "server".into(),
            extra: Vec::new(),
            ip: "127.0.0.1".into(),
            netns: None,
            seed_addrs: Vec::new(),
        }
    }

    /// Issues this agent a certificate from the CA in `ca` (for its name and 127.0.0.1, into
    /// `dir/certs-NAME`), granting its roles and admin, and adds the `--tls-*` flags.
    pub fn with_tls(self, dir: &Path, ca: &Path) -> Self {
        let roles = self.roles.split(',').map(|role| role.trim().parse().unwrap()).collect();
        self.with_tls_grants(dir, ca, gossip_ha::core::authority::Grants { roles, admin: true })
    }

    /// `with_tls` with a certificate granting exactly `grants`, whatever the agent's roles.
    pub fn with_tls_grants(mut self, dir: &Path, ca: &Path, grants: gossip_ha::core::authority::Grants) -> Self {
        use gossip_ha::tls::certs::{issue, HostKey, HostRequest};
        let out = dir.join(format!("certs-{}", self.name));
        let request =
            HostRequest::valid_for_days(&self.name, vec![self.ip.parse().unwrap()], vec![], 30).with_grants(grants);
        issue(ca, &request, &out, HostKey::Generate, true).unwrap();
        for (flag, file) in [
            ("--tls-ca", "ca.pem"),
            ("--tls-cert", "cert.pem"),
            ("--tls-key", "key.pem"),
        ] {
            self.extra
                .extend([flag.to_string(), out.join(file).display().to_string()]);
        }
        self
    }

    /// An agent on a DB host whose database is `db`, probing it every 200 ms.
    pub fn for_db(name: &str, threshold_seconds: f64, db: &mariadb::MariaDb, priority: u8, state_dir: &Path) -> Self {
        AgentSpec {
            roles: "db".into(),
            master: 0,
            extra: vec![
                "--db-url".into(),
                db.admin_url(),
                "--db-advertise".into(),
                db.advertise(),
                "--db-priority".into(),
                priority.to_string(),
                "--repl-user".into(),
                mariadb::REPL_USER.into(),
                "--repl-password".into(),
                mariadb::REPL_PASSWORD.into(),
                "--db-check-interval".into(),
                "0.2".into(),
                "--state-dir".into(),
                state_dir.join(format!("state-{name}")).display().to_string(),
            ],
            // On loopback every agent gossips on 127.0.0.1, whatever address its server has.
            ip: if db.netns.is_some() {
                db.ip.clone()
            } else {
                "127.0.0.1".into()
            },
            netns: db.netns.clone(),
            ..AgentSpec::new(name, 0, threshold_seconds)
        }
    }
}

/// One running agent; SIGKILLed on drop if still running.
pub struct Agent {
    pub name: String,
    pub socket: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Agent {
    pub fn start(dir: &Path, spec: &AgentSpec) -> Agent {
        let socket = dir.join(format!("{}.sock", spec.name));
        let log = dir.join(format!("{}.log", spec.name));
        let mut seeds: Vec<String> = spec.seeds.iter().map(|port| format!("127.0.0.1:{port}")).collect();
        seeds.extend(spec.seed_addrs.iter().cloned());
        let mut args = vec![
            "run".to_string(),
            "--node-name".into(),
            spec.name.clone(),
            "--cluster-id".into(),
            "test".into(),
            "--listen".into(),
            format!("{}:{}", spec.ip, spec.port),
            "--master".into(),
            spec.master.to_string(),
            "--server-threshold".into(),
            spec.threshold_seconds.to_string(),
            "--roles".into(),
            spec.roles.clone(),
            "--socket".into(),
            socket.display().to_string(),
        ];
        if !seeds.is_empty() {
            args.push("--seeds".into());
            args.push(seeds.join(","));
        }
        args.extend(spec.extra.iter().cloned());
        Self::start_in(spec.netns.as_deref(), &spec.name, socket, log, &args)
    }

    pub fn start_with_args(name: &str, socket: PathBuf, log: PathBuf, args: &[String]) -> Agent {
        Self::start_in(None, name, socket, log, args)
    }

    /// `ip netns exec` replaces itself with the agent: the child is the agent process.
    pub fn start_in(netns: Option<&str>, name: &str, socket: PathBuf, log: PathBuf, args: &[String]) -> Agent {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut command = match netns {
            Some(netns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns, BINARY]);
                command
            }
            None => Command::new(BINARY),
        };
        let child = command
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("start gossip-ha run");
        let mut agent = Agent {
            name: name.to_string(),
            socket,
            log,
            child: Some(child),
        };
        agent.wait_for_socket();
        agent
    }

    fn wait_for_socket(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.try_status().is_none() {
            if !self.is_running() || Instant::now() > deadline {
                panic!(
                    "{} did not open its socket; log:
{}",
                    self.name,
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("agent running").id()
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait (bounded) for a clean exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("agent running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{} did not stop within 10 s of SIGTERM", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| child.try_wait().unwrap().is_none())
    }

    pub fn request(&self, command: ApiCommand) -> Option<Response> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime
            .block_on(gossip_ha::client::request(
                &self.socket,
                command,
                Duration::from_secs(2),
            ))
            .ok()
    }

    pub fn try_status(&self) -> Option<StatusReport> {
        self.request(ApiCommand::Status).and_then(|response| response.status)
    }

    pub fn status(&self) -> StatusReport {
        self.try_status()
            .unwrap_or_else(|| panic!("{} does not answer status; log:\n{}", self.name, self.log_text()))
    }

    pub fn events(&self) -> Vec<Event> {
        self.request(ApiCommand::Events { limit: None })
            .and_then(|response| response.events)
            .unwrap_or_default()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn state_of(report: &StatusReport, name: &str) -> Option<NodeLiveness> {
    report
        .nodes
        .iter()
        .find(|node| node.name == name)
        .map(|node| node.state)
}

/// The generation `report` shows for `name`; 0 when it shows no such node.
pub fn generation_of(report: &StatusReport, name: &str) -> u64 {
    report
        .nodes
        .iter()
        .find(|node| node.name == name)
        .map_or(0, |node| node.generation)
}

pub fn alive_names(report: &StatusReport) -> Vec<String> {
    let mut names: Vec<String> = report
        .nodes
        .iter()
        .filter(|node| node.state == NodeLiveness::Alive)
        .map(|node| node.name.clone())
        .collect();
    names.sort();
    names
}

/// Polls `condition` every 20 ms until it holds; panics naming `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    loop {
        if condition() {
            return started.elapsed();
        }
        if started.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A bench's `--runs N` argument, or `default`.
pub fn runs_arg(default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|arg| arg == "--runs")
        .and_then(|index| args.get(index + 1))
        .map(|value| value.parse().expect("--runs N"))
        .unwrap_or(default)
}
