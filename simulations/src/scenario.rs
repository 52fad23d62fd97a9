//! Scenarios as data: a printable list of operations, a library of named ones, and a seeded
//! generator of random schedules.

use std::fmt;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Let simulated time pass.
    Wait(u64),
    /// Cut the link between two hosts, both ways.
    Cut(String, String),
    /// The first host can no longer send to the second.
    CutOneWay(String, String),
    /// Cut a host from every other.
    Isolate(String),
    /// Restore every link, no loss, no extra delay.
    Heal,
    /// Lose this fraction of gossip messages.
    Loss(f64),
    /// Delay gossip messages by this many milliseconds at most.
    Delay(u64),
    /// The host's agent dies (its database, if any, keeps running).
    Crash(String),
    Restart(String),
    /// The host's mysqld is killed (its agent lives on).
    KillDb(String),
    StartDb(String),
    /// The host's server purges its binary logs up to now.
    Purge(String),
    /// The host's wall clock jumps by this many milliseconds (back when negative).
    ClockJump(String, i64),
    /// The host runs out of descriptors for this many milliseconds: its agent cannot open a
    /// connection to any database, its mysqld runs on.
    ExhaustConnections(String, u64),
    /// Until the next heal, rows arrive this many milliseconds older than their client's clock
    /// (agents deliver data they buffered while no server answered).
    LateRows(u64),
    /// An operator reinstalls the host's database server by hand: its own setup, a new server
    /// id and GTID domain, no user data (what it held is backed up first).
    Reinstall(String),
    /// The host's agent gossips a database primary claim with a huge epoch, which its
    /// certificate does not grant.
    Lie(String),
    /// An operator on the first host runs `gossip-ha switchover <second>`: relayed to the
    /// primary unless the first host is the primary.
    Switchover(String, String),
    /// An operator on the first host puts the second's database in maintenance (`true`) or
    /// takes it out: relayed to the second unless it is the first.
    Maintenance(String, String, bool),
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Wait(ms) => write!(f, "wait {:.1} s", *ms as f64 / 1000.0),
            Op::Cut(a, b) => write!(f, "cut {a} <-> {b}"),
            Op::CutOneWay(a, b) => write!(f, "cut {a} -> {b}"),
            Op::Isolate(a) => write!(f, "isolate {a}"),
            Op::Heal => write!(f, "heal"),
            Op::Loss(p) => write!(f, "lose {:.0}% of gossip", p * 100.0),
            Op::Delay(ms) => write!(f, "delay gossip up to {ms} ms"),
            Op::Crash(a) => write!(f, "crash agent {a}"),
            Op::Restart(a) => write!(f, "restart agent {a}"),
            Op::KillDb(a) => write!(f, "kill -9 mysqld on {a}"),
            Op::StartDb(a) => write!(f, "start mysqld on {a}"),
            Op::Purge(a) => write!(f, "purge binary logs on {a}"),
            Op::ClockJump(a, ms) => write!(f, "wall clock of {a} jumps {:+.1} s", *ms as f64 / 1000.0),
            Op::ExhaustConnections(a, ms) => {
                write!(f, "{a} runs out of descriptors for {:.1} s", *ms as f64 / 1000.0)
            }
            Op::LateRows(ms) => write!(f, "rows arrive {:.0} s late until healed", *ms as f64 / 1000.0),
            Op::Reinstall(a) => write!(f, "operator reinstalls the database server on {a}"),
            Op::Lie(a) => write!(f, "{a} gossips a forged primary claim"),
            Op::Switchover(a, to) => write!(f, "operator on {a}: switchover to {to}"),
            Op::Maintenance(a, node, on) => {
                let verb = if *on { "on" } else { "off" };
                write!(f, "operator on {a}: maintenance {verb} for {node}")
            }
        }
    }
}

/// The hosts of a run: DB hosts first (db1 preferred), then Pandora servers, then consoles.
#[derive(Debug, Clone)]
pub struct Layout {
    pub dbs: usize,
    pub servers: usize,
    pub consoles: usize,
}

impl Layout {
    pub const STANDARD: Layout = Layout {
        dbs: 2,
        servers: 3,
        consoles: 1,
    };

