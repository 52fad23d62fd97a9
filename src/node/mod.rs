//! One agent as a sans-I/O machine (after raft-rs's `Ready`): everything the agent decides or
//! remembers between its I/O, driven the same way by the daemon (`agent`, tokio plumbing around
//! it) and by the simulations.
//!
//! Inputs: a `Tick` (the monotonic and wall time, what gossip shows, the local database's probe,
//! which DB hosts answered), and between ticks an action's outcome, a repair's progress line,
//! an operator's command, a `tdatabase` round's outcome. Outputs, taken with `ready()` and
//! carried out in this order: `persist` (durable before anything else of the same `Ready`), then
//! `actions` (a promotion only if its record was saved: otherwise `persist_failed`), then
//! events, hooks, gossip keys, settled facts for the rewriter, answers, the status report.
//! No clock, socket, file or task in here: the same inputs give the same outputs.

use std::collections::{BTreeSet, HashMap};

use gossip_ha_proto::api::{EventKind, StatusReport};
use gossip_ha_proto::gossip::{Announcement, KEY_REQUEST};

use crate::core::db::{DbAction, DbCore, DbDecision, DbPolicy, LocalDb};
use crate::core::settle::Settler;
use crate::core::{Core, Decision, Input, MonoMs, NodeView};
use crate::db::pandora_view::ViewJob;
use crate::gossip::{IgnoredPeer, RefusedClaim};
use crate::hooks::Hook;
use crate::rewrite::{fact_environment, Facts};
use crate::state_file::PersistentState;

mod admin;
mod outcome;
mod pandora;
mod peers;
mod view;

pub use admin::{AdminId, Answer};
pub use outcome::Finished;
pub use view::{describe, empty_report, facts_from, view_keys};
use view::{node_status, StatusBook};

/// What the node is built from: the agent's settings, as far as its decisions need them.
#[derive(Debug, Clone)]
pub struct NodeSetup {
    pub name: String,
    pub cluster_id: String,
    /// This agent's gossip address, as peers see it.
    pub advertise: String,
    pub generation: u64,
    pub announcement: Announcement,
    /// The seeds' addresses: the first server-master election waits for their first answers.
    pub seeds: Vec<String>,
    pub rewrite_settle_ms: u64,
    /// Pandora's `ha_hosts`, for `tdatabase` rows.
    pub ha_hosts: Vec<String>,
    /// Why other nodes would ignore this agent's relayed requests (its certificate grants no
    /// admin): an operator asking hears it at once.
    pub relay_refusal: Option<String>,
    pub db: Option<NodeDbSetup>,
}

/// A DB node's side of the setup.
#[derive(Debug, Clone)]
pub struct NodeDbSetup {
    /// `maintenance` is `[db] maintenance` from the configuration.
    pub policy: DbPolicy,
    /// What the state file held at start.
    pub persisted: PersistentState,
    pub check_interval_ms: u64,
    /// The Pandora database's name (for what notes about `tdatabase` say).
    pub database: String,
    /// `db.pandora_ha_view`: keep `tdatabase`, follow the console's `disabled`.
    pub pandora_view: bool,
}

/// What the local database's last probe found, as the shell measured it.
#[derive(Debug, Clone)]
pub struct Probe {
    pub result: Result<crate::core::db::DbProbe, String>,
    /// How long the database has not answered (0 while it answers).
    pub unreachable_for_ms: u64,
}

/// One tick's inputs.
#[derive(Debug, Clone)]
pub struct Tick {
    pub now: MonoMs,
    pub wall_unix_ms: u64,
    pub observations: Vec<crate::core::Observation>,
    pub ignored: Vec<IgnoredPeer>,
    pub refused: Vec<RefusedClaim>,
    /// `None` before the first probe (or on a node without a database).
    pub probe: Option<Probe>,
    /// DB nodes whose host answered the last reachability check (`None`: no check ran).
    pub db_reach: Option<Vec<String>>,
}

/// Something worth an event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub kind: EventKind,
    pub node: Option<String>,
    pub reason: String,
}

/// A DB action for the executor; its event is `Ready::events[event]` (rewritten if it does not
/// start).
#[derive(Debug, Clone, PartialEq)]
pub struct Act {
    pub action: DbAction,
    event: usize,
}

