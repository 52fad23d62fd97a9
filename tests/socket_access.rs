//! The local socket is 0660: members of `socket_group` may read; only root, the agent's own
//! user and `admin_group` may change anything (checked with SO_PEERCRED).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::*;

/// Runs the CLI as `nobody:nogroup` (uid/gid 65534) with no other groups.
fn as_nobody(args: &[&str]) -> std::process::Output {
    let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"]
        .into_iter()
        .find(|path| std::path::Path::new(path).exists())
        .expect("setpriv (util-linux) is needed to run a command as another user");
    Command::new(setpriv)
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", BINARY])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn readers_may_read_and_only_admins_may_change() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root to act as another user"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut spec = AgentSpec::new("guarded", 1, 1.0);
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, "socket_group = \"nogroup\"\n").unwrap();
    spec.extra.extend(["--config".into(), config.display().to_string()]);
    let agent = Agent::start(dir.path(), &spec);
    let socket = agent.socket.to_str().unwrap();
    let metadata = std::fs::metadata(&agent.socket).unwrap();
    assert_eq!(metadata.permissions().mode() & 0o777, 0o660);
    assert_eq!(std::os::unix::fs::MetadataExt::gid(&metadata), 65534);

    let read = as_nobody(&["status", "--socket", socket, "--json"]);
    assert!(read.status.success(), "{}", String::from_utf8_lossy(&read.stderr));
    let change = as_nobody(&["maintenance", "on", "--socket", socket]);
    assert_eq!(change.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&change.stderr);
    assert!(
        stderr.contains("permission denied") && stderr.contains("admin_group"),
        "{stderr}"
    );

    // Root passes the check; this node has no database, and the agent says so.
    let as_root = cli(&["maintenance", "on", "--socket", socket]);
    let stderr = String::from_utf8_lossy(&as_root.stderr);
    assert!(stderr.contains("no `db` role"), "{stderr}");
    assert!(agent.events().iter().all(|event| !event.reason.contains("maintenance")));
}

#[test]
fn outside_the_socket_group_nobody_can_even_connect() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let agent = Agent::start(dir.path(), &AgentSpec::new("closed", 1, 1.0));
    let read = as_nobody(&["status", "--socket", agent.socket.to_str().unwrap()]);
    assert_eq!(read.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&read.stderr).contains("Permission denied"));
}
