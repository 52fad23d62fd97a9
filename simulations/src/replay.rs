//! Exact replay: the same seed gives the same run, bit for bit.
//!
//! A run is one thread, one current-thread tokio runtime, a paused clock: what could still vary
//! between two runs of a seed is randomness from the OS. Chitchat has two kinds. Its loop picks
//! gossip partners with an RNG seeded from the OS, from `HashSet`s; that loop is kept out of the
//! way (`Rounds::Driven`) and the network starts every round itself, with partners from
//! `PeerMemory::partners` and an RNG seeded from the run's seed. And its loop is a `tokio::select!`
//! over the socket, its interval and its commands, which polls its branches in a random order
//! (tokio seeds it per runtime; `Builder::rng_seed` needs `tokio_unstable`): with a paused clock
//! a message and a round often come due at the same instant, and which goes first changes the
//! heartbeat and digest a node sends. The network therefore hands a server one kind of work at
//! a time and waits until every server is idle before the next (`SimNetwork::run_until`), so
//! the branch order no longer matters. What is left — chitchat's shuffle of equally stale nodes
//! within one delta — only orders entries that are applied independently, as long as a delta
//! fits in a datagram (a scenario's are a few KB).
//!
//! Every run ends with a hash of its timeline, final state and message trace; `--replay-check`
//! runs each seed twice and compares them. `--inject-nondeterminism` seeds the partner choice
//! from the OS again, to show that the check catches it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gossip_ha::gossip::RoundPeer;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

/// Peers picked at random each round, as chitchat's `GOSSIP_COUNT`.
const PARTNERS: usize = 3;
/// A peer whose heartbeat has not advanced for this many rounds counts as dead when partners
/// are picked (chitchat's phi detector says so after about eighteen silent intervals).
const LIVE_FOR_ROUNDS: u32 = 20;

static INJECT_OS_RANDOMNESS: AtomicBool = AtomicBool::new(false);

/// For `--inject-nondeterminism`: later networks pick gossip partners with an OS-seeded RNG.
pub fn inject_os_randomness() {
    INJECT_OS_RANDOMNESS.store(true, Ordering::Relaxed);
}

pub fn rounds_rng(seed: u64) -> StdRng {
    if INJECT_OS_RANDOMNESS.load(Ordering::Relaxed) {
        StdRng::from_entropy()
    } else {
        StdRng::seed_from_u64(seed ^ 0x726f_756e_6473_0000)
    }
}

