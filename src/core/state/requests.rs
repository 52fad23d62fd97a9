//! Operators' commands: those given on this node's socket for this node, and those given on
//! another node's socket and relayed by gossip (its `request` key), which are carried out once per
//! request id and answered through this node's `answers` key.

use gossip_ha_proto::gossip::{ClusterRequest, ClusterRequestKind, RequestAnswer};

use super::{Core, Decision};
use crate::core::db::DbCore;

impl Core {
    pub(super) fn carry_out_requests(&mut self, decisions: &mut Vec<Decision>) {
        let pending: Vec<(String, ClusterRequest)> = self
            .peers
            .iter()
            .filter(|(_, peer)| peer.alive)
            .filter_map(|(name, peer)| Some((name.clone(), peer.request.clone()?)))
            .filter(|(name, request)| self.handled_requests.get(name) != Some(&request.id))
            .collect();
        for (from, request) in pending {
            self.handled_requests.insert(from.clone(), request.id);
            let outcome = match &request.kind {
                ClusterRequestKind::Maintenance { node, on } if *node == self.self_name => {
                    Some(self.apply_maintenance(*on))
                }
                ClusterRequestKind::Switchover { to } if self.db.as_ref().is_some_and(DbCore::claims_primary) => {
                    Some(self.request_switchover(to))
                }
                _ => None,
            };
            let Some(outcome) = outcome else { continue };
            let reason = match &outcome {
                Ok(done) => format!("{done} (asked on {from})"),
                Err(refused) => format!("refused a request from {from}: {refused}"),
            };
            let (done, text) = match outcome {
                Ok(text) => (true, text),
                Err(text) => (false, text),
            };
            self.answers.insert(
                from.clone(),
                RequestAnswer {
                    to: from.clone(),
                    id: request.id,
                    done,
                    text,
                },
            );
            decisions.push(Decision::Request { from, reason });
        }
        let known: Vec<String> = self.peers.keys().cloned().collect();
        self.handled_requests.retain(|name, _| known.contains(name));
        self.answers.retain(|name, _| known.contains(name));
    }

    /// This node's answers to the requests it acted on, newest per asking node, for gossip.
    pub fn request_answers(&self) -> Vec<RequestAnswer> {
        self.answers.values().cloned().collect()
    }

    /// What `node` answered to this node's relayed request `id`, once its answer has arrived.
    pub fn answer_from_cluster(&self, id: u64) -> Option<(&str, &RequestAnswer)> {
        self.peers.iter().find_map(|(name, peer)| {
            peer.answers
                .iter()
                .find(|answer| answer.to == self.self_name && answer.id == id)
                .map(|answer| (name.as_str(), answer))
        })
    }

    /// `gossip-ha maintenance on|off` for this node.
    pub(crate) fn apply_maintenance(&mut self, on: bool) -> Result<String, String> {
        let me = self.self_name.clone();
        if !self.set_db_maintenance(on) {
            return Err(format!("{me} has no `db` role: maintenance applies to database nodes"));
        }
        Ok(if on {
            format!("{me} is in maintenance: its database is never promoted")
        } else {
            format!("{me} is out of maintenance: its database may be promoted again")
        })
    }

    /// A planned switchover of this primary to `to`: a live, promotable replica of it.
    pub(crate) fn request_switchover(&mut self, to: &str) -> Result<String, String> {
        let me = self.self_name.clone();
        if !self.db.as_ref().is_some_and(DbCore::claims_primary) {
            return Err(format!("{me} is not the DB primary"));
        }
        if to == me {
            return Err(format!("{me} is already the primary"));
        }
        let advertise = self.self_db.as_ref().map(|db| db.advertise.clone()).unwrap_or_default();
        let peer = self
            .peers
            .get(to)
            .ok_or_else(|| format!("no node named {to} is known"))?;
        let target = peer.db.as_ref().ok_or_else(|| format!("{to} has no database"))?;
        if !peer.alive {
            return Err(format!("{to} is down"));
        }
        if !target.promotable {
            // Older agents do not say why; their last error is the best clue.
            let why = target
                .not_promotable
                .clone()
                .or_else(|| target.last_error.clone())
                .unwrap_or_else(|| "its agent does not say why (an older version)".into());
            return Err(format!("{to} cannot be promoted ({why})"));
        }
        if target.source.as_deref() != Some(advertise.as_str()) || target.io_running != Some(true) {
            return Err(format!("{to} is not replicating from {me} ({advertise})"));
        }
        self.db.as_mut().expect("checked above").start_handover(to)
    }
}
