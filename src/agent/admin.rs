//! State-changing socket commands. Those for this node are carried out at once; those for
//! another node (maintenance of a peer, a switchover when this node is not the primary) are
//! gossiped as this agent's pending request, which the node concerned carries out. The caller
//! gets its answer once the cluster shows the effect, a refusal as soon as the node concerned
//! gossips one, or an error at the deadline.

use std::time::{Duration, Instant};

use gossip_ha_proto::api::{Command, EventKind};
use gossip_ha_proto::gossip::{ClusterRequest, ClusterRequestKind};
use tokio::sync::oneshot;

use super::{describe, relay_refusal, unix_ms, Driver};
use crate::client::RESYNC_FAILED_PREFIX;
use crate::core::db::DbAction;
use crate::core::NodeView;
use crate::db::worker::ActionOutcome;
use crate::socket::AdminRequest;
use crate::state_file::{MaintenanceRecord, PersistentState, StateFile};

/// How long a peer has to show that it applied a maintenance request.
const MAINTENANCE_CONFIRM: Duration = Duration::from_secs(10);
/// A switchover is confirmed (or refused) this long after its own timeout at the latest.
const SWITCHOVER_MARGIN: Duration = Duration::from_secs(5);
/// `gossip-ha resync` answers with its first step's outcome when it comes within this; a longer
/// step (a clone of a large database) goes on, and the answer says how to follow it.
const RESYNC_ANSWER_WAIT: Duration = Duration::from_secs(30);

pub struct Pending {
    reply: oneshot::Sender<Result<String, String>>,
    expect: Expect,
    asked: Instant,
    deadline: Instant,
    caller_uid: u32,
    /// The id of the request gossiped for it, when it was relayed.
    relayed_id: Option<u64>,
}

enum Expect {
    Primary(String),
    Maintenance {
        node: String,
        on: bool,
    },
    /// The first merge or rebuild that finishes after `gossip-ha resync`; `planned` is what
    /// the core said it would do.
    RepairStep {
        planned: String,
    },
}

impl Driver {
    pub(super) fn administer(&mut self, request: AdminRequest) {
        let me = self.settings.node_name.clone();
        let uid = request.caller_uid;
        let answer = match request.command {
            Command::Maintenance { on, node } => match node.filter(|node| *node != me) {
                None => self
                    .core
                    .apply_maintenance(on)
                    .map(|done| match self.save_maintenance(on) {
                        Ok(()) => done,
                        Err(err) => format!("{done}; but not for after a restart: {err}"),
                    }),
                Some(node) => {
                    if let Err(refused) = self.reachable_for_request(&node) {
                        let _ = request.reply.send(Err(refused));
                        return;
                    }
                    let kind = ClusterRequestKind::Maintenance { node: node.clone(), on };
                    let expect = Expect::Maintenance { node, on };
                    return self.relay(request.reply, kind, expect, MAINTENANCE_CONFIRM, uid);
                }
            },
            Command::Switchover { to } => {
                let timeout = self.switchover_timeout() + SWITCHOVER_MARGIN;
                let expect = Expect::Primary(to.clone());
                if self.core.db_primary() == Some(me.as_str()) {
                    match self.core.request_switchover(&to) {
                        Ok(done) => {
                            self.record(
                                EventKind::AdminCommand,
                                Some(me),
                                format!("{done} (asked by uid {uid})"),
                            );
                            self.wait_for(request.reply, expect, timeout, uid, None);
                            return;
                        }
                        Err(refused) => Err(refused),
                    }
                } else if self.core.db_primary().is_none() {
                    Err("no DB primary is elected: nothing to switch over".into())
                } else {
                    return self.relay(
                        request.reply,
                        ClusterRequestKind::Switchover { to },
                        expect,
                        timeout,
                        uid,
                    );
                }
            }
            Command::Resync => match self.core.request_resync() {
                Ok(planned) => {
                    self.record(
                        EventKind::AdminCommand,
                        Some(me),
                        format!("{planned} (asked by uid {uid})"),
                    );
                    let expect = Expect::RepairStep { planned };
                    self.wait_for(request.reply, expect, RESYNC_ANSWER_WAIT, uid, None);
                    return;
                }
                Err(refused) => Err(refused),
            },
            other => Err(format!("internal: {other:?} is not an admin command")),
        };
        if let Ok(done) = &answer {
            self.record(
                EventKind::AdminCommand,
                Some(me),
                format!("{done} (asked by uid {uid})"),
            );
        }
        let _ = request.reply.send(answer);
    }

    fn switchover_timeout(&self) -> Duration {
        let ms = self
            .settings
            .db_agent
            .as_ref()
            .map(|db| db.switchover_timeout_ms)
            .unwrap_or(10 * self.settings.threshold_ms());
        Duration::from_millis(ms)
    }

