//! Executed-GTID sets and the relations between two histories (DESIGN §2 "Histories"): equal,
//! behind, ahead, forked from a common point, or unrelated. Sequence numbers of different
//! server ids are never compared as if they were one history.
//!
//! MariaDB numbers transactions per replication domain; a domain's history is one line, so a
//! node that has applied `d-s-n` has applied everything before it on that line. What a node
//! shows of its line is its last GTID per domain (`gtid_current_pos`) and the newest sequence
//! number it holds from each server id (`gtid_binlog_state`, `gtid_slave_pos`): the waypoints.
//! A has B's history in a domain when A holds B's last GTID there (A's waypoint for that server
//! is at least as far). MySQL's sets (`uuid:1-100:105,…`, `gtid_executed`) are exact and compared
//! as sets.

use std::collections::BTreeMap;

/// One MariaDB replication domain as a node holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    /// The newest GTID applied in this domain: (server id, sequence number).
    pub last: (u32, u64),
    /// The newest sequence number held from each server id, `last` included.
    pub servers: BTreeMap<u32, u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GtidSet {
    /// domain → its waypoints
    MariaDb(BTreeMap<u32, Domain>),
    /// source uuid → sorted, merged inclusive intervals
    MySql(BTreeMap<String, Vec<(u64, u64)>>),
}

/// How history `a` stands to history `b`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    Equal,
    /// `b` holds everything `a` holds, and more.
    Behind,
    /// `a` holds everything `b` holds, and more.
    Ahead,
    /// Both share a common point, then each went on with transactions the other lacks.
    Forked,
    /// Both hold transactions and they have none in common: different servers wrote them.
    Unrelated,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unreadable GTID text `{0}`")]
pub struct GtidParseError(pub String);

impl GtidSet {
    pub fn empty_mariadb() -> GtidSet {
        GtidSet::MariaDb(BTreeMap::new())
    }

    /// Reads either dialect; the empty string is an empty MariaDB set (a new server). MariaDB
    /// text may name several GTIDs of one domain (`gtid_binlog_state` does): each is a
    /// waypoint, and the one with the highest sequence number is the domain's last.
    pub fn parse(text: &str) -> Result<GtidSet, GtidParseError> {
        let cleaned: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        if cleaned.contains(':') {
            return parse_mysql(&cleaned).ok_or_else(|| GtidParseError(text.to_string()));
        }
        let mut domains: BTreeMap<u32, Domain> = BTreeMap::new();
        for member in cleaned.split(',').filter(|m| !m.is_empty()) {
            let fields: Vec<&str> = member.split('-').collect();
            let [domain, server, seq] = fields[..] else {
                return Err(GtidParseError(text.to_string()));
            };
            let (Ok(domain), Ok(server), Ok(seq)) = (domain.parse::<u32>(), server.parse::<u32>(), seq.parse::<u64>())
            else {
                return Err(GtidParseError(text.to_string()));
            };
            let entry = domains.entry(domain).or_insert_with(|| Domain {
                last: (server, seq),
                servers: BTreeMap::new(),
            });
            let held = entry.servers.entry(server).or_insert(seq);
            *held = (*held).max(seq);
            if seq > entry.last.1 {
                entry.last = (server, seq);
            }
        }
        Ok(GtidSet::MariaDb(domains))
    }

    /// Reads a node's position and its waypoints together (`gtid` and `gtid_history` as a
    /// node announces them); an unreadable history is ignored, the position is not.
    pub fn of_node(position: &str, history: &str) -> Result<GtidSet, GtidParseError> {
        let set = GtidSet::parse(position)?;
        if history.is_empty() {
            return Ok(set);
        }
        match GtidSet::parse(&format!("{position},{history}")) {
            Ok(combined) if combined.same_dialect(&set) => Ok(combined),
            _ => Ok(set),
        }
    }

    fn same_dialect(&self, other: &GtidSet) -> bool {
        self.is_empty()
            || other.is_empty()
            || matches!(
                (self, other),
                (GtidSet::MariaDb(_), GtidSet::MariaDb(_)) | (GtidSet::MySql(_), GtidSet::MySql(_))
            )
    }

