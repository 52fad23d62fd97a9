//! The one door into the core between steps: what the shell learned (reachability, an action's
//! outcome, a repair's progress) and what an operator asked (maintenance, switchover, resync).
//! Each input changes the core's state for the next `step` and answers at once.

use super::Core;
use crate::core::db::{DbAction, DbDecision};

/// Something the shell tells the core outside `step`.
#[derive(Debug, Clone, PartialEq)]
pub enum Input<'a> {
    /// What the last reachability check found: DB nodes whose host answered.
    DbReach(Vec<String>),
    /// `gossip-ha maintenance on|off` for this node (or the console's `disabled`).
    Maintenance { on: bool },
    /// A planned switchover of this primary to `to`.
    Switchover { to: &'a str },
    /// `gossip-ha resync` on this node.
    Resync,
    /// A line of a running merge or rebuild.
    RepairProgress(String),
    /// A merge or rebuild finished.
    RepairFinished {
        action: &'a DbAction,
        result: Result<(), String>,
        /// What a merge could neither copy nor save (a log purged past the fork): the
        /// rebuild that follows saves this node's binary log and databases first.
        unsaved: Option<&'a str>,
    },
    /// A merge's summary, said again in this node's status.
    MergeSummary(&'a str),
    /// The promotion record is on disk (before the promotion runs): when it was made.
    PromotionDurable { unix_ms: u64 },
}

/// What the core answers to an input: an operator's answer (`Ok` done, `Err` refused) where
/// the input is a command, and the decisions it takes at once.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reply {
    pub answer: Option<Result<String, String>>,
    pub decisions: Vec<DbDecision>,
}

impl Reply {
    fn answer(answer: Result<String, String>) -> Reply {
        Reply {
            answer: Some(answer),
            decisions: Vec::new(),
        }
    }
}

impl Core {
    pub fn input(&mut self, input: Input<'_>) -> Reply {
        match input {
            Input::DbReach(reached) => {
                self.set_db_reach(reached);
                Reply::default()
            }
            Input::Maintenance { on } => Reply::answer(self.apply_maintenance(on)),
            Input::Switchover { to } => Reply::answer(self.request_switchover(to)),
            Input::Resync => Reply::answer(self.request_resync()),
            Input::RepairProgress(line) => {
                if let Some(db) = self.db.as_mut() {
                    db.repair_progress(line);
                }
                Reply::default()
            }
            Input::RepairFinished {
                action,
                result,
                unsaved,
            } => Reply {
                answer: None,
                decisions: self
                    .db
                    .as_mut()
                    .map(|db| {
                        if let Some(why) = unsaved {
                            db.save_before_rebuild(why);
                        }
                        db.repair_finished(action, result)
                    })
                    .unwrap_or_default(),
            },
            Input::MergeSummary(summary) => {
                if let Some(db) = self.db.as_mut() {
                    db.record_merge(summary);
                }
                Reply::default()
            }
            Input::PromotionDurable { unix_ms } => {
                if let Some(db) = self.db.as_mut() {
                    db.promoted_at(unix_ms);
                }
                Reply::default()
            }
        }
    }
}
