//! The invariants the DB core keeps whatever it is fed, checked where they are made:
//!
//! - **Time never goes backwards.** `DbView::now` is the agent's monotonic clock, so an older
//!   `now` than the last step's is a bug in the caller. The core survives it: it decides as of
//!   the last time it saw (every timer it holds stays meaningful, no wait ends early or starts
//!   over) and says so in a note, each step it happens.
//! - **A promotion's epoch is above every epoch seen**: its own, and every epoch any DB peer
//!   announced on any step so far, even a peer no longer in view (`highest_epoch_seen`).
//! - **At most one action in flight.** While the shell carries one out (`action_in_flight`) the
//!   core decides none; otherwise a step decides at most one action, preceded only by the
//!   fences that must hold before it (a silent old primary set read-only before the promotion).
//!
//! The last two are `debug_assert!`ed after every step (tests, simulations and debug builds stop
//! at the first breach); the property tests in `tests/invariants.rs` (under `core/db`) drive random inputs through
//! `Core::step` against all three.

use super::{DbAction, DbDecision, MonoMs};

/// The `now` to decide with: `now`, or the last one when `now` is older; the second value is
/// the note saying so.
pub(super) fn monotonic(last: Option<MonoMs>, now: MonoMs) -> (MonoMs, Option<DbDecision>) {
    match last {
        Some(last) if now < last => (
            last,
            Some(DbDecision::Note {
                reason: format!(
                    "the monotonic clock went back {} ms (to {} ms from {} ms): deciding as of {} ms (a bug in the caller; no wait ends early)",
                    last.0 - now.0,
                    now.0,
                    last.0,
                    last.0
                ),
            }),
        ),
        _ => (now, None),
    }
}

/// Whether the actions of one step keep "at most one action in flight": none while one is in
/// flight; otherwise fences first, then at most one other action.
pub fn one_action_at_a_time(decided: &[DbDecision], action_in_flight: bool) -> bool {
    let actions: Vec<&DbAction> = decided
        .iter()
        .filter_map(|decision| match decision {
            DbDecision::Act { action, .. } => Some(action),
            _ => None,
        })
        .collect();
    if action_in_flight {
        return actions.is_empty();
    }
    let fences = actions
        .iter()
        .take_while(|action| matches!(action, DbAction::Fence { .. }))
        .count();
    actions.len() - fences <= 1
}
