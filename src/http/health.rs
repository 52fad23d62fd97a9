//! What the health endpoints answer, decided from the published `StatusReport` alone (no clock,
//! no I/O): the codes Patroni's checks give, so HAProxy, ProxySQL and keepalived configurations
//! written for Patroni work unchanged. Each answer carries a one-line reason.

use gossip_ha_proto::api::{NodeStatus, StatusReport};
use gossip_ha_proto::db::{DbAnnouncement, DbRole};

/// A health check's answer: 200 or 503, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub ok: bool,
    pub reason: String,
}

impl Answer {
    fn ok(reason: impl Into<String>) -> Self {
        Answer {
            ok: true,
            reason: reason.into(),
        }
    }

    fn unavailable(reason: impl Into<String>) -> Self {
        Answer {
            ok: false,
            reason: reason.into(),
        }
    }
}

/// The most a replica may lag for `/replica?lag=…` to answer 200.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LagLimit {
    Seconds(u64),
    Transactions(u64),
}

/// `N` (seconds) or `Ntrx` (transactions), as `?lag=` gives it.
pub fn parse_lag(value: &str) -> Result<LagLimit, String> {
    let bad = || format!("lag `{value}`: expected seconds (`lag=10`) or transactions (`lag=100trx`)");
    match value.strip_suffix("trx") {
        Some(count) => count.parse().map(LagLimit::Transactions).map_err(|_| bad()),
        None => value
            .strip_suffix('s')
            .unwrap_or(value)
            .parse()
            .map(LagLimit::Seconds)
            .map_err(|_| bad()),
    }
}

/// The `?lag=` of a query string, if any.
pub fn lag_limit(query: Option<&str>) -> Result<Option<LagLimit>, String> {
    let Some(query) = query else { return Ok(None) };
    for pair in query.split('&') {
        if let Some(value) = pair.strip_prefix("lag=") {
            return parse_lag(value).map(Some);
        }
    }
    Ok(None)
}

fn own(report: &StatusReport) -> Option<&NodeStatus> {
    report.nodes.iter().find(|node| node.is_self)
}

/// This node's database as its agent last probed it, or why there is none.
fn own_db(report: &StatusReport) -> Result<(&NodeStatus, &DbAnnouncement), Answer> {
    let node = own(report).ok_or_else(|| Answer::unavailable("this agent has not published its own state yet"))?;
    let db = node
        .db
        .as_ref()
        .ok_or_else(|| Answer::unavailable("this node has no database (not a db node)"))?;
    if !db.reachable {
        let why = db.last_error.as_deref().unwrap_or("no answer");
        return Err(Answer::unavailable(format!(
            "the local database does not answer: {why}"
        )));
    }
    Ok((node, db))
}

/// `/health`: the local database answers.
pub fn health(report: &StatusReport) -> Answer {
    match own_db(report) {
        Ok((_, db)) => Answer::ok(format!("the local database answers ({})", db.role.as_str())),
        Err(answer) => answer,
    }
}

/// `/primary`: this node is the elected DB primary and its database takes writes.
pub fn primary(report: &StatusReport) -> Answer {
    let db = match own_db(report) {
        Ok((_, db)) => db,
        Err(answer) => return answer,
    };
    match report.db_primary.as_deref() {
        None => Answer::unavailable("no DB primary is elected"),
        Some(primary) if primary != report.self_name => {
            Answer::unavailable(format!("the DB primary is {primary}, not this node"))
        }
        Some(_) if db.read_only != Some(false) => {
            Answer::unavailable("this node is the elected DB primary but its database is not writable yet")
        }
        Some(_) => Answer::ok("this node is the DB primary and its database is writable"),
    }
}

/// `/read-only`: the local database answers and holds the cluster's data (primary or replica).
pub fn read_only(report: &StatusReport) -> Answer {
    match own_db(report) {
        Ok((_, db)) if matches!(db.role, DbRole::Primary | DbRole::Replica) => {
            Answer::ok(format!("the local database is readable ({})", db.role.as_str()))
        }
        Ok((_, db)) => Answer::unavailable(format!("the local database is {}", db.role.as_str())),
        Err(answer) => answer,
    }
}

/// `/replica`: a running replica of the elected primary, within `limit` when one is given.
pub fn replica(report: &StatusReport, limit: Option<LagLimit>) -> Answer {
    let (node, db) = match own_db(report) {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let Some(primary) = report.db_primary.as_deref() else {
        return Answer::unavailable("no DB primary is elected");
    };
    if primary == report.self_name {
        return Answer::unavailable("this node is the DB primary");
    }
    if db.role != DbRole::Replica {
        return Answer::unavailable(format!("the local database is {}", db.role.as_str()));
    }
    if db.io_running != Some(true) || db.sql_running != Some(true) {
        let state = |running: Option<bool>| match running {
            Some(true) => "Yes",
            Some(false) => "No",
            None => "unknown",
        };
        return Answer::unavailable(format!(
            "replication is not running (IO {} / SQL {})",
            state(db.io_running),
            state(db.sql_running)
        ));
    }
    let primary_address = report
        .nodes
        .iter()
        .find(|other| other.name == primary)
        .and_then(|other| other.db.as_ref())
        .map(|other| other.advertise.as_str());
    if primary_address.is_none() || db.source.as_deref() != primary_address {
        return Answer::unavailable(format!(
            "replicating from {}, not from the primary {primary}",
            db.source.as_deref().unwrap_or("nowhere")
        ));
    }
    within_lag(node, primary, limit)
}

fn within_lag(node: &NodeStatus, primary: &str, limit: Option<LagLimit>) -> Answer {
    let lag = node.replication.clone().unwrap_or_default();
    if let Some(stall) = lag.stalled {
        return Answer::unavailable(format!("replication from {primary} is stalled ({})", stall.as_str()));
    }
    let behind = match (lag.transactions_behind, lag.lag_ms) {
        (Some(trx), Some(ms)) => format!("{trx} transactions, {ms} ms behind"),
        (Some(trx), None) => format!("{trx} transactions behind"),
        (None, Some(ms)) => format!("{ms} ms behind"),
        (None, None) => "lag unknown".to_string(),
    };
    let within = match limit {
        None => return Answer::ok(format!("replica of {primary}, {behind}")),
        Some(LagLimit::Seconds(max)) => lag.lag_ms.map(|ms| ms <= max.saturating_mul(1_000)),
        Some(LagLimit::Transactions(max)) => lag.transactions_behind.map(|trx| trx <= max),
    };
    let limit_text = match limit {
        Some(LagLimit::Seconds(max)) => format!("{max} s"),
        Some(LagLimit::Transactions(max)) => format!("{max} transactions"),
        None => String::new(),
    };
    match within {
        Some(true) => Answer::ok(format!("replica of {primary}, {behind} (within {limit_text})")),
        Some(false) => Answer::unavailable(format!("replica of {primary}, {behind}: over {limit_text}")),
        None => Answer::unavailable(format!(
            "replica of {primary}, {behind}: cannot tell it is within {limit_text}"
        )),
    }
}

#[cfg(test)]
mod tests;
