//! Runs one scenario on simulated time and checks the invariants on every tick: at most one
//! writable primary per connected part once gossip settles, never a stale promotion, at most one
//! promotion per part per failure, never a primary promoted without data another live
//! candidate holds, never data wiped that nobody else held and nothing saved, never a lying
//! peer followed; and at the end no acknowledged row missing from the final primary (unless
//! kept on a node waiting for resync, or saved by a rebuild's dump), and every host's
//! configuration on the final primary.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use gossip_ha::core::authority::Grants;
use gossip_ha::node::Answer;
use gossip_ha_proto::api::Command;
use gossip_ha_proto::db::{DbAnnouncement, DbRole};
use gossip_ha_proto::gossip::{Role, KEY_DB, KEY_ROLES};

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
/// Setup transactions (users, grants) an operator's fresh install logs.
const REINSTALL_SETUP_TRANSACTIONS: u64 = 2;
/// The epoch a liar claims: above anything a real run reaches.
const LIAR_EPOCH: u64 = 1_000_000;

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
    /// Hosts gossiping a claim their grants do not allow.
    liars: BTreeSet<String>,
    /// The DB agents' roles when a liar began in a settled cluster: no role may change until
    /// the next operation.
    roles_at_lie: Option<BTreeMap<String, Option<DbRole>>>,
    /// (host asked, target) → when an operator asked that host for a switchover.
    switchovers_asked: BTreeMap<(String, String), u64>,
    /// When each host's promotion last succeeded.
    promoted_at: BTreeMap<String, u64>,
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
        let settled_before = self.now_ms.saturating_sub(self.last_change_ms) >= SETTLE_MS;
        if !matches!(op, Op::Wait(_)) {
            self.last_change_ms = self.now_ms;
            self.promotions_since_change.clear();
            self.roles_at_lie = None;
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
            Op::Heal => {
                self.network.heal();
                self.models.late_rows(0);
            }
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
            Op::ClockJump(host, delta_ms) => self.models.clock_jump(host, *delta_ms),
            Op::ExhaustConnections(host, ms) => self.models.exhaust(host, Duration::from_millis(*ms)),
            Op::LateRows(age_ms) => self.models.late_rows(*age_ms),
            Op::Reinstall(host) => self.models.reinstall(host, REINSTALL_SETUP_TRANSACTIONS),
            Op::Lie(host) => self.lie(host, settled_before).await,
            Op::Switchover(asked, to) => {
                let command = Command::Switchover { to: to.clone() };
                if self.operator(asked, command) {
                    self.switchovers_asked.insert((asked.clone(), to.clone()), self.now_ms);
                }
            }
            Op::Maintenance(asked, node, on) => {
                let command = Command::Maintenance {
                    on: *on,
                    node: Some(node.clone()),
                };
                self.operator(asked, command);
            }
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
        // Answers are checked after every agent's step: a promotion and the answer that saw
        // it may fall in the same tick, the answer first.
        let mut answers = Vec::new();
        for index in 0..self.agents.len() {
            let happenings = self.agents[index].step().await;
            let name = self.agents[index].name.clone();
            for happening in happenings {
                match happening {
                    Happening::Note(note) => self.log(format!("{name}: {note}")),
                    Happening::Promoted { epoch } => {
                        self.log(format!("{name}: PROMOTED with epoch {epoch}"));
                        self.promoted_at.insert(name.clone(), self.now_ms);
                        self.check_promotion(&name);
                    }
                    Happening::Answered { command, answer } => answers.push((name.clone(), command, answer)),
                }
            }
        }
        for (name, command, answer) in answers {
            self.check_answer(&name, &command, &answer);
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

    /// An operator gives `command` on `host`'s socket; false (and a line) when its agent is down.
    fn operator(&mut self, host: &str, command: Command) -> bool {
        let given = self.agent_mut(host).is_some_and(|agent| agent.operator(command));
        if !given {
            self.log(format!(
                "{host}: the operator's client cannot connect: the agent is down"
            ));
        }
        given
    }

    /// A switchover answered as done must have promoted its target after it was asked.
    fn check_answer(&mut self, host: &str, command: &Command, answer: &Answer) {
        let said = match answer {
            Ok(done) => format!("done: {done}"),
            Err(refused) => format!("refused: {refused}"),
        };
        let asked = match command {
            Command::Switchover { to } => format!("switchover to {to}"),
            Command::Maintenance { on, node } => {
                let node = node.as_deref().unwrap_or(host);
                format!("maintenance {} for {node}", if *on { "on" } else { "off" })
            }
            other => format!("{other:?}"),
        };
        self.log(format!("{host}: answers the operator's {asked}: {said}"));
        let Command::Switchover { to } = command else { return };
        let Some(asked_at) = self.switchovers_asked.remove(&(host.to_string(), to.clone())) else {
            return;
        };
        let promoted_after = self.promoted_at.get(to).is_some_and(|at| *at >= asked_at);
        if answer.is_ok() && !promoted_after {
            self.violate(format!(
                "{host} told the operator the switchover to {to} was done, but {to} was not promoted after it was asked"
            ));
        }
    }

    /// `liar` gossips the db role and a primary claim with a huge epoch; its grants allow
    /// neither. Started in a settled cluster, nobody's role may change because of it.
    async fn lie(&mut self, liar: &str, settled_before: bool) {
        let claim = DbAnnouncement {
            role: DbRole::Primary,
            claims_primary: true,
            reachable: true,
            read_only: Some(false),
            gtid: "0-999-1000000".into(),
            gtid_history: "0-999-1000000".into(),
            epoch: LIAR_EPOCH,
            priority: u8::MAX,
            promotable: true,
            advertise: format!("{liar}:3306"),
            ..DbAnnouncement::default()
        };
        let Some(agent) = self.agent_mut(liar) else { return };
        let mut roles: Vec<&str> = agent.roles.iter().map(|role| role.as_str()).collect();
        roles.push(Role::Db.as_str());
        let keys = [
            (KEY_ROLES, roles.join(",")),
            (KEY_DB, serde_json::to_string(&claim).expect("a claim serializes")),
        ];
        agent.forge(&keys).await;
        self.liars.insert(liar.to_string());
        // A descriptor shortage still running ends during the check: a change of its own.
        if settled_before && !self.models.any_exhausted() {
            let roles = self.agents.iter().filter(|agent| agent.is_db());
            self.roles_at_lie = Some(roles.map(|agent| (agent.name.clone(), agent.db_role())).collect());
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
        if !servers.contains_key(promoted) {
            return;
        }
        // Candidates are the other replicas whose agents run; an old primary (agent down or
        // not) is not one, and its extra writes are the merge's business.
        let candidates: HashSet<String> = self
            .agents
            .iter()
            .filter(|agent| agent.is_running() && agent.is_db())
            .filter(|agent| matches!(agent.db_role(), Some(DbRole::Replica | DbRole::Unknown)))
            .map(|agent| agent.name.clone())
            .collect();
        // Compared as sets of rows, across domains and server ids (a merge's copies carry
        // their rows under new GTIDs): a candidate holding every row the promoted one holds,
        // and more, had data the new primary lacks.
        let mine_rows = self.models.rows_on(promoted);
        for (host, other) in &servers {
            let candidate = host != promoted && other.alive && candidates.contains(host);
            if !candidate || !self.network.connected(promoted, host) {
                continue;
            }
            // Rows a host wrote itself it wrote as primary: an old primary's extra writes are
            // the merge's business, a replica holds only others' rows.
            let theirs = self.models.rows_on(host);
            let lacking = theirs
                .difference(&mine_rows)
                .filter(|origin| origin.server != other.server_id)
                .count();
            if lacking > 0 && mine_rows.is_subset(&theirs) {
                self.violate(format!(
                    "stale promotion: {promoted} ({} rows) promoted while {host} held those and {lacking} more",
                    mine_rows.len()
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

    /// A rebuild that wiped data nobody else held, unsaved, is a violation when it happens.
    fn check_discards(&mut self) {
        for discard in self.models.take_discarded() {
            self.violate(format!("data discarded unsaved: {discard}"));
        }
    }

    /// Nobody follows a liar: no configuration names it, no role changes after it began.
    fn check_liars(&mut self) {
        let following: Vec<String> = self
            .agents
            .iter()
            .filter(|agent| {
                agent
                    .config_db_primary
                    .as_ref()
                    .is_some_and(|primary| self.liars.contains(primary))
            })
            .map(|agent| {
                format!(
                    "{} names {}",
                    agent.name,
                    agent.config_db_primary.as_deref().unwrap_or("")
                )
            })
            .collect();
        if !following.is_empty() {
            self.violate(format!("a liar followed as DB primary: {}", following.join(", ")));
        }
        let Some(before) = self.roles_at_lie.clone() else {
            return;
        };
        for agent in self.agents.iter().filter(|agent| agent.is_db()) {
            let was = before.get(&agent.name).copied().flatten();
            if agent.db_role() != was {
                let liars = self.liars.iter().cloned().collect::<Vec<_>>().join(", ");
                self.violate(format!(
                    "{} changed role ({was:?} to {:?}) after {liars} lied, with nothing else changed",
                    agent.name,
                    agent.db_role()
                ));
                self.roles_at_lie = None;
                return;
            }
        }
    }

    fn check_primaries(&mut self) {
        self.check_discards();
        self.check_liars();
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
        self.check_rows_kept(&final_primary);
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

impl World {
    /// Every acknowledged row (a write, or a server's own data from before it joined) is on the
    /// final primary, whatever its time: merges copy it. Excused only while a node waiting for
    /// resync keeps it, or where a rebuild's dump or an operator's backup saved it.
    fn check_rows_kept(&mut self, final_primary: &str) {
        let kept = self.models.rows_on(final_primary);
        let mut excused = self.models.saved_rows();
        for agent in self
            .agents
            .iter()
            .filter(|agent| agent.db_role() == Some(DbRole::NeedsResync))
        {
            excused.extend(self.models.rows_on(&agent.name));
        }
        let lost: Vec<String> = self
            .acked
            .iter()
            .filter(|(gtid, _)| !kept.contains(gtid) && !excused.contains(gtid))
            .map(|(gtid, on)| format!("{gtid} (acknowledged by {on})"))
            .collect();
        if !lost.is_empty() {
            self.violate(format!(
                "{} acknowledged rows neither on the final primary {final_primary} nor kept on a node awaiting resync nor in a dump: {}",
                lost.len(),
                lost.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
            ));
        }
    }
}

/// What each host's certificate would grant: the roles its layout gives it, and admin to the
/// DB hosts, as the README issues them.
fn grants_of(host: &str, roles: &[Role]) -> (String, Grants) {
    let grants = Grants {
        roles: roles.iter().copied().collect(),
        admin: roles.contains(&Role::Db),
    };
    (host.to_string(), grants)
}

pub async fn run(scenario: &Scenario, seed: u64) -> Outcome {
    let network = SimNetwork::new(seed);
    let models = ModelCluster::new(network.clone());
    let hosts = scenario.layout.hosts();
    let mut agents = Vec::new();
    let mut preloaded = Vec::new();
    let mut grants = BTreeMap::new();
    for (index, host) in hosts.iter().enumerate() {
        let roles: Vec<Role> = match host {
            h if h.starts_with("db") => vec![Role::Db],
            h if h.starts_with("srv") => vec![Role::Server],
            _ => vec![Role::Console],
        };
        grants.extend([grants_of(host, &roles)]);
        if roles.contains(&Role::Db) {
            let own_data = scenario.own_data.get(index).copied().unwrap_or(0);
            let domain = scenario.domains.get(index).copied().unwrap_or(0);
            let held = models.add(host, index as u32 + 1, domain, scenario.setup_transactions, own_data);
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
    models.set_grants(grants);
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
        liars: BTreeSet::new(),
        roles_at_lie: None,
        switchovers_asked: BTreeMap::new(),
        promoted_at: BTreeMap::new(),
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
