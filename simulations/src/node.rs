//! One simulated host: the agent's real chitchat gossip and the daemon's very node machine
//! (`gossip_ha::node::Node`), with the model database behind the real `DbBackend` trait as its
//! executor, an in-memory state file that survives crashes, and its "configuration file" (the
//! settled DB primary, as a rewrite would write it). Only I/O lives here, as in `agent`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use gossip_ha::core::authority::Grants;
use gossip_ha::core::db::{DbAction, DbPolicy, SaveFirst};
use gossip_ha::core::MonoMs;
use gossip_ha::db::{DbBackend, DbError, ReplicationSource};
use gossip_ha::gossip::{Authority, Gossip, GossipParams, Seen};
use gossip_ha::node::{AdminId, Answer, Finished, Node, NodeDbSetup, NodeSetup, Probe, Ready, Tick};
use gossip_ha::state_file::PersistentState;
use gossip_ha_proto::api::{Command, EventKind};
use gossip_ha_proto::db::DbRole;
use gossip_ha_proto::gossip::{Announcement, Role};

use crate::model_db::{ModelCluster, ModelDb};
use crate::network::SimNetwork;

pub const THRESHOLD_MS: u64 = 1_000;
const SETTLE_MS: u64 = THRESHOLD_MS / 2;

/// What the world learns from one step of an agent.
#[derive(Debug, Clone)]
pub enum Happening {
    Note(String),
    Promoted {
        epoch: u64,
    },
    /// The node answered an operator's command given on its socket.
    Answered {
        command: Command,
        answer: Answer,
    },
}

pub struct SimAgent {
    pub name: String,
    pub roles: BTreeSet<Role>,
    pub addr: SocketAddr,
    pub priority: u8,
    pub ha_hosts: usize,
    generation: u64,
    /// The state file: it survives a crash of the agent.
    persisted: PersistentState,
    gossip: Option<Gossip>,
    node: Option<Node>,
    db: Option<ModelDb>,
    started_at: tokio::time::Instant,
    unreachable_since: Option<tokio::time::Instant>,
    /// The DB primary this host's configuration names (what pandora_ha_hosts.conf would hold).
    pub config_db_primary: Option<String>,
    /// Actions run on the model whose outcomes the executor has not reported yet, with the
    /// steps left before it does (a repair takes several, as a real one takes time).
    reporting: Vec<(u32, Finished)>,
    /// For the reachability check every agent makes of the DB hosts.
    models: ModelCluster,
    /// Operators' commands given on this host's socket, not answered yet (a crash of the
    /// agent drops them: the operator's client sees its connection close).
    asked: BTreeMap<AdminId, Command>,
    next_admin_id: AdminId,
}

impl SimAgent {
    pub fn new(name: &str, roles: &[Role], index: usize, priority: u8, ha_hosts: usize, models: &ModelCluster) -> Self {
        let addr = SocketAddr::from(([198, 18, (index / 250) as u8, (index % 250 + 1) as u8], 7946));
        let db = roles.contains(&Role::Db).then(|| ModelDb {
            cluster: models.clone(),
            host: name.to_string(),
        });
        SimAgent {
            name: name.to_string(),
            roles: roles.iter().copied().collect(),
            addr,
            priority,
            ha_hosts,
            generation: 0,
            persisted: PersistentState::default(),
            gossip: None,
            node: None,
            db,
            started_at: tokio::time::Instant::now(),
            unreachable_since: None,
            config_db_primary: None,
            reporting: Vec::new(),
            models: models.clone(),
            asked: BTreeMap::new(),
            next_admin_id: 0,
        }
    }

    pub fn is_running(&self) -> bool {
        self.gossip.is_some()
    }

    pub fn is_db(&self) -> bool {
        self.roles.contains(&Role::Db)
    }

    fn now(&self) -> MonoMs {
        MonoMs(self.started_at.elapsed().as_millis() as u64)
    }

    /// This host's wall clock: the model's, with the host's clock jumps.
    fn wall_unix_ms(&self) -> u64 {
        self.models.wall_ms(&self.name)
    }

    /// How many nodes (itself included) this agent's core holds alive right now.
    pub fn alive_count(&self) -> usize {
        let Some(node) = self.node.as_ref() else { return 0 };
        node.core().view(self.now()).iter().filter(|node| node.alive).count()
    }

    /// Whether this agent's core holds `name` alive right now.
    pub fn sees_alive(&self, name: &str) -> bool {
        let Some(node) = self.node.as_ref() else { return false };
        node.core()
            .view(self.now())
            .iter()
            .any(|node| node.name == name && node.alive)
    }

    pub fn db_role(&self) -> Option<DbRole> {
        self.node.as_ref()?.core().self_db().map(|db| db.role)
    }

