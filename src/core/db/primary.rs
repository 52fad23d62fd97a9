//! What a primary watches for: rival claims (the split-brain rule, said once per episode, and
//! the step-down) and silent nodes still writable in its reach (fenced).

use super::*;

impl DbCore {
    /// A node whose agent is silent was last seen writable, and this primary has reached its host
    /// for 2 × threshold without hearing its agent: a partition that healed after the node's
    /// agent died leaves its mysqld taking writes beside this one, and no agent of its own will
    /// stop it. (An agent that is alive speaks again within that time after a heal, and the
    /// split-brain rule decides, by writes since the fork.)
    pub(super) fn fence_silent_writers(&mut self, view: &DbView<'_>, out: &mut Vec<DbDecision>) {
        let reached = |name: &str| view.reaches.iter().any(|reached| reached == name);
        self.silent_in_reach
            .retain(|name, _| reached(name) && view.peers.iter().any(|peer| peer.name == name && !peer.alive));
        let grace_ms = 2 * view.threshold_ms;
        for peer in view.peers.iter().filter(|peer| !peer.alive && reached(peer.name)) {
            let Some(db) = peer.db.filter(|db| db.claims_primary || db.read_only == Some(false)) else {
                continue;
            };
            let stretch = self
                .silent_in_reach
                .entry(peer.name.to_string())
                .or_insert(SilentInReach {
                    since: view.now,
                    fenced: false,
                });
            if !stretch.fenced && view.now.since(stretch.since) >= grace_ms {
                stretch.fenced = true;
                let (node, addr) = (peer.name.to_string(), db.advertise.clone());
                let reason = format!(
                    "{node}'s agent is silent, it was last seen writable, and its host has been reachable for {} without a word from its agent: set {addr} read-only so it cannot take writes beside this primary (its own writes are merged when its agent returns)",
                    seconds(grace_ms)
                );
                let action = DbAction::Fence {
                    node,
                    addr,
                    host_reached: true,
                };
                self.act(action, reason, out);
            }
        }
    }

    /// A claim by the old primary this node fenced when it promoted (its host in reach), with
    /// an older epoch, announced before the fence made its database read-only: its agent drops
    /// it at its next probe. Ranked as a rival, it could win on priority and both would step
    /// down (the winner is read-only). After 2 × threshold it counts again: the fence missed.
    pub(crate) fn fenced_claim_stale(&self, claim: &Claim, now: MonoMs, window_ms: u64) -> bool {
        self.fenced_at_promotion
            .as_ref()
            .is_some_and(|(node, at)| node == claim.name && claim.epoch < self.epoch && now.since(*at) < window_ms)
    }

