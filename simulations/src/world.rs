//! Runs one scenario on simulated time and checks the invariants on every tick: at most one
//! writable primary per connected part once gossip settles, never a stale promotion, at most one
//! promotion per part per failure, and at the end no acknowledged write lost (unless kept on a
//! node waiting for resync), and every host's configuration on the final primary.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use gossip_ha_proto::db::DbRole;
use gossip_ha_proto::gossip::Role;

use crate::model_db::{Gtid, ModelCluster};
use crate::network::SimNetwork;
use crate::node::{Happening, SimAgent, THRESHOLD_MS};
use crate::replay;
use crate::scenario::{Op, Scenario};

const TICK_MS: u64 = 50;
const WRITE_EVERY_TICKS: u64 = 4;
/// After a change of topology, gossip has this long to settle before the invariants bind:
/// detection (2 × threshold), a witness's view, the step itself, and slack.
const SETTLE_MS: u64 = 4 * THRESHOLD_MS + 2_000;
/// After the schedule, everything is healed and restarted, then given this long.
const FINAL_WAIT_MS: u64 = 20_000;

pub struct Outcome {
    pub name: String,
    pub violations: Vec<String>,
    /// Milliseconds from losing the primary to another database accepting writes.
    pub failovers_ms: Vec<u64>,
    pub timeline: Vec<String>,
    pub acknowledged_writes: usize,
    pub simulated_ms: u64,
    /// The replay hash: timeline, final state and message trace (`replay::run_hash`).
    pub hash: u64,
}

struct World {
    network: SimNetwork,
    models: ModelCluster,
    agents: Vec<SimAgent>,
    seeds: Vec<std::net::SocketAddr>,
    now_ms: u64,
    last_change_ms: u64,
    timeline: Vec<String>,
    violations: Vec<String>,
    acked: Vec<(Gtid, String)>,
    /// (component, epoch-of-change) → promotions seen, to catch flapping.
    promotions_since_change: BTreeMap<BTreeSet<String>, usize>,
    lost_primary_at: Option<(u64, String)>,
    failovers_ms: Vec<u64>,
    ticks: u64,
}

impl World {
    fn log(&mut self, line: String) {
        self.timeline
            .push(format!("{:>8.2}s  {line}", self.now_ms as f64 / 1000.0));
    }

    fn violate(&mut self, what: String) {
        self.log(format!("VIOLATION: {what}"));
        if !self.violations.contains(&what) {
            self.violations.push(what);
        }
    }

    fn agent_mut(&mut self, name: &str) -> Option<&mut SimAgent> {
        self.agents.iter_mut().find(|agent| agent.name == name)
    }

    fn writable_primaries(&self) -> Vec<String> {
        self.models
            .snapshot()
            .into_iter()
            .filter(|(_, server)| server.alive && !server.read_only)
            .map(|(host, _)| host)
            .collect()
    }

    /// Hosts grouped by two-way reachability.
    fn components(&self) -> Vec<BTreeSet<String>> {
        let hosts: Vec<String> = self.agents.iter().map(|agent| agent.name.clone()).collect();
        let mut seen: HashSet<String> = HashSet::new();
        let mut parts = Vec::new();
        for host in &hosts {
            if seen.contains(host) {
                continue;
            }
            let mut part = BTreeSet::new();
            let mut frontier = vec![host.clone()];
            while let Some(next) = frontier.pop() {
                if !part.insert(next.clone()) {
                    continue;
                }
                seen.insert(next.clone());
                for other in &hosts {
                    if !part.contains(other) && self.network.connected(&next, other) {
                        frontier.push(other.clone());
                    }
                }
            }
            parts.push(part);
        }
        parts
    }

    async fn apply(&mut self, op: &Op) {
        self.log(format!("--- {op}"));
        if !matches!(op, Op::Wait(_)) {
            self.last_change_ms = self.now_ms;
            self.promotions_since_change.clear();
        }
        let primary_before = self.writable_primaries();
        match op {
            Op::Wait(ms) => {
                let end = self.now_ms + ms;
                while self.now_ms < end {
                    self.tick().await;
                }
            }
            Op::Cut(a, b) => self.network.cut(a, b),
            Op::CutOneWay(a, b) => self.network.cut_one_way(a, b),
            Op::Isolate(a) => {
                for agent in &self.agents {
                    self.network.cut(a, &agent.name);
                }
            }
            Op::Heal => self.network.heal(),
            Op::Loss(p) => self.network.set_loss(*p),
            Op::Delay(ms) => self.network.set_delay(0, *ms),
            Op::Crash(host) => {
                if let Some(agent) = self.agent_mut(host) {
                    agent.crash().await;
                }
            }
            Op::Restart(host) => {
                let (network, seeds) = (self.network.clone(), self.seeds.clone());
                if let Some(agent) = self.agent_mut(host).filter(|agent| !agent.is_running()) {
                    agent.start(&network, &seeds).await;
                }
            }
            Op::KillDb(host) => self.models.kill(host),
            Op::StartDb(host) => self.models.start(host),
            Op::Purge(host) => self.models.purge(host),
        }
        // Losing the writable primary (its mysqld, or its reachability) starts a failover clock.
        if let [primary] = primary_before.as_slice() {
            let lost = match op {
                Op::KillDb(host) => host == primary,
                Op::Isolate(host) => host == primary,
                _ => false,
            };
            if lost && self.lost_primary_at.is_none() {
                self.lost_primary_at = Some((self.now_ms, primary.clone()));
            }
        }
    }