/// Why the state file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersistReason {
    /// The epoch and fork of a promotion in `actions`: it must not run unless this is saved.
    Promotion,
    ClusterMemory,
    Maintenance {
        on: bool,
    },
    /// A maintenance record the configuration overrode at start.
    ForgotRecord,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Persist {
    pub state: PersistentState,
    pub reasons: Vec<PersistReason>,
}

/// Counted by the metrics beyond the event kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    SplitBrain,
    RepairFinished { ok: bool },
}

#[derive(Debug, Clone, PartialEq)]
pub struct HookCall {
    pub hook: Hook,
    pub environment: Vec<(String, String)>,
}

/// What the shell carries out, in field order (see the module's documentation).
#[derive(Debug, Default)]
pub struct Ready {
    pub persist: Option<Persist>,
    pub actions: Vec<Act>,
    pub events: Vec<Event>,
    pub hooks: Vec<HookCall>,
    pub counted: Vec<Counted>,
    /// Gossip keys whose values changed (`unpublish` them when they could not be set).
    pub gossip: Vec<(&'static str, String)>,
    /// Facts that held for `rewrite_settle_ms`: what files should now say.
    pub settled: Option<Facts>,
    pub answers: Vec<(AdminId, Answer)>,
    pub view_job: Option<ViewJob>,
    /// DB nodes whose claims are accepted: they may fetch backups from this node.
    pub db_members: Option<BTreeSet<String>>,
    /// `(name, database address, gossip address)` of the DB nodes to check for reachability.
    pub reach_targets: Option<Vec<(String, String, String)>>,
    pub status: Option<StatusReport>,
}

/// The DB side of a node.
struct DbSide {
    /// What the state file holds (or should: a failed write is said once and retried on the
    /// next change).
    persisted: PersistentState,
    config_maintenance: bool,
    /// Actions handed to the executor and not reported done (a fence and a promotion may be
    /// out together).
    in_flight: usize,
    switchover_timeout_ms: u64,
    database: String,
    pandora: Option<pandora::ViewState>,
}

pub struct Node {
    setup: NodeSetup,
    core: Core,
    db: Option<DbSide>,
    settler: Settler<Facts>,
    /// What this agent last put in its own gossip keys, to set only what changed.
    published: HashMap<&'static str, String>,
    /// This agent's pending request for another node, as gossiped (`KEY_REQUEST`).
    request: Option<String>,
    pending: Vec<admin::Pending>,
    status_book: StatusBook,
    peers: peers::Reported,
    ready: Ready,
    now: MonoMs,
    wall_unix_ms: u64,
}

impl Node {
    /// The node; its first `Ready` holds the events of its start (why its database is, or stays
    /// out of, maintenance).
    pub fn new(setup: NodeSetup) -> Node {
        let mut ready = Ready::default();
        let mut core = Core::new(
            &setup.name,
            &setup.advertise,
            setup.generation,
            setup.announcement.clone(),
        )
        .with_seeds(setup.seeds.clone());
        let mut db = None;
        if let Some(db_setup) = &setup.db {
            let (db_core, side) = db_side(&setup, db_setup, &mut ready);
            core = core.with_db(db_core);
            core.remember_cluster(
                side.persisted.known_nodes.clone(),
                side.persisted.last_db_primary.clone(),
            );
            db = Some(side);
        }
        let threshold_ms = setup.announcement.threshold_ms;
        let check_interval_ms = setup.db.as_ref().map_or(1_000, |db| db.check_interval_ms);
        Node {
            settler: Settler::new(setup.rewrite_settle_ms),
            status_book: StatusBook::new(threshold_ms, check_interval_ms),
            setup,
            core,
            db,
            published: HashMap::new(),
            request: None,
            pending: Vec::new(),
            peers: peers::Reported::default(),
            ready,
            now: MonoMs(0),
            wall_unix_ms: 0,
        }
    }

    /// What to carry out now; the node starts a new `Ready`.
    pub fn ready(&mut self) -> Ready {
        std::mem::take(&mut self.ready)
    }

    pub fn core(&self) -> &Core {
        &self.core
    }

    pub fn name(&self) -> &str {
        &self.setup.name
    }

    /// Actions handed out and not reported finished.
    pub fn actions_in_flight(&self) -> usize {
        self.db.as_ref().map_or(0, |db| db.in_flight)
    }