    pub fn is_empty(&self) -> bool {
        match self {
            GtidSet::MariaDb(domains) => domains.is_empty(),
            GtidSet::MySql(sets) => sets.is_empty(),
        }
    }

    /// How this history stands to `other`. Histories of different dialects (a MariaDB and a
    /// MySQL server) are unrelated unless one is empty.
    pub fn relation(&self, other: &GtidSet) -> Relation {
        match (self.is_empty(), other.is_empty()) {
            (true, true) => return Relation::Equal,
            (true, false) => return Relation::Behind,
            (false, true) => return Relation::Ahead,
            (false, false) => {}
        }
        let (mine_in_theirs, theirs_in_mine, shared) = match (self, other) {
            (GtidSet::MariaDb(mine), GtidSet::MariaDb(theirs)) => mariadb_containment(mine, theirs),
            (GtidSet::MySql(mine), GtidSet::MySql(theirs)) => (
                mysql_contains(theirs, mine),
                mysql_contains(mine, theirs),
                mysql_shared(mine, theirs),
            ),
            _ => (false, false, false),
        };
        match (mine_in_theirs, theirs_in_mine, shared) {
            (true, true, _) => Relation::Equal,
            (true, false, _) => Relation::Behind,
            (false, true, _) => Relation::Ahead,
            (false, false, true) => Relation::Forked,
            (false, false, false) => Relation::Unrelated,
        }
    }

    /// Everything `other` executed, `self` executed too.
    pub fn covers(&self, other: &GtidSet) -> bool {
        matches!(self.relation(other), Relation::Equal | Relation::Ahead)
    }

    /// A candidate this far along would lose transactions `other` has of their common history:
    /// it is behind, or the two forked and `other` went further along a line both hold while
    /// this one went no further along any line `other` holds. Errant transactions of its own
    /// (users created on a replica) do not make a node ahead of a peer that has more of the
    /// shared history.
    pub fn is_stale_against(&self, other: &GtidSet) -> bool {
        match self.relation(other) {
            Relation::Behind => true,
            Relation::Forked => other.further_on_shared(self) && !self.further_on_shared(other),
            _ => false,
        }
    }

    /// `self` holds a later transaction than `other` from some server id both hold.
    fn further_on_shared(&self, other: &GtidSet) -> bool {
        match (self, other) {
            (GtidSet::MariaDb(mine), GtidSet::MariaDb(theirs)) => mine.iter().any(|(domain, held)| {
                theirs.get(domain).is_some_and(|their_domain| {
                    held.servers
                        .iter()
                        .any(|(server, seq)| their_domain.servers.get(server).is_some_and(|theirs| seq > theirs))
                })
            }),
            (GtidSet::MySql(mine), GtidSet::MySql(theirs)) => mine.iter().any(|(uuid, intervals)| {
                theirs.get(uuid).is_some_and(|their_intervals| {
                    intervals
                        .iter()
                        .any(|&interval| count_outside(interval, their_intervals) > 0)
                })
            }),
            _ => false,
        }
    }

