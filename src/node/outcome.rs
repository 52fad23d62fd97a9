//! What comes back from the executor: an action's outcome and a repair's progress lines, routed
//! to the core (which decides a repair's next step), to hooks, to events, and to an operator's
//! `gossip-ha resync` waiting for its first step.

use gossip_ha_proto::api::EventKind;

use super::{db_event, describe, Counted, HookCall, Node};
use crate::core::db::DbAction;
use crate::core::{Input, MonoMs};
use crate::hooks::Hook;
use crate::rewrite::fact_environment;

/// An action the executor finished: `Ok` with what it has to say, or the error.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub action: DbAction,
    pub result: Result<Option<String>, String>,
    pub took_ms: u64,
    /// What a merge could neither copy nor save (its rebuild then saves this node first).
    pub unsaved: Option<String>,
}

impl Node {
    /// A line of a running merge or rebuild: status shows it, an event says it.
    pub fn repair_progress(&mut self, line: String) {
        self.core.input(Input::RepairProgress(line.clone()));
        self.own_event(EventKind::Repair, line);
    }

    /// `finished` came back from the executor at `now` (the core sees its effect at the next
    /// tick, from the probe the executor takes before it reports).
    pub fn action_finished(&mut self, now: MonoMs, finished: Finished) {
        self.now = now.max(self.now);
        if let Some(db) = self.db.as_mut() {
            db.in_flight = db.in_flight.saturating_sub(1);
        }
        if let (DbAction::Merge(_), Ok(Some(summary))) = (&finished.action, &finished.result) {
            // Paged on like the split-brain itself: what was merged, and what waits in a file.
            self.core.input(Input::MergeSummary(summary));
            self.own_event(EventKind::SplitBrain, summary.clone());
        }
        if matches!(finished.action, DbAction::Merge(_) | DbAction::Resync { .. }) {
            self.repair_finished(&finished);
        }
        let hook = match (&finished.action, &finished.result) {
            (DbAction::Promote { .. }, Ok(_)) => Some(Hook::OnPromote),
            (DbAction::StepDown, Ok(_)) => Some(Hook::OnDemote),
            _ => None,
        };
        if let Some(hook) = hook {
            let mut environment = fact_environment(&self.facts());
            environment.push(("GOSSIP_HA_NODE".into(), self.setup.name.clone()));
            self.ready.hooks.push(HookCall { hook, environment });
        }
        let step = describe(&finished.action);
        let took = finished.took_ms;
        match finished.result {
            Ok(detail) => self.own_event(
                EventKind::DbAction,
                format!(
                    "{step} done in {took} ms{}",
                    detail.map(|detail| format!(": {detail}")).unwrap_or_default()
                ),
            ),
            Err(err) => self.own_event(
                EventKind::DbActionFailed,
                format!("{step} failed after {took} ms: {err}"),
            ),
        }
    }

    /// A merge or rebuild finished: the core decides the next step; a waiting `resync` hears.
    fn repair_finished(&mut self, finished: &Finished) {
        let result = finished.result.clone().map(|_| ());
        self.ready.counted.push(Counted::RepairFinished { ok: result.is_ok() });
        if let Some(why) = &finished.unsaved {
            self.own_event(
                EventKind::Repair,
                format!("the merge left data behind: {why}; the rebuild saves this node's binary log and user databases first"),
            );
        }
        let reply = self.core.input(Input::RepairFinished {
            action: &finished.action,
            result,
            unsaved: finished.unsaved.as_deref(),
        });
        for decision in reply.decisions {
            let (kind, reason) = db_event(decision, EventKind::Repair);
            self.own_event(kind, reason);
        }
        self.repair_step_finished(finished);
    }
}