    pub fn db(&self, index: usize) -> String {
        format!("db{}", index + 1)
    }

    pub fn hosts(&self) -> Vec<String> {
        let dbs = (0..self.dbs).map(|i| format!("db{}", i + 1));
        let servers = (0..self.servers).map(|i| format!("srv{}", i + 1));
        let consoles = (0..self.consoles).map(|i| format!("console{}", i + 1));
        dbs.chain(servers).chain(consoles).collect()
    }
}

pub struct Scenario {
    pub name: String,
    pub layout: Layout,
    pub ops: Vec<Op>,
    /// Setup transactions (users and grants logged) each DB server starts with: 0 for the
    /// lab's clean servers, more for servers set up as operators do.
    pub setup_transactions: u64,
    /// Transactions of user data each DB server (in order) holds of its own at the start: a
    /// server that ran something else before it joined. Missing entries are 0.
    pub own_data: Vec<u64>,
    /// `gtid_domain_id` of each DB server (in order): servers set up separately may number
    /// their transactions in domains of their own. Missing entries are 0.
    pub domains: Vec<u32>,
}

fn s(text: &str) -> String {
    text.to_string()
}

/// The named scenarios of issue #6, on the standard layout unless said otherwise.
pub fn named() -> Vec<Scenario> {
    let standard = |name: &str, ops: Vec<Op>| Scenario {
        name: name.into(),
        layout: Layout::STANDARD,
        ops,
        setup_transactions: 0,
        own_data: Vec::new(),
        domains: Vec::new(),
    };
    vec![
        standard(
            "primary_isolated",
            vec![Op::Isolate(s("db1")), Op::Wait(10_000), Op::Heal, Op::Wait(10_000)],
        ),
        standard(
            "replica_isolated",
            vec![Op::Isolate(s("db2")), Op::Wait(10_000), Op::Heal, Op::Wait(10_000)],
        ),
        Scenario {
            name: "two_node_partition".into(),
            layout: Layout {
                dbs: 2,
                servers: 0,
                consoles: 0,
            },
            ops: vec![
                Op::Cut(s("db1"), s("db2")),
                Op::Wait(10_000),
                Op::Heal,
                Op::Wait(10_000),
            ],
            setup_transactions: 0,
            own_data: Vec::new(),
            domains: Vec::new(),
        },
        // Two servers that each ran something of their own before: unrelated histories, both
        // holding data. db1 (first of ha_hosts) is primary; db2 is never wiped: it waits.
        Scenario {
            own_data: vec![30, 50],
            ..standard("unrelated_servers", vec![Op::Wait(10_000)])
        },
        // Servers set up as operators do (users created with the binary log on), and a replica
        // down while the primary purges the logs it would need: it is cloned, twice.
        Scenario {
            setup_transactions: 4,
            ..standard(
                "operator_setup_purged",
                vec![
                    Op::KillDb(s("db2")),
                    Op::Wait(4_000),
                    Op::Purge(s("db1")),
                    Op::StartDb(s("db2")),
                    Op::Wait(10_000),
                ],
            )
        },
        standard(
            "asymmetric_partition",
            vec![
                Op::CutOneWay(s("db1"), s("db2")),
                Op::CutOneWay(s("db1"), s("srv1")),
                Op::Wait(10_000),
                Op::Heal,
                Op::Wait(5_000),
            ],
        ),
        standard("flapping_link", {
            let mut ops = Vec::new();
            for _ in 0..10 {
                ops.extend([Op::Cut(s("db1"), s("db2")), Op::Wait(700), Op::Heal, Op::Wait(700)]);
            }
            ops
        }),
        standard(
            "primary_db_dies",
            vec![
                Op::KillDb(s("db1")),
                Op::Wait(10_000),
                Op::StartDb(s("db1")),
                Op::Wait(10_000),
            ],
        ),
        standard(
            "cascading_failures",
            vec![
                Op::KillDb(s("db1")),
                Op::Wait(5_000),
                Op::Crash(s("srv1")),
                Op::Isolate(s("srv2")),
                Op::Wait(5_000),
                Op::StartDb(s("db1")),
                Op::KillDb(s("db2")),
                Op::Wait(8_000),
                Op::Heal,
                Op::Restart(s("srv1")),
                Op::StartDb(s("db2")),
                Op::Wait(10_000),
            ],
        ),
        // Servers set up separately: unrelated histories numbered in different GTID domains,
        // both holding data. db1 stays primary; db2 waits, unwiped.
        Scenario {
            setup_transactions: 2,
            own_data: vec![30, 50],
            domains: vec![0, 2],
            ..standard("unrelated_domains", vec![Op::Wait(10_000)])
        },
        // An operator reinstalls the replica: an empty server with setup of its own under
        // another server id and domain joins a cluster holding data. It is cloned.
        Scenario {
            setup_transactions: 3,
            ..standard("fresh_server_joins", vec![Op::Reinstall(s("db2")), Op::Wait(12_000)])
        },
        // The same for the preferred server, after db2 took over: the empty db1 never wins.
        Scenario {
            setup_transactions: 3,
            ..standard(
                "fresh_preferred_server_joins",
                vec![
                    Op::KillDb(s("db1")),
                    Op::Wait(8_000),
                    Op::Reinstall(s("db1")),
                    Op::Wait(12_000),
                ],
            )
        },
        // A split-brain whose old primary takes late rows (dated before the split): the merge
        // copies them all, whatever their time.
        standard("split_late_rows", split_with_old_primary(vec![Op::LateRows(600_000)])),
        // The same with the old primary's logs purged past the fork: the merge can only go by
        // the time window, which misses the late rows; they must not be wiped unsaved.
        standard(
            "split_late_rows_purged",
            split_with_old_primary(vec![Op::LateRows(600_000), Op::Wait(3_000), Op::Purge(s("db1"))]),
        ),
        // The winner's wall clock an hour ahead when it promotes: its window opens in the
        // future.
        standard(
            "split_clock_jump_purged",
            [Op::ClockJump(s("db2"), 3_600_000)]
                .into_iter()
                .chain(split_with_old_primary(vec![Op::Purge(s("db1"))]))
                .collect(),
        ),
        // The primary's agent cannot open a connection for a while, its mysqld runs on.
        standard(
            "descriptors_exhausted_primary",
            vec![Op::ExhaustConnections(s("db1"), 8_000), Op::Wait(12_000)],
        ),
        standard(
            "descriptors_exhausted_replica",
            vec![Op::ExhaustConnections(s("db2"), 8_000), Op::Wait(12_000)],
        ),
        // Wall clocks jumping both ways on every kind of host, then the primary dies.
        standard(
            "clock_jumps",
            vec![
                Op::ClockJump(s("db1"), -3_600_000),
                Op::ClockJump(s("db2"), 86_400_000),
                Op::ClockJump(s("srv1"), -600_000),
                Op::Wait(3_000),
                Op::KillDb(s("db1")),
                Op::Wait(10_000),
            ],
        ),
        // A console gossips a primary claim with a huge epoch: nobody follows it.
        standard("lying_console", vec![Op::Lie(s("console1")), Op::Wait(10_000)]),
        // Operators' commands, given on DB hosts (their certificates grant admin) and relayed
        // to the node that carries them out; refused at once where the host has no admin grant
        // or nothing is to be done.
        standard(
            "operator_commands",
            vec![
                Op::Switchover(s("srv2"), s("db2")),
                Op::Switchover(s("db2"), s("db2")),
                Op::Wait(12_000),
                Op::Maintenance(s("db2"), s("db1"), true),
                Op::Wait(3_000),
                Op::Switchover(s("db2"), s("db1")),
                Op::Maintenance(s("console1"), s("db2"), true),
                Op::Wait(3_000),
                Op::Maintenance(s("db2"), s("db1"), false),
                Op::Wait(3_000),
                Op::Switchover(s("db1"), s("db1")),
                Op::Wait(12_000),
                Op::Switchover(s("db2"), s("db1")),
                Op::Wait(1_000),
                Op::Switchover(s("db1"), s("db1")),
                Op::Wait(1_000),
            ],
        ),
        standard("whole_cluster_restart", {
            let hosts = Layout::STANDARD.hosts();
            let mut ops: Vec<Op> = hosts.iter().map(|host| Op::Crash(host.clone())).collect();
            ops.extend(
                hosts
                    .iter()
                    .filter(|host| host.starts_with("db"))
                    .map(|host| Op::KillDb(host.clone())),
            );
            ops.push(Op::Wait(5_000));
            ops.extend(
                hosts
                    .iter()
                    .filter(|host| host.starts_with("db"))
                    .map(|host| Op::StartDb(host.clone())),
            );
            ops.extend(hosts.iter().map(|host| Op::Restart(host.clone())));
            ops.push(Op::Wait(10_000));
            ops
        }),
    ]
}

