//! `GET /metrics`: the published `StatusReport` as gauges, and counters of what this agent
//! recorded since it started, in the Prometheus (OpenMetrics) text format. A fresh registry per
//! scrape: the gauges are the report's values at that moment, the counters read their totals.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use gossip_ha_proto::api::{Event, EventKind, NodeLiveness, StatusReport};
use gossip_ha_proto::db::DbRole;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::events::{kind_name, EventSink};

/// What the metrics count, fed by every recorded event (`observe`) and by the driver for what
/// an event's kind alone does not tell (split-brains seen, repairs finished).
#[derive(Default)]
pub struct Counters {
    failovers: AtomicU64,
    switchovers: AtomicU64,
    split_brains: AtomicU64,
    repairs_ok: AtomicU64,
    repairs_failed: AtomicU64,
    /// The last named DB primary, so a primary back after a gap, or the first election, is
    /// not counted as a failover.
    last_primary: Mutex<Option<String>>,
    /// Every recorded event by kind (`rewrite_done`, `hook_failed`, `peer_refused`, …).
    by_kind: Mutex<BTreeMap<String, u64>>,
}

const ROLES: [DbRole; 5] = [
    DbRole::Primary,
    DbRole::Replica,
    DbRole::NeedsResync,
    DbRole::Unreachable,
    DbRole::Unknown,
];

/// Outcome-labelled counters read from event kinds: (metric, help, ok kind, failed kind).
const OUTCOMES: [(&str, &str, EventKind, EventKind); 3] = [
    (
        "gossip_ha_rewrites",
        "Config file rewrites by outcome",
        EventKind::RewriteDone,
        EventKind::RewriteFailed,
    ),
    (
        "gossip_ha_reloads",
        "Reload commands run after rewrites, by outcome",
        EventKind::ReloadRan,
        EventKind::ReloadFailed,
    ),
    (
        "gossip_ha_hook_runs",
        "Hook runs by outcome",
        EventKind::HookRan,
        EventKind::HookFailed,
    ),
];

impl Counters {
    /// The sink the event log feeds.
    pub fn sink(self: &Arc<Self>) -> EventSink {
        let counters = self.clone();
        Arc::new(move |event| counters.observe(event))
    }

