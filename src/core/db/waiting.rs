//! What a DB node is waiting for when it decides nothing: the typed reason behind a `Note`.
//!
//! A note is said once per thing waited for, not once per wording: its prose carries running
//! values (how long since the demotion, the GTID reached so far) that change on every step, so
//! deduplicating by text would repeat it each step. Only the fields that name *what* is awaited
//! are part of a `Waiting`; the prose is rendered when the note is first said.

/// Why this node cannot be promoted right now, by kind (the text says the details).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocker {
    DatabaseUnreachable,
    Maintenance,
    NeedsResync,
    BinlogDisabled,
    UnreadableGtid,
    /// Demoted at this time; the cool-down runs from there.
    CoolDown {
        demoted_at_ms: u64,
    },
}

/// Why a promotion is refused: the kind (what is awaited) and the prose for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotPromotable {
    pub blocker: Blocker,
    pub why: String,
}

impl NotPromotable {
    pub fn new(blocker: Blocker, why: impl Into<String>) -> Self {
        NotPromotable {
            blocker,
            why: why.into(),
        }
    }
}

/// What a note is about. Equal values are the same wait: said once until something else is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waiting {
    /// The database's state contradicts this node's role; it is decided again.
    ReEvaluating,
    ResumingPrimary {
        epoch: u64,
    },
    StartupGrace,
    NotPromotable(Blocker),
    JustPromotable,
    PeerJustReturned,
    Isolated,
    WitnessSeesPrimary {
        witness: String,
        primary: String,
    },
    BetterCandidate {
        best: String,
        behind: bool,
    },
    ApplyingRelayLog,
    /// A peer that cannot be promoted now holds what this node would lose.
    HeldBackBy {
        peer: String,
    },
    OldPrimaryWitnessed {
        old: String,
        witness: String,
    },
    OldPrimaryLink {
        old: String,
    },
    /// A rival claim, but a peer just came back: its gossip may be stale.
    RivalAfterReturn,
    /// Two claims whose positions do not both include the fork yet: no verdict.
    SplitPositionsStale {
        rivals: Vec<String>,
    },
    /// The old primary this node fenced when it promoted still claims, from before the fence.
    FencedClaimStale {
        old: String,
    },
    /// Two unrelated histories claim primary (two clusters, not a split).
    UnrelatedClaims {
        rivals: Vec<String>,
    },
    HandoverReadOnly {
        to: String,
    },
    HandoverBlocked {
        from: String,
        blocker: Blocker,
    },
    HandoverApplying {
        from: String,
    },
    BinlogSettingsFine,
    RepairStep,
}
