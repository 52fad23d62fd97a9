//! The local database's role, carrying the state that only means something in that role: the
//! relay-log wait of a node following (or about to promote), the switchover and split-brain
//! episode of a primary, the repair of a node that cannot follow. Leaving a role drops its
//! state, so a replica with a handover or a primary with a repair cannot be written down.

use super::handover::Handover;
use super::repair::Repair;
use super::MonoMs;

#[derive(Debug, Clone)]
pub(super) enum LocalRole {
    /// Not claiming primary and nothing to repair: starting, replicating or unreachable.
    Following {
        phase: Phase,
        /// Since when this node, the best candidate, waits for its relay log (or for its link
        /// to a silent old primary) before promoting: bounded by `catchup_timeout_ms`.
        catchup_since: Option<MonoMs>,
    },
    /// A promotion was asked for; the next probe shows whether it left the database writable.
    Promoting,
    Primary(Primacy),
    /// Read-only until repaired: `why` is announced as its last error.
    NeedsResync {
        why: String,
        repair: Repair,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Just started, or back from being unreachable: decided on the next steps.
    Starting,
    Replica,
    Unreachable,
}

/// What only a primary carries.
#[derive(Debug, Clone, Default)]
pub(super) struct Primacy {
    /// A planned switchover this primary is carrying out.
    pub(super) handover: Option<Handover>,
    /// The split-brain episode under way: another valid primary claim is seen.
    pub(super) rival: Option<Rival>,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Rival {
    /// Since when this primary has seen another valid primary claim.
    pub(super) since: MonoMs,
    /// The episode's verdict was said (once per episode).
    pub(super) verdict_said: bool,
}

impl LocalRole {
    pub(super) fn starting() -> Self {
        LocalRole::Following {
            phase: Phase::Starting,
            catchup_since: None,
        }
    }

    pub(super) fn primary() -> Self {
        LocalRole::Primary(Primacy::default())
    }

    pub(super) fn in_phase(&self, wanted: Phase) -> bool {
        matches!(self, LocalRole::Following { phase, .. } if *phase == wanted)
    }

    /// Moves a following node to `phase`, keeping its relay-log wait; from any other role it
    /// starts following afresh.
    pub(super) fn set_phase(&mut self, to: Phase) {
        match self {
            LocalRole::Following { phase, .. } => *phase = to,
            _ => {
                *self = LocalRole::Following {
                    phase: to,
                    catchup_since: None,
                }
            }
        }
    }

    /// The relay-log wait, while following.
    pub(super) fn catchup_since(&mut self) -> Option<&mut Option<MonoMs>> {
        match self {
            LocalRole::Following { catchup_since, .. } => Some(catchup_since),
            _ => None,
        }
    }

    pub(super) fn primacy(&self) -> Option<&Primacy> {
        match self {
            LocalRole::Primary(primacy) => Some(primacy),
            _ => None,
        }
    }

    pub(super) fn primacy_mut(&mut self) -> Option<&mut Primacy> {
        match self {
            LocalRole::Primary(primacy) => Some(primacy),
            _ => None,
        }
    }

    pub(super) fn handover(&self) -> Option<&Handover> {
        self.primacy().and_then(|primacy| primacy.handover.as_ref())
    }

    pub(super) fn repair(&self) -> Option<&Repair> {
        match self {
            LocalRole::NeedsResync { repair, .. } => Some(repair),
            _ => None,
        }
    }

    pub(super) fn repair_mut(&mut self) -> Option<&mut Repair> {
        match self {
            LocalRole::NeedsResync { repair, .. } => Some(repair),
            _ => None,
        }
    }
}
