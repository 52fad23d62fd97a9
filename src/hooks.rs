//! Operator hooks, like keepalived's notify scripts and Patroni's callbacks: argv lists run
//! with a timeout, one at a time per hook, the facts in `GOSSIP_HA_*` variables; their exit
//! status and first lines of output become events.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gossip_ha_proto::api::EventKind;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::events::EventLog;

/// Firings queued per hook at most; beyond, the newest is dropped and said so.
const QUEUE: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Hook {
    OnPromote,
    OnDemote,
    OnDbPrimaryChange,
    OnServerMasterChange,
    OnNodeDown,
    OnNodeUp,
}

impl Hook {
    pub fn name(self) -> &'static str {
        match self {
            Hook::OnPromote => "on_promote",
            Hook::OnDemote => "on_demote",
            Hook::OnDbPrimaryChange => "on_db_primary_change",
            Hook::OnServerMasterChange => "on_server_master_change",
            Hook::OnNodeDown => "on_node_down",
            Hook::OnNodeUp => "on_node_up",
        }
    }

    /// `GOSSIP_HA_EVENT` for this hook.
    pub fn event(self) -> &'static str {
        self.name().trim_start_matches("on_")
    }
}

/// `[hooks]`: each hook an argv list; `timeout` in seconds for each run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HooksConfig {
    pub on_promote: Option<Vec<String>>,
    pub on_demote: Option<Vec<String>>,
    pub on_db_primary_change: Option<Vec<String>>,
    pub on_server_master_change: Option<Vec<String>>,
    pub on_node_down: Option<Vec<String>>,
    pub on_node_up: Option<Vec<String>>,
    pub timeout: Option<f64>,
}

impl HooksConfig {
    pub fn configured(&self) -> BTreeMap<Hook, Vec<String>> {
        [
            (Hook::OnPromote, &self.on_promote),
            (Hook::OnDemote, &self.on_demote),
            (Hook::OnDbPrimaryChange, &self.on_db_primary_change),
            (Hook::OnServerMasterChange, &self.on_server_master_change),
            (Hook::OnNodeDown, &self.on_node_down),
            (Hook::OnNodeUp, &self.on_node_up),
        ]
        .into_iter()
        .filter_map(|(hook, argv)| argv.clone().filter(|argv| !argv.is_empty()).map(|argv| (hook, argv)))
        .collect()
    }
}

pub struct Hooks {
    queues: BTreeMap<Hook, mpsc::Sender<Vec<(String, String)>>>,
    events: Arc<Mutex<EventLog>>,
    tasks: Vec<JoinHandle<()>>,
}

fn record(events: &Mutex<EventLog>, kind: EventKind, reason: String) {
    if let Ok(mut log) = events.lock() {
        log.push(crate::clock::unix_ms(), kind, None, reason);
    }
}

impl Hooks {
    pub fn spawn(
        configured: BTreeMap<Hook, Vec<String>>,
        timeout: Duration,
        events: Arc<Mutex<EventLog>>,
        stop: watch::Receiver<bool>,
    ) -> Hooks {
        let mut queues = BTreeMap::new();
        let mut tasks = Vec::new();
        for (hook, argv) in configured {
            let (sender, mut receiver) = mpsc::channel::<Vec<(String, String)>>(QUEUE);
            let events = events.clone();
            let mut stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let environment = tokio::select! {
                        _ = stop.wait_for(|stopped| *stopped) => return,
                        next = receiver.recv() => match next { Some(environment) => environment, None => return },
                    };
                    // Stopping the agent abandons a running hook; its process group is killed.
                    let outcome = tokio::select! {
                        _ = stop.wait_for(|stopped| *stopped) => return,
                        outcome = crate::command::run(&argv, &environment, timeout) => outcome,
                    };
                    let kind = if outcome.result.is_ok() {
                        EventKind::HookRan
                    } else {
                        EventKind::HookFailed
                    };
                    record(&events, kind, format!("{} {}", hook.name(), outcome.describe(&argv)));
                }
            }));
            queues.insert(hook, sender);
        }
        Hooks { queues, events, tasks }
    }

    /// Queues a run of `hook` (if configured) with `facts` plus `GOSSIP_HA_EVENT`.
    pub fn fire(&self, hook: Hook, facts: &[(String, String)]) {
        let Some(queue) = self.queues.get(&hook) else { return };
        let mut environment = facts.to_vec();
        environment.push(("GOSSIP_HA_EVENT".into(), hook.event().into()));
        if queue.try_send(environment).is_err() {
            record(
                &self.events,
                EventKind::HookFailed,
                format!("{} not run: {QUEUE} runs are already waiting", hook.name()),
            );
        }
    }

    pub async fn join(self, timeout: Duration) {
        for task in self.tasks {
            if tokio::time::timeout(timeout, task).await.is_err() {
                tracing::warn!("a hook did not stop within {timeout:?}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hooks_run_one_at_a_time_with_the_facts_and_report() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("hook.log");
        let script = format!(
            "echo \"start $GOSSIP_HA_EVENT $GOSSIP_HA_NODE\" >> {0}; sleep 0.2; echo end >> {0}",
            log.display()
        );
        let events = Arc::new(Mutex::new(EventLog::default()));
        let (_stop_tx, stop) = watch::channel(false);
        let hooks = Hooks::spawn(
            BTreeMap::from([(Hook::OnNodeDown, vec!["sh".into(), "-c".into(), script])]),
            Duration::from_secs(5),
            events.clone(),
            stop,
        );
        hooks.fire(Hook::OnNodeDown, &[("GOSSIP_HA_NODE".into(), "db1".into())]);
        hooks.fire(Hook::OnNodeDown, &[("GOSSIP_HA_NODE".into(), "db2".into())]);
        hooks.fire(Hook::OnPromote, &[]); // not configured: nothing happens
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while events.lock().unwrap().recent(None).len() < 2 {
            assert!(tokio::time::Instant::now() < deadline, "hooks did not report");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(
            text, "start node_down db1\nend\nstart node_down db2\nend\n",
            "runs never overlap"
        );
        let reported = events.lock().unwrap().recent(None);
        assert!(reported
            .iter()
            .all(|event| event.kind == EventKind::HookRan && event.reason.contains("exit 0")));
    }
}
