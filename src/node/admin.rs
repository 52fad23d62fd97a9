//! State-changing operators' commands. Those for this node are carried out at once; those for
//! another node (maintenance of a peer, a switchover when this node is not the primary) are
//! gossiped as this agent's pending request, which the node concerned carries out. The caller
//! gets its answer once the cluster shows the effect, a refusal as soon as the node concerned
//! gossips one, or an error at the deadline. Answers go out in `Ready::answers` by the id the
//! shell gave the command.

use gossip_ha_proto::api::{Command, EventKind};
use gossip_ha_proto::db::DbRole;
use gossip_ha_proto::gossip::{ClusterRequest, ClusterRequestKind};

use super::{describe, Finished, Node, PersistReason};
use crate::client::RESYNC_FAILED_PREFIX;
use crate::core::db::DbAction;
use crate::core::{Input, MonoMs, NodeView};
use crate::state_file::{MaintenanceRecord, PersistentState};

/// The shell's name for a command it handed in, to route the answer back.
pub type AdminId = u64;
/// `Ok` what was done, `Err` why not.
pub type Answer = Result<String, String>;

/// How long a peer has to show that it applied a maintenance request.
const MAINTENANCE_CONFIRM_MS: u64 = 10_000;
/// A switchover is confirmed (or refused) this long after its own timeout at the latest.
const SWITCHOVER_MARGIN_MS: u64 = 5_000;
/// `gossip-ha resync` answers with its first step's outcome when it comes within this; a longer
/// step (a clone of a large database) goes on, and the answer says how to follow it.
const RESYNC_ANSWER_WAIT_MS: u64 = 30_000;

pub(super) struct Pending {
    id: AdminId,
    expect: Expect,
    asked: MonoMs,
    deadline: MonoMs,
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

impl Node {
    /// An operator's command `id`, given at `now` by `caller_uid` (already allowed to give it).
    pub fn admin(&mut self, now: MonoMs, wall_unix_ms: u64, id: AdminId, command: Command, caller_uid: u32) {
        self.now = now.max(self.now);
        self.wall_unix_ms = wall_unix_ms;
        let me = self.setup.name.clone();
        let answer = match command {
            Command::Maintenance { on, node } => match node.filter(|node| *node != me) {
                None => self.maintenance_here(on),
                Some(node) => match self.reachable_for_request(&node) {
                    Err(refused) => Err(refused),
                    Ok(()) => {
                        let kind = ClusterRequestKind::Maintenance { node: node.clone(), on };
                        let expect = Expect::Maintenance { node, on };
                        return self.relay(id, kind, expect, MAINTENANCE_CONFIRM_MS, caller_uid);
                    }
                },
            },
            Command::Switchover { to } => {
                let timeout_ms = self.switchover_timeout_ms() + SWITCHOVER_MARGIN_MS;
                let expect = Expect::Primary(to.clone());
                if self.core.db_primary() == Some(me.as_str()) {
                    match self.core.input(Input::Switchover { to: &to }).answer {
                        Some(Ok(done)) => {
                            self.own_event(EventKind::AdminCommand, format!("{done} (asked by uid {caller_uid})"));
                            return self.wait_for(id, expect, timeout_ms, caller_uid, None);
                        }
                        Some(Err(refused)) => Err(refused),
                        None => Err("internal: no answer to a switchover".into()),
                    }
                } else if self.core.db_primary().is_none() {
                    Err("no DB primary is elected: nothing to switch over".into())
                } else if self.core.db_primary() == Some(to.as_str()) {
                    // Waiting for `to` to be primary would answer "done" at once, for nothing.
                    Err(format!("{to} is already the primary: nothing to switch over"))
                } else {
                    let kind = ClusterRequestKind::Switchover { to };
                    return self.relay(id, kind, expect, timeout_ms, caller_uid);
                }
            }
            Command::Resync => match self.core.input(Input::Resync).answer {
                Some(Ok(planned)) => {
                    self.own_event(
                        EventKind::AdminCommand,
                        format!("{planned} (asked by uid {caller_uid})"),
                    );
                    let expect = Expect::RepairStep { planned };
                    return self.wait_for(id, expect, RESYNC_ANSWER_WAIT_MS, caller_uid, None);
                }
                Some(Err(refused)) => Err(refused),
                None => Err("internal: no answer to a resync".into()),
            },
            other => Err(format!("internal: {other:?} is not an admin command")),
        };
        if let Ok(done) = &answer {
            self.own_event(EventKind::AdminCommand, format!("{done} (asked by uid {caller_uid})"));
        }
        self.ready.answers.push((id, answer));
    }

