//! The `server_threshold × 2` rule (DESIGN §1.2): a peer is DOWN when its heartbeat has not
//! advanced, as seen on this agent's own monotonic clock, for longer than twice the threshold.
//! Heartbeats relayed by any peer count, so one broken link alone does not make a node DOWN.

use std::collections::BTreeMap;

use super::MonoMs;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Track {
    generation: u64,
    heartbeat: u64,
    last_advance: MonoMs,
}

/// What one observation of a peer's `(generation, heartbeat)` meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// First time this agent sees the node.
    New,
    /// Same generation, higher heartbeat.
    Advanced,
    /// A higher generation: the peer's agent restarted.
    Restarted,
    /// Nothing new, or an older generation still lingering in gossip.
    Unchanged,
}

#[derive(Debug, Clone, Default)]
pub struct LivenessTracker {
    tracks: BTreeMap<String, Track>,
}

impl LivenessTracker {
    pub fn observe(&mut self, name: &str, generation: u64, heartbeat: u64, now: MonoMs) -> Observed {
        let Some(track) = self.tracks.get_mut(name) else {
            self.tracks.insert(
                name.to_string(),
                Track {
                    generation,
                    heartbeat,
                    last_advance: now,
                },
            );
            return Observed::New;
        };
        let outcome = if generation > track.generation {
            Observed::Restarted
        } else if generation == track.generation && heartbeat > track.heartbeat {
            Observed::Advanced
        } else {
            return Observed::Unchanged;
        };
        *track = Track {
            generation,
            heartbeat,
            last_advance: now,
        };
        outcome
    }

    pub fn last_advance(&self, name: &str) -> Option<MonoMs> {
        self.tracks.get(name).map(|track| track.last_advance)
    }

    pub fn generation(&self, name: &str) -> Option<u64> {
        self.tracks.get(name).map(|track| track.generation)
    }

    /// DOWN strictly after `2 × threshold_ms` without an advance; never sooner.
    pub fn is_down(&self, name: &str, now: MonoMs, threshold_ms: u64) -> bool {
        self.last_advance(name)
            .is_some_and(|last| now.since(last) > down_after_ms(threshold_ms))
    }

    pub fn forget(&mut self, name: &str) {
        self.tracks.remove(name);
    }
}

pub fn down_after_ms(threshold_ms: u64) -> u64 {
    threshold_ms.saturating_mul(2)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn table_of_observations() {
        let mut tracker = LivenessTracker::default();
        let cases: &[(u64, u64, u64, Observed)] = &[
            // (now_ms, generation, heartbeat, expected)
            (0, 10, 5, Observed::New),
            (100, 10, 5, Observed::Unchanged),
            (200, 10, 6, Observed::Advanced),
            (300, 10, 4, Observed::Unchanged),
            (400, 9, 100, Observed::Unchanged),
            (500, 11, 1, Observed::Restarted),
            (600, 11, 2, Observed::Advanced),
        ];
        for &(now, generation, heartbeat, expected) in cases {
            let got = tracker.observe("b", generation, heartbeat, MonoMs(now));
            assert_eq!(
                got, expected,
                "at {now} ms: generation {generation} heartbeat {heartbeat}"
            );
        }
        assert_eq!(tracker.last_advance("b"), Some(MonoMs(600)));
        assert_eq!(tracker.generation("b"), Some(11));
    }

    #[test]
    fn down_exactly_after_twice_the_threshold() {
        let mut tracker = LivenessTracker::default();
        tracker.observe("b", 1, 1, MonoMs(1_000));
        assert!(
            !tracker.is_down("b", MonoMs(3_000), 1_000),
            "2 × threshold is not yet DOWN"
        );
        assert!(tracker.is_down("b", MonoMs(3_001), 1_000));
        assert!(!tracker.is_down("unknown", MonoMs(1_000_000), 1_000));
    }

    proptest! {
        /// A node is never DOWN sooner than 2 × threshold after its last heartbeat advance, and
        /// always DOWN later than that.
        #[test]
        fn never_down_before_twice_the_threshold(
            threshold_ms in 1u64..5_000,
            steps in prop::collection::vec((0u64..3_000, 0u64..3, 0u64..2), 1..200),
        ) {
            let mut tracker = LivenessTracker::default();
            let (mut now, mut generation, mut heartbeat) = (0u64, 1u64, 1u64);
            let mut last_advance = None;
            for (elapsed_ms, heartbeat_step, generation_step) in steps {
                now += elapsed_ms;
                heartbeat += heartbeat_step;
                if generation_step == 1 {
                    generation += 1;
                    heartbeat = 0;
                }
                let observed = tracker.observe("peer", generation, heartbeat, MonoMs(now));
                if observed != Observed::Unchanged {
                    last_advance = Some(now);
                }
                let since = now - last_advance.unwrap();
                prop_assert_eq!(tracker.is_down("peer", MonoMs(now), threshold_ms), since > 2 * threshold_ms);
            }
        }
    }
}
