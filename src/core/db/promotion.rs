//! Whether this node promotes when no primary is left (DESIGN §2), in three parts: a typed
//! hold (why not now, as data: what is waited for and the sentence said once), the pure ranking
//! of the candidates (`candidates.rs`), and the fence plan (the silent old primary set read-only
//! first). `consider_promotion` only strings them together and turns the outcome into decisions.

use super::*;

/// Why this node does not promote on this step: what it waits for (the key the note is said
/// once by) and the sentence said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Hold {
    pub(super) waiting: Waiting,
    pub(super) reason: String,
}

impl Hold {
    fn new(waiting: Waiting, reason: impl Into<String>) -> Self {
        Hold {
            waiting,
            reason: reason.into(),
        }
    }
}

/// The old primary to set read-only before promoting: its agent is silent (down or cut off) or
/// cannot reach its own database, and its mysqld may still take writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FencePlan {
    pub(super) node: String,
    pub(super) addr: String,
    /// This agent reached the node's host at its last check.
    pub(super) host_reached: bool,
}

impl FencePlan {
    /// The last primary this node saw, when its agent is silent now or says its database does
    /// not answer it, and it announced an address.
    pub(super) fn for_old_primary(view: &DbView<'_>, last_primary_seen: Option<&str>) -> Option<Self> {
        let old = last_primary_seen?;
        // Its agent silent, or saying it cannot reach its own database (its connections failing:
        // descriptors run out, say) while its mysqld may still take writes.
        let peer = view.peers.iter().find(|peer| peer.name == old)?;
        let db = peer.db?;
        if peer.alive && db.reachable {
            return None;
        }
        Some(FencePlan {
            node: old.to_string(),
            addr: db.advertise.clone(),
            host_reached: view.reaches.iter().any(|name| name == old),
        })
    }

    /// A live peer still reaching the old primary's host while this node cannot: the fence would
    /// miss it and clients could keep writing there beside this one.
    pub(super) fn witnessed(&self, view: &DbView<'_>) -> Option<Hold> {
        let old = &self.node;
        let witness = view
            .peers
            .iter()
            .find(|peer| peer.alive && peer.reaches.iter().any(|name| name == old))
            .filter(|_| !self.host_reached)?;
        Some(Hold::new(
            Waiting::OldPrimaryWitnessed {
                old: old.clone(),
                witness: witness.name.to_string(),
            },
            format!(
                "{old}'s agent is silent or cannot reach its database, and this node cannot reach its host ({}), but {} still does: its database may still take writes, so not promoting over it",
                self.addr, witness.name
            ),
        ))
    }

    fn decision(&self) -> (DbAction, String) {
        let (node, addr) = (&self.node, &self.addr);
        let action = DbAction::Fence {
            node: node.clone(),
            addr: addr.clone(),
            host_reached: self.host_reached,
        };
        let reason = format!(
            "{node}'s agent is not heard from (down or cut off) but its database may still be writable: set {addr} read-only before promoting (harmless if unreachable)"
        );
        (action, reason)
    }
}

impl DbCore {
    fn hold(&mut self, hold: Hold, out: &mut Vec<DbDecision>) {
        self.note(hold.waiting, hold.reason, out);
    }

