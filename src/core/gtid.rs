//! Executed-GTID comparison, used to never promote a replica that is behind another candidate.
//! MariaDB gossips positions (`domain-server-seq` per domain, as in `gtid_current_pos`); MySQL
//! gossips sets (`uuid:1-100:105,…`, as in `gtid_executed`). Among replicas of one primary the
//! history is shared, so "covers" is a sound way to rank them. Divergence between two primaries
//! is not judged here: the server reports it when a node rejoins (see `db.rs`).

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GtidState {
    /// domain → (server_id, seq_no)
    MariaDb(BTreeMap<u32, (u32, u64)>),
    /// source uuid → sorted, merged inclusive intervals
    MySql(BTreeMap<String, Vec<(u64, u64)>>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unreadable GTID text `{0}`")]
pub struct GtidParseError(pub String);

impl GtidState {
    /// Reads either dialect; the empty string is an empty MariaDB position (a new server).
    pub fn parse(text: &str) -> Result<GtidState, GtidParseError> {
        let cleaned: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let error = || GtidParseError(text.to_string());
        if cleaned.contains(':') {
            let mut sets: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
            for member in cleaned.split(',').filter(|m| !m.is_empty()) {
                let mut parts = member.split(':');
                let uuid = parts.next().ok_or_else(error)?.to_ascii_lowercase();
                let intervals = sets.entry(uuid).or_default();
                for interval in parts {
                    let (start, end) = match interval.split_once('-') {
                        Some((start, end)) => (start.parse().map_err(|_| error())?, end.parse().map_err(|_| error())?),
                        None => {
                            let single = interval.parse().map_err(|_| error())?;
                            (single, single)
                        }
                    };
                    if start > end {
                        return Err(error());
                    }
                    intervals.push((start, end));
                }
            }
            for intervals in sets.values_mut() {
                *intervals = merge(std::mem::take(intervals));
            }
            return Ok(GtidState::MySql(sets));
        }
        let mut positions = BTreeMap::new();
        for member in cleaned.split(',').filter(|m| !m.is_empty()) {
            let fields: Vec<&str> = member.split('-').collect();
            let [domain, server, seq] = fields[..] else {
                return Err(error());
            };
            let parsed = (
                domain.parse::<u32>().map_err(|_| error())?,
                server.parse::<u32>().map_err(|_| error())?,
                seq.parse::<u64>().map_err(|_| error())?,
            );
            positions.insert(parsed.0, (parsed.1, parsed.2));
        }
        Ok(GtidState::MariaDb(positions))
    }

    /// Everything `other` executed, `self` executed too. An empty state is covered by anything;
    /// otherwise states of different dialects never cover each other.
    pub fn covers(&self, other: &GtidState) -> bool {
        if other.is_empty() {
            return true;
        }
        match (self, other) {
            (GtidState::MariaDb(mine), GtidState::MariaDb(theirs)) => theirs
                .iter()
                .all(|(domain, (_, seq))| mine.get(domain).is_some_and(|(_, my_seq)| my_seq >= seq)),
            (GtidState::MySql(mine), GtidState::MySql(theirs)) => theirs.iter().all(|(uuid, intervals)| {
                let my_intervals = mine.get(uuid).map(Vec::as_slice).unwrap_or_default();
                intervals.iter().all(|&(start, end)| {
                    my_intervals
                        .iter()
                        .any(|&(my_start, my_end)| my_start <= start && end <= my_end)
                })
            }),
            _ => false,
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            GtidState::MariaDb(positions) => positions.is_empty(),
            GtidState::MySql(sets) => sets.is_empty(),
        }
    }

    /// How many transactions `self` executed beyond `fork`: the writes one side of a split-brain
    /// took since the sides parted. MariaDB numbers each domain's transactions consecutively, so
    /// the count is the difference of sequence numbers; MySQL's sets are counted exactly.
    /// `None` when the dialects differ.
    pub fn transactions_beyond(&self, fork: &GtidState) -> Option<u64> {
        match (self, fork) {
            (GtidState::MariaDb(mine), GtidState::MariaDb(base)) => Some(
                mine.iter()
                    .map(|(domain, (_, seq))| seq.saturating_sub(base.get(domain).map_or(0, |(_, base_seq)| *base_seq)))
                    .sum(),
            ),
            (GtidState::MySql(mine), GtidState::MySql(base)) => Some(
                mine.iter()
                    .map(|(uuid, intervals)| {
                        let base_intervals = base.get(uuid).map(Vec::as_slice).unwrap_or_default();
                        intervals
                            .iter()
                            .map(|&interval| count_outside(interval, base_intervals))
                            .sum::<u64>()
                    })
                    .sum(),
            ),
            // The empty text parses as MariaDB: it is no fork at all for a MySQL state either.
            (GtidState::MySql(_), fork) if fork.is_empty() => {
                self.transactions_beyond(&GtidState::MySql(Default::default()))
            }
            _ => None,
        }
    }

    /// `other` has executed everything `self` has and more.
    pub fn is_behind(&self, other: &GtidState) -> bool {
        other.covers(self) && !self.covers(other)
    }
}

/// Ids of `(start, end)` that no interval of the sorted, merged `base` holds.
fn count_outside((start, end): (u64, u64), base: &[(u64, u64)]) -> u64 {
    let inside: u64 = base
        .iter()
        .map(|&(base_start, base_end)| {
            let low = start.max(base_start);
            let high = end.min(base_end);
            if low <= high {
                high - low + 1
            } else {
                0
            }
        })
        .sum();
    (end - start + 1) - inside
}

fn merge(mut intervals: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    intervals.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(intervals.len());
    for (start, end) in intervals {
        match merged.last_mut() {
            Some(last) if start <= last.1.saturating_add(1) => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn gtid(text: &str) -> GtidState {
        GtidState::parse(text).unwrap()
    }

    #[test]
    fn table_of_comparisons() {
        let cases: &[(&str, &str, bool, bool)] = &[
            // (a, b, a covers b, a is behind b)
            ("", "", true, false),
            ("0-1-10", "", true, false),
            ("", "0-1-10", false, true),
            ("0-1-10", "0-1-9", true, false),
            ("0-1-9", "0-1-10", false, true),
            ("0-2-10", "0-1-10", true, false),
            ("0-1-10,1-3-4", "0-1-10", true, false),
            ("0-1-10", "0-1-10,1-3-4", false, true),
            ("0-1-10,1-3-1", "0-1-9,1-3-4", false, false),
            ("u:1-10", "u:1-5", true, false),
            ("u:1-5", "u:1-10", false, true),
            ("u:1-5:7-9", "u:6", false, false),
            ("U:1-3,v:1", "u:2-3", true, false),
            ("u:1-3:4-6", "u:2-5", true, false),
            ("u:1-10", "0-1-10", false, false),
        ];
        for &(a, b, covers, behind) in cases {
            assert_eq!(gtid(a).covers(&gtid(b)), covers, "{a} covers {b}");
            assert_eq!(gtid(a).is_behind(&gtid(b)), behind, "{a} behind {b}");
        }
    }

    #[test]
    fn transactions_since_a_fork() {
        let cases: &[(&str, &str, Option<u64>)] = &[
            ("0-2-150", "0-1-100", Some(50)),
            ("0-1-120", "0-1-100", Some(20)),
            ("0-1-100", "0-1-100", Some(0)),
            ("0-1-90", "0-1-100", Some(0)),
            ("0-1-10,1-3-4", "0-1-8", Some(6)),
            ("0-1-10", "", Some(10)),
            ("u:1-10", "u:1-5", Some(5)),
            ("u:1-10,v:1-3", "u:1-5:7", Some(7)),
            ("u:1-10", "", Some(10)),
            ("u:1-10", "0-1-5", None),
        ];
        for &(state, fork, expected) in cases {
            assert_eq!(
                gtid(state).transactions_beyond(&gtid(fork)),
                expected,
                "{state} beyond {fork}"
            );
        }
    }

    #[test]
    fn refuses_unreadable_text() {
        for text in ["0-1", "a-b-c", "u:5-1", "0-1-2-3", "u:x"] {
            assert!(GtidState::parse(text).is_err(), "{text}");
        }
        assert_eq!(gtid(" 0-1-5 ,\n1-2-3"), gtid("0-1-5,1-2-3"));
    }

    proptest! {
        /// `covers` is a partial order: reflexive, and two states that cover each other are
        /// equal in what they executed (neither is behind the other).
        #[test]
        fn covers_is_a_partial_order(a in prop::collection::btree_map(0u32..3, (1u32..4, 0u64..20), 0..3),
                                     b in prop::collection::btree_map(0u32..3, (1u32..4, 0u64..20), 0..3)) {
            let a = GtidState::MariaDb(a);
            let b = GtidState::MariaDb(b);
            prop_assert!(a.covers(&a));
            prop_assert!(!(a.is_behind(&b) && b.is_behind(&a)));
            if a.covers(&b) && b.covers(&a) {
                prop_assert!(!a.is_behind(&b));
            }
        }
    }
}
