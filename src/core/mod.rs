//! The pure decision core (DESIGN §5): no clock, socket, file, task or RNG in here. The shell
//! feeds it what gossip shows and the time on the agent's own monotonic clock; it answers with
//! decisions, each carrying its reason. The simulations drive the very same code.

pub mod authority;
pub mod db;
pub mod election;
pub mod gtid;
pub mod lag;
pub mod liveness;
pub mod reach;
pub mod settle;
mod state;

pub use state::{Core, Decision, Input, NodeView, Observation, Reply};

/// Milliseconds on the observing agent's monotonic clock. Never compared across agents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MonoMs(pub u64);

impl MonoMs {
    pub fn since(self, earlier: MonoMs) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// Formats milliseconds as seconds for reasons read by people, precise enough to show that a
/// silence really exceeded the limit.
pub(crate) fn seconds(ms: u64) -> String {
    format!("{:.3} s", ms as f64 / 1000.0)
}