    /// What keeps any promotion off for now, whoever the best candidate is: the start-up grace,
    /// this node not being promotable (or just having become so), a peer just back, isolation
    /// and the witness rule. Pure.
    pub(super) fn promotion_gate(
        &self,
        view: &DbView<'_>,
        started_at: MonoMs,
        local: &LocalDb,
        live_peers: &[&PeerDb<'_>],
    ) -> Result<(), Hold> {
        let down_after_ms = 2 * view.threshold_ms;
        if view.now.since(started_at) <= down_after_ms {
            return Err(Hold::new(
                Waiting::StartupGrace,
                "start-up grace: waiting 2 × threshold before any promotion",
            ));
        }
        if let Err(refusal) = self.promotable_reason(view.now, local) {
            return Err(Hold::new(
                Waiting::NotPromotable(refusal.blocker),
                format!("no primary, but this node cannot be promoted: {}", refusal.why),
            ));
        }
        if view.now.since(self.promotable_since.unwrap_or(view.now)) < view.threshold_ms {
            return Err(Hold::new(
                Waiting::JustPromotable,
                "just became promotable: waiting one threshold so the other candidates hear of it",
            ));
        }
        if view
            .last_peer_return
            .is_some_and(|at| view.now.since(at) < view.threshold_ms)
        {
            return Err(Hold::new(
                Waiting::PeerJustReturned,
                "a peer just came back: waiting one threshold for its current state before any promotion",
            ));
        }
        let two_node = view.known_nodes <= 2 && self.policy.ha_hosts_count <= 2;
        if two_node {
            return Ok(());
        }
        if live_peers.is_empty() {
            return Err(Hold::new(
                Waiting::Isolated,
                "no primary visible, but this node sees no other live node: isolated, not bereaved; not promoting",
            ));
        }
        match live_peers
            .iter()
            .find(|peer| peer.db_primary.is_some_and(|primary| primary != view.me))
        {
            Some(witness) => {
                let primary = witness.db_primary.unwrap_or_default();
                Err(Hold::new(
                    Waiting::WitnessSeesPrimary {
                        witness: witness.name.to_string(),
                        primary: primary.to_string(),
                    },
                    format!(
                        "no primary visible here, but {} still sees {primary} as primary; not promoting",
                        witness.name
                    ),
                ))
            }
            None => Ok(()),
        }
    }

    /// Another candidate ranks first: it should promote, not this node.
    fn better_candidate(ranking: &candidates::Ranking<'_>, me: &str, probe: &DbProbe) -> Option<Hold> {
        let best = ranking.best()?;
        if best.name == me {
            return None;
        }
        let is_behind = !ranking.is_most_advanced(me);
        let behind = if is_behind {
            format!(" (this node is behind: GTID {})", display_gtid(&probe.gtid))
        } else {
            String::new()
        };
        Some(Hold::new(
            Waiting::BetterCandidate {
                best: best.name.to_string(),
                behind: is_behind,
            },
            format!(
                "no primary; {} (priority {}) is the best candidate and should promote{behind}",
                best.name, best.priority
            ),
        ))
    }

    /// The best candidate applies its relay log first, bounded by the catch-up timeout; past it,
    /// the caveat the promotion's reason carries.
    fn relay_log_wait(&mut self, now: MonoMs, probe: &DbProbe) -> Result<String, Hold> {
        let Some(replica) = probe.replica.as_ref().filter(|r| r.sql_running && !r.relay_applied) else {
            return Ok(String::new());
        };
        let since = self.catchup_started(now);
        if now.since(since) < self.policy.catchup_timeout_ms {
            return Err(Hold::new(
                Waiting::ApplyingRelayLog,
                "best candidate: applying the relay log before promotion",
            ));
        }
        Ok(format!(
            "; relay log not fully applied after {} (lag {:?} s): its events stay in the old primary's binlog for the merge",
            seconds(self.policy.catchup_timeout_ms),
            replica.lag_seconds
        ))
    }

    pub(super) fn consider_promotion(
        &mut self,
        view: &DbView<'_>,
        started_at: MonoMs,
        local: &LocalDb,
        probe: &DbProbe,
        out: &mut Vec<DbDecision>,
    ) {
        let live_peers: Vec<&PeerDb> = view.peers.iter().filter(|peer| peer.alive).collect();
        if let Err(hold) = self.promotion_gate(view, started_at, local, &live_peers) {
            return self.hold(hold, out);
        }
        let ranking = candidates::rank(view, self.policy.priority, probe, &live_peers);
        if let Some(peer) = ranking.held_back_by(view.me) {
            let reason = format!(
                "no primary, but {} holds what this node lacks ({}; this node: GTID {}, {}) and cannot be promoted now: waiting for it rather than cloning it from less",
                peer.name,
                peer.summary(),
                display_gtid(&probe.gtid),
                describe_databases(&probe.databases)
            );
            let waiting = Waiting::HeldBackBy {
                peer: peer.name.to_string(),
            };
            return self.hold(Hold::new(waiting, reason), out);
        }
        if ranking.best().is_none() {
            return;
        }
        if let Some(hold) = Self::better_candidate(&ranking, view.me, probe) {
            if let Some(catchup_since) = self.role.catchup_since() {
                *catchup_since = None;
            }
            return self.hold(hold, out);
        }
        let caveat = match self.relay_log_wait(view.now, probe) {
            Ok(caveat) => caveat,
            Err(hold) => return self.hold(hold, out),
        };
        let max_epoch = self.highest_epoch(view);
        let epoch = max_epoch + 1;
        let situation = match (&self.last_primary_seen, max_epoch) {
            (_, 0) => "fresh cluster with no primary yet".to_string(),
            (Some(old), _) => format!("primary {old} is down"),
            (None, _) => "no live primary".to_string(),
        };
        let reason = format!(
            "{situation}; this node is the most advanced live candidate with the highest priority ({}) among {} live candidate(s) [{}]{}: promoting with epoch {epoch}{caveat}",
            self.policy.priority,
            ranking.len(),
            ranking.describe(),
            ranking.unrelated_note()
        );
        let fence = FencePlan::for_old_primary(view, self.last_primary_seen.as_deref());
        if let Some(hold) = fence.as_ref().and_then(|fence| fence.witnessed(view)) {
            return self.hold(hold, out);
        }
        if let Some(hold) = self.wait_for_old_primary(view, probe, fence.as_ref()) {
            return self.hold(hold, out);
        }
        if let Some(fence) = fence {
            // Fenced again as primary only once it was out of this node's reach in between.
            let fenced = SilentInReach {
                since: view.now,
                fenced: true,
            };
            self.silent_in_reach.insert(fence.node.clone(), fenced);
            self.fenced_at_promotion = fence.host_reached.then(|| (fence.node.clone(), view.now));
            let (action, reason) = fence.decision();
            self.act(action, reason, out);
        }
        self.promote(epoch, probe, reason, out);
    }

    /// The old primary's agent is silent but its database is in reach again (a cut healed) while
    /// this node's IO thread to it is not connected yet: writes it took during the cut would be
    /// stranded there once fenced. Wait (bounded by the catch-up timeout) for the IO thread to
    /// fetch them; the relay-log wait then applies them.
    fn wait_for_old_primary(&mut self, view: &DbView<'_>, probe: &DbProbe, fence: Option<&FencePlan>) -> Option<Hold> {
        let fence = fence?;
        let replica = probe.replica.as_ref()?;
        // Only an IO thread still trying to connect will fetch anything; refused outright
        // (errno 111: its mysqld is down too, MariaDB and MySQL both say `(111`) it will not.
        let refused = replica
            .last_error
            .as_deref()
            .is_some_and(|error| error.contains("(111") || error.contains("Connection refused"));
        let connecting = replica.io_state.eq_ignore_ascii_case("connecting");
        let reconnecting = fence.host_reached && replica.source == fence.addr && connecting && !refused;
        if !reconnecting {
            return None;
        }
        let since = self.catchup_started(view.now);
        let old = &fence.node;
        (view.now.since(since) < self.policy.catchup_timeout_ms).then(|| {
            Hold::new(
                Waiting::OldPrimaryLink { old: old.clone() },
                format!("{old}'s database is in reach again: waiting for the replication link to it to fetch what it took before promoting"),
            )
        })
    }

    /// The highest epoch any DB node announces or announced on an earlier step, this one's included.
    pub(super) fn highest_epoch(&self, view: &DbView<'_>) -> u64 {
        view.peers
            .iter()
            .filter_map(|peer| peer.db.map(|db| db.epoch))
            .chain([self.epoch, self.highest_epoch_seen])
            .max()
            .unwrap_or(0)
    }

    /// Claims primary with `epoch` from the state in `probe` (its GTID is where this history
    /// may part from the old primary's).
    pub(super) fn promote(&mut self, epoch: u64, probe: &DbProbe, reason: String, out: &mut Vec<DbDecision>) {
        debug_assert!(
            epoch > self.highest_epoch_seen,
            "promotion with epoch {epoch}, not above the highest seen ({})",
            self.highest_epoch_seen
        );
        self.role = LocalRole::Promoting;
        self.epoch = epoch;
        self.demoted_at = None;
        self.promoted_from_gtid = Some(probe.gtid.clone());
        self.promoted_unix_ms = None;
        self.switchover_from = None;
        self.act(
            DbAction::Promote {
                epoch,
                from_gtid: probe.gtid.clone(),
            },
            reason,
            out,
        );
    }
}