    /// Gossips the request for the node it concerns (one at a time per agent).
    fn relay(
        &mut self,
        reply: oneshot::Sender<Result<String, String>>,
        kind: ClusterRequestKind,
        expect: Expect,
        timeout: Duration,
        uid: u32,
    ) {
        let refused = self
            .identity
            .as_ref()
            .and_then(|identity| relay_refusal(&identity.current()));
        if let Some(refused) = refused {
            let _ = reply.send(Err(refused));
            return;
        }
        if self.request.is_some() {
            let _ = reply.send(Err("another request from this node is still pending; try again".into()));
            return;
        }
        let request = ClusterRequest { id: unix_ms(), kind };
        self.request = Some(serde_json::to_string(&request).expect("request serialises"));
        self.record(
            EventKind::AdminCommand,
            Some(self.settings.node_name.clone()),
            format!("relaying {} to the cluster (asked by uid {uid})", request.kind),
        );
        self.wait_for(reply, expect, timeout, uid, Some(request.id));
    }

    /// A relayed command needs a live node at the other end to carry it out and confirm it.
    fn reachable_for_request(&self, node: &str) -> Result<(), String> {
        match self.core.view(self.now()).into_iter().find(|view| view.name == node) {
            None => Err(format!("no node named {node} is known")),
            Some(view) if !view.alive => Err(format!("{node} is down: it cannot carry out the request")),
            Some(_) => Ok(()),
        }
    }

    fn wait_for(
        &mut self,
        reply: oneshot::Sender<Result<String, String>>,
        expect: Expect,
        timeout: Duration,
        uid: u32,
        relayed_id: Option<u64>,
    ) {
        let asked = Instant::now();
        self.pending.push(Pending {
            reply,
            expect,
            asked,
            deadline: asked + timeout,
            caller_uid: uid,
            relayed_id,
        });
    }

    /// Answers the commands whose effect the cluster now shows, or whose deadline passed.
    pub(super) fn answer_pending(&mut self) {
        let mut still = Vec::new();
        for pending in std::mem::take(&mut self.pending) {
            let took = pending.asked.elapsed().as_millis();
            if let Expect::RepairStep { planned } = &pending.expect {
                match self.repair_still_running(planned, &pending) {
                    Some(answer) => {
                        let _ = pending.reply.send(Ok(answer));
                    }
                    // Nobody waits any more (the CLI was interrupted): the repair goes on.
                    None if pending.reply.is_closed() => {}
                    None => still.push(pending),
                }
                continue;
            }
            let done = match &pending.expect {
                Expect::Primary(to) => (self.core.db_primary() == Some(to.as_str()))
                    .then(|| format!("switchover done: {to} is the DB primary ({took} ms after it was asked)")),
                Expect::Maintenance { node, on } => self
                    .core
                    .view(self.now())
                    .iter()
                    .find(|view| view.name == *node)
                    .and_then(|view| view.db.as_ref())
                    .filter(|db| db.maintenance == *on)
                    .map(|_| {
                        let state = if *on { "in" } else { "out of" };
                        format!("{node} is {state} maintenance ({took} ms after it was asked)")
                    }),
                Expect::RepairStep { .. } => unreachable!("answered above"),
            };
            let refused = pending
                .relayed_id
                .and_then(|id| self.core.answer_from_cluster(id))
                .filter(|(_, answer)| !answer.done)
                .map(|(node, answer)| format!("{node} refused: {}", answer.text));
            let answer = match (done, refused) {
                (Some(done), _) => Ok(done),
                (None, Some(refused)) => Err(refused),
                (None, None) if Instant::now() >= pending.deadline => Err(match &pending.expect {
                    Expect::Primary(to) => format!(
                        "{to} did not become the DB primary within {} s: the switchover was refused or abandoned (see `gossip-ha events` on the primary)",
                        (pending.deadline - pending.asked).as_secs()
                    ),
                    Expect::Maintenance { node, .. } => format!(
                        "{node} did not confirm within {} s (is it up, and a DB node?)",
                        (pending.deadline - pending.asked).as_secs()
                    ),
                    Expect::RepairStep { .. } => unreachable!("answered above"),
                }),
                (None, None) => {
                    still.push(pending);
                    continue;
                }
            };
            if let Ok(done) = &answer {
                self.record(
                    EventKind::AdminCommand,
                    Some(self.settings.node_name.clone()),
                    format!("{done} (asked by uid {})", pending.caller_uid),
                );
            }
            let _ = pending.reply.send(answer);
        }
        self.pending = still;
        if !self.pending.iter().any(|pending| pending.relayed_id.is_some()) {
            // Nothing waits on a relayed request any more: withdraw it.
            self.request = None;
        }
    }