    /// `to` is the DB primary and its database, as last seen, is writable: a promotion decided
    /// but not yet carried out (or failed) is not a switchover done.
    fn writable_primary(&self, to: &str) -> bool {
        self.core.db_primary() == Some(to)
            && self
                .core
                .view(self.now)
                .iter()
                .find(|view| view.name == to)
                .and_then(|view| view.db.as_ref())
                .is_some_and(|db| db.role == DbRole::Primary && db.read_only == Some(false))
    }

    /// Maintenance of this node: applied at once and written down for after a restart.
    fn maintenance_here(&mut self, on: bool) -> Answer {
        let done = self
            .core
            .input(Input::Maintenance { on })
            .answer
            .unwrap_or(Ok(String::new()))?;
        self.save_maintenance(on);
        Ok(done)
    }

    fn switchover_timeout_ms(&self) -> u64 {
        self.db
            .as_ref()
            .map(|db| db.switchover_timeout_ms)
            .unwrap_or(10 * self.setup.announcement.threshold_ms)
    }

    /// Gossips the request for the node it concerns (one at a time per agent).
    fn relay(&mut self, id: AdminId, kind: ClusterRequestKind, expect: Expect, timeout_ms: u64, uid: u32) {
        if let Some(refused) = self.setup.relay_refusal.clone() {
            self.ready.answers.push((id, Err(refused)));
            return;
        }
        if self.request.is_some() {
            let busy = "another request from this node is still pending; try again".to_string();
            self.ready.answers.push((id, Err(busy)));
            return;
        }
        let request = ClusterRequest {
            id: self.wall_unix_ms,
            kind,
        };
        self.request = Some(serde_json::to_string(&request).expect("request serialises"));
        self.own_event(
            EventKind::AdminCommand,
            format!("relaying {} to the cluster (asked by uid {uid})", request.kind),
        );
        self.wait_for(id, expect, timeout_ms, uid, Some(request.id));
    }

    /// A relayed command needs a live node at the other end to carry it out and confirm it.
    fn reachable_for_request(&self, node: &str) -> Result<(), String> {
        match self.core.view(self.now).into_iter().find(|view| view.name == node) {
            None => Err(format!("no node named {node} is known")),
            Some(view) if !view.alive => Err(format!("{node} is down: it cannot carry out the request")),
            Some(_) => Ok(()),
        }
    }

    fn wait_for(&mut self, id: AdminId, expect: Expect, timeout_ms: u64, uid: u32, relayed_id: Option<u64>) {
        self.pending.push(Pending {
            id,
            expect,
            asked: self.now,
            deadline: MonoMs(self.now.0 + timeout_ms),
            caller_uid: uid,
            relayed_id,
        });
    }

    /// Answers the commands whose effect the cluster now shows, or whose deadline passed.
    pub(super) fn answer_pending(&mut self) {
        let mut still = Vec::new();
        for pending in std::mem::take(&mut self.pending) {
            let answer = match &pending.expect {
                Expect::RepairStep { planned } => self.repair_still_running(planned, &pending).map(Ok),
                _ => self.confirmed(&pending),
            };
            match answer {
                Some(answer) => self.ready.answers.push((pending.id, answer)),
                None => still.push(pending),
            }
        }
        self.pending = still;
        if !self.pending.iter().any(|pending| pending.relayed_id.is_some()) {
            // Nothing waits on a relayed request any more: withdraw it.
            self.request = None;
        }
    }