    async fn tick(&mut self) {
        // The network delivers and starts gossip rounds up to the tick (see `replay.rs`).
        self.network.run_for(Duration::from_millis(TICK_MS)).await;
        self.now_ms += TICK_MS;
        self.ticks += 1;
        for index in 0..self.agents.len() {
            let happenings = self.agents[index].step().await;
            let name = self.agents[index].name.clone();
            for happening in happenings {
                match happening {
                    Happening::Note(note) => self.log(format!("{name}: {note}")),
                    Happening::Promoted { epoch } => {
                        self.log(format!("{name}: PROMOTED with epoch {epoch}"));
                        self.check_promotion(&name);
                    }
                }
            }
        }
        self.models.replicate();
        if self.ticks.is_multiple_of(WRITE_EVERY_TICKS) {
            self.write();
        }
        self.check_primaries();
        if let Some((since, old)) = self.lost_primary_at.clone() {
            if self.writable_primaries().iter().any(|host| *host != old) {
                self.failovers_ms.push(self.now_ms - since);
                self.lost_primary_at = None;
            }
        }
    }

    /// Every Pandora server writes through the primary its own configuration names.
    fn write(&mut self) {
        let clients: Vec<(String, Option<String>)> = self
            .agents
            .iter()
            .filter(|agent| agent.roles.contains(&Role::Server) && agent.is_running())
            .map(|agent| (agent.name.clone(), agent.config_db_primary.clone()))
            .collect();
        for (client, primary) in clients {
            if let Some(primary) = primary {
                if let Some(gtid) = self.models.write(&client, &primary) {
                    self.acked.push((gtid, primary));
                }
            }
        }
    }

    /// A promotion of a node behind another live, reachable candidate is a violation; so is a
    /// second promotion in one connected part before the topology changes again.
    fn check_promotion(&mut self, promoted: &str) {
        let servers = self.models.snapshot();
        let Some(mine) = servers.get(promoted) else { return };
        // Candidates are the other replicas whose agents run; an old primary (agent down or
        // not) is not one, and its extra writes are the merge's business.
        let candidates: HashSet<String> = self
            .agents
            .iter()
            .filter(|agent| agent.is_running() && agent.is_db())
            .filter(|agent| matches!(agent.db_role(), Some(DbRole::Replica | DbRole::Unknown)))
            .map(|agent| agent.name.clone())
            .collect();
        for (host, other) in &servers {
            let candidate = host != promoted && other.alive && candidates.contains(host);
            let ahead = other.binlog.len() > mine.binlog.len() && other.binlog.starts_with(&mine.binlog);
            if candidate && ahead && self.network.connected(promoted, host) {
                self.violate(format!(
                    "stale promotion: {promoted} ({} transactions) promoted while {host} had {} of the same history",
                    mine.binlog.len(),
                    other.binlog.len()
                ));
            }
        }
        if let Some(part) = self.components().into_iter().find(|part| part.contains(promoted)) {
            let count = self.promotions_since_change.entry(part.clone()).or_default();
            *count += 1;
            if *count > 1 {
                let hosts = part.into_iter().collect::<Vec<_>>().join(",");
                self.violate(format!(
                    "flapping: a second promotion ({promoted}) in part {{{hosts}}} without a new failure"
                ));
            }
        }
    }

    fn check_primaries(&mut self) {
        if self.now_ms.saturating_sub(self.last_change_ms) < SETTLE_MS {
            return;
        }
        let writable = self.writable_primaries();
        for part in self.components() {
            let inside: Vec<&String> = writable.iter().filter(|host| part.contains(*host)).collect();
            if inside.len() > 1 {
                let names = inside.iter().map(|host| host.as_str()).collect::<Vec<_>>().join(", ");
                self.violate(format!(
                    "two writable primaries in one connected part after gossip settled: {names}"
                ));
            }
        }
    }

    /// What the replay hash covers beyond the timeline: every database, every agent's view of
    /// the primary and its DB role, every acknowledged write.
    fn final_state(&self) -> Vec<String> {
        let databases = self
            .models
            .snapshot()
            .into_iter()
            .map(|(host, server)| format!("{host}: {server:?}"));
        let agents = self.agents.iter().map(|agent| {
            let primary = agent.config_db_primary.as_deref().unwrap_or("-");
            format!("{}: names {primary}, {:?}", agent.name, agent.db_role())
        });
        let acked = self.acked.iter().map(|(gtid, on)| format!("{gtid} on {on}"));
        databases
            .chain(agents)
            .chain(acked)
            .chain(self.violations.clone())
            .collect()
    }