/// FNV-1a, 64 bits: stable across Rust versions and platforms, unlike `DefaultHasher`, so a hash
/// printed today can be compared with one printed by another build.
#[derive(Debug, Clone, Copy)]
pub struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv64 {
    /// Adds `bytes` and a separator, so ("ab", "c") and ("a", "bc") differ.
    pub fn write(&mut self, bytes: &[u8]) {
        for byte in bytes.iter().chain(&[0xff]) {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    pub fn finish(&self) -> u64 {
        self.0
    }
}

/// The hash of a run: its timeline, the final state lines, and the network's message trace.
pub fn run_hash(timeline: &[String], final_state: &[String], trace: u64) -> u64 {
    let mut hash = Fnv64::default();
    for line in timeline.iter().chain(final_state) {
        hash.write(line.as_bytes());
    }
    hash.write(&trace.to_le_bytes());
    hash.finish()
}

/// What a driven node remembers of its peers between rounds: when each heartbeat last advanced.
#[derive(Debug, Default)]
pub struct PeerMemory {
    advanced: BTreeMap<SocketAddr, (u64, Instant)>,
}

impl PeerMemory {
    /// This round's partners, picked as chitchat picks them, from `rng`.
    pub fn partners(
        &mut self,
        now: Instant,
        peers: &[RoundPeer],
        seeds: &[SocketAddr],
        interval: Duration,
        rng: &mut StdRng,
    ) -> Vec<SocketAddr> {
        let live_for = interval * LIVE_FOR_ROUNDS;
        let (mut live, mut dead) = (Vec::new(), Vec::new());
        for peer in peers {
            let advanced = self.advanced.entry(peer.addr).or_insert((peer.heartbeat, now));
            if peer.heartbeat > advanced.0 {
                *advanced = (peer.heartbeat, now);
            }
            if now.duration_since(advanced.1) < live_for {
                live.push(peer.addr);
            } else {
                dead.push(peer.addr);
            }
        }
        choose(&live, &dead, seeds, rng)
    }
}

/// Chitchat's rule on sorted lists: three live peers (any known peer while none is live); a dead
/// one with probability dead / (live + 1); a seed when none was picked or fewer peers are live
/// than there are seeds, with probability seeds / known (always while none is live).
pub fn choose(live: &[SocketAddr], dead: &[SocketAddr], seeds: &[SocketAddr], rng: &mut StdRng) -> Vec<SocketAddr> {
    let known: Vec<SocketAddr> = live.iter().chain(dead).copied().collect();
    let pool = if live.is_empty() { &known } else { live };
    let mut partners: Vec<SocketAddr> = pool.choose_multiple(rng, PARTNERS).copied().collect();
    let dead_odds = dead.len() as f64 / (live.len() + 1) as f64;
    if !dead.is_empty() && rng.gen::<f64>() < dead_odds {
        partners.extend(dead.choose(rng));
    }
    let has_seed = partners.iter().any(|partner| seeds.contains(partner));
    if !seeds.is_empty() && (!has_seed || live.len() < seeds.len()) {
        let seed_odds = seeds.len() as f64 / known.len().max(1) as f64;
        if live.is_empty() || rng.gen::<f64>() <= seed_odds {
            partners.extend(seeds.choose(rng));
        }
    }
    let mut unique = Vec::new();
    for partner in partners {
        if !unique.contains(&partner) {
            unique.push(partner);
        }
    }
    unique
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(count: u8) -> Vec<SocketAddr> {
        (1..=count)
            .map(|last| SocketAddr::from(([198, 18, 0, last], 7946)))
            .collect()
    }

    #[test]
    fn the_same_seed_picks_the_same_partners() {
        let (live, seeds) = (addrs(6), addrs(2));
        let picks = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..50)
                .map(|_| choose(&live, &[], &seeds, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(picks(7), picks(7));
        assert_ne!(picks(7), picks(8));
    }

    #[test]
    fn a_node_that_knows_nobody_gossips_with_a_seed() {
        let seeds = addrs(2);
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..20 {
            let partners = choose(&[], &[], &seeds, &mut rng);
            assert_eq!(partners.len(), 1);
            assert!(seeds.contains(&partners[0]));
        }
    }

    #[test]
    fn three_live_peers_at_most_and_dead_ones_sometimes() {
        let all = addrs(8);
        let (live, dead) = all.split_at(5);
        let mut rng = StdRng::seed_from_u64(3);
        let rounds: Vec<Vec<SocketAddr>> = (0..200).map(|_| choose(live, dead, &[], &mut rng)).collect();
        assert!(rounds
            .iter()
            .all(|partners| partners.iter().filter(|p| live.contains(p)).count() == 3));
        assert!(rounds.iter().any(|partners| partners.iter().any(|p| dead.contains(p))));
        assert!(rounds.iter().any(|partners| partners.len() == 3));
    }

    #[test]
    fn a_peer_silent_for_twenty_rounds_is_dead() {
        let peer = addrs(1)[0];
        let mut memory = PeerMemory::default();
        let mut rng = StdRng::seed_from_u64(1);
        let (start, interval) = (Instant::now(), Duration::from_millis(100));
        let seen = |heartbeat| [RoundPeer { addr: peer, heartbeat }];
        assert_eq!(memory.partners(start, &seen(5), &[], interval, &mut rng), vec![peer]);
        let later = start + interval * 19;
        assert_eq!(memory.partners(later, &seen(5), &[], interval, &mut rng), vec![peer]);
        // Dead, the only one: still picked from every known peer, as chitchat does.
        let silent = start + interval * 20;
        assert_eq!(memory.partners(silent, &seen(5), &[], interval, &mut rng), vec![peer]);
        assert_eq!(memory.advanced[&peer].1, start);
        memory.partners(silent, &seen(6), &[], interval, &mut rng);
        assert_eq!(memory.advanced[&peer].1, silent);
    }
}