    /// At the resync's deadline: what runs now and how to follow it (`None` before it).
    fn repair_still_running(&self, planned: &str, pending: &Pending) -> Option<String> {
        if Instant::now() < pending.deadline {
            return None;
        }
        let repair = self
            .core
            .view(self.now())
            .into_iter()
            .find(|node| node.is_self)
            .and_then(|node| node.db)
            .and_then(|db| db.repair);
        let now = match repair {
            Some(repair) => match repair.progress {
                Some(progress) => format!("{} now: {progress}", repair.stage.as_str()),
                None => format!("{} now", repair.stage.as_str()),
            },
            None => "no repair step has started yet".into(),
        };
        Some(format!(
            "{planned}: still running after {} s ({now}); it goes on by itself: follow it with `gossip-ha status` (the repair line of this node) and `gossip-ha events`",
            (pending.deadline - pending.asked).as_secs()
        ))
    }

    /// A merge or rebuild finished: the `gossip-ha resync` waiting for its first step hears
    /// how it went (a failure makes the command fail with the reason).
    pub(super) fn repair_step_finished(&mut self, outcome: &ActionOutcome) {
        let waiting = self
            .pending
            .iter()
            .any(|pending| matches!(pending.expect, Expect::RepairStep { .. }));
        if !waiting {
            return;
        }
        let step = describe(&outcome.action);
        let took = outcome.took.as_millis();
        let answer = match (&outcome.action, &outcome.result) {
            (DbAction::Merge(plan), Ok(summary)) => Ok(format!(
                "{step} done in {took} ms{}; rebuilding from {} now: follow it with `gossip-ha status` (the repair line of this node) and `gossip-ha events`",
                summary.as_ref().map(|summary| format!(": {summary}")).unwrap_or_default(),
                plan.winner
            )),
            (_, Ok(line)) => Ok(format!(
                "{step} done in {took} ms{}",
                line.as_ref().map(|line| format!(": {line}")).unwrap_or_default()
            )),
            (_, Err(err)) => Err(format!(
                "{RESYNC_FAILED_PREFIX}{step} failed after {took} ms: {err}; this node stays read-only (`gossip-ha status` says what it waits for)"
            )),
        };
        let (waiters, others): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|pending| matches!(pending.expect, Expect::RepairStep { .. }));
        self.pending = others;
        for waiter in waiters {
            let _ = waiter.reply.send(answer.clone());
        }
    }
}

/// At start: whether the database is in maintenance (the state file's record of the last
/// command, or the configuration when it changed since), and the event that says why.
pub(super) fn maintenance_at_start(
    state: &StateFile,
    persisted: &mut PersistentState,
    config: bool,
) -> (bool, Option<String>) {
    let start = persisted.maintenance_at_start(config);
    let mut note = start.note;
    if start.forgot_record {
        if let Err(err) = state.save(persisted.clone()) {
            note = note.map(|note| format!("{note} (the state file still holds the old command: {err})"));
        }
    }
    (start.on, note)
}

impl Driver {
    /// Persists this node's maintenance when it changed, whichever way it came: a command on
    /// this socket, or one relayed from another node and carried out by the core.
    pub(super) fn keep_maintenance(&mut self, view: &[NodeView]) {
        let on = view
            .iter()
            .find(|node| node.is_self)
            .and_then(|node| node.db.as_ref())
            .map(|db| db.maintenance);
        let (Some(on), Some(db)) = (on, self.db.as_ref()) else {
            return;
        };
        if db.persisted.maintenance_on(self.config_maintenance()) == on {
            return;
        }
        if let Err(err) = self.save_maintenance(on) {
            let me = Some(self.settings.node_name.clone());
            self.record(
                EventKind::DbActionFailed,
                me,
                format!(
                    "maintenance {} holds until the agent restarts only: {err}",
                    if on { "on" } else { "off" }
                ),
            );
        }
    }

    fn config_maintenance(&self) -> bool {
        self.settings.db_agent.as_ref().is_some_and(|db| db.maintenance)
    }

    /// Writes the command to the state file: a restarted agent keeps it.
    fn save_maintenance(&mut self, on: bool) -> Result<(), String> {
        let config = self.config_maintenance();
        let Some(db) = self.db.as_mut() else {
            return Ok(());
        };
        let state = PersistentState {
            maintenance: Some(MaintenanceRecord {
                on,
                set_unix_ms: unix_ms(),
                config,
            }),
            ..db.persisted.clone()
        };
        let saved = db.state.save(state.clone()).map_err(|err| err.to_string());
        // Kept in memory either way: a failure is said once, not retried on every tick.
        db.persisted = state;
        saved
    }
}