/// The standard layout split in two: db1 (the primary) with srv1, which keeps writing to it,
/// and the rest, where db2 takes over; `during` runs inside the split, which lasts 10 s.
fn split_with_old_primary(during: Vec<Op>) -> Vec<Op> {
    let mut ops: Vec<Op> = ["db1", "srv1"]
        .iter()
        .flat_map(|near| {
            ["db2", "srv2", "srv3", "console1"]
                .iter()
                .map(move |far| Op::Cut(s(near), s(far)))
        })
        .collect();
    ops.push(Op::Wait(5_000));
    ops.extend(during);
    ops.extend([Op::Wait(5_000), Op::Heal, Op::Wait(15_000)]);
    ops
}

/// A random schedule on the standard layout, all from `seed`.
pub fn random(seed: u64) -> Scenario {
    let layout = Layout::STANDARD;
    let hosts = layout.hosts();
    let mut rng = StdRng::seed_from_u64(seed);
    let pick = |rng: &mut StdRng| hosts[rng.gen_range(0..hosts.len())].clone();
    let mut ops = vec![Op::Wait(rng.gen_range(0..5_000))];
    for _ in 0..rng.gen_range(2..7) {
        let op = match rng.gen_range(0..17) {
            0 => Op::Cut(pick(&mut rng), pick(&mut rng)),
            1 => Op::CutOneWay(pick(&mut rng), pick(&mut rng)),
            2 => Op::Isolate(pick(&mut rng)),
            3 => Op::Heal,
            4 => Op::Loss(rng.gen_range(0.0..0.3)),
            5 => Op::Delay(rng.gen_range(0..300)),
            6 => Op::Crash(pick(&mut rng)),
            7 => Op::Restart(pick(&mut rng)),
            8 => Op::KillDb(layout.db(rng.gen_range(0..layout.dbs))),
            9 => Op::StartDb(layout.db(rng.gen_range(0..layout.dbs))),
            10 => Op::Purge(layout.db(rng.gen_range(0..layout.dbs))),
            11 => Op::ClockJump(pick(&mut rng), rng.gen_range(-7_200_000..7_200_000)),
            12 => Op::ExhaustConnections(pick(&mut rng), rng.gen_range(500..10_000)),
            13 => Op::LateRows(rng.gen_range(1_000..3_600_000)),
            14 => Op::Reinstall(layout.db(rng.gen_range(0..layout.dbs))),
            15 => Op::Switchover(pick(&mut rng), layout.db(rng.gen_range(0..layout.dbs))),
            // Only a host without the db grant can lie about being a database.
            _ => Op::Lie(hosts[rng.gen_range(layout.dbs..hosts.len())].clone()),
        };
        ops.push(op);
        ops.push(Op::Wait(rng.gen_range(200..8_000)));
    }
    // Half the runs on servers set up as operators do: users and grants in every binary log.
    let setup_transactions = if rng.gen_bool(0.5) { rng.gen_range(1..6) } else { 0 };
    // Sometimes the second server ran something of its own before it joined: its data must win
    // over the empty first server, or be kept.
    let own_data = if rng.gen_bool(0.1) {
        vec![0, rng.gen_range(1..40)]
    } else {
        Vec::new()
    };
    // Sometimes the servers were set up separately, each numbering in a domain of its own.
    let domains = if rng.gen_bool(0.2) {
        vec![0, rng.gen_range(1..4)]
    } else {
        Vec::new()
    };
    Scenario {
        name: format!("random-{seed}"),
        layout,
        ops,
        setup_transactions,
        own_data,
        domains,
    }
}
