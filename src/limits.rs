//! The open-file limit the agent's bounds need. Every listener and link is capped (gossip,
//! transfer, socket), so the descriptors the agent can hold at once are known; the agent raises
//! its soft limit to the hard one at start and refuses to run when even that is below the need,
//! rather than failing later, under load, to accept its own status socket or reach its database.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

use crate::tls::transport::{MAX_INBOUND_CONNECTIONS, MAX_PEER_LINKS};

/// The database connection, the fence, and the pipes of the repair tools running at once
/// (`mariadb-dump | mariadb`, `mariabackup | mbstream`, the transfer's `mariabackup`).
const DATABASE_FILES: u64 = 16;
/// Six hooks and the rewriter's reload, one command each at a time, with their output pipes.
const HOOK_FILES: u64 = 16;
/// The reachability check's connections at once (`agent/reach.rs`: 64 DB hosts at most).
const REACH_FILES: u64 = 64;
/// Standard streams, the runtime's epoll and wakers, signal handling, the state and config
/// files, the listening sockets, chitchat's UDP socket.
const BASE_FILES: u64 = 64;

/// What the agent may hold open at once, every bound at its cap.
pub const OPEN_FILES_NEEDED: u64 = (MAX_INBOUND_CONNECTIONS + MAX_PEER_LINKS) as u64
    + crate::transfer::MAX_CONNECTIONS as u64
    + crate::socket::MAX_CONNECTIONS as u64
    + DATABASE_FILES
    + HOOK_FILES
    + REACH_FILES
    + BASE_FILES;

// systemd starts services with a soft limit of 1,024 unless the unit says otherwise: the bounds
// fit even there, so an agent under an old unit is not starved.
const _: () = assert!(
    OPEN_FILES_NEEDED <= 1024,
    "the bounds outgrew systemd's default soft limit"
);

#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error(
        "the open-file limit is {limit} ({which}), below the {need} this agent's bounds need; \
         raise it (LimitNOFILE= in the systemd unit, `ulimit -n` in a shell)"
    )]
    TooLow { limit: u64, which: &'static str, need: u64 },
    #[error("cannot read the open-file limit: {0}")]
    Read(nix::Error),
}

/// Raises the soft open-file limit to the hard one and checks the bounds fit; returns the limit
/// in force.
pub fn raise_open_files() -> Result<u64, LimitError> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(LimitError::Read)?;
    let wanted = target(soft, hard)?;
    let soft = match wanted > soft {
        true => match setrlimit(Resource::RLIMIT_NOFILE, wanted, hard) {
            Ok(()) => wanted,
            Err(err) => {
                tracing::warn!("cannot raise the open-file limit from {soft} to {wanted}: {err}");
                soft
            }
        },
        false => soft,
    };
    fits(soft, "soft")?;
    tracing::info!("open-file limit {soft} (hard {hard}); the bounds need {OPEN_FILES_NEEDED}");
    Ok(soft)
}

/// The soft limit to ask for: the hard one, when that fits the need.
fn target(soft: u64, hard: u64) -> Result<u64, LimitError> {
    fits(hard, "hard")?;
    Ok(soft.max(hard))
}

fn fits(limit: u64, which: &'static str) -> Result<(), LimitError> {
    match limit >= OPEN_FILES_NEEDED {
        true => Ok(()),
        false => Err(LimitError::TooLow {
            limit,
            which,
            need: OPEN_FILES_NEEDED,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_goes_up_to_the_hard_one_and_a_low_hard_limit_is_refused() {
        assert_eq!(target(1024, 524_288).unwrap(), 524_288);
        assert_eq!(target(65_536, 65_536).unwrap(), 65_536);
        let refused = target(256, 256).unwrap_err().to_string();
        assert!(
            refused.contains("LimitNOFILE") && refused.contains("256 (hard)"),
            "{refused}"
        );
    }
}