    fn setup(&self, announcement: Announcement, seeds: &[SocketAddr]) -> NodeSetup {
        NodeSetup {
            name: self.name.clone(),
            cluster_id: "sim".into(),
            advertise: self.addr.to_string(),
            generation: self.generation,
            announcement,
            seeds: seeds.iter().map(SocketAddr::to_string).collect(),
            rewrite_settle_ms: SETTLE_MS,
            ha_hosts: Vec::new(),
            relay_refusal: self.models.grants().get(&self.name).and_then(Grants::relay_refusal),
            db: self.is_db().then(|| NodeDbSetup {
                policy: DbPolicy {
                    priority: self.priority,
                    advertise: format!("{}:3306", self.name),
                    ha_hosts_count: self.ha_hosts,
                    maintenance: false,
                    promotion_cooldown_ms: 10 * THRESHOLD_MS,
                    catchup_timeout_ms: 5 * THRESHOLD_MS,
                    splitbrain_autofix: true,
                    splitbrain_lookback_ms: 0,
                    switchover_timeout_ms: 10 * THRESHOLD_MS,
                    transfer: None,
                },
                persisted: self.persisted.clone(),
                check_interval_ms: TICK_CHECK_INTERVAL_MS,
                database: "pandora".into(),
                pandora_view: false,
            }),
        }
    }

    pub async fn start(&mut self, network: &SimNetwork, seeds: &[SocketAddr]) {
        self.generation += 1;
        let announcement = Announcement {
            roles: self.roles.clone(),
            master: u8::from(self.roles.contains(&Role::Server)),
            threshold_ms: THRESHOLD_MS,
            started_unix_ms: 0,
        };
        let params = GossipParams {
            node_name: self.name.clone(),
            cluster_id: "sim".into(),
            listen: self.addr,
            advertise: self.addr,
            seeds: seeds
                .iter()
                .filter(|seed| **seed != self.addr)
                .map(SocketAddr::to_string)
                .collect(),
            threshold_ms: THRESHOLD_MS,
            generation: self.generation,
            certificate: None,
            rounds: network.rounds(),
        };
        // Simulated nodes have no certificates: each peer's gossip is held to the grants its
        // certificate would carry, as `core::authority` does over TLS.
        let authority = Authority {
            plain_grants: self.models.grants(),
            ..Authority::default()
        };
        let gossip = Gossip::start(&params, &announcement, &network.transport(&self.name), authority)
            .await
            .expect("simulated gossip starts");
        let seeds: Vec<SocketAddr> = seeds.iter().copied().filter(|seed| *seed != self.addr).collect();
        self.node = Some(Node::new(self.setup(announcement, &seeds)));
        self.gossip = Some(gossip);
        self.started_at = tokio::time::Instant::now();
        self.unreachable_since = None;
    }

    /// The agent dies: its gossip stops and its memory is gone (the state file survives).
    pub async fn crash(&mut self) {
        if let Some(gossip) = self.gossip.take() {
            gossip.shutdown().await;
        }
        self.node = None;
        // What the executor had not reported dies with the agent; the model keeps its effect.
        self.reporting.clear();
        self.asked.clear();
    }

    /// An operator gives `command` on this host's socket, as root, as `gossip-ha` does; false
    /// when the agent is down (the client cannot connect).
    pub fn operator(&mut self, command: Command) -> bool {
        let (now, wall_unix_ms) = (self.now(), self.wall_unix_ms());
        let Some(node) = self.node.as_mut() else {
            return false;
        };
        self.next_admin_id += 1;
        self.asked.insert(self.next_admin_id, command.clone());
        node.admin(now, wall_unix_ms, self.next_admin_id, command, 0);
        true
    }

    /// One driver tick: gossip in, probe, the node's tick, then its `Ready` carried out.
    pub async fn step(&mut self) -> Vec<Happening> {
        let Some(gossip) = self.gossip.as_ref() else {
            return Vec::new();
        };
        let Ok(Seen {
            observations,
            ignored,
            refused,
        }) = gossip.observations().await
        else {
            return Vec::new();
        };
        let mut happened = self.collect_outcomes();
        let probe = self.probe().await;
        let tick = Tick {
            now: self.now(),
            wall_unix_ms: self.wall_unix_ms(),
            observations,
            ignored,
            refused,
            probe,
            db_reach: Some(self.models.reachable_from(&self.name)),
        };
        let Some(node) = self.node.as_mut() else {
            return Vec::new();
        };
        node.tick(tick);
        happened.extend(self.carry_out().await);
        happened
    }

