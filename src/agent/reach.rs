//! The reachability check behind the `db_reach` gossip key: every agent checks that it can reach
//! each known DB node's host, so a promoting candidate can tell an old primary that is gone from
//! one that only it has lost sight of (DESIGN §2's fencing, where the fence cannot reach).
//!
//! The check never touches mysqld: a connection opened and closed without a handshake is an
//! aborted connect to MariaDB and MySQL, logged as a warning each time and, from a host whose
//! address resolves to a name, counted against `max_connect_errors` until the server blocks that
//! host — Pandora's own connections from it included. Instead it opens a TCP connection to the
//! agent port on the database's address: the agent's TLS listener takes it (and lets a connection
//! that closes without a byte go quietly); a refusal comes from the host's kernel, so it proves
//! the host is reachable too. A timeout or a network error is "not reached".

use std::io::ErrorKind;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::address::split_host_port;

/// DB nodes checked at most per round; a Pandora cluster has a handful.
const MAX_TARGETS: usize = 64;

pub struct ReachProber {
    targets: watch::Sender<Vec<(String, String)>>,
    reached: watch::Receiver<Vec<String>>,
    task: JoinHandle<()>,
}

/// The address the check dials for a DB node: its database's host, at its agent's port (the
/// path database clients take, to a port that is not mysqld's).
pub fn check_address(database: &str, gossip: &str) -> Option<String> {
    let (host, _) = split_host_port(database)?;
    let (_, agent_port) = split_host_port(gossip)?;
    Some(if host.contains(':') {
        format!("[{host}]:{agent_port}")
    } else {
        format!("{host}:{agent_port}")
    })
}

impl ReachProber {
    /// Checks every `interval`, each connection bounded by `timeout`.
    pub fn spawn(interval: Duration, timeout: Duration, stop: watch::Receiver<bool>) -> ReachProber {
        let (targets_tx, targets_rx) = watch::channel(Vec::new());
        let (reached_tx, reached_rx) = watch::channel(Vec::new());
        let task = tokio::spawn(run(interval, timeout, targets_rx, reached_tx, stop));
        ReachProber {
            targets: targets_tx,
            reached: reached_rx,
            task,
        }
    }

    /// `(node, host:port)` to check from now on (see `check_address`).
    pub fn set_targets(&self, targets: Vec<(String, String)>) {
        self.targets.send_if_modified(|current| {
            let changed = *current != targets;
            if changed {
                *current = targets;
            }
            changed
        });
    }

    /// The nodes whose host answered in the last round.
    pub fn reached(&self) -> Vec<String> {
        self.reached.borrow().clone()
    }

    pub async fn join(self, timeout: Duration) {
        if tokio::time::timeout(timeout, self.task).await.is_err() {
            tracing::warn!("reachability check did not stop within {timeout:?}");
        }
    }
}

/// Whether the host at `addr` answered: accepted, or refused by its kernel.
async fn host_answers(addr: &str, timeout: Duration) -> bool {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(_)) => true,
        Ok(Err(err)) => err.kind() == ErrorKind::ConnectionRefused,
        Err(_) => false,
    }
}

async fn run(
    interval: Duration,
    timeout: Duration,
    targets: watch::Receiver<Vec<(String, String)>>,
    reached: watch::Sender<Vec<String>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stopped(&mut stop) => return,
            _ = ticker.tick() => {}
        }
        let round: Vec<(String, String)> = targets.borrow().iter().take(MAX_TARGETS).cloned().collect();
        let mut checks = JoinSet::new();
        for (name, addr) in round {
            checks.spawn(async move { host_answers(&addr, timeout).await.then_some(name) });
        }
        let mut names = Vec::new();
        while let Some(done) = checks.join_next().await {
            if let Ok(Some(name)) = done {
                names.push(name);
            }
        }
        names.sort();
        reached.send_replace(names);
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_check_dials_the_database_host_at_the_agent_port() {
        assert_eq!(
            check_address("198.18.7.12:3306", "10.0.0.12:7946").as_deref(),
            Some("198.18.7.12:7946")
        );
        assert_eq!(check_address("[::1]:3306", "[::1]:7946").as_deref(), Some("[::1]:7946"));
        assert_eq!(
            check_address("dbhost1:3306", "dbhost1:7946").as_deref(),
            Some("dbhost1:7946")
        );
        assert_eq!(check_address("dbhost1", "dbhost1:7946"), None);
    }

    #[tokio::test]
    async fn a_listening_or_refusing_host_answers() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap().to_string();
        assert!(host_answers(&open, Duration::from_secs(2)).await);
        drop(listener);
        // Nothing listens there any more: the kernel refuses, so the host is up.
        assert!(host_answers(&open, Duration::from_secs(2)).await);
    }
}
