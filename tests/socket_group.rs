//! `socket_group` works as shipped: the socket's directory lets the group in when the agent made
//! it or it is the runtime directory systemd made, and a caller turned away is told which path and
//! which group stop it. Callers run as a real second uid (`nobody`, 65534) through `setpriv`.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

const NOBODY: u32 = 65534;
const NOGROUP: u32 = 65534;
/// A group `nobody` is not in.
const ADM: u32 = 4;

/// Runs the CLI as `nobody`, with `groups` as its only groups (its primary one first).
fn as_nobody_in(groups: &[u32], args: &[&str]) -> Output {
    let primary = groups.first().copied().unwrap_or(NOGROUP);
    let supplementary: Vec<String> = groups.iter().map(u32::to_string).collect();
    let mut command = Command::new("/usr/bin/setpriv");
    command.args([format!("--reuid={NOBODY}"), format!("--regid={primary}")]);
    match supplementary.is_empty() {
        true => command.arg("--clear-groups"),
        false => command.arg(format!("--groups={}", supplementary.join(","))),
    };
    command.arg(BINARY).args(args);
    common::flood::bounded_output(command, Duration::from_secs(20))
}

fn needs_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root to act as another user"
    );
}

/// A temporary directory every user may enter, as /run is.
fn open_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn config_with(dir: &Path, text: &str) -> PathBuf {
    let config = dir.join("agent.toml");
    std::fs::write(&config, text).unwrap();
    config
}

/// `gossip-ha run` arguments for a lone agent on loopback.
fn run_args(name: &str, socket: &Path, config: &Path) -> Vec<String> {
    [
        "run",
        "--node-name",
        name,
        "--cluster-id",
        "test",
        "--listen",
        &format!("127.0.0.1:{}", free_port()),
        "--server-threshold",
        "1",
        "--socket",
        socket.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec()
}

fn assert_owned_by_group(path: &Path, gid: u32) {
    let metadata = std::fs::metadata(path).unwrap();
    assert_eq!(
        (metadata.mode() & 0o777, metadata.gid()),
        (0o750, gid),
        "{}",
        path.display()
    );
}

#[test]
fn a_member_reaches_the_socket_in_directories_the_agent_made() {
    needs_root();
    let dir = open_dir();
    let run = dir.path().join("run");
    let socket = run.join("gossip-ha").join("agent.sock");
    let config = config_with(dir.path(), "socket_group = \"nogroup\"\n");
    let args = run_args("made", &socket, &config);
    let _agent = Agent::start_with_args("made", socket.clone(), dir.path().join("made.log"), &args);

    assert_owned_by_group(&run, NOGROUP);
    assert_owned_by_group(&run.join("gossip-ha"), NOGROUP);
    let read = as_nobody_in(&[NOGROUP], &["status", "--socket", socket.to_str().unwrap()]);
    assert!(read.status.success(), "{}", String::from_utf8_lossy(&read.stderr));
}

/// An agent started as systemd starts it: `RuntimeDirectory=` made root:root 0750 and named in
/// `$RUNTIME_DIRECTORY`. Killed on drop.
struct UnitAgent(Child);

impl UnitAgent {
    fn start(runtime: &Path, args: &[String], log: &Path) -> UnitAgent {
        let log = std::fs::File::create(log).unwrap();
        let child = Command::new(BINARY)
            .args(args)
            .env("RUNTIME_DIRECTORY", runtime)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        UnitAgent(child)
    }
}

impl Drop for UnitAgent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_runtime_directory_systemd_made_is_given_to_the_group() {
    needs_root();
    let dir = open_dir();
    let runtime = dir.path().join("gossip-ha");
    std::fs::create_dir(&runtime).unwrap();
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o750)).unwrap();
    let socket = runtime.join("gossip-ha.sock");
    let config = config_with(dir.path(), "socket_group = \"nogroup\"\n");
    let log = dir.path().join("unit.log");
    let mut agent = UnitAgent::start(&runtime, &run_args("unit", &socket, &config), &log);

    let deadline = Instant::now() + Duration::from_secs(10);
    while !cli(&["status", "--socket", socket.to_str().unwrap()]).status.success() {
        assert!(
            agent.0.try_wait().unwrap().is_none(),
            "{}",
            std::fs::read_to_string(&log).unwrap()
        );
        assert!(Instant::now() < deadline, "no socket within 10 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_owned_by_group(&runtime, NOGROUP);
    let read = as_nobody_in(&[NOGROUP], &["status", "--socket", socket.to_str().unwrap()]);
    assert!(read.status.success(), "{}", String::from_utf8_lossy(&read.stderr));
}

#[test]
fn a_caller_turned_away_is_told_the_path_and_the_group() {
    needs_root();
    let dir = open_dir();
    // Not a member of `adm`, the socket group: the directory the agent made stops it.
    let socket = dir.path().join("closed").join("agent.sock");
    let config = config_with(dir.path(), "socket_group = \"adm\"\n");
    let args = run_args("closed", &socket, &config);
    let _agent = Agent::start_with_args("closed", socket.clone(), dir.path().join("closed.log"), &args);
    let refused = as_nobody_in(&[], &["status", "--socket", socket.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    let closed = dir.path().join("closed");
    for expected in [
        format!(
            "cannot reach the agent's socket {}: Permission denied",
            socket.display()
        ),
        format!("{} is root:adm", closed.display()),
        "members of group `adm` (the agent's `socket_group`)".into(),
        "usermod -aG adm".into(),
    ] {
        assert!(stderr.contains(&expected), "expected `{expected}` in: {stderr}");
    }
    let member = as_nobody_in(&[NOGROUP, ADM], &["status", "--socket", socket.to_str().unwrap()]);
    assert!(member.status.success(), "{}", String::from_utf8_lossy(&member.stderr));
}

#[test]
fn a_member_stopped_by_the_operators_directory_is_told_which_and_the_agent_warns() {
    needs_root();
    let dir = open_dir();
    // A directory the operator made root:root 0750: not the agent's to change.
    let private = dir.path().join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o750)).unwrap();
    let socket = private.join("agent.sock");
    let config = config_with(dir.path(), "socket_group = \"nogroup\"\n");
    let args = run_args("private", &socket, &config);
    let agent = Agent::start_with_args("private", socket.clone(), dir.path().join("private.log"), &args);
    assert_eq!(
        std::fs::metadata(&private).unwrap().gid(),
        0,
        "left as the operator made it"
    );
    assert!(
        agent
            .log_text()
            .contains("members of socket_group (gid 65534) cannot reach the socket"),
        "{}",
        agent.log_text()
    );

    let refused = as_nobody_in(&[NOGROUP], &["status", "--socket", socket.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    for expected in [
        format!(
            "cannot reach the agent's socket {}: Permission denied",
            socket.display()
        ),
        format!("its directory {} is root:root, mode 750", private.display()),
        "`socket_group`".into(),
        format!("chgrp GROUP {}", private.display()),
    ] {
        assert!(stderr.contains(&expected), "expected `{expected}` in: {stderr}");
    }
}
