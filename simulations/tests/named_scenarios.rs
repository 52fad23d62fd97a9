//! The named scenarios hold every invariant (random schedules are `.ci/run`'s job, in a release
//! build; this keeps `cargo nextest` honest about the harness).

use std::process::{Command, Output};

fn simulations(scenario: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_simulations"))
        .args(["--scenario", scenario])
        .output()
        .expect("run the simulations")
}

/// The run's standard output, once it succeeded.
fn passing(scenario: &str) -> String {
    let output = simulations(scenario);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn every_named_scenario_holds_the_invariants() {
    let stdout = passing("all");
    // Every named scenario ran (21 of them) and none failed.
    let passed = stdout
        .lines()
        .find_map(|line| line.strip_suffix(" passed, 0 failed"))
        .and_then(|count| count.parse::<usize>().ok());
    assert!(passed.is_some_and(|count| count >= 21), "{stdout}");
}

#[test]
fn a_failing_run_prints_a_replayable_seed() {
    let output = simulations("no_such_scenario");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("known: primary_isolated"));
}

/// Operators' commands given on one host are carried out by another and answered truthfully:
/// done only once it is done, refused at once without an admin grant or with nothing to do.
#[test]
fn operators_commands_are_relayed_carried_out_and_answered_truthfully() {
    let stdout = passing("operator_commands");
    let answers = [
        "srv2: answers the operator's switchover to db2: refused: this host's certificate grants server, not admin",
        "db2: answers the operator's switchover to db2: done",
        "db2: answers the operator's maintenance on for db1: done",
        "db2: answers the operator's switchover to db1: refused",
        "console1: answers the operator's maintenance on for db2: refused: this host's certificate grants console, not admin",
        "db2: answers the operator's maintenance off for db1: done",
        "db1: answers the operator's switchover to db1: done",
        "db2: answers the operator's switchover to db1: refused: db1 is already the primary: nothing to switch over",
        "db1: answers the operator's switchover to db1: refused: db1 is already the primary",
    ];
    let mut lines = stdout.lines();
    for answer in answers {
        assert!(
            lines.any(|line| line.contains(answer)),
            "no `{answer}` after the previous answer in:\n{stdout}"
        );
    }
}
