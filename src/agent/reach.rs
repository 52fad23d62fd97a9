//! The reachability check behind the `db_reach` gossip key: every agent tries a TCP connection to
//! each known DB node's database port, so a promoting candidate can tell an old primary that is
//! gone from one that only it has lost sight of (DESIGN §2's fencing, where the fence cannot
//! reach). Connect only: no credentials are needed or sent.

use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// DB nodes checked at most per round; a Pandora cluster has a handful.
const MAX_TARGETS: usize = 64;

pub struct ReachProber {
    targets: watch::Sender<Vec<(String, String)>>,
    reached: watch::Receiver<Vec<String>>,
    task: JoinHandle<()>,
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

    /// `(node, host:port)` of the databases to check from now on.
    pub fn set_targets(&self, targets: Vec<(String, String)>) {
        self.targets.send_if_modified(|current| {
            let changed = *current != targets;
            if changed {
                *current = targets;
            }
            changed
        });
    }

    /// The nodes whose database port answered in the last round.
    pub fn reached(&self) -> Vec<String> {
        self.reached.borrow().clone()
    }

    pub async fn join(self, timeout: Duration) {
        if tokio::time::timeout(timeout, self.task).await.is_err() {
            tracing::warn!("reachability check did not stop within {timeout:?}");
        }
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
            checks.spawn(async move {
                let answered = matches!(
                    tokio::time::timeout(timeout, TcpStream::connect(addr.as_str())).await,
                    Ok(Ok(_))
                );
                answered.then_some(name)
            });
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