    pub fn observe(&self, event: &Event) {
        if let Ok(mut by_kind) = self.by_kind.lock() {
            *by_kind.entry(kind_name(event.kind)).or_default() += 1;
        }
        let (EventKind::DbPrimaryChanged | EventKind::Switchover, Some(to)) = (event.kind, &event.node) else {
            return;
        };
        let Ok(mut last) = self.last_primary.lock() else { return };
        if last.as_ref().is_some_and(|last| last != to) {
            let counter = match event.kind {
                EventKind::Switchover => &self.switchovers,
                _ => &self.failovers,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        *last = Some(to.clone());
    }

    pub fn split_brain(&self) {
        self.split_brains.fetch_add(1, Ordering::Relaxed);
    }

    pub fn repair_finished(&self, ok: bool) {
        let counter = if ok { &self.repairs_ok } else { &self.repairs_failed };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn of_kind(&self, kind: EventKind) -> u64 {
        let name = kind_name(kind);
        self.by_kind
            .lock()
            .map(|by_kind| by_kind.get(&name).copied().unwrap_or(0))
            .unwrap_or(0)
    }
}

type Labels = Vec<(String, String)>;
type GaugeFamily = Family<Labels, Gauge<f64, AtomicU64>>;

fn node_label(name: &str) -> Labels {
    vec![("node".into(), name.into())]
}

fn flag(value: bool) -> f64 {
    if value {
        1.0
    } else {
        0.0
    }
}

/// Registers a gauge family and returns it to be filled.
fn gauges(registry: &mut Registry, name: &str, help: &str) -> GaugeFamily {
    let family = GaugeFamily::default();
    registry.register(name, help, family.clone());
    family
}

/// A gauge without labels.
fn single(registry: &mut Registry, name: &str, help: &str, value: f64) {
    let gauge = Gauge::<f64, AtomicU64>::default();
    gauge.set(value);
    registry.register(name, help, gauge);
}

fn counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let counter: Counter = Counter::default();
    counter.inc_by(value);
    registry.register(name, help, counter);
}

fn outcome_counter(registry: &mut Registry, name: &str, help: &str, ok: u64, failed: u64) {
    let family = Family::<Labels, Counter>::default();
    for (outcome, value) in [("ok", ok), ("failed", failed)] {
        family
            .get_or_create(&vec![("outcome".into(), outcome.into())])
            .inc_by(value);
    }
    registry.register(name, help, family);
}

/// The scrape's text: node gauges from `report`, then the counters.
pub fn render(report: &StatusReport, counters: &Counters) -> String {
    let mut registry = Registry::default();
    report_gauges(&mut registry, report);
    counter_metrics(&mut registry, counters);
    let mut text = String::new();
    if let Err(err) = encode(&mut text, &registry) {
        tracing::warn!("cannot encode metrics: {err}");
    }
    text
}

fn report_gauges(registry: &mut Registry, report: &StatusReport) {
    let info = gauges(
        registry,
        "gossip_ha_agent_info",
        "This agent's node name and cluster (always 1)",
    );
    info.get_or_create(&vec![
        ("node".into(), report.self_name.clone()),
        ("cluster_id".into(), report.cluster_id.clone()),
    ])
    .set(1.0);
    single(
        registry,
        "gossip_ha_uptime_seconds",
        "Seconds since this agent started",
        report.uptime_ms as f64 / 1000.0,
    );
    single(
        registry,
        "gossip_ha_db_primary_elected",
        "1 while a DB primary is elected",
        flag(report.db_primary.is_some()),
    );
    single(
        registry,
        "gossip_ha_db_reach_problems",
        "Pairs of (agent, DB host) where the agent's checks do not reach the host",
        report.db_reach.len() as f64,
    );
    node_gauges(registry, report);
    db_gauges(registry, report);
}

fn node_gauges(registry: &mut Registry, report: &StatusReport) {
    let up = gauges(
        registry,
        "gossip_ha_node_up",
        "1 while the node's agent is alive in this agent's view",
    );
    let contact = gauges(
        registry,
        "gossip_ha_node_last_contact_seconds",
        "Seconds since the node's last heartbeat advance, on this agent's clock",
    );
    let master = gauges(registry, "gossip_ha_server_master", "1 for the elected server master");
    for node in &report.nodes {
        let labels = node_label(&node.name);
        up.get_or_create(&labels).set(flag(node.state == NodeLiveness::Alive));
        contact.get_or_create(&labels).set(node.last_contact_ms as f64 / 1000.0);
        master
            .get_or_create(&labels)
            .set(flag(report.server_master.as_deref() == Some(node.name.as_str())));
    }
}

fn db_gauges(registry: &mut Registry, report: &StatusReport) {
    let primary = gauges(registry, "gossip_ha_db_primary", "1 for the elected DB primary");
    let role = gauges(
        registry,
        "gossip_ha_db_role",
        "The DB role each node announces (1 for its role)",
    );
    let reachable = gauges(
        registry,
        "gossip_ha_db_reachable",
        "1 while the node's agent reaches its database",
    );
    let read_only = gauges(
        registry,
        "gossip_ha_db_read_only",
        "1 while the node's database is read-only",
    );
    let io = gauges(
        registry,
        "gossip_ha_db_io_running",
        "1 while the replica's IO thread runs",
    );
    let sql = gauges(
        registry,
        "gossip_ha_db_sql_running",
        "1 while the replica's SQL thread runs",
    );
    let epoch = gauges(registry, "gossip_ha_db_epoch", "The node's DB epoch");
    let maintenance = gauges(
        registry,
        "gossip_ha_db_maintenance",
        "1 while the node is in maintenance",
    );
    let lag_seconds = gauges(
        registry,
        "gossip_ha_replication_lag_seconds",
        "How long ago the primary announced the oldest position the replica lacks (GTIDs)",
    );
    let lag_trx = gauges(
        registry,
        "gossip_ha_replication_lag_transactions",
        "Transactions of the primary's announced position the replica lacks",
    );
    let stalled = gauges(
        registry,
        "gossip_ha_replication_stalled",
        "1 while nothing reaches the replica",
    );
    for node in &report.nodes {
        let Some(db) = &node.db else { continue };
        let labels = node_label(&node.name);
        primary
            .get_or_create(&labels)
            .set(flag(report.db_primary.as_deref() == Some(node.name.as_str())));
        for each in ROLES {
            let mut labels = labels.clone();
            labels.push(("role".into(), each.as_str().into()));
            role.get_or_create(&labels).set(flag(db.role == each));
        }
        reachable.get_or_create(&labels).set(flag(db.reachable));
        epoch.get_or_create(&labels).set(db.epoch as f64);
        maintenance.get_or_create(&labels).set(flag(db.maintenance));
        let optional = [(&read_only, db.read_only), (&io, db.io_running), (&sql, db.sql_running)];
        for (family, value) in optional {
            if let Some(value) = value {
                family.get_or_create(&labels).set(flag(value));
            }
        }
        let Some(lag) = &node.replication else { continue };
        if let Some(ms) = lag.lag_ms {
            lag_seconds.get_or_create(&labels).set(ms as f64 / 1000.0);
        }
        if let Some(trx) = lag.transactions_behind {
            lag_trx.get_or_create(&labels).set(trx as f64);
        }
        stalled.get_or_create(&labels).set(flag(lag.stalled.is_some()));
    }
}

fn counter_metrics(registry: &mut Registry, counters: &Counters) {
    let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    counter(
        registry,
        "gossip_ha_failovers",
        "Changes of the DB primary from one node to another, switchovers apart",
        read(&counters.failovers),
    );
    counter(
        registry,
        "gossip_ha_switchovers",
        "Planned switchovers of the DB primary",
        read(&counters.switchovers),
    );
    counter(
        registry,
        "gossip_ha_split_brains",
        "Split-brains this agent's database took part in",
        read(&counters.split_brains),
    );
    outcome_counter(
        registry,
        "gossip_ha_repairs",
        "Merges and resyncs of this node's database by outcome",
        read(&counters.repairs_ok),
        read(&counters.repairs_failed),
    );
    for (name, help, ok, failed) in OUTCOMES {
        outcome_counter(registry, name, help, counters.of_kind(ok), counters.of_kind(failed));
    }
    counter(
        registry,
        "gossip_ha_peers_refused",
        "Connections refused (once per address and reason)",
        counters.of_kind(EventKind::PeerRefused),
    );
    let events = Family::<Labels, Counter>::default();
    if let Ok(by_kind) = counters.by_kind.lock() {
        for (kind, count) in by_kind.iter() {
            events
                .get_or_create(&vec![("kind".into(), kind.clone())])
                .inc_by(*count);
        }
    }
    registry.register("gossip_ha_events", "Events recorded by kind", events);
}