    /// The state file could not be written: a promotion that needed it does not run (its event
    /// says why), anything else holds in memory until the agent restarts, said once.
    pub fn persist_failed(&mut self, ready: &mut Ready, persist: &Persist, error: &str) {
        let me = Some(self.setup.name.clone());
        for reason in &persist.reasons {
            let text = match reason {
                PersistReason::Promotion => {
                    let promotions: Vec<Act> = ready
                        .actions
                        .iter()
                        .filter(|act| matches!(act.action, DbAction::Promote { .. }))
                        .cloned()
                        .collect();
                    ready
                        .actions
                        .retain(|act| !matches!(act.action, DbAction::Promote { .. }));
                    for act in promotions {
                        self.finished_without_running(ready, &act, format!("not promoting: {error}"));
                    }
                    continue;
                }
                PersistReason::ClusterMemory => format!("cannot remember the cluster: {error}"),
                PersistReason::Maintenance { on } => format!(
                    "maintenance {} holds until the agent restarts only: {error}",
                    if *on { "on" } else { "off" }
                ),
                PersistReason::ForgotRecord => {
                    format!("the state file still holds an old maintenance command: {error}")
                }
            };
            ready.events.push(Event {
                kind: EventKind::DbActionFailed,
                node: me.clone(),
                reason: text,
            });
        }
    }

    /// The executor refused `act` (its queue is full): it is not in flight, and its event says so.
    pub fn not_started(&mut self, ready: &mut Ready, act: &Act, error: &str) {
        let text = format!("{}: {error}", describe(&act.action));
        self.finished_without_running(ready, act, text);
    }

    fn finished_without_running(&mut self, ready: &mut Ready, act: &Act, text: String) {
        if let Some(db) = self.db.as_mut() {
            db.in_flight = db.in_flight.saturating_sub(1);
        }
        if let Some(event) = ready.events.get_mut(act.event) {
            *event = Event {
                kind: EventKind::DbActionFailed,
                node: Some(self.setup.name.clone()),
                reason: text,
            };
        }
    }

