//! What the node derives from the core after a step: the keys an agent gossips, the facts files
//! and hooks are told, and the status rows.

use std::collections::BTreeMap;

use gossip_ha_proto::api::{NodeLiveness, NodeStatus, ReachProblem, ReplicationLag, StatusReport};
use gossip_ha_proto::gossip::{KEY_ANSWERS, KEY_DB, KEY_DB_PRIMARY, KEY_DB_REACH, KEY_DOWN};

use crate::address::split_host_port;
use crate::core::db::DbAction;
use crate::core::lag::{DbNode, LagBook};
use crate::core::reach::{Checker, ReachBook, ReachChange, Target};
use crate::core::{Core, MonoMs, NodeView};
use crate::rewrite::Facts;

/// The report before the first tick (and the frame of every later one).
pub fn empty_report(self_name: &str, cluster_id: &str, threshold_ms: u64) -> StatusReport {
    StatusReport {
        self_name: self_name.to_string(),
        cluster_id: cluster_id.to_string(),
        server_master: None,
        db_primary: None,
        threshold_ms,
        uptime_ms: 0,
        nodes: Vec::new(),
        rewrites: Vec::new(),
        db_reach: Vec::new(),
    }
}

/// What status shows beyond the core's view and must remember from tick to tick: how far each
/// replica is behind, and which agents do not reach which DB hosts since when (pure
/// bookkeeping in `core::lag` and `core::reach`, on this agent's clock).
pub(super) struct StatusBook {
    lag: LagBook,
    reach: ReachBook,
    /// A reach problem counts once it has lasted this long, as does a checking agent's life.
    settle_ms: u64,
    /// A replica behind whose position has not moved this long is stalled.
    stall_after_ms: u64,
}

/// What one tick adds to the status report.
pub(super) struct StatusExtras {
    lags: BTreeMap<String, ReplicationLag>,
    reach: Vec<ReachProblem>,
}

impl StatusBook {
    /// Problems must outlast a DOWN window (`2 × threshold`), and a replica's position is given
    /// three DB checks to move (peers are assumed to check as often as this agent).
    pub(super) fn new(threshold_ms: u64, check_interval_ms: u64) -> Self {
        let down_window_ms = 2 * threshold_ms;
        StatusBook {
            lag: LagBook::default(),
            reach: ReachBook::default(),
            settle_ms: down_window_ms,
            stall_after_ms: down_window_ms.max(3 * check_interval_ms),
        }
    }

    /// One tick over the view of this step: the reach changes worth an event, and the extras.
    pub(super) fn observe(
        &mut self,
        now: MonoMs,
        db_primary: Option<&str>,
        view: &[NodeView],
    ) -> (Vec<ReachChange>, StatusExtras) {
        let nodes: Vec<DbNode> = view
            .iter()
            .filter_map(|node| {
                Some(DbNode {
                    name: &node.name,
                    alive: node.alive,
                    db: node.db.as_ref()?,
                })
            })
            .collect();
        let primary = nodes.iter().find(|node| Some(node.name) == db_primary);
        let lags = self.lag.step(now, primary, &nodes, self.stall_after_ms);
        let checkers: Vec<Checker> = view
            .iter()
            .map(|node| Checker {
                name: &node.name,
                alive: node.alive,
                reached: &node.db_reach,
            })
            .collect();
        let targets: Vec<Target> = nodes
            .iter()
            .map(|node| Target {
                name: node.name,
                alive: node.alive,
                address: &node.db.advertise,
            })
            .collect();
        let changes = self.reach.step(now, self.settle_ms, &checkers, &targets);
        let reach = self.reach.problems(now, self.settle_ms, &targets);
        (changes, StatusExtras { lags, reach })
    }
}

impl StatusExtras {
    pub(super) fn apply(mut self, report: &mut StatusReport) {
        for node in &mut report.nodes {
            node.replication = self.lags.remove(&node.name);
        }
        report.db_reach = self.reach;
    }
}

pub(super) fn node_status(view: NodeView) -> NodeStatus {
    NodeStatus {
        roles: view.announcement.roles.iter().copied().collect(),
        master: view.announcement.master,
        threshold_ms: view.announcement.threshold_ms,
        state: if view.alive {
            NodeLiveness::Alive
        } else {
            NodeLiveness::Down
        },
        last_contact_ms: view.last_contact_ms,
        generation: view.generation,
        is_self: view.is_self,
        db: view.db,
        db_warnings: view.db_warnings,
        replication: None,
        addr: view.addr,
        name: view.name,
    }
}

/// The keys an agent gossips about its view after a step: the nodes it holds DOWN, the DB
/// primary it believes in, and (DB nodes) its database.
pub fn view_keys(core: &Core) -> Vec<(&'static str, String)> {
    let (down, db_primary) = core.witness_view();
    let mut keys = vec![
        (KEY_DOWN, down.join(",")),
        (KEY_DB_PRIMARY, db_primary.unwrap_or_default()),
        (KEY_DB_REACH, core.db_reach().join(",")),
        (KEY_ANSWERS, answers_value(core)),
    ];
    if let Some(db) = core.self_db() {
        keys.push((KEY_DB, serde_json::to_string(db).expect("announcement serialises")));
    }
    keys
}

fn answers_value(core: &Core) -> String {
    let answers = core.request_answers();
    if answers.is_empty() {
        return String::new();
    }
    serde_json::to_string(&answers).expect("answers serialise")
}

/// What files and hooks are told: the DB primary (and its database's address) and the server
/// master (and its gossip host), from `core` and its `view` of the same step.
pub fn facts_from(core: &Core, view: &[NodeView], cluster_id: &str, node_name: &str) -> Facts {
    let db_primary = core.db_primary().map(str::to_string);
    let primary_addr = db_primary
        .as_deref()
        .and_then(|name| view.iter().find(|node| node.name == name))
        .and_then(|node| node.db.as_ref())
        .and_then(|db| split_host_port(&db.advertise));
    let server_master = core.server_master().map(str::to_string);
    let master_addr = server_master
        .as_deref()
        .and_then(|name| view.iter().find(|node| node.name == name))
        .and_then(|node| split_host_port(&node.addr))
        .map(|(host, _)| host);
    Facts {
        cluster_id: cluster_id.to_string(),
        node_name: node_name.to_string(),
        db_primary,
        db_primary_host: primary_addr.as_ref().map(|(host, _)| host.clone()),
        db_primary_port: primary_addr.map(|(_, port)| port),
        server_master,
        server_master_addr: master_addr,
    }
}

/// How `action` reads in events and answers (its `Display`, next to its definition).
pub fn describe(action: &DbAction) -> String {
    action.to_string()
}
