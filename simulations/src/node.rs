//! One simulated host: the agent's real chitchat gossip and real pure core, driven the way the
//! daemon's driver drives them, with the model database behind the real `DbBackend` trait and
//! its "configuration file" (the settled DB primary, as a rewrite would write it).

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;

use gossip_ha::agent::{describe, facts_from, view_keys};
use gossip_ha::core::db::{DbAction, DbCore, DbDecision, DbPolicy, LocalDb, SaveFirst};
use gossip_ha::core::settle::Settler;
use gossip_ha::core::{Core, Decision, MonoMs};
use gossip_ha::db::{DbBackend, ReplicationSource};
use gossip_ha::gossip::{Authority, Gossip, GossipParams, Seen};
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
    Promoted { epoch: u64 },
}

pub struct SimAgent {
    pub name: String,
    pub roles: BTreeSet<Role>,
    pub addr: SocketAddr,
    pub priority: u8,
    pub ha_hosts: usize,
    generation: u64,
    persisted_epoch: u64,
    persisted_fork: Option<String>,
    /// The state file's memory of the cluster (known nodes, last DB primary), as the daemon's.
    persisted_cluster: (Vec<String>, Option<String>),
    gossip: Option<Gossip>,
    core: Option<Core>,
    db: Option<ModelDb>,
    started_at: tokio::time::Instant,
    unreachable_since: Option<tokio::time::Instant>,
    published: HashMap<&'static str, String>,
    settler: Settler<Option<String>>,
    /// The DB primary this host's configuration names (what pandora_ha_hosts.conf would hold).
    pub config_db_primary: Option<String>,
    /// For the reachability check every agent makes of the DB hosts.
    models: ModelCluster,
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
            persisted_epoch: 0,
            persisted_fork: None,
            persisted_cluster: (Vec::new(), None),
            gossip: None,
            core: None,
            db,
            started_at: tokio::time::Instant::now(),
            unreachable_since: None,
            published: HashMap::new(),
            settler: Settler::new(SETTLE_MS),
            config_db_primary: None,
            models: models.clone(),
        }
    }

    pub fn is_running(&self) -> bool {
        self.gossip.is_some()
    }

    pub fn is_db(&self) -> bool {
        self.roles.contains(&Role::Db)
    }

    /// How many nodes (itself included) this agent's core holds alive right now.
    pub fn alive_count(&self) -> usize {
        let Some(core) = self.core.as_ref() else { return 0 };
        let now = MonoMs(self.started_at.elapsed().as_millis() as u64);
        core.view(now).iter().filter(|node| node.alive).count()
    }

    /// Whether this agent's core holds `name` alive right now.
    pub fn sees_alive(&self, name: &str) -> bool {
        let Some(core) = self.core.as_ref() else { return false };
        let now = MonoMs(self.started_at.elapsed().as_millis() as u64);
        core.view(now).iter().any(|node| node.name == name && node.alive)
    }

    pub fn db_role(&self) -> Option<DbRole> {
        self.core.as_ref()?.self_db().map(|db| db.role)
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
        // Simulated nodes have no certificates: gossip is believed, as on plain loopback.
        let authority = Authority::default();
        let gossip = Gossip::start(&params, &announcement, &network.transport(&self.name), authority)
            .await
            .expect("simulated gossip starts");
        let mut core = Core::new(&self.name, &self.addr.to_string(), self.generation, announcement);
        if self.is_db() {
            let policy = DbPolicy {
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
            };
            core = core.with_db(
                DbCore::new(policy, self.persisted_epoch).with_promotion_record(self.persisted_fork.clone(), None),
            );
            let (nodes, primary) = self.persisted_cluster.clone();
            core.remember_cluster(nodes, primary);
        }
        self.gossip = Some(gossip);
        self.core = Some(core);
        self.started_at = tokio::time::Instant::now();
        self.unreachable_since = None;
        self.published.clear();
        self.settler = Settler::new(SETTLE_MS);
    }

    /// The agent dies: its gossip stops and its memory is gone (the epoch file survives).
    pub async fn crash(&mut self) {
        if let Some(gossip) = self.gossip.take() {
            gossip.shutdown().await;
        }
        self.core = None;
    }

    /// One driver tick: gossip in, probe, decide, act, gossip out, settle the configuration.
    pub async fn step(&mut self) -> Vec<Happening> {
        let (Some(gossip), Some(core)) = (self.gossip.as_ref(), self.core.as_mut()) else {
            return Vec::new();
        };
        let now = MonoMs(self.started_at.elapsed().as_millis() as u64);
        let Ok(Seen { observations, .. }) = gossip.observations().await else {
            return Vec::new();
        };
        let local = match self.db.as_mut() {
            None => None,
            Some(db) => {
                let probe = db.probe().await.map_err(|err| err.to_string());
                self.unreachable_since = match &probe {
                    Ok(_) => None,
                    Err(_) => Some(self.unreachable_since.unwrap_or_else(tokio::time::Instant::now)),
                };
                Some(LocalDb {
                    probe,
                    unreachable_for_ms: self
                        .unreachable_since
                        .map_or(0, |since| since.elapsed().as_millis() as u64),
                    action_in_flight: false,
                })
            }
        };
        core.set_db_reach(self.models.reachable_from(&self.name));
        let mut happened = Vec::new();
        let mut actions = Vec::new();
        let decisions = core.step(now, observations, local.as_ref());
        if self.db.is_some() {
            self.persisted_cluster = core.cluster_memory();
        }
        for decision in decisions {
            match decision {
                Decision::Db(DbDecision::Act { action, reason }) => {
                    happened.push(Happening::Note(format!("{}: {reason}", describe(&action))));
                    actions.push(action);
                }
                Decision::Db(DbDecision::Note { reason }) => happened.push(Happening::Note(reason)),
                Decision::Db(DbDecision::NeedsResync { reason }) => {
                    happened.push(Happening::Note(format!("needs resync: {reason}")))
                }
                Decision::NodeDown { reason, .. } | Decision::NodeRestarted { reason, .. } => {
                    happened.push(Happening::Note(reason))
                }
                Decision::DbPrimaryChanged { to, .. } => happened.push(Happening::Note(format!(
                    "db primary is now {}",
                    to.as_deref().unwrap_or("none")
                ))),
                _ => {}
            }
        }
        for action in actions {
            if let Some(db) = self.db.as_mut() {
                let result = match &action {
                    DbAction::SetReadOnly | DbAction::StepDown => db.set_read_only().await,
                    DbAction::Promote { .. } | DbAction::Resume => db.promote().await,
                    DbAction::StopReplication => db.stop_replication().await,
                    DbAction::Fence { node, .. } => db.fence(node, 3306, std::time::Duration::from_secs(2)).await,
                    DbAction::Merge(plan) => db.merge_into(&plan.winner),
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
                };
                if matches!(action, DbAction::Merge(_) | DbAction::Resync { .. }) {
                    let result = result.clone().map_err(|err| err.to_string());
                    if let Some(db_core) = core.db_mut() {
                        for decision in db_core.repair_finished(&action, result) {
                            let reason = match decision {
                                DbDecision::Note { reason } | DbDecision::NeedsResync { reason } => reason,
                                other => format!("{other:?}"),
                            };
                            happened.push(Happening::Note(format!("repair: {reason}")));
                        }
                    }
                }
                if let (DbAction::Promote { epoch, from_gtid }, Ok(())) = (&action, &result) {
                    self.persisted_epoch = *epoch;
                    self.persisted_fork = Some(from_gtid.clone());
                    happened.push(Happening::Promoted { epoch: *epoch });
                }
            }
        }
        let mut wanted = view_keys(core);
        wanted.retain(|(key, value)| self.published.get(key) != Some(value));
        if !wanted.is_empty() && gossip.set_keys(&wanted).await.is_ok() {
            self.published.extend(wanted);
        }
        let facts = facts_from(core, &core.view(now), "sim", &self.name);
        if let Some(settled) = self.settler.observe(now, facts.db_primary) {
            if settled.is_some() {
                self.config_db_primary = settled;
            }
        }
        happened
    }
}
