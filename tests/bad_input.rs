//! Bad input of every kind gets a clear error; the agent keeps running where it should.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::*;

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn status_with_no_agent_fails_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("nobody.sock");
    let output = cli(&["status", "--socket", socket.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = stderr_of(&output);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("no agent answers on") && stderr.contains("nobody.sock"),
        "{stderr}"
    );
}

#[test]
fn bad_configuration_is_refused_with_exit_2_and_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let malformed = dir.path().join("malformed.toml");
    std::fs::write(&malformed, "node_name = \"x\"\nroles = [\"server\"\n").unwrap();
    let master_nine = dir.path().join("master.toml");
    std::fs::write(&master_nine, "node_name = \"x\"\nmaster = 9\n").unwrap();
    let socket = dir.path().join("a.sock");
    let socket = socket.to_str().unwrap();
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["run", "--config", malformed.to_str().unwrap()],
            &["malformed.toml", "line 2"],
        ),
        (
            &["run", "--config", master_nine.to_str().unwrap()],
            &["master.toml:2", "key `master`", "0 to 7"],
        ),
        (
            &["run", "--socket", socket, "--master", "9"],
            &["flag --master", "0 to 7"],
        ),
        (
            &["run", "--socket", socket, "--server-threshold", "-1"],
            &["flag --server-threshold", "between 0.1 and 3600"],
        ),
        (
            &["run", "--socket", socket, "--roles", "server,witch"],
            &["flag --roles", "unknown role `witch`"],
        ),
        (
            &["check-config", "--listen", "nowhere"],
            &["flag --listen", "expected ip:port"],
        ),
        (&["run", "--no-such-flag"], &["--no-such-flag"]),
    ];
    for (args, expected) in cases {
        let output = cli(args);
        let stderr = stderr_of(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        for fragment in *expected {
            assert!(
                stderr.contains(fragment),
                "{args:?}: expected `{fragment}` in: {stderr}"
            );
        }
    }
    assert!(
        !std::path::Path::new(socket).exists(),
        "a refused start must not leave a socket"
    );
}