    /// The answer to a switchover or maintenance command, once there is one.
    fn confirmed(&mut self, pending: &Pending) -> Option<Answer> {
        let took = self.now.since(pending.asked);
        let waited_s = pending.deadline.since(pending.asked) / 1_000;
        let done = match &pending.expect {
            Expect::Primary(to) => self
                .writable_primary(to)
                .then(|| format!("switchover done: {to} is the DB primary ({took} ms after it was asked)")),
            Expect::Maintenance { node, on } => self
                .core
                .view(self.now)
                .iter()
                .find(|view| view.name == *node)
                .and_then(|view| view.db.as_ref())
                .filter(|db| db.maintenance == *on)
                .map(|_| {
                    let state = if *on { "in" } else { "out of" };
                    format!("{node} is {state} maintenance ({took} ms after it was asked)")
                }),
            Expect::RepairStep { .. } => None,
        };
        let refused = pending
            .relayed_id
            .and_then(|id| self.core.answer_from_cluster(id))
            .filter(|(_, answer)| !answer.done)
            .map(|(node, answer)| format!("{node} refused: {}", answer.text));
        let answer = match (done, refused) {
            (Some(done), _) => Ok(done),
            (None, Some(refused)) => Err(refused),
            (None, None) if self.now >= pending.deadline => Err(match &pending.expect {
                Expect::Primary(to) => format!(
                    "{to} did not become the DB primary within {waited_s} s: the switchover was refused or abandoned (see `gossip-ha events` on the primary)"
                ),
                Expect::Maintenance { node, .. } => {
                    format!("{node} did not confirm within {waited_s} s (is it up, and a DB node?)")
                }
                Expect::RepairStep { .. } => return None,
            }),
            (None, None) => return None,
        };
        if let Ok(done) = &answer {
            self.own_event(
                EventKind::AdminCommand,
                format!("{done} (asked by uid {})", pending.caller_uid),
            );
        }
        Some(answer)
    }

    /// At the resync's deadline: what runs now and how to follow it (`None` before it).
    fn repair_still_running(&self, planned: &str, pending: &Pending) -> Option<String> {
        if self.now < pending.deadline {
            return None;
        }
        let repair = self
            .core
            .view(self.now)
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
            pending.deadline.since(pending.asked) / 1_000
        ))
    }

    /// A merge or rebuild finished: the `gossip-ha resync` waiting for its first step hears
    /// how it went (a failure makes the command fail with the reason).
    pub(super) fn repair_step_finished(&mut self, finished: &Finished) {
        let step = describe(&finished.action);
        let took = finished.took_ms;
        let answer = match (&finished.action, &finished.result) {
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
            self.ready.answers.push((waiter.id, answer.clone()));
        }
    }

    /// Persists this node's maintenance when it changed, whichever way it came: a command on
    /// this socket, one relayed from another node and carried out by the core, the console.
    pub(super) fn keep_maintenance(&mut self, view: &[NodeView]) {
        let on = view
            .iter()
            .find(|node| node.is_self)
            .and_then(|node| node.db.as_ref())
            .map(|db| db.maintenance);
        let (Some(on), Some(db)) = (on, self.db.as_ref()) else {
            return;
        };
        if db.persisted.maintenance_on(db.config_maintenance) != on {
            self.save_maintenance(on);
        }
    }

    /// Writes the command down: a restarted agent keeps it.
    fn save_maintenance(&mut self, on: bool) {
        let wall_unix_ms = self.wall_unix_ms;
        let Some(db) = self.db.as_mut() else { return };
        db.persisted = PersistentState {
            maintenance: Some(MaintenanceRecord {
                on,
                set_unix_ms: wall_unix_ms,
                config: db.config_maintenance,
            }),
            ..db.persisted.clone()
        };
        let state = db.persisted.clone();
        self.persist(state, PersistReason::Maintenance { on });
    }
}
