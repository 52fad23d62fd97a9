//! The core's memory of the cluster: what each peer announced, whether it is alive, who is
//! server master and DB primary. `step` is the only way time moves forward in here.

use std::collections::BTreeMap;

use gossip_ha_proto::db::DbAnnouncement;
use gossip_ha_proto::gossip::{Announcement, ClusterRequest, RequestAnswer, Role};

use super::db::{
    elect_db_primary, peer_claim, positions_settled, split_tally, unrelated_claims, Claim, DbCore, DbDecision, DbView,
    LocalDb, PeerDb,
};
use super::election::{elect_server_master, Candidate};
use super::liveness::{down_after_ms, LivenessTracker, Observed};
use super::{seconds, MonoMs};

/// The DB primary from the peers' claims and this node's own; `keep` (the primary elected so far,
/// while the claims' positions are not all past the fork) stays if it still claims and yields to
/// nobody: a verdict from a position older than the fork could be reversed a moment later.
fn elect_from<'a>(peer_claims: &[Claim<'a>], own: Option<Claim<'a>>, keep: Option<&str>) -> Option<Claim<'a>> {
    let claims: Vec<Claim<'a>> = peer_claims.iter().copied().chain(own).collect();
    let kept = keep.and_then(|name| {
        claims
            .iter()
            .find(|claim| claim.name == name && claim.yields_to.is_none())
            .copied()
    });
    kept.or_else(|| elect_db_primary(claims))
}

/// Peers remembered at most; beyond it the longest-DOWN ones are forgotten first.
pub const MAX_TRACKED_NODES: usize = 4096;

/// One peer as gossip shows it right now (its newest generation only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub name: String,
    pub generation: u64,
    pub heartbeat: u64,
    pub addr: String,
    pub announcement: Announcement,
    /// The peer's local database, for nodes with the `db` role.
    pub db: Option<DbAnnouncement>,
    /// The DB primary the peer believes in: it witnesses for or against a promotion.
    pub db_primary: Option<String>,
    /// An operator's pending command, given on that peer's socket.
    pub request: Option<ClusterRequest>,
    /// The peer's answers to relayed commands.
    pub answers: Vec<RequestAnswer>,
    /// DB nodes whose host the peer reached at its last check.
    pub db_reach: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    NodeUp {
        node: String,
        reason: String,
    },
    NodeDown {
        node: String,
        reason: String,
    },
    NodeRestarted {
        node: String,
        reason: String,
    },
    ServerMasterChanged {
        from: Option<String>,
        to: Option<String>,
        reason: String,
    },
    /// `from` is the last primary known before this one (not "none" in between: a failover
    /// is one change, and `from == to` is a primary back after a gap, no change at all); `to`
    /// is `None` while no node holds a valid claim.
    DbPrimaryChanged {
        from: Option<String>,
        to: Option<String>,
        reason: String,
        /// A planned switchover: the old primary handed over to `to`.
        switchover: bool,
    },
    /// A command an operator gave on another node, carried out here (or refused).
    Request {
        from: String,
        reason: String,
    },
    Db(DbDecision),
}

/// A node as this agent sees it, for status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    pub name: String,
    pub addr: String,
    pub generation: u64,
    pub announcement: Announcement,
    pub alive: bool,
    pub last_contact_ms: u64,
    pub is_self: bool,
    pub db: Option<DbAnnouncement>,
    /// This agent's own database only: settings that put something at risk (not gossiped).
    pub db_warnings: Vec<String>,
    /// DB nodes whose host this node's last reachability check reached (as it gossips them).
    pub db_reach: Vec<String>,
}

#[derive(Debug, Clone)]
struct Peer {
    addr: String,
    generation: u64,
    announcement: Announcement,
    alive: bool,
    db: Option<DbAnnouncement>,
    db_primary: Option<String>,
    request: Option<ClusterRequest>,
    answers: Vec<RequestAnswer>,
    db_reach: Vec<String>,
}

