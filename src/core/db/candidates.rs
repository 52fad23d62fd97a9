//! Ranking the candidates for a promotion when no primary is left (DESIGN §2): never one that
//! would lose transactions of the common history another candidate has (a stale replica);
//! then one holding user databases over one holding none (an empty or setup-only server never
//! wins over the data), then priority, then name. Histories are related as sets, never by
//! sequence numbers of different servers.

use super::*;

pub(super) struct Candidate<'a> {
    pub(super) name: &'a str,
    pub(super) priority: u8,
    history: GtidSet,
    position: &'a str,
    databases: &'a [DatabaseContent],
    /// A live peer that cannot be promoted now (cool-down, just promotable, lagging…) is ranked
    /// all the same: it is never chosen, but no one is promoted over the data it holds.
    promotable: bool,
    /// In maintenance or waiting for a resync: an operator set it aside. Its history makes no
    /// one stale, but an empty server is never promoted over its user databases.
    set_aside: bool,
}

pub(super) struct Ranking<'a> {
    candidates: Vec<Candidate<'a>>,
    /// Indexes of the candidates no other candidate makes stale.
    most_advanced: Vec<usize>,
}

/// This node and every live DB peer whose history is readable and whose database answers,
/// promotable or not.
pub(super) fn rank<'a>(view: &DbView<'a>, priority: u8, probe: &'a DbProbe, live_peers: &[&PeerDb<'a>]) -> Ranking<'a> {
    let mut candidates = vec![Candidate {
        name: view.me,
        priority,
        history: probe.history().unwrap_or_else(|_| GtidSet::empty_mariadb()),
        position: &probe.gtid,
        databases: &probe.databases,
        promotable: true,
        set_aside: false,
    }];
    for (peer, db) in live_peers.iter().filter_map(|peer| peer.db.map(|db| (peer, db))) {
        let set_aside = db.maintenance || db.role == DbRole::NeedsResync;
        if let (true, Some(history)) = (db.promotable || db.reachable, announced_history(db)) {
            candidates.push(Candidate {
                name: peer.name,
                priority: db.priority,
                history,
                position: &db.gtid,
                databases: &db.databases,
                promotable: db.promotable,
                set_aside: set_aside && !db.promotable,
            });
        }
    }
    // A source has at least what its replica received from it: if this node replicates from
    // a candidate over a connected IO thread, that candidate is never behind it, even while
    // its gossip lags (it may have just been promoted and taken writes).
    let connected_source = probe
        .replica
        .as_ref()
        .filter(|replica| replica.io_running())
        .and_then(|replica| {
            view.peers
                .iter()
                .find(|peer| peer.db.is_some_and(|db| db.advertise == replica.source))
        })
        .map(|peer| peer.name);
    let mine = candidates[0].history.clone();
    for candidate in candidates.iter_mut().skip(1) {
        if Some(candidate.name) == connected_source && candidate.history.is_stale_against(&mine) {
            candidate.history = mine.clone();
        }
    }
    let most_advanced = (0..candidates.len())
        .filter(|&i| {
            !candidates
                .iter()
                .any(|other| !other.set_aside && candidates[i].history.is_stale_against(&other.history))
        })
        .collect();
    Ranking {
        candidates,
        most_advanced,
    }
}

impl Candidate<'_> {
    /// "GTID 0-1-235, pandora (4 tables, ~1200 rows)", for reasons.
    pub(super) fn summary(&self) -> String {
        format!(
            "GTID {}, {}",
            display_gtid(self.position),
            describe_databases(self.databases)
        )
    }
}

impl<'a> Ranking<'a> {
    pub(super) fn best(&self) -> Option<&Candidate<'a>> {
        self.most_advanced
            .iter()
            .map(|&i| &self.candidates[i])
            .filter(|candidate| candidate.promotable)
            .max_by_key(|candidate| {
                (
                    !candidate.databases.is_empty(),
                    candidate.priority,
                    Reverse(candidate.name),
                )
            })
    }

    /// A live peer that cannot be promoted now but holds what `me` would lose: transactions of
    /// a common history `me` lacks (not one set aside), or user databases where `me` holds none
    /// and their histories have nothing in common (any). Promoting `me` would clone it from less.
    pub(super) fn held_back_by(&self, me: &str) -> Option<&Candidate<'a>> {
        let mine = self.candidates.iter().find(|candidate| candidate.name == me)?;
        self.candidates.iter().find(|other| {
            let unrelated = mine.history.relation(&other.history) == Relation::Unrelated;
            let stale = !other.set_aside && mine.history.is_stale_against(&other.history);
            !other.promotable && (stale || (unrelated && mine.databases.is_empty() && !other.databases.is_empty()))
        })
    }

    pub(super) fn is_most_advanced(&self, name: &str) -> bool {
        self.most_advanced.iter().any(|&i| self.candidates[i].name == name)
    }

    /// Candidates that may be promoted now.
    pub(super) fn len(&self) -> usize {
        self.candidates.iter().filter(|candidate| candidate.promotable).count()
    }

    /// "db1 priority 2 GTID 0-1-235 (pandora (4 tables, ~1200 rows)); db2 …", for reasons.
    pub(super) fn describe(&self) -> String {
        self.candidates
            .iter()
            .map(|candidate| {
                format!(
                    "{} priority {} GTID {} ({}){}",
                    candidate.name,
                    candidate.priority,
                    display_gtid(candidate.position),
                    describe_databases(candidate.databases),
                    if candidate.promotable {
                        ""
                    } else {
                        ", not promotable now"
                    }
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Said when two candidates' histories have nothing in common, so the choice is by what
    /// they hold and by priority, not by who is further along.
    pub(super) fn unrelated_note(&self) -> &'static str {
        let unrelated = self.candidates.iter().enumerate().any(|(i, a)| {
            self.candidates[i + 1..]
                .iter()
                .any(|b| a.history.relation(&b.history) == Relation::Unrelated)
        });
        if unrelated {
            "; their histories are unrelated (no transaction in common): a server holding user databases wins over one holding none, then the first of ha_hosts"
        } else {
            ""
        }
    }
}