    /// Outcomes whose time has come go to the node before its tick, as the daemon's worker's do.
    fn collect_outcomes(&mut self) -> Vec<Happening> {
        let mut happened = Vec::new();
        let now = self.now();
        let Some(node) = self.node.as_mut() else {
            return happened;
        };
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.reporting)
            .into_iter()
            .map(|(steps, finished)| (steps.saturating_sub(1), finished))
            .partition(|(steps, _)| *steps == 0);
        self.reporting = later;
        for (_, finished) in due {
            if let (DbAction::Promote { epoch, .. }, Ok(_)) = (&finished.action, &finished.result) {
                happened.push(Happening::Promoted { epoch: *epoch });
            }
            node.action_finished(now, finished);
        }
        happened
    }

    async fn probe(&mut self) -> Option<Probe> {
        let db = self.db.as_mut()?;
        let result = db.probe().await.map_err(|err| err.to_string());
        self.unreachable_since = match &result {
            Ok(_) => None,
            Err(_) => Some(self.unreachable_since.unwrap_or_else(tokio::time::Instant::now)),
        };
        Some(Probe {
            result,
            unreachable_for_ms: self
                .unreachable_since
                .map_or(0, |since| since.elapsed().as_millis() as u64),
        })
    }

    /// The node's `Ready` in its order: the state file, then the actions (run at once on the
    /// model, their outcomes reported at a later step), events, gossip, the configuration file.
    async fn carry_out(&mut self) -> Vec<Happening> {
        let mut happened = Vec::new();
        let Some(mut ready) = self.node.as_mut().map(Node::ready) else {
            return happened;
        };
        if let Some(persist) = ready.persist.take() {
            self.persisted = persist.state;
        }
        let finished = self.execute(std::mem::take(&mut ready.actions)).await;
        self.reporting.extend(finished);
        for event in &ready.events {
            if worth_a_line(event.kind) {
                happened.push(Happening::Note(event.reason.clone()));
            }
        }
        for (id, answer) in std::mem::take(&mut ready.answers) {
            if let Some(command) = self.asked.remove(&id) {
                happened.push(Happening::Answered { command, answer });
            }
        }
        self.publish(&ready).await;
        if let Some(settled) = ready.settled.take() {
            if settled.db_primary.is_some() {
                self.config_db_primary = settled.db_primary;
            }
        }
        happened
    }

    async fn publish(&mut self, ready: &Ready) {
        let (Some(gossip), Some(node)) = (self.gossip.as_ref(), self.node.as_mut()) else {
            return;
        };
        if !ready.gossip.is_empty() && gossip.set_keys(&ready.gossip).await.is_err() {
            node.unpublish(&ready.gossip);
        }
    }

    /// Runs each action on the model database, as the daemon's worker runs it on MariaDB.
    async fn execute(&mut self, actions: Vec<gossip_ha::node::Act>) -> Vec<(u32, Finished)> {
        let mut finished = Vec::new();
        let Some(db) = self.db.as_mut() else {
            return finished;
        };
        for act in actions {
            let (result, unsaved) = match run_action(db, &act.action).await {
                Ok(unsaved) => (Ok(()), unsaved),
                Err(err) => (Err(err), None),
            };
            let steps = match act.action {
                DbAction::Merge(_) | DbAction::Resync { .. } => REPAIR_REPORT_STEPS,
                _ => 1,
            };
            finished.push((
                steps,
                Finished {
                    took_ms: u64::from(steps) * TICK_CHECK_INTERVAL_MS,
                    action: act.action,
                    result: result.map(|()| None).map_err(|err| err.to_string()),
                    unsaved,
                },
            ));
        }
        finished
    }

    /// Sets raw gossip keys on this agent's node, as a peer lying about itself would.
    pub async fn forge(&mut self, keys: &[(&'static str, String)]) {
        if let Some(gossip) = self.gossip.as_ref() {
            let _ = gossip.set_keys(keys).await;
        }
    }
}

/// The model database's probe runs every tick.
const TICK_CHECK_INTERVAL_MS: u64 = 50;
/// A merge or rebuild is reported this many steps after it ran (other actions at the next step).
const REPAIR_REPORT_STEPS: u32 = 6;

/// The timeline keeps what explains a run, not every node seen up.
fn worth_a_line(kind: EventKind) -> bool {
    !matches!(
        kind,
        EventKind::NodeUp | EventKind::DbReach | EventKind::ServerMasterChanged
    )
}

/// Runs `action` on the model; `Ok(Some(why))` for a merge that left data it could not save.
async fn run_action(db: &mut ModelDb, action: &DbAction) -> Result<Option<String>, DbError> {
    match action {
        DbAction::Merge(plan) => db.merge_into(&plan.winner),
        action => run_plain_action(db, action).await.map(|()| None),
    }
}

async fn run_plain_action(db: &mut ModelDb, action: &DbAction) -> Result<(), DbError> {
    match action {
        DbAction::SetReadOnly | DbAction::StepDown => db.set_read_only().await,
        DbAction::Promote { .. } | DbAction::Resume => db.promote().await,
        DbAction::StopReplication => db.stop_replication().await,
        DbAction::Fence { addr, host_reached, .. } => {
            let (host, port) = gossip_ha::address::split_host_port(addr).unwrap_or((addr.clone(), 3306));
            let timeout = Duration::from_millis(if *host_reached { 2_000 } else { 500 });
            db.fence(&host, port, timeout).await
        }
        DbAction::Merge(plan) => db.merge_into(&plan.winner).map(|_| ()),
        DbAction::Resync {
            node,
            save_first: SaveFirst::BinlogAndDump,
            ..
        } => db.save_everything().and_then(|()| db.resync_from(node)),
        DbAction::Resync { node, .. } => db.resync_from(node),
        DbAction::ReplicateFrom { node, .. } => {
            db.replicate_from(&ReplicationSource {
                host: node.clone(),
                port: 3306,
                user: "repl".into(),
                password: gossip_ha::config::Secret::new(""),
            })
            .await
        }
    }
}