    /// Gossip keys of a `Ready` that could not be set: they are offered again next tick.
    pub fn unpublish(&mut self, keys: &[(&'static str, String)]) {
        for (key, _) in keys {
            self.published.remove(key);
        }
    }

    /// One tick: gossip in, decide, act, gossip out, settle the files, answer, report.
    pub fn tick(&mut self, tick: Tick) {
        debug_assert!(tick.now >= self.now, "the monotonic clock went backwards");
        self.now = tick.now.max(self.now);
        self.wall_unix_ms = tick.wall_unix_ms;
        for peer in tick.ignored {
            self.peers.ignored(peer, &mut self.ready.events);
        }
        for claim in tick.refused {
            self.peers.refused(claim, &mut self.ready.events);
        }
        if let Some(reached) = tick.db_reach {
            self.core.input(Input::DbReach(reached));
        }
        let local_db = self.local_db(tick.probe);
        let now = self.now;
        let decisions = self.core.step(now, tick.observations, local_db.as_ref());
        // One view per tick serves the facts and the status: the core does not change between.
        let view = self.core.view(now);
        let facts = self.facts_of(&view);
        for decision in decisions {
            self.decided(decision, &facts);
        }
        self.ready.settled = self.settler.observe(now, facts).or(self.ready.settled.take());
        self.remember_cluster();
        self.keep_maintenance(&view);
        self.answer_pending();
        self.publish_view();
        self.ready.reach_targets = Some(self.core.db_addresses());
        self.ready.db_members = self
            .db
            .is_some()
            .then(|| self.core.db_addresses().into_iter().map(|(name, _, _)| name).collect());
        let (reach_changes, extras) = self.status_book.observe(now, self.core.db_primary(), &view);
        for change in reach_changes {
            let (checker, reason) = change.describe();
            self.event(EventKind::DbReach, Some(checker), reason);
        }
        let mut report = self.report(now, view);
        extras.apply(&mut report);
        self.keep_pandora_view(&report, local_db.as_ref());
        self.ready.status = Some(report);
    }

    fn local_db(&self, probe: Option<Probe>) -> Option<LocalDb> {
        let db = self.db.as_ref()?;
        let probe = probe?;
        Some(LocalDb {
            probe: probe.result,
            unreachable_for_ms: probe.unreachable_for_ms,
            action_in_flight: db.in_flight > 0,
        })
    }

    fn facts_of(&self, view: &[NodeView]) -> Facts {
        facts_from(&self.core, view, &self.setup.cluster_id, &self.setup.name)
    }

    /// The facts of the core as it is now (for hooks fired outside a tick).
    fn facts(&self) -> Facts {
        self.facts_of(&self.core.view(self.now))
    }

    fn event(&mut self, kind: EventKind, node: Option<String>, reason: String) {
        self.ready.events.push(Event { kind, node, reason });
    }

    fn own_event(&mut self, kind: EventKind, reason: String) {
        let me = Some(self.setup.name.clone());
        self.event(kind, me, reason);
    }

    fn decided(&mut self, decision: Decision, facts: &Facts) {
        self.hook_for(&decision, facts);
        let (kind, node, reason) = match decision {
            Decision::NodeUp { node, reason } => (EventKind::NodeUp, Some(node), reason),
            Decision::NodeDown { node, reason } => (EventKind::NodeDown, Some(node), reason),
            Decision::NodeRestarted { node, reason } => (EventKind::NodeRestarted, Some(node), reason),
            Decision::ServerMasterChanged { to, reason, .. } => (EventKind::ServerMasterChanged, to, reason),
            Decision::DbPrimaryChanged {
                to,
                reason,
                switchover: true,
                ..
            } => (EventKind::Switchover, to, reason),
            Decision::DbPrimaryChanged { to, reason, .. } => (EventKind::DbPrimaryChanged, to, reason),
            Decision::Request { from, reason } => (EventKind::AdminCommand, Some(from), reason),
            Decision::Db(DbDecision::Act { action, reason }) => return self.act(action, reason),
            Decision::Db(db) => {
                if matches!(db, DbDecision::SplitBrain { .. }) {
                    self.ready.counted.push(Counted::SplitBrain);
                }
                let (kind, reason) = db_event(db, EventKind::DbNote);
                (kind, Some(self.setup.name.clone()), reason)
            }
        };
        self.event(kind, node, reason);
    }

    /// Hands `action` out; a promotion's record goes to disk first (a restarted agent must never
    /// claim an older epoch than a database it made writable).
    fn act(&mut self, action: DbAction, reason: String) {
        let Some(db) = self.db.as_mut() else { return };
        if let DbAction::Promote { epoch, from_gtid } = &action {
            let state = PersistentState {
                epoch: *epoch,
                promoted_from_gtid: Some(from_gtid.clone()),
                promoted_unix_ms: Some(self.wall_unix_ms),
                ..db.persisted.clone()
            };
            db.persisted = state.clone();
            self.persist(state, PersistReason::Promotion);
            self.core.input(Input::PromotionDurable {
                unix_ms: self.wall_unix_ms,
            });
        }
        if let Some(db) = self.db.as_mut() {
            db.in_flight += 1;
        }
        let event = self.ready.events.len();
        self.own_event(EventKind::DbAction, format!("{}: {reason}", describe(&action)));
        self.ready.actions.push(Act { action, event });
    }

    /// Adds `state` to this `Ready`'s write (the newest state wins, every reason is kept).
    fn persist(&mut self, state: PersistentState, reason: PersistReason) {
        match self.ready.persist.as_mut() {
            Some(persist) => {
                persist.state = state;
                persist.reasons.push(reason);
            }
            None => {
                self.ready.persist = Some(Persist {
                    state,
                    reasons: vec![reason],
                })
            }
        }
    }

    /// Keeps the state file's memory of the cluster current (written only when it changes).
    fn remember_cluster(&mut self) {
        let (known_nodes, last_db_primary) = self.core.cluster_memory();
        let Some(db) = self.db.as_mut() else { return };
        if db.persisted.known_nodes == known_nodes && db.persisted.last_db_primary == last_db_primary {
            return;
        }
        db.persisted = PersistentState {
            known_nodes,
            last_db_primary,
            ..db.persisted.clone()
        };
        let state = db.persisted.clone();
        self.persist(state, PersistReason::ClusterMemory);
    }

    /// Gossips this agent's database and its witness view, setting only what changed.
    fn publish_view(&mut self) {
        let mut wanted = view_keys(&self.core);
        wanted.push((KEY_REQUEST, self.request.clone().unwrap_or_default()));
        wanted.retain(|(key, value)| self.published.get(key) != Some(value));
        self.published.extend(wanted.iter().cloned());
        self.ready.gossip = wanted;
    }

    fn hook_for(&mut self, decision: &Decision, facts: &Facts) {
        let (hook, node, previous, reason) = match decision {
            Decision::NodeUp { node, reason } | Decision::NodeRestarted { node, reason } => {
                (Hook::OnNodeUp, Some(node), None, reason)
            }
            Decision::NodeDown { node, reason } => (Hook::OnNodeDown, Some(node), None, reason),
            Decision::ServerMasterChanged { from, to, reason } => {
                (Hook::OnServerMasterChange, to.as_ref(), from.as_ref(), reason)
            }
            // Once per change of primary: the gap of a failover ("no primary") is not a change
            // a hook can act on, and the next primary's change names the old one as previous.
            Decision::DbPrimaryChanged { to: None, .. } => return,
            Decision::DbPrimaryChanged { from, to, .. } if from == to => return,
            Decision::DbPrimaryChanged { from, to, reason, .. } => {
                (Hook::OnDbPrimaryChange, to.as_ref(), from.as_ref(), reason)
            }
            Decision::Db(_) | Decision::Request { .. } => return,
        };
        let mut environment = fact_environment(facts);
        environment.push(("GOSSIP_HA_NODE".into(), node.cloned().unwrap_or_default()));
        environment.push(("GOSSIP_HA_PREVIOUS".into(), previous.cloned().unwrap_or_default()));
        environment.push(("GOSSIP_HA_REASON".into(), reason.clone()));
        self.ready.hooks.push(HookCall { hook, environment });
    }

    fn report(&self, now: MonoMs, view: Vec<NodeView>) -> StatusReport {
        StatusReport {
            nodes: view.into_iter().map(node_status).collect(),
            server_master: self.core.server_master().map(str::to_string),
            db_primary: self.core.db_primary().map(str::to_string),
            uptime_ms: now.0,
            ..empty_report(
                &self.setup.name,
                &self.setup.cluster_id,
                self.setup.announcement.threshold_ms,
            )
        }
    }
}

/// A DB node's core and side, from what the state file held: the maintenance it starts in
/// (the newer of the operator's last command and `[db] maintenance`) and why, in `ready`.
fn db_side(setup: &NodeSetup, db_setup: &NodeDbSetup, ready: &mut Ready) -> (DbCore, DbSide) {
    let mut persisted = db_setup.persisted.clone();
    let config_maintenance = db_setup.policy.maintenance;
    let start = persisted.maintenance_at_start(config_maintenance);
    if start.forgot_record {
        ready.persist = Some(Persist {
            state: persisted.clone(),
            reasons: vec![PersistReason::ForgotRecord],
        });
    }
    if let Some(note) = start.note {
        ready.events.push(Event {
            kind: EventKind::AdminCommand,
            node: Some(setup.name.clone()),
            reason: note,
        });
    }
    let db_core = DbCore::new(
        DbPolicy {
            maintenance: start.on,
            ..db_setup.policy.clone()
        },
        persisted.epoch,
    )
    .with_promotion_record(persisted.promoted_from_gtid.clone(), persisted.promoted_unix_ms);
    let side = DbSide {
        persisted,
        config_maintenance,
        in_flight: 0,
        switchover_timeout_ms: db_setup.policy.switchover_timeout_ms,
        database: db_setup.database.clone(),
        pandora: db_setup
            .pandora_view
            .then(|| pandora::ViewState::new(&setup.ha_hosts, &setup.name, &db_setup.policy.advertise)),
    };
    (db_core, side)
}

/// The event a DB decision is recorded as (a note as `note_kind`: a repair's notes are repair
/// events); an action reads as its description, never as Rust debug text.
fn db_event(decision: DbDecision, note_kind: EventKind) -> (EventKind, String) {
    match decision {
        DbDecision::Note { reason } => (note_kind, reason),
        DbDecision::NeedsResync { reason } => (EventKind::DbNeedsResync, reason),
        DbDecision::Unreachable { reason } => (EventKind::DbUnreachable, reason),
        DbDecision::Reachable { reason } => (EventKind::DbReachable, reason),
        DbDecision::SplitBrain { reason } => (EventKind::SplitBrain, reason),
        DbDecision::Warning { reason } => (EventKind::DbWarning, reason),
        DbDecision::Act { action, reason } => (EventKind::DbAction, format!("{}: {reason}", describe(&action))),
    }
}

#[cfg(test)]
mod tests;