    fn check_end(&mut self) {
        let writable = self.writable_primaries();
        let servers = self.models.snapshot();
        let Some(final_primary) = writable.first().cloned() else {
            self.violate("no writable primary at the end, with every host up and healed".into());
            return;
        };
        if writable.len() > 1 {
            self.violate(format!(
                "{} writable primaries at the end: {}",
                writable.len(),
                writable.join(", ")
            ));
        }
        let kept: HashSet<Gtid> = servers[&final_primary].binlog.iter().copied().collect();
        let saved: HashSet<Gtid> = self
            .agents
            .iter()
            .filter(|agent| agent.db_role() == Some(DbRole::NeedsResync))
            .flat_map(|agent| servers[&agent.name].binlog.iter().copied())
            .chain(self.models.saved())
            .collect();
        let lost: Vec<String> = self
            .acked
            .iter()
            .filter(|(gtid, _)| !kept.contains(gtid) && !saved.contains(gtid))
            .map(|(gtid, on)| format!("{gtid} (acknowledged by {on})"))
            .collect();
        if !lost.is_empty() {
            self.violate(format!(
                "{} acknowledged writes neither on the final primary {final_primary} nor saved on a node awaiting resync: {}",
                lost.len(),
                lost.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        let stale: Vec<String> = self
            .agents
            .iter()
            .filter(|agent| agent.config_db_primary.as_deref() != Some(final_primary.as_str()))
            .map(|agent| {
                format!(
                    "{} names {}",
                    agent.name,
                    agent.config_db_primary.as_deref().unwrap_or("nothing")
                )
            })
            .collect();
        if !stale.is_empty() {
            self.violate(format!(
                "configuration not on the final primary {final_primary}: {}",
                stale.join(", ")
            ));
        }
    }
}

pub async fn run(scenario: &Scenario, seed: u64) -> Outcome {
    let network = SimNetwork::new(seed);
    let models = ModelCluster::new(network.clone());
    let hosts = scenario.layout.hosts();
    let mut agents = Vec::new();
    let mut preloaded = Vec::new();
    for (index, host) in hosts.iter().enumerate() {
        let roles: Vec<Role> = match host {
            h if h.starts_with("db") => vec![Role::Db],
            h if h.starts_with("srv") => vec![Role::Server],
            _ => vec![Role::Console],
        };
        if roles.contains(&Role::Db) {
            let own_data = scenario.own_data.get(index).copied().unwrap_or(0);
            let held = models.add(host, index as u32 + 1, scenario.setup_transactions, own_data);
            // What a server held before it joined counts as acknowledged: it must never be
            // wiped without being kept or saved.
            preloaded.extend(held.into_iter().map(|gtid| (gtid, host.clone())));
        }
        let priority = (scenario.layout.dbs - index.min(scenario.layout.dbs - 1)) as u8;
        agents.push(SimAgent::new(
            host,
            &roles,
            index,
            priority,
            scenario.layout.dbs,
            &models,
        ));
    }
    let seeds: Vec<std::net::SocketAddr> = agents.iter().take(2).map(|agent| agent.addr).collect();
    for agent in agents.iter_mut() {
        agent.start(&network, &seeds).await;
    }
    let mut world = World {
        network,
        models,
        agents,
        seeds,
        now_ms: 0,
        last_change_ms: 0,
        timeline: Vec::new(),
        violations: Vec::new(),
        acked: preloaded,
        promotions_since_change: BTreeMap::new(),
        lost_primary_at: None,
        failovers_ms: Vec::new(),
        ticks: 0,
    };
    // The cluster forms first: a fresh cluster elects its primary.
    world.apply(&Op::Wait(6_000)).await;
    world.last_change_ms = 0;
    for op in &scenario.ops {
        world.apply(op).await;
    }
    world.apply(&Op::Heal).await;
    for host in hosts.iter() {
        world.apply(&Op::StartDb(host.clone())).await;
        world.apply(&Op::Restart(host.clone())).await;
    }
    world.apply(&Op::Wait(FINAL_WAIT_MS)).await;
    world.check_end();
    let hash = replay::run_hash(&world.timeline, &world.final_state(), world.network.trace());
    for agent in world.agents.iter_mut() {
        agent.crash().await;
    }
    let simulated_ms = world.now_ms;
    Outcome {
        hash,
        name: scenario.name.clone(),
        violations: world.violations,
        failovers_ms: world.failovers_ms,
        timeline: world.timeline,
        acknowledged_writes: world.acked.len(),
        simulated_ms,
    }
}
