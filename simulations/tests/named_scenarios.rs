//! The named scenarios hold every invariant (random schedules are `.ci/run`'s job, in a release
//! build; this keeps `cargo nextest` honest about the harness).

use std::process::Command;

#[test]
fn every_named_scenario_holds_the_invariants() {
    let output = Command::new(env!("CARGO_BIN_EXE_simulations"))
        .args(["--scenario", "all"])
        .output()
        .expect("run the simulations");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Every named scenario ran (20 of them) and none failed.
    let passed = stdout
        .lines()
        .find_map(|line| line.strip_suffix(" passed, 0 failed"))
        .and_then(|count| count.parse::<usize>().ok());
    assert!(passed.is_some_and(|count| count >= 20), "{stdout}");
}

#[test]
fn a_failing_run_prints_a_replayable_seed() {
    let output = Command::new(env!("CARGO_BIN_EXE_simulations"))
        .args(["--scenario", "no_such_scenario"])
        .output()
        .expect("run the simulations");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("known: primary_isolated"));
}
