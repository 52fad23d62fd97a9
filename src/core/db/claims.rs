//! Primary claims and the election every agent runs on them (DESIGN §2): one claim is the
//! primary; several (a split-brain seen when a partition heals) are ranked by the writes each
//! side took since the newest promotion forked the histories. Pure functions of the claims.

use super::*;

/// A peer's history as it announced it (a primary's with the point it promoted at); an
/// unreadable one counts as unknown.
pub fn announced_history(db: &DbAnnouncement) -> Option<GtidSet> {
    let fork = db.promoted_from_gtid.as_deref().filter(|_| db.claims_primary);
    history_with_fork(&db.gtid, &db.gtid_history, fork)
}

/// A node's position and waypoints, with the point it promoted at (it had executed that much
/// then, whatever its binary log shows now).
fn history_with_fork(position: &str, waypoints: &str, fork: Option<&str>) -> Option<GtidSet> {
    let waypoints = match fork.filter(|fork| !fork.is_empty()) {
        Some(fork) => format!("{waypoints},{fork}"),
        None => waypoints.to_string(),
    };
    GtidSet::of_node(position, waypoints.trim_start_matches(',')).ok()
}

/// A primary claim, ranked by `(epoch, priority, name)`: higher epoch first, then priority, then
/// the smaller name, as every agent ranks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim<'a> {
    pub name: &'a str,
    pub epoch: u64,
    pub priority: u8,
    /// Executed GTIDs as last announced.
    pub gtid: &'a str,
    /// Its history's waypoints (MariaDB), as last announced.
    pub history: &'a str,
    /// It holds at least one user database.
    pub holds_data: bool,
    /// Executed GTIDs when this claim's node promoted.
    pub fork_gtid: Option<&'a str>,
    /// The node this primary is handing over to (a planned switchover, read-only already).
    pub yields_to: Option<&'a str>,
}

impl Claim<'_> {
    /// The claimant's history: its position, its waypoints, and where it promoted.
    pub fn history_set(&self) -> Option<GtidSet> {
        history_with_fork(self.gtid, self.history, self.fork_gtid)
    }
}

/// One primary claim, or the winner of a split-brain (DESIGN §2): when several nodes claim
/// primary, the histories parted where the newest of them promoted, and the side that took the
/// most writes since then stays primary (then the higher priority, then the smaller name), so
/// the fewest rows have to be merged. Without a readable fork the newest claim wins.
pub fn elect_db_primary<'a>(claims: impl IntoIterator<Item = Claim<'a>>) -> Option<Claim<'a>> {
    let all: Vec<Claim<'a>> = claims.into_iter().collect();
    // A primary handing over yields as soon as its successor claims.
    let claims: Vec<Claim<'a>> = all
        .iter()
        .copied()
        .filter(|claim| {
            !claim
                .yields_to
                .is_some_and(|to| all.iter().any(|other| other.name == to))
        })
        .collect();
    let newest = claims
        .iter()
        .copied()
        .max_by_key(|claim| (claim.epoch, claim.priority, Reverse(claim.name)))?;
    if claims.len() == 1 {
        return Some(newest);
    }
    if unrelated_claims(&claims) {
        // No common point: not a split-brain, and no write count means anything. A server
        // holding no user database never wins over one that does; then the first of ha_hosts.
        return claims
            .iter()
            .copied()
            .max_by_key(|claim| (claim.holds_data, claim.priority, Reverse(claim.name)));
    }
    match writes_since_fork(&claims) {
        Some(counted) => counted
            .into_iter()
            .max_by_key(|(claim, writes)| (*writes, claim.priority, Reverse(claim.name)))
            .map(|(claim, _)| claim),
        None => Some(newest),
    }
}