impl Peer {
    fn from_observation(observation: Observation) -> Self {
        Peer {
            addr: observation.addr,
            generation: observation.generation,
            announcement: observation.announcement,
            alive: true,
            db: observation.db,
            db_primary: observation.db_primary,
            request: observation.request,
            answers: observation.answers,
            db_reach: observation.db_reach,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Core {
    self_name: String,
    self_addr: String,
    self_generation: u64,
    self_announcement: Announcement,
    liveness: LivenessTracker,
    peers: BTreeMap<String, Peer>,
    server_master: Option<String>,
    db_primary: Option<String>,
    /// The last DB primary elected before the current one (or before "none"): what a change
    /// is from, across the gap of a failover.
    last_db_primary: Option<String>,
    /// Since when several primary claims are seen whose positions are not all past the fork.
    contested_since: Option<MonoMs>,
    /// Present when this node has the `db` role.
    db: Option<DbCore>,
    self_db: Option<DbAnnouncement>,
    last_peer_return: Option<MonoMs>,
    /// The newest request id carried out per requesting peer: each is applied once.
    handled_requests: BTreeMap<String, u64>,
    /// How this node took the newest request it acted on, per requesting peer.
    answers: BTreeMap<String, RequestAnswer>,
    /// DB nodes whose host this agent reached at its last check (the shell probes).
    db_reach: Vec<String>,
    /// Nodes a previous run of this agent knew (from the state file): a restarted agent that
    /// hears nobody yet is still part of a cluster that large, not a fresh one.
    remembered_nodes: std::collections::BTreeSet<String>,
    /// Until the first server-master election: the seeds' gossip addresses not heard from yet.
    seed_hold: Option<SeedHold>,
}

/// The first server-master election waits for the seeds' first answers, bounded by one DOWN
/// window: an agent that elected itself before hearing anyone would fire hooks and rewrites for
/// a master that never was.
#[derive(Debug, Clone)]
struct SeedHold {
    seeds: Vec<String>,
    since: Option<MonoMs>,
}

impl Core {
    pub fn new(self_name: &str, self_addr: &str, self_generation: u64, announcement: Announcement) -> Self {
        Core {
            self_name: self_name.to_string(),
            self_addr: self_addr.to_string(),
            self_generation,
            self_announcement: announcement,
            liveness: LivenessTracker::default(),
            peers: BTreeMap::new(),
            server_master: None,
            db_primary: None,
            last_db_primary: None,
            contested_since: None,
            db: None,
            self_db: None,
            last_peer_return: None,
            handled_requests: BTreeMap::new(),
            answers: BTreeMap::new(),
            db_reach: Vec::new(),
            remembered_nodes: Default::default(),
            seed_hold: None,
        }
    }

    /// The seeds' gossip addresses (`host:port` as peers advertise them): the first server-master
    /// election waits until each has been heard from, or for one DOWN window at most.
    pub fn with_seeds(mut self, seeds: impl IntoIterator<Item = String>) -> Self {
        let seeds: Vec<String> = seeds.into_iter().filter(|seed| *seed != self.self_addr).collect();
        self.seed_hold = (!seeds.is_empty()).then_some(SeedHold { seeds, since: None });
        self
    }

    /// Whether the server master may be elected: the seeds were heard from, or waited for long
    /// enough (a seed silent for a DOWN window would be down anyway).
    fn seeds_answered(&mut self, now: MonoMs) -> bool {
        let Some(hold) = self.seed_hold.as_mut() else {
            return true;
        };
        let since = *hold.since.get_or_insert(now);
        let heard_all = hold
            .seeds
            .iter()
            .all(|seed| self.peers.values().any(|peer| peer.addr == *seed));
        let waited_enough = now.since(since) >= down_after_ms(self.self_announcement.threshold_ms);
        if heard_all || waited_enough {
            self.seed_hold = None;
        }
        self.seed_hold.is_none()
    }

    /// What a previous run knew of the cluster: its nodes and the DB primary it last saw.
    pub fn remember_cluster(&mut self, nodes: impl IntoIterator<Item = String>, last_db_primary: Option<String>) {
        self.remembered_nodes = nodes
            .into_iter()
            .filter(|name| *name != self.self_name)
            .take(MAX_TRACKED_NODES)
            .collect();
        if let Some(db) = self.db.as_mut() {
            db.remember_primary(last_db_primary.filter(|name| *name != self.self_name));
        }
    }

    /// What the shell persists for the next run: every node known (this one's peers, and those
    /// remembered), and the DB primary last elected.
    pub fn cluster_memory(&self) -> (Vec<String>, Option<String>) {
        let mut nodes: std::collections::BTreeSet<String> = self.remembered_nodes.clone();
        nodes.extend(self.peers.keys().cloned());
        let primary = self.db_primary.clone().or_else(|| {
            self.db
                .as_ref()
                .and_then(|db| db.last_primary_seen().map(str::to_string))
        });
        (nodes.into_iter().take(MAX_TRACKED_NODES).collect(), primary)
    }

    /// Makes this node a DB node whose local database the core decides for.
    pub fn with_db(mut self, db: DbCore) -> Self {
        self.db = Some(db);
        self
    }

    /// Puts this node's database in or out of maintenance; `false` when it is not a DB node.
    pub(crate) fn set_db_maintenance(&mut self, on: bool) -> bool {
        match self.db.as_mut() {
            Some(db) => {
                db.set_maintenance(on);
                true
            }
            None => false,
        }
    }

    /// The shell says this through `input`; the core's tests directly.
    pub(crate) fn set_db_reach(&mut self, reached: Vec<String>) {
        self.db_reach = reached;
    }

    /// The local DB half of the core, for the core's tests; the shell goes through `input`.
    #[cfg(test)]
    pub(crate) fn db_mut(&mut self) -> Option<&mut DbCore> {
        self.db.as_mut()
    }

    pub fn db_reach(&self) -> &[String] {
        &self.db_reach
    }

    /// The DB nodes this agent knows, for the reachability check: `(name, database address,
    /// gossip address)`.
    pub fn db_addresses(&self) -> Vec<(String, String, String)> {
        self.peers
            .iter()
            .filter_map(|(name, peer)| {
                let database = peer.db.as_ref()?.advertise.clone();
                Some((name.clone(), database, peer.addr.clone()))
            })
            .collect()
    }

    /// `gossip-ha resync` on this node: rebuild from the elected primary.
    pub(crate) fn request_resync(&mut self) -> Result<String, String> {
        let primary = self.db_primary.clone();
        let addr = primary
            .as_deref()
            .and_then(|name| self.peers.get(name))
            .and_then(|peer| peer.db.as_ref())
            .map(|db| db.advertise.clone());
        let Some(db) = self.db.as_mut() else {
            return Err(format!(
                "{} has no `db` role: there is no database to resync",
                self.self_name
            ));
        };
        db.request_resync(primary.as_deref().zip(addr.as_deref()))
    }

    pub fn server_master(&self) -> Option<&str> {
        self.server_master.as_deref()
    }

    pub fn db_primary(&self) -> Option<&str> {
        self.db_primary.as_deref()
    }

    pub fn self_name(&self) -> &str {
        &self.self_name
    }

    /// Some live peer believes this node is the DB primary: it is not cut off from everyone.
    pub fn primary_vouched_for(&self) -> bool {
        self.peers
            .values()
            .any(|peer| peer.alive && peer.db_primary.as_deref() == Some(self.self_name.as_str()))
    }

    /// What this agent gossips as its view: the nodes it holds DOWN, and its DB primary.
    pub fn witness_view(&self) -> (Vec<String>, Option<String>) {
        let down = self
            .peers
            .iter()
            .filter(|(_, peer)| !peer.alive)
            .map(|(name, _)| name.clone());
        (down.collect(), self.db_primary.clone())
    }

    /// This node's database as it should be gossiped, after the latest step.
    pub fn self_db(&self) -> Option<&DbAnnouncement> {
        self.self_db.as_ref()
    }

    /// What puts the local database at risk, for this agent's status.
    pub fn db_warnings(&self) -> Vec<String> {
        let binlog = self.db.as_ref().and_then(DbCore::binlog_warning);
        binlog.into_iter().map(str::to_string).collect()
    }

    /// A peer is judged by the larger of the two thresholds, so a peer configured to heartbeat
    /// more slowly than us is not declared DOWN early.
    fn peer_threshold_ms(&self, peer: &Peer) -> u64 {
        self.self_announcement.threshold_ms.max(peer.announcement.threshold_ms)
    }

    /// One step: absorb what gossip shows, apply the liveness rule, elect the server master and
    /// the DB primary, and (on a DB node, given `local_db`) decide for the local database.
    pub fn step(
        &mut self,
        now: MonoMs,
        observations: impl IntoIterator<Item = Observation>,
        local_db: Option<&LocalDb>,
    ) -> Vec<Decision> {
        let mut decisions = Vec::new();
        for observation in observations {
            if observation.name == self.self_name {
                continue;
            }
            self.absorb(now, observation, &mut decisions);
        }
        self.mark_down(now, &mut decisions);
        self.forget_excess();
        if self.seeds_answered(now) {
            self.elect(&mut decisions);
        }
        self.carry_out_requests(&mut decisions);
        self.step_db(now, local_db, &mut decisions);
        decisions
    }

    fn absorb(&mut self, now: MonoMs, observation: Observation, decisions: &mut Vec<Decision>) {
        let name = observation.name.clone();
        let generation = observation.generation;
        let previous_advance = self.liveness.last_advance(&name);
        let previous_generation = self.liveness.generation(&name);
        match self.liveness.observe(&name, generation, observation.heartbeat, now) {
            Observed::Unchanged => {
                // Keys can change between heartbeats; keep the newest for this generation only.
                if let Some(peer) = self.peers.get_mut(&name).filter(|p| p.generation == generation) {
                    let alive = peer.alive;
                    *peer = Peer {
                        alive,
                        ..Peer::from_observation(observation)
                    };
                }
            }
            Observed::New => {
                decisions.push(Decision::NodeUp {
                    node: name.clone(),
                    reason: format!(
                        "first heartbeat seen from {name} at {} (generation {generation})",
                        observation.addr
                    ),
                });
                self.peers.insert(name, Peer::from_observation(observation));
            }
            Observed::Restarted => {
                self.last_peer_return = Some(now);
                let old = previous_generation.unwrap_or_default();
                decisions.push(Decision::NodeRestarted {
                    node: name.clone(),
                    reason: format!("{name} is back with generation {generation} (was {old}): its agent restarted"),
                });
                self.peers.insert(name, Peer::from_observation(observation));
            }
            Observed::Advanced => {
                if self.peers.get(&name).is_some_and(|peer| !peer.alive) {
                    self.last_peer_return = Some(now);
                    let silent_ms = previous_advance.map(|at| now.since(at)).unwrap_or_default();
                    decisions.push(Decision::NodeUp {
                        node: name.clone(),
                        reason: format!(
                            "heartbeat from {name} advances again after {} of silence",
                            seconds(silent_ms)
                        ),
                    });
                }
                self.peers.insert(name, Peer::from_observation(observation));
            }
        }
    }

    fn mark_down(&mut self, now: MonoMs, decisions: &mut Vec<Decision>) {
        let newly_down: Vec<(String, u64)> = self
            .peers
            .iter()
            .filter(|(_, peer)| peer.alive)
            .map(|(name, peer)| (name, self.peer_threshold_ms(peer)))
            .filter(|(name, threshold_ms)| self.liveness.is_down(name, now, *threshold_ms))
            .map(|(name, threshold_ms)| (name.clone(), threshold_ms))
            .collect();
        for (name, threshold_ms) in newly_down {
            let silent_ms = self
                .liveness
                .last_advance(&name)
                .map(|at| now.since(at))
                .unwrap_or_default();
            if let Some(peer) = self.peers.get_mut(&name) {
                peer.alive = false;
            }
            decisions.push(Decision::NodeDown {
                reason: format!(
                    "no heartbeat from {name} for {} (> 2 × server_threshold = {})",
                    seconds(silent_ms),
                    seconds(down_after_ms(threshold_ms))
                ),
                node: name,
            });
        }
    }

    fn forget_excess(&mut self) {
        while self.peers.len() > MAX_TRACKED_NODES {
            let oldest_down = self
                .peers
                .iter()
                .filter(|(_, peer)| !peer.alive)
                .min_by_key(|(name, _)| self.liveness.last_advance(name))
                .map(|(name, _)| name.clone());
            let Some(name) = oldest_down else { break };
            self.peers.remove(&name);
            self.liveness.forget(&name);
        }
    }

    fn candidates(&self) -> impl Iterator<Item = Candidate<'_>> {
        let me = Candidate {
            name: &self.self_name,
            master: self.self_announcement.master,
            alive: true,
            is_server: self.self_announcement.roles.contains(&Role::Server),
        };
        let peers = self.peers.iter().map(|(name, peer)| Candidate {
            name,
            master: peer.announcement.master,
            alive: peer.alive,
            is_server: peer.announcement.roles.contains(&Role::Server),
        });
        std::iter::once(me).chain(peers)
    }

    fn elect(&mut self, decisions: &mut Vec<Decision>) {
        let elected = elect_server_master(self.candidates());
        let elected_name = elected.map(|winner| winner.name.to_string());
        if elected_name == self.server_master {
            return;
        }
        let eligible = self.candidates().filter(Candidate::eligible).count();
        let previous = match self.server_master.as_deref() {
            None => String::new(),
            Some(old) => match self.candidates().find(|c| c.name == old) {
                Some(c) if !c.alive => format!("; previous master {old} is down"),
                Some(c) => format!("; previous master {old} has master {}", c.master),
                None => format!("; previous master {old} is no longer known"),
            },
        };
        let reason = match elected {
            Some(winner) => format!(
                "{} has the highest master priority ({}) among {eligible} live server(s) with master > 0{previous}",
                winner.name, winner.master
            ),
            None => format!("no live server with master > 0{previous}"),
        };
        decisions.push(Decision::ServerMasterChanged {
            from: self.server_master.take(),
            to: elected_name.clone(),
            reason,
        });
        self.server_master = elected_name;
    }

    fn peer_dbs(&self) -> Vec<PeerDb<'_>> {
        self.peers
            .iter()
            .map(|(name, peer)| PeerDb {
                name,
                alive: peer.alive,
                db: peer.db.as_ref(),
                db_primary: peer.db_primary.as_deref(),
                reaches: &peer.db_reach,
            })
            .collect()
    }

    fn step_db(&mut self, now: MonoMs, local_db: Option<&LocalDb>, decisions: &mut Vec<Decision>) {
        let threshold_ms = self.self_announcement.threshold_ms;
        let forgotten_since = self
            .remembered_nodes
            .iter()
            .filter(|name| !self.peers.contains_key(*name))
            .count();
        let known_nodes = self.peers.len() + forgotten_since + 1;
        let mut db = self.db.take();
        let peers = self.peer_dbs();
        let me = self.self_name.as_str();
        let fork_before = db.as_ref().and_then(|db| db.promoted_from_gtid().map(str::to_string));
        let yields_before = db.as_ref().and_then(|db| db.yields_to().map(str::to_string));
        let own = db
            .as_ref()
            .zip(local_db)
            .and_then(|(db, local)| db.own_claim(me, local, fork_before.as_deref(), yields_before.as_deref()));
        let down_after = down_after_ms(threshold_ms);
        // The old primary this DB node just fenced still claims from before the fence: not a
        // primary here (`DbCore::fenced_claim_stale`).
        let stale =
            |db: Option<&DbCore>, claim: &Claim| db.is_some_and(|db| db.fenced_claim_stale(claim, now, down_after));
        let peer_claims: Vec<Claim> = peers
            .iter()
            .filter_map(|peer| peer_claim(peer, down_after))
            .filter(|claim| !stale(db.as_ref(), claim))
            .collect();
        let claims: Vec<Claim> = peer_claims.iter().copied().chain(own).collect();
        // Several claims whose positions are not all past the fork yet: keep the primary elected
        // so far, for one threshold at most, until current positions arrive.
        let contested_since =
            (claims.len() > 1 && !positions_settled(&claims)).then(|| self.contested_since.unwrap_or(now));
        let keep = contested_since
            .filter(|since| now.since(*since) < threshold_ms)
            .and(self.db_primary.as_deref());
        let before = elect_from(&peer_claims, own, keep);
        let mut after = before;
        let fork_after: Option<String>;
        let yields_after: Option<String>;
        let mut db_decisions = Vec::new();
        let mut self_db = None;
        if let (Some(db), Some(local)) = (db.as_mut(), local_db) {
            let view = DbView {
                now,
                me,
                threshold_ms,
                peers: &peers,
                known_nodes,
                elected: before,
                last_peer_return: self.last_peer_return,
                reaches: &self.db_reach,
            };
            db_decisions = db.step(&view, local);
            // A promotion or step-down decided just now changes this node's own claim at once.
            fork_after = db.promoted_from_gtid().map(str::to_string);
            yields_after = db.yields_to().map(str::to_string);
            let peer_claims: Vec<Claim> = peer_claims
                .iter()
                .copied()
                .filter(|claim| !stale(Some(db), claim))
                .collect();
            after = elect_from(
                &peer_claims,
                db.own_claim(me, local, fork_after.as_deref(), yields_after.as_deref()),
                keep,
            );
            self_db = Some(db.announcement(now, local));
        }
        let elected_name = after.map(|claim| claim.name.to_string());
        // A switchover: the old primary's claim yields to the new one, or (seen a step late)
        // the new one says it took over from the primary this agent knew last.
        let previous = self.db_primary.as_deref().or(self.last_db_primary.as_deref());
        let handed_over_by = after.and_then(|new| {
            let yielded = claims
                .iter()
                .find(|claim| Some(claim.name) == previous && claim.yields_to == Some(new.name))
                .map(|old| old.name);
            let took_over_from = if new.name == me {
                db.as_ref().and_then(DbCore::switchover_from)
            } else {
                peers
                    .iter()
                    .find(|peer| peer.name == new.name)
                    .and_then(|peer| peer.db?.switchover_from.as_deref())
            };
            // Only while the previous primary holds no claim of its own: a split-brain healing
            // in favour of a node that once took over by switchover is no switchover.
            let previous_still_claims = claims
                .iter()
                .any(|claim| Some(claim.name) == previous && claim.yields_to.is_none());
            let took_over_from = took_over_from.filter(|from| Some(*from) == previous && !previous_still_claims);
            yielded.or(took_over_from).map(str::to_string)
        });
        let reason = match after {
            Some(claim) if handed_over_by.is_some() => format!(
                "switchover: {} handed over to {} (epoch {}) once it had applied everything",
                handed_over_by.as_deref().unwrap_or_default(),
                claim.name,
                claim.epoch
            ),
            Some(claim) if Some(claim) == before && claims.len() > 1 && unrelated_claims(&claims) => format!(
                "{} is primary among {} primary claims: {}",
                claim.name,
                claims.len(),
                split_tally(&claims)
            ),
            Some(claim) if Some(claim) == before && claims.len() > 1 => format!(
                "{} wins the split-brain among {} primary claims: {}",
                claim.name,
                claims.len(),
                split_tally(&claims)
            ),
            Some(claim) if Some(claim) == before => format!(
                "{} claims primary with the greatest (epoch {}, priority {}) among live DB nodes",
                claim.name, claim.epoch, claim.priority
            ),
            Some(claim) => format!("{} is promoting itself with epoch {}", claim.name, claim.epoch),
            None => match &self.db_primary {
                Some(old) => format!(
                    "{old} no longer holds a valid primary claim (down, demoted, or its database unreachable for more than 2 × threshold)"
                ),
                None => "no DB node claims primary".into(),
            },
        };
        drop(peers);
        self.contested_since = contested_since;
        self.db = db;
        if self_db.is_some() {
            self.self_db = self_db;
        }
        if elected_name != self.db_primary {
            if let Some(old) = self.db_primary.take() {
                self.last_db_primary = Some(old);
            }
            decisions.push(Decision::DbPrimaryChanged {
                from: self.last_db_primary.clone(),
                to: elected_name.clone(),
                reason,
                switchover: handed_over_by.is_some(),
            });
            self.db_primary = elected_name;
        }
        decisions.extend(db_decisions.into_iter().map(Decision::Db));
    }

    pub fn view(&self, now: MonoMs) -> Vec<NodeView> {
        let me = NodeView {
            name: self.self_name.clone(),
            addr: self.self_addr.clone(),
            generation: self.self_generation,
            announcement: self.self_announcement.clone(),
            alive: true,
            last_contact_ms: 0,
            is_self: true,
            db: self.self_db.clone(),
            db_warnings: self.db_warnings(),
            db_reach: self.db_reach.clone(),
        };
        let peers = self.peers.iter().map(|(name, peer)| NodeView {
            name: name.clone(),
            addr: peer.addr.clone(),
            generation: peer.generation,
            announcement: peer.announcement.clone(),
            alive: peer.alive,
            last_contact_ms: self
                .liveness
                .last_advance(name)
                .map(|at| now.since(at))
                .unwrap_or_default(),
            is_self: false,
            db: peer.db.clone(),
            db_warnings: Vec::new(),
            db_reach: peer.db_reach.clone(),
        });
        std::iter::once(me).chain(peers).collect()
    }
}

mod input;
mod requests;
pub use input::{Input, Reply};
#[cfg(test)]
mod tests;