#[test]
fn check_config_prints_effective_values_with_passwords_masked() {
    let dir = tempfile::tempdir().unwrap();
    let pandora = dir.path().join("pandora_server.conf");
    std::fs::write(
        &pandora,
        "master 4\nserver_threshold 5\ndbpass hunter2\nha_hosts 127.0.0.1\n",
    )
    .unwrap();
    // As an operator keeps a file holding a password: not readable by every user.
    std::fs::set_permissions(&pandora, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let output = cli(&[
        "check-config",
        "--node-name",
        "x",
        "--pandora-server-conf",
        pandora.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert!(
        stdout.contains("master = 4") && stdout.contains("server_threshold = 5.0"),
        "{stdout}"
    );
    assert!(
        stdout.contains("password = \"********\"") && !stdout.contains("hunter2"),
        "{stdout}"
    );
}

fn exchange(stream: &mut UnixStream, request: &[u8]) -> serde_json::Value {
    // The agent may answer and close before an oversized request is fully written.
    let _ = stream.write_all(request);
    let mut line = String::new();
    BufReader::new(stream.try_clone().unwrap())
        .read_line(&mut line)
        .unwrap();
    serde_json::from_str(&line).unwrap_or_else(|err| panic!("answer `{line}` is not JSON: {err}"))
}

#[test]
fn the_socket_survives_garbage_unknown_commands_and_oversized_requests() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = AgentSpec::new("sock", 1, 1.0);
    spec.seeds = vec![free_port()]; // nobody listens there: an unreachable seed
    let mut agent = Agent::start(dir.path(), &spec);
    let mut stream = UnixStream::connect(&agent.socket).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();

    let answer = exchange(&mut stream, b"\xff\xfe garbage \x00\n");
    assert_eq!(answer["ok"], false);
    assert!(answer["error"].as_str().unwrap().starts_with("bad request"), "{answer}");
    let answer = exchange(&mut stream, b"{\"v\":1,\"cmd\":\"explode\"}\n");
    assert!(
        answer["error"].as_str().unwrap().contains("unknown variant `explode`"),
        "{answer}"
    );
    let answer = exchange(&mut stream, b"{\"v\":7,\"cmd\":\"status\"}\n");
    assert!(
        answer["error"].as_str().unwrap().contains("protocol version 7"),
        "{answer}"
    );
    // The same connection still serves a good request after the bad ones.
    let answer = exchange(&mut stream, b"{\"v\":1,\"cmd\":\"status\"}\n");
    assert_eq!(answer["ok"], true);
    assert_eq!(answer["status"]["self"], "sock");

    let mut oversized = UnixStream::connect(&agent.socket).unwrap();
    oversized.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let answer = exchange(&mut oversized, &vec![b'x'; 100_000]);
    assert!(answer["error"].as_str().unwrap().contains("longer than"), "{answer}");
    let mut rest = Vec::new();
    let _ = oversized.read_to_end(&mut rest);
    assert!(
        rest.is_empty(),
        "the agent closes a connection after an oversized request"
    );

    assert!(agent.is_running(), "log:\n{}", agent.log_text());
    assert_eq!(agent.status().nodes.len(), 1, "the unreachable seed is not a node");
}

#[test]
fn a_second_agent_on_a_live_socket_is_refused_and_a_stale_one_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let spec = AgentSpec::new("first", 1, 1.0);
    let _first = Agent::start(dir.path(), &spec);
    let socket = dir.path().join("first.sock");
    let output = cli(&[
        "run",
        "--node-name",
        "second",
        "--listen",
        &format!("127.0.0.1:{}", free_port()),
        "--socket",
        socket.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr_of(&output).contains("another agent is already listening on"),
        "{}",
        stderr_of(&output)
    );

    // A socket file that nobody listens on is left behind by a crash; the next start replaces it.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(stale.exists());
    let mut spec = AgentSpec::new("stale", 1, 1.0);
    spec.port = free_port();
    let agent = Agent::start(dir.path(), &spec);
    assert_eq!(agent.status().self_name, "stale");

    // A regular file in the socket's place is never removed.
    let regular = dir.path().join("regular.sock");
    std::fs::write(&regular, "precious").unwrap();
    let output = cli(&[
        "run",
        "--node-name",
        "r",
        "--listen",
        &format!("127.0.0.1:{}", free_port()),
        "--socket",
        regular.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr_of(&output).contains("is not a socket"), "{}", stderr_of(&output));
    assert_eq!(std::fs::read_to_string(&regular).unwrap(), "precious");
}

#[test]
fn sigterm_stops_the_agent_cleanly_and_removes_its_socket() {
    let dir = tempfile::tempdir().unwrap();
    let spec = AgentSpec::new("term", 1, 1.0);
    let mut agent = Agent::start(dir.path(), &spec);
    // Only an agent that answers has its signal handlers in place (on a loaded machine the
    // socket file can appear first).
    wait_until("the agent to answer", Duration::from_secs(10), || {
        agent.try_status().is_some()
    });
    let status = agent.terminate();
    assert!(status.success(), "exit status {status:?}; log:\n{}", agent.log_text());
    assert!(!agent.socket.exists());
    assert!(agent.log_text().contains("SIGTERM received"));
}

#[test]
fn the_example_configurations_are_valid() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/examples");
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "toml") {
            // Installed as an operator installs a file holding passwords: 0600 (git keeps no mode).
            let installed = dir.path().join(path.file_name().unwrap());
            std::fs::copy(&path, &installed).unwrap();
            std::fs::set_permissions(&installed, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
            let output = cli(&["check-config", "--config", installed.to_str().unwrap()]);
            assert!(output.status.success(), "{}: {}", path.display(), stderr_of(&output));
            checked += 1;
        }
    }
    assert!(
        checked >= 3,
        "expected the example configurations in {}",
        examples.display()
    );
}
