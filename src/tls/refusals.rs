//! What the listeners share to turn connections away cheaply: counts of connections held per
//! source (IP address, uid) with guards that give the place back, and reports of refusals once
//! per (peer, reason), so a flood of a thousand connections is one event, not a thousand.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Distinct (peer, reason) refusals remembered so each is reported once; beyond, the memory
/// starts again (a flood of distinct reasons costs repeated reports, never unbounded memory).
const MAX_REMEMBERED_REFUSALS: usize = 1024;

/// Told about each refused peer once per reason: `(peer address, reason)`.
pub type RefusalSink = Arc<dyn Fn(IpAddr, String) + Send + Sync>;

/// Reports each (peer, reason) once; later repeats only reach the debug log.
pub struct Refusals {
    seen: Mutex<HashSet<(IpAddr, String)>>,
    sink: RefusalSink,
}

impl Refusals {
    pub fn new(sink: RefusalSink) -> Self {
        Refusals {
            seen: Mutex::new(HashSet::new()),
            sink,
        }
    }

    pub fn refuse(&self, peer: IpAddr, reason: String) {
        let first = self.seen.lock().map_or(true, |mut seen| {
            if seen.len() >= MAX_REMEMBERED_REFUSALS {
                seen.clear();
            }
            seen.insert((peer, reason.clone()))
        });
        if first {
            tracing::warn!(%peer, "refused: {reason}");
            (self.sink)(peer, reason);
        } else {
            tracing::debug!(%peer, "refused again: {reason}");
        }
    }
}

/// How many connections are held in all and from one source, at the moment of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub total: usize,
    pub from_source: usize,
}

/// Connections held, in all and per source. A source's entry goes when its last one ends, so
/// the map is bounded by the connections held, which the callers bound.
pub struct Counts<K: Hash + Eq + Clone> {
    inner: Arc<Mutex<CountsInner<K>>>,
}

struct CountsInner<K> {
    total: usize,
    per_source: HashMap<K, usize>,
}

impl<K: Hash + Eq + Clone> Default for Counts<K> {
    fn default() -> Self {
        Counts {
            inner: Arc::new(Mutex::new(CountsInner {
                total: 0,
                per_source: HashMap::new(),
            })),
        }
    }
}

impl<K: Hash + Eq + Clone> Counts<K> {
    /// Takes a place for `source` if `admit` (told what is held now) allows it, atomically with
    /// the check; the place is given back when the returned guard drops.
    pub fn take(&self, source: K, admit: impl FnOnce(Held) -> Result<(), String>) -> Result<Place<K>, String> {
        let mut inner = self
            .inner
            .lock()
            .map_err(|_| "connection counts poisoned".to_string())?;
        let held = Held {
            total: inner.total,
            from_source: inner.per_source.get(&source).copied().unwrap_or(0),
        };
        admit(held)?;
        inner.total += 1;
        *inner.per_source.entry(source.clone()).or_insert(0) += 1;
        Ok(Place {
            inner: self.inner.clone(),
            source,
        })
    }
}

/// One connection's place in `Counts`; dropping it gives the place back.
pub struct Place<K: Hash + Eq + Clone> {
    inner: Arc<Mutex<CountsInner<K>>>,
    source: K,
}

impl<K: Hash + Eq + Clone> Drop for Place<K> {
    fn drop(&mut self) {
        let Ok(mut inner) = self.inner.lock() else { return };
        inner.total = inner.total.saturating_sub(1);
        if let Some(count) = inner.per_source.get_mut(&self.source) {
            *count -= 1;
            if *count == 0 {
                inner.per_source.remove(&self.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_counted_per_source_and_given_back() {
        let counts = Counts::default();
        let at_most_two = |held: Held| (held.from_source < 2).then_some(()).ok_or("full".to_string());
        let first = counts.take(1u32, at_most_two).unwrap();
        let _second = counts.take(1u32, at_most_two).unwrap();
        assert!(counts.take(1u32, at_most_two).is_err());
        let other = counts.take(2u32, |held| {
            assert_eq!(
                held,
                Held {
                    total: 2,
                    from_source: 0
                }
            );
            Ok(())
        });
        assert!(other.is_ok());
        drop(first);
        assert!(counts.take(1u32, at_most_two).is_ok());
    }

    #[test]
    fn a_refusal_is_reported_once_per_peer_and_reason() {
        let reported = Arc::new(Mutex::new(Vec::new()));
        let sink: RefusalSink = {
            let reported = reported.clone();
            Arc::new(move |peer, reason| reported.lock().unwrap().push((peer, reason)))
        };
        let refusals = Refusals::new(sink);
        let peer: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            refusals.refuse(peer, "no handshake".into());
        }
        refusals.refuse(peer, "another reason".into());
        assert_eq!(reported.lock().unwrap().len(), 2);
    }
}
