//! The core's memory of the cluster: what each peer announced, whether it is alive, and who is
//! server master. `step` is the only way time moves forward in here.

use std::collections::BTreeMap;

use gossip_ha_proto::gossip::{Announcement, Role};

use super::election::{elect_server_master, Candidate};
use super::liveness::{down_after_ms, LivenessTracker, Observed};
use super::{seconds, MonoMs};

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
}

#[derive(Debug, Clone)]
struct Peer {
    addr: String,
    generation: u64,
    announcement: Announcement,
    alive: bool,
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
}

impl Core {
    pub fn new(
        self_name: &str,
        self_addr: &str,
        self_generation: u64,
        announcement: Announcement,
    ) -> Self {
        Core {
            self_name: self_name.to_string(),
            self_addr: self_addr.to_string(),
            self_generation,
            self_announcement: announcement,
            liveness: LivenessTracker::default(),
            peers: BTreeMap::new(),
            server_master: None,
        }
    }

    pub fn server_master(&self) -> Option<&str> {
        self.server_master.as_deref()
    }

    pub fn self_name(&self) -> &str {
        &self.self_name
    }

    /// A peer is judged by the larger of the two thresholds, so a peer configured to heartbeat
    /// more slowly than us is not declared DOWN early.
    fn peer_threshold_ms(&self, peer: &Peer) -> u64 {
        self.self_announcement
            .threshold_ms
            .max(peer.announcement.threshold_ms)
    }

    pub fn step(
        &mut self,
        now: MonoMs,
        observations: impl IntoIterator<Item = Observation>,
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
        self.elect(&mut decisions);
        decisions
    }

    fn absorb(&mut self, now: MonoMs, observation: Observation, decisions: &mut Vec<Decision>) {
        let previous_advance = self.liveness.last_advance(&observation.name);
        let previous_generation = self.liveness.generation(&observation.name);
        let outcome = self.liveness.observe(
            &observation.name,
            observation.generation,
            observation.heartbeat,
            now,
        );
        let Observation {
            name,
            generation,
            addr,
            announcement,
            ..
        } = observation;
        match outcome {
            Observed::Unchanged => {
                // Keys can change between heartbeats; keep the newest for this generation only.
                if let Some(peer) = self
                    .peers
                    .get_mut(&name)
                    .filter(|p| p.generation == generation)
                {
                    peer.announcement = announcement;
                    peer.addr = addr;
                }
            }
            Observed::New => {
                decisions.push(Decision::NodeUp {
                    node: name.clone(),
                    reason: format!(
                        "first heartbeat seen from {name} at {addr} (generation {generation})"
                    ),
                });
                self.peers.insert(
                    name,
                    Peer {
                        addr,
                        generation,
                        announcement,
                        alive: true,
                    },
                );
            }
            Observed::Restarted => {
                let old = previous_generation.unwrap_or_default();
                decisions.push(Decision::NodeRestarted {
                    node: name.clone(),
                    reason: format!("{name} is back with generation {generation} (was {old}): its agent restarted"),
                });
                self.peers.insert(
                    name,
                    Peer {
                        addr,
                        generation,
                        announcement,
                        alive: true,
                    },
                );
            }
            Observed::Advanced => {
                let peer = self.peers.entry(name.clone()).or_insert_with(|| Peer {
                    addr: addr.clone(),
                    generation,
                    announcement: announcement.clone(),
                    alive: true,
                });
                if !peer.alive {
                    let silent_ms = previous_advance.map(|at| now.since(at)).unwrap_or_default();
                    decisions.push(Decision::NodeUp {
                        node: name.clone(),
                        reason: format!(
                            "heartbeat from {name} advances again after {} of silence",
                            seconds(silent_ms)
                        ),
                    });
                }
                *peer = Peer {
                    addr,
                    generation,
                    announcement,
                    alive: true,
                };
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

    pub fn view(&self, now: MonoMs) -> Vec<NodeView> {
        let me = NodeView {
            name: self.self_name.clone(),
            addr: self.self_addr.clone(),
            generation: self.self_generation,
            announcement: self.self_announcement.clone(),
            alive: true,
            last_contact_ms: 0,
            is_self: true,
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
        });
        std::iter::once(me).chain(peers).collect()
    }
}

#[cfg(test)]
mod tests;
