//! Debounce for rewrites: a value is handed on only once it has stayed the same for
//! `settle_ms`, so a flapping view causes no storm of rewrites and reloads (one per settled
//! change).

use super::MonoMs;

#[derive(Debug, Clone)]
pub struct Settler<T> {
    settle_ms: u64,
    candidate: Option<(T, MonoMs)>,
    settled: Option<T>,
}

impl<T: Clone + PartialEq> Settler<T> {
    pub fn new(settle_ms: u64) -> Self {
        Settler {
            settle_ms,
            candidate: None,
            settled: None,
        }
    }

    /// Feeds the current value; returns it when it has just settled on something new.
    pub fn observe(&mut self, now: MonoMs, value: T) -> Option<T> {
        match &self.candidate {
            Some((candidate, _)) if *candidate == value => {}
            _ => self.candidate = Some((value, now)),
        }
        let (candidate, since) = self.candidate.as_ref()?;
        let settled_now = now.since(*since) >= self.settle_ms && self.settled.as_ref() != Some(candidate);
        if settled_now {
            self.settled = Some(candidate.clone());
        }
        settled_now.then(|| candidate.clone())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_value_settles_after_holding_still() {
        let mut settler = Settler::new(500);
        assert_eq!(settler.observe(MonoMs(0), "db1"), None);
        assert_eq!(settler.observe(MonoMs(499), "db1"), None);
        assert_eq!(settler.observe(MonoMs(500), "db1"), Some("db1"));
        assert_eq!(settler.observe(MonoMs(900), "db1"), None, "handed on once");
        assert_eq!(settler.observe(MonoMs(1000), "db2"), None);
        assert_eq!(settler.observe(MonoMs(1500), "db2"), Some("db2"));
    }

    #[test]
    fn flapping_never_settles_and_coming_back_changes_nothing() {
        let mut settler = Settler::new(500);
        settler.observe(MonoMs(0), "db1");
        assert_eq!(settler.observe(MonoMs(600), "db1"), Some("db1"));
        for step in 0..20u64 {
            let value = if step % 2 == 0 { "db2" } else { "db1" };
            assert_eq!(settler.observe(MonoMs(700 + step * 100), value), None);
        }
        assert_eq!(
            settler.observe(MonoMs(5000), "db1"),
            None,
            "db1 is already what was handed on"
        );
    }

    proptest! {
        /// Whatever the sequence, a value is handed on only after holding `settle_ms`, and
        /// never twice in a row.
        #[test]
        fn handed_on_values_held_still(steps in prop::collection::vec((1u64..400, 0u8..3), 1..200)) {
            let mut settler = Settler::new(500);
            let (mut now, mut held_since, mut last_value, mut last_handed) = (0u64, 0u64, None, None);
            for (elapsed, value) in steps {
                now += elapsed;
                if last_value != Some(value) {
                    held_since = now;
                    last_value = Some(value);
                }
                if let Some(handed) = settler.observe(MonoMs(now), value) {
                    prop_assert!(now - held_since >= 500);
                    prop_assert_ne!(Some(handed), last_handed);
                    last_handed = Some(handed);
                }
            }
        }
    }
}
