use super::*;

const SETTLE_MS: u64 = 2_000;
const LOST: &str = "srv can no longer reach db2's host (198.18.0.12:3306)";

/// One step of a timeline: at `at_ms`, whether the checker `srv` is alive and reaches db2, and
/// whether db2's own agent is alive. `db1` is alive and reaches everything throughout.
struct At {
    at_ms: u64,
    srv_alive: bool,
    srv_reaches_db2: bool,
    db2_alive: bool,
}

fn at(at_ms: u64, srv_alive: bool, srv_reaches_db2: bool, db2_alive: bool) -> At {
    At {
        at_ms,
        srv_alive,
        srv_reaches_db2,
        db2_alive,
    }
}

fn targets(db2_alive: bool) -> [Target<'static>; 2] {
    [
        Target {
            name: "db1",
            alive: true,
            address: "198.18.0.11:3306",
        },
        Target {
            name: "db2",
            alive: db2_alive,
            address: "198.18.0.12:3306",
        },
    ]
}

fn run(book: &mut ReachBook, step: &At) -> Vec<String> {
    let both = vec!["db1".to_string(), "db2".to_string()];
    let only_db1 = vec!["db1".to_string()];
    let srv_reached = if step.srv_reaches_db2 { &both } else { &only_db1 };
    let checkers = [
        Checker {
            name: "srv",
            alive: step.srv_alive,
            reached: srv_reached,
        },
        Checker {
            name: "db1",
            alive: true,
            reached: &both,
        },
    ];
    book.step(MonoMs(step.at_ms), SETTLE_MS, &checkers, &targets(step.db2_alive))
        .iter()
        .map(|change| change.describe().1)
        .collect()
}

#[test]
fn reach_changes_are_one_event_each_and_only_when_they_last() {
    let back = |after: &str| format!("srv reaches db2's host (198.18.0.12:3306) again after {after}");
    type Timeline = Vec<(At, Vec<String>)>;
    let cases: Vec<(&str, Timeline)> = vec![
        (
            "a lasting cut: one event when it has lasted, one when it heals",
            vec![
                (at(0, true, true, true), vec![]),
                (at(2_000, true, true, true), vec![]),
                (at(3_000, true, false, true), vec![]),
                (at(4_000, true, false, true), vec![]),
                (at(5_000, true, false, true), vec![LOST.into()]),
                (at(6_000, true, false, true), vec![]),
                (at(7_000, true, true, true), vec![back("4.000 s")]),
                (at(8_000, true, true, true), vec![]),
            ],
        ),
        (
            "one check lost under load is no cut",
            vec![
                (at(0, true, true, true), vec![]),
                (at(3_000, true, false, true), vec![]),
                (at(4_000, true, true, true), vec![]),
                (at(9_000, true, true, true), vec![]),
            ],
        ),
        (
            "a starting agent gossips an empty list until its first round",
            vec![
                (at(0, true, false, true), vec![]),
                (at(1_500, true, false, true), vec![]),
                (at(1_900, true, true, true), vec![]),
                (at(9_000, true, true, true), vec![]),
            ],
        ),
        (
            "an agent that is DOWN says nothing, nor when it comes back reaching",
            vec![
                (at(0, true, true, true), vec![]),
                (at(3_000, false, false, true), vec![]),
                (at(9_000, false, false, true), vec![]),
                (at(10_000, true, true, true), vec![]),
            ],
        ),
        (
            "a DB node whose agent is DOWN: node_down says it; news once its agent is back unreached",
            vec![
                (at(0, true, true, true), vec![]),
                (at(3_000, true, false, false), vec![]),
                (at(9_000, true, false, false), vec![]),
                (at(10_000, true, false, true), vec![LOST.into()]),
                (at(11_000, true, true, true), vec![back("8.000 s")]),
            ],
        ),
        (
            "a cut that ends while its agent was DOWN still ends with an event",
            vec![
                (at(0, true, true, true), vec![]),
                (at(3_000, true, false, true), vec![]),
                (at(5_000, true, false, true), vec![LOST.into()]),
                (at(6_000, false, false, true), vec![]),
                (at(8_000, true, true, true), vec![back("5.000 s")]),
            ],
        ),
    ];
    for (why, timeline) in cases {
        let mut book = ReachBook::default();
        for (step, expected) in timeline {
            assert_eq!(run(&mut book, &step), expected, "{why}, at {} ms", step.at_ms);
        }
    }
}

#[test]
fn status_lists_lasting_problems_of_live_agents_with_their_age() {
    let mut book = ReachBook::default();
    let problems = |book: &mut ReachBook, step: At| {
        run(book, &step);
        book.problems(MonoMs(step.at_ms), SETTLE_MS, &targets(step.db2_alive))
            .into_iter()
            .map(|problem| (problem.observer, problem.node, problem.address, problem.unreached_ms))
            .collect::<Vec<_>>()
    };
    let srv_db2 = |ms| vec![("srv".into(), "db2".into(), "198.18.0.12:3306".into(), ms)];
    assert_eq!(problems(&mut book, at(0, true, true, true)), vec![]);
    assert_eq!(
        problems(&mut book, at(3_000, true, false, true)),
        vec![],
        "not lasting yet"
    );
    assert_eq!(problems(&mut book, at(5_000, true, false, true)), srv_db2(2_000));
    assert_eq!(
        problems(&mut book, at(6_000, true, false, false)),
        srv_db2(3_000),
        "shown while db2's agent is DOWN too"
    );
    assert_eq!(
        problems(&mut book, at(7_000, false, false, true)),
        vec![],
        "srv's view is stale"
    );
    assert_eq!(problems(&mut book, at(8_000, true, true, true)), vec![]);
}

#[test]
fn no_agent_checks_its_own_host_and_memory_is_bounded() {
    let names: Vec<String> = (0..MAX_TRACKED_PAIRS + 10).map(|index| format!("db{index}")).collect();
    let targets: Vec<Target> = names
        .iter()
        .map(|name| Target {
            name,
            alive: true,
            address: "198.18.0.1:3306",
        })
        .collect();
    let checkers = [Checker {
        name: "db0",
        alive: true,
        reached: &[],
    }];
    let mut book = ReachBook::default();
    book.step(MonoMs(0), SETTLE_MS, &checkers, &targets);
    assert_eq!(book.unreached.len(), MAX_TRACKED_PAIRS);
    assert!(!book.unreached.contains_key(&("db0".to_string(), "db0".to_string())));
}
