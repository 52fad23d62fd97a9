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
}

pub(super) struct Ranking<'a> {
    candidates: Vec<Candidate<'a>>,
    /// Indexes of the candidates no other candidate makes stale.
    most_advanced: Vec<usize>,
}

/// This node and every live, promotable DB peer whose history is readable.
pub(super) fn rank<'a>(view: &DbView<'a>, priority: u8, probe: &'a DbProbe, live_peers: &[&PeerDb<'a>]) -> Ranking<'a> {
    let mut candidates = vec![Candidate {
        name: view.me,
        priority,
        history: probe.history().unwrap_or_else(|_| GtidSet::empty_mariadb()),
        position: &probe.gtid,
        databases: &probe.databases,
    }];
    for (peer, db) in live_peers.iter().filter_map(|peer| peer.db.map(|db| (peer, db))) {
        if let (true, Some(history)) = (db.promotable, announced_history(db)) {
            candidates.push(Candidate {
                name: peer.name,
                priority: db.priority,
                history,
                position: &db.gtid,
                databases: &db.databases,
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
                .any(|other| candidates[i].history.is_stale_against(&other.history))
        })
        .collect();
    Ranking {
        candidates,
        most_advanced,
    }
}

impl<'a> Ranking<'a> {
    pub(super) fn best(&self) -> Option<&Candidate<'a>> {
        self.most_advanced
            .iter()
            .map(|&i| &self.candidates[i])
            .max_by_key(|candidate| {
                (
                    !candidate.databases.is_empty(),
                    candidate.priority,
                    Reverse(candidate.name),
                )
            })
    }

    pub(super) fn is_most_advanced(&self, name: &str) -> bool {
        self.most_advanced.iter().any(|&i| self.candidates[i].name == name)
    }

    pub(super) fn len(&self) -> usize {
        self.candidates.len()
    }

    /// "db1 priority 2 GTID 0-1-235 (pandora (4 tables, ~1200 rows)); db2 …", for reasons.
    pub(super) fn describe(&self) -> String {
        self.candidates
            .iter()
            .map(|candidate| {
                format!(
                    "{} priority {} GTID {} ({})",
                    candidate.name,
                    candidate.priority,
                    display_gtid(candidate.position),
                    describe_databases(candidate.databases)
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