/// Two of the claims have histories with no transaction in common (different servers wrote
/// everything each holds): two primaries of two clusters, never a split-brain of one.
pub fn unrelated_claims(claims: &[Claim<'_>]) -> bool {
    let histories: Vec<GtidSet> = claims.iter().filter_map(Claim::history_set).collect();
    histories
        .iter()
        .enumerate()
        .any(|(i, a)| histories[i + 1..].iter().any(|b| a.relation(b) == Relation::Unrelated))
}

/// Each claim with the transactions it executed since the newest claim's promotion; `None`
/// when the fork or a position cannot be read.
pub fn writes_since_fork<'a>(claims: &[Claim<'a>]) -> Option<Vec<(Claim<'a>, u64)>> {
    let newest = claims
        .iter()
        .max_by_key(|claim| (claim.epoch, claim.priority, Reverse(claim.name)))?;
    let fork = GtidSet::parse(newest.fork_gtid?).ok()?;
    claims
        .iter()
        .map(|claim| {
            // A claim whose database is briefly unreachable announces no GTID: unknown, not 0.
            if claim.gtid.is_empty() && !fork.is_empty() {
                return None;
            }
            let writes = GtidSet::parse(claim.gtid).ok()?.transactions_beyond(&fork)?;
            Some((*claim, writes))
        })
        .collect()
}

/// Whether every claim's gossiped position is past the newest claim's fork (holds it), so the
/// writes counted since the fork are current. A position gossiped before the fork (an old
/// primary's, read before the heal) would count its side's writes as none. True when there is
/// nothing to count: one claim, no readable fork, unrelated histories.
pub fn positions_settled(claims: &[Claim<'_>]) -> bool {
    if claims.len() < 2 || unrelated_claims(claims) {
        return true;
    }
    let newest = claims
        .iter()
        .max_by_key(|claim| (claim.epoch, claim.priority, Reverse(claim.name)));
    let Some(fork) = newest.and_then(|claim| GtidSet::parse(claim.fork_gtid?).ok()) else {
        return true;
    };
    claims
        .iter()
        .all(|claim| claim.history_set().is_some_and(|history| history.covers(&fork)))
}

/// "db2 took 36 writes since the fork at GTID 0-1-65, db1 took 16 (the most writes stays
/// primary; ties go to priority, then name)", for reasons.
pub fn split_tally(claims: &[Claim<'_>]) -> String {
    if unrelated_claims(claims) {
        let parts: Vec<String> = claims
            .iter()
            .map(|claim| {
                let holds = if claim.holds_data {
                    "holds user databases"
                } else {
                    "holds no user database"
                };
                format!("{} at GTID {} {holds}", claim.name, display_gtid(claim.gtid))
            })
            .collect();
        return format!(
            "their histories are unrelated, no split-brain: {} (a server holding user databases stays primary, then the first of ha_hosts)",
            parts.join(", ")
        );
    }
    let Some(counted) = writes_since_fork(claims) else {
        return "no common fork known: the newest promotion stays primary".into();
    };
    let fork = claims
        .iter()
        .max_by_key(|claim| (claim.epoch, claim.priority, Reverse(claim.name)))
        .and_then(|claim| claim.fork_gtid)
        .unwrap_or_default();
    let parts: Vec<String> = counted
        .iter()
        .map(|(claim, writes)| format!("{} took {writes}", claim.name))
        .collect();
    format!(
        "writes since the fork at GTID {fork}: {} (the most writes stays primary; ties go to priority, then name)",
        parts.join(", ")
    )
}

/// A peer's claim counts while its database is reachable, and for 2 × threshold after it
/// stopped answering (a restart of mysqld is not yet a failure).
pub fn peer_claim<'a>(peer: &PeerDb<'a>, down_after_ms: u64) -> Option<Claim<'a>> {
    let db = peer.db?;
    let valid = peer.alive && db.claims_primary && (db.reachable || db.unreachable_for_ms <= down_after_ms);
    valid.then_some(Claim {
        name: peer.name,
        epoch: db.epoch,
        priority: db.priority,
        gtid: &db.gtid,
        history: &db.gtid_history,
        holds_data: !db.databases.is_empty(),
        fork_gtid: db.promoted_from_gtid.as_deref(),
        yields_to: db.handover_gtid.as_ref().and(db.handover_to.as_deref()),
    })
}