    /// A primary that sees another primary claim: the split-brain rule of `elect_db_primary`
    /// decides who steps down. Should both keep believing they win (each reads the other's
    /// write count a little late while both take writes), after 2 × threshold the one with the
    /// lower (priority, name) steps down anyway: two writable primaries never last.
    pub(super) fn check_rivals(&mut self, view: &DbView<'_>, probe: &DbProbe, out: &mut Vec<DbDecision>) {
        let down_after_ms = 2 * view.threshold_ms;
        // A primary handing over to this node (a switchover) is no rival: it steps down as soon
        // as it sees this claim.
        let (stale, rivals): (Vec<Claim>, Vec<Claim>) = view
            .peers
            .iter()
            .filter_map(|peer| peer_claim(peer, down_after_ms))
            .filter(|claim| claim.yields_to != Some(view.me))
            .partition(|claim| self.fenced_claim_stale(claim, view.now, down_after_ms));
        if let Some(old) = stale.first().filter(|_| rivals.is_empty()) {
            let old = old.name.to_string();
            let reason = format!(
                "{old} still claims primary (epoch {}) from before this node fenced it: its agent drops the claim once it sees its database read-only (no split-brain verdict for {} after the fence)",
                stale[0].epoch,
                seconds(down_after_ms)
            );
            self.note(Waiting::FencedClaimStale { old }, reason, out);
        }
        // Elected again with this node's claim as it stands now (it may have just resumed it).
        // Owned copies: the claim must not borrow the core, whose episode it updates below.
        let fork_gtid = self.promoted_from_gtid.clone();
        let yields_to = self.yields_to().map(str::to_string);
        let own = Claim {
            name: view.me,
            epoch: self.epoch,
            priority: self.policy.priority,
            gtid: &probe.gtid,
            history: &probe.gtid_history,
            holds_data: !probe.databases.is_empty(),
            fork_gtid: fork_gtid.as_deref(),
            yields_to: yields_to.as_deref(),
        };
        let all: Vec<Claim> = rivals.iter().copied().chain([own]).collect();
        let elected = elect_db_primary(all.iter().copied());
        let tally = split_tally(&all);
        let episode = self.role.primacy().and_then(|primacy| primacy.rival);
        if rivals.is_empty() {
            if let Some(primacy) = self.role.primacy_mut() {
                primacy.rival = None;
            }
            if episode.is_some() {
                // The episode is over: the same wait in the next one is said again.
                self.last_note = None;
            }
        } else {
            let episode = episode.unwrap_or(Rival {
                since: view.now,
                verdict_said: false,
            });
            self.set_rival(episode);
            let since = episode.since;
            let handing_over = self.role.handover().is_some_and(|handover| {
                handover.gtid.is_some() && rivals.iter().all(|rival| rival.name == handover.to)
            });
            let settled = positions_settled(&all);
            if !handing_over && !settled && view.now.since(since) < view.threshold_ms {
                // A position gossiped before the fork counts its side's writes as 0: a verdict
                // now could be reversed a moment later. Gossip brings current ones within a
                // threshold.
                let names: Vec<String> = rivals.iter().map(|rival| rival.name.to_string()).collect();
                let reason = format!(
                    "{} also claims primary, but not every position gossiped is past the fork yet: waiting (at most {}) for current ones before any verdict",
                    names.join(", "),
                    seconds(view.threshold_ms)
                );
                return self.note(Waiting::SplitPositionsStale { rivals: names }, reason, out);
            }
            if !episode.verdict_said && !handing_over {
                // A planned switchover is not a split-brain: the target's claim is what the
                // handover waits for, and the step-down below says so.
                self.set_rival(Rival {
                    verdict_said: true,
                    ..episode
                });
                out.push(self.split_verdict(&rivals, &all, elected, probe, settled));
            }
        }
        let better = elected.filter(|claim| claim.name != view.me);
        let better_name = better.map(|claim| claim.name.to_string());
        let unresolved = self
            .role
            .primacy()
            .and_then(|primacy| primacy.rival)
            .is_some_and(|rival| view.now.since(rival.since) > down_after_ms)
            .then(|| {
                rivals
                    .iter()
                    .find(|rival| (rival.priority, Reverse(rival.name)) > (self.policy.priority, Reverse(view.me)))
            })
            .flatten();
        let reason = match (better, unresolved) {
            (Some(better), _) => {
                let rival = rivals.iter().any(|rival| rival.name == better.name);
                if rival {
                    format!(
                        "{} is primary too and wins the split-brain ({tally}): stepping down, read-only first; this node's writes since the fork are merged into it",
                        better.name
                    )
                } else {
                    format!(
                        "{} is primary with (epoch {}, priority {}), ahead of this node's (epoch {}, priority {}): stepping down, read-only first",
                        better.name, better.epoch, better.priority, self.epoch, self.policy.priority
                    )
                }
            }
            (None, Some(rival)) => format!(
                "{} and this node have both claimed primary for over {}: the one with the lower (priority, name) steps down, and {} ranks higher",
                rival.name,
                seconds(down_after_ms),
                rival.name
            ),
            (None, None) => return,
        };
        let handing_over_to_it = self
            .role
            .handover()
            .is_some_and(|handover| better_name.as_deref() == Some(handover.to.as_str()));
        if !handing_over_to_it
            && view
                .last_peer_return
                .is_some_and(|at| view.now.since(at) < view.threshold_ms)
        {
            // Right after a peer returns its gossip may still be what it said before: a restarted
            // old primary announces the claim it resumed, then finds the fence's read-only.
            return self.note(
                Waiting::RivalAfterReturn,
                "a peer just came back: waiting one threshold for its current state before stepping down for a rival claim".into(),
                out,
            );
        }
        let reason = match self.role.primacy_mut().and_then(|primacy| primacy.handover.take()) {
            Some(handover) if better_name.as_deref() == Some(handover.to.as_str()) => {
                format!(
                    "switchover: {} has promoted; this node steps down and follows it",
                    handover.to
                )
            }
            _ => reason,
        };
        self.role = LocalRole::starting();
        self.demoted_at = Some(view.now);
        self.act(DbAction::StepDown, reason, out);
    }

    /// The one verdict of a split-brain episode, as an event: who claims, the tally, who stays.
    fn split_verdict(
        &self,
        rivals: &[Claim<'_>],
        all: &[Claim<'_>],
        elected: Option<Claim<'_>>,
        probe: &DbProbe,
        settled: bool,
    ) -> DbDecision {
        let names: Vec<String> = rivals
            .iter()
            .map(|rival| {
                format!(
                    "{} (epoch {}, GTID {})",
                    rival.name,
                    rival.epoch,
                    display_gtid(rival.gtid)
                )
            })
            .collect();
        let winner = elected.map(|claim| claim.name).unwrap_or("-");
        let stale = if settled {
            ""
        } else {
            " (a position gossiped is still older than the fork after a threshold: judged on what is known)"
        };
        let both = format!(
            "this node (epoch {}, GTID {}) and {} both claim primary; {}{stale}; {winner} stays primary",
            self.epoch,
            display_gtid(&probe.gtid),
            names.join(", "),
            split_tally(all)
        );
        // Two unrelated histories are two clusters' primaries, not one cluster split.
        if unrelated_claims(all) {
            DbDecision::Note { reason: both }
        } else {
            DbDecision::SplitBrain {
                reason: format!("split-brain: {both}"),
            }
        }
    }
}
