//! A planned switchover (`gossip-ha switchover --to NODE`): the primary's side (read-only, wait
//! for the target's claim, or give up and write again) and the target's (promote once it has
//! applied everything the primary executed).

use super::*;

/// A planned switchover this primary is carrying out.
#[derive(Debug, Clone)]
pub(super) struct Handover {
    pub(super) to: String,
    pub(super) since: Option<MonoMs>,
    /// Executed GTIDs once read-only: what the target must apply before it promotes.
    pub(super) gtid: Option<String>,
    pub(super) read_only_asked: bool,
}

impl DbCore {
    /// A planned switchover to `to` (checked by the caller: a live, promotable replica of this
    /// primary): read-only now, then `to` promotes once it has applied everything.
    pub fn start_handover(&mut self, to: &str) -> Result<String, String> {
        let Some(primacy) = self.role.primacy_mut() else {
            return Err("this node is not the primary".into());
        };
        if let Some(handover) = &primacy.handover {
            return Err(format!("a switchover to {} is already under way", handover.to));
        }
        primacy.handover = Some(Handover {
            to: to.to_string(),
            since: None,
            gtid: None,
            read_only_asked: false,
        });
        Ok(format!(
            "switchover to {to}: this primary goes read-only, {to} promotes once it has applied everything"
        ))
    }

    /// The node this primary yields to once it is read-only for a switchover.
    pub fn yields_to(&self) -> Option<&str> {
        self.role
            .handover()
            .filter(|handover| handover.gtid.is_some())
            .map(|handover| handover.to.as_str())
    }

    /// The primary's side of a switchover: read-only, then wait for the target's claim (the
    /// election then yields to it and `check_rivals` steps down); abandoned after the timeout.
    /// True when it decided something this step.
    pub(super) fn carry_out_handover(&mut self, view: &DbView<'_>, probe: &DbProbe, out: &mut Vec<DbDecision>) -> bool {
        let Some(handover) = self.role.primacy_mut().and_then(|primacy| primacy.handover.as_mut()) else {
            return false;
        };
        let since = *handover.since.get_or_insert(view.now);
        let target_claims = view
            .peers
            .iter()
            .any(|peer| peer.name == handover.to && peer_claim(peer, 2 * view.threshold_ms).is_some());
        if target_claims {
            return false;
        }
        if view.now.since(since) > self.policy.switchover_timeout_ms {
            let to = handover.to.clone();
            if let Some(primacy) = self.role.primacy_mut() {
                primacy.handover = None;
            }
            self.act(
                DbAction::Resume,
                format!(
                    "switchover to {to} abandoned: it did not catch up and promote within {}; this node stays primary and takes writes again",
                    seconds(self.policy.switchover_timeout_ms)
                ),
                out,
            );
            return true;
        }
        if !probe.read_only {
            if !handover.read_only_asked {
                handover.read_only_asked = true;
                let to = handover.to.clone();
                self.act(
                    DbAction::SetReadOnly,
                    format!("switchover to {to}: read-only first, so {to} can apply everything"),
                    out,
                );
            }
            return true;
        }
        if handover.gtid.is_none() {
            handover.gtid = Some(probe.gtid.clone());
            let reason = format!(
                "switchover: read-only at GTID {}; {} promotes once it has applied it",
                display_gtid(&probe.gtid),
                handover.to
            );
            let to = handover.to.clone();
            self.note(Waiting::HandoverReadOnly { to }, reason, out);
        }
        true
    }

    /// The target's side of a switchover: promote once everything the old primary executed
    /// before going read-only is applied here.
    pub(super) fn take_over(
        &mut self,
        view: &DbView<'_>,
        primary: Claim<'_>,
        local: &LocalDb,
        probe: &DbProbe,
        out: &mut Vec<DbDecision>,
    ) {
        let old = view
            .peers
            .iter()
            .find(|peer| peer.name == primary.name)
            .and_then(|peer| peer.db);
        let Some(target) = old.and_then(|db| db.handover_gtid.as_deref()) else {
            return;
        };
        let applied = matches!(
            (probe.history(), GtidSet::parse(target)),
            (Ok(mine), Ok(wanted)) if mine.covers(&wanted)
        );
        let relay_done = probe.replica.as_ref().is_none_or(|replica| replica.relay_applied);
        if let Err(refusal) = self.promotable_reason(view.now, local) {
            return self.note(
                Waiting::HandoverBlocked {
                    from: primary.name.to_string(),
                    blocker: refusal.blocker,
                },
                format!(
                    "switchover from {} asked, but this node cannot be promoted: {}",
                    primary.name, refusal.why
                ),
                out,
            );
        }
        if !(applied && relay_done) {
            return self.note(
                Waiting::HandoverApplying {
                    from: primary.name.to_string(),
                },
                format!(
                    "switchover from {}: applying up to GTID {} (at {})",
                    primary.name,
                    display_gtid(target),
                    display_gtid(&probe.gtid)
                ),
                out,
            );
        }
        let epoch = self.highest_epoch(view) + 1;
        let reason = format!(
            "switchover from {}: applied everything up to GTID {}; promoting with epoch {epoch}",
            primary.name,
            display_gtid(target)
        );
        self.promote(epoch, probe, reason, out);
        self.switchover_from = Some(primary.name.to_string());
    }
}