    /// How many transactions `self` executed beyond `fork`: the writes one side of a split-brain
    /// took since the sides parted. MariaDB numbers each domain's transactions consecutively, so
    /// the count is the difference of the domains' last sequence numbers; MySQL's sets are
    /// counted exactly. `None` when the dialects differ.
    pub fn transactions_beyond(&self, fork: &GtidSet) -> Option<u64> {
        match (self, fork) {
            (GtidSet::MariaDb(mine), GtidSet::MariaDb(base)) => Some(
                mine.iter()
                    .map(|(domain, held)| {
                        held.last
                            .1
                            .saturating_sub(base.get(domain).map_or(0, |base| base.last.1))
                    })
                    .sum(),
            ),
            (GtidSet::MySql(mine), GtidSet::MySql(base)) => Some(
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
            // The empty text parses as MariaDB: it is no fork at all for a MySQL set either.
            (GtidSet::MySql(_), fork) if fork.is_empty() => {
                self.transactions_beyond(&GtidSet::MySql(Default::default()))
            }
            _ => None,
        }
    }

    /// This MariaDB history holds GTID `domain-server-seq`: its domain's line reaches that far
    /// (a domain's sequence numbers are one line, whichever server wrote them). A split-brain
    /// loser's transactions that the fork does not hold are the divergent ones.
    pub fn holds(&self, domain: u32, seq: u64) -> bool {
        match self {
            GtidSet::MariaDb(domains) => domains.get(&domain).is_some_and(|held| held.last.1 >= seq),
            GtidSet::MySql(_) => false,
        }
    }

    /// `other` has executed everything `self` has and more.
    pub fn is_behind(&self, other: &GtidSet) -> bool {
        self.relation(other) == Relation::Behind
    }
}

impl std::fmt::Display for GtidSet {
    /// The position as people read it: MariaDB's last GTID per domain, MySQL's set.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = match self {
            GtidSet::MariaDb(domains) if domains.is_empty() => "(none)".to_string(),
            GtidSet::MySql(sets) if sets.is_empty() => "(none)".to_string(),
            GtidSet::MariaDb(domains) => domains
                .iter()
                .map(|(domain, held)| format!("{domain}-{}-{}", held.last.0, held.last.1))
                .collect::<Vec<_>>()
                .join(","),
            GtidSet::MySql(sets) => sets
                .iter()
                .map(|(uuid, intervals)| {
                    let ranges: Vec<String> = intervals.iter().map(|(start, end)| format!("{start}-{end}")).collect();
                    format!("{uuid}:{}", ranges.join(":"))
                })
                .collect::<Vec<_>>()
                .join(","),
        };
        f.write_str(&text)
    }
}

/// (a's history is in b's, b's is in a's, they hold a server id in common in some domain).
fn mariadb_containment(a: &BTreeMap<u32, Domain>, b: &BTreeMap<u32, Domain>) -> (bool, bool, bool) {
    let holds = |set: &BTreeMap<u32, Domain>, domain: &u32, (server, seq): (u32, u64)| {
        set.get(domain)
            .and_then(|held| held.servers.get(&server))
            .is_some_and(|held| *held >= seq)
    };
    let a_in_b = a.iter().all(|(domain, held)| holds(b, domain, held.last));
    let b_in_a = b.iter().all(|(domain, held)| holds(a, domain, held.last));
    let shared = a.iter().any(|(domain, held)| {
        b.get(domain)
            .is_some_and(|theirs| held.servers.keys().any(|server| theirs.servers.contains_key(server)))
    });
    (a_in_b, b_in_a, shared)
}

fn parse_mysql(cleaned: &str) -> Option<GtidSet> {
    let mut sets: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    for member in cleaned.split(',').filter(|m| !m.is_empty()) {
        if !member.contains(':') {
            return None;
        }
        let mut parts = member.split(':');
        let uuid = parts.next()?.to_ascii_lowercase();
        let intervals = sets.entry(uuid).or_default();
        for interval in parts {
            let (start, end) = match interval.split_once('-') {
                Some((start, end)) => (start.parse().ok()?, end.parse().ok()?),
                None => {
                    let single = interval.parse().ok()?;
                    (single, single)
                }
            };
            if start > end {
                return None;
            }
            intervals.push((start, end));
        }
    }
    for intervals in sets.values_mut() {
        *intervals = merge(std::mem::take(intervals));
    }
    Some(GtidSet::MySql(sets))
}

/// Every transaction of `small` is in `big`.
fn mysql_contains(big: &BTreeMap<String, Vec<(u64, u64)>>, small: &BTreeMap<String, Vec<(u64, u64)>>) -> bool {
    small.iter().all(|(uuid, intervals)| {
        let held = big.get(uuid).map(Vec::as_slice).unwrap_or_default();
        intervals.iter().all(|&interval| count_outside(interval, held) == 0)
    })
}

/// At least one transaction is in both.
fn mysql_shared(a: &BTreeMap<String, Vec<(u64, u64)>>, b: &BTreeMap<String, Vec<(u64, u64)>>) -> bool {
    a.iter().any(|(uuid, intervals)| {
        let held = b.get(uuid).map(Vec::as_slice).unwrap_or_default();
        intervals
            .iter()
            .any(|&(start, end)| count_outside((start, end), held) < end - start + 1)
    })
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
mod tests;
