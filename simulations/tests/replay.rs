//! A seed replays exactly, and the replay check cannot pass silently: with gossip partners
//! picked by an OS-seeded RNG again (chitchat's own way), it must name the seeds that diverged.

use std::process::{Command, Output};

fn simulations(args: &[&str]) -> (Output, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_simulations"))
        .args(args)
        .output()
        .expect("run the simulations");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    (output, stdout)
}

#[test]
fn two_runs_of_a_seed_have_the_same_hash() {
    let (output, stdout) = simulations(&["--seeds", "2", "--first-seed", "40", "--replay-check"]);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains("replay check: 2 runs each run twice, every hash equal"),
        "{stdout}"
    );
}

#[test]
fn the_replay_check_catches_a_run_that_does_not_replay() {
    let (output, stdout) = simulations(&[
        "--seeds",
        "2",
        "--first-seed",
        "40",
        "--replay-check",
        "--inject-nondeterminism",
    ]);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("replay check: 2 of 2 runs did not replay"), "{stdout}");
    assert!(stdout.contains("random-40 (seed 40): "), "{stdout}");
    // The runs themselves pass: only the replay check fails them.
    assert!(stdout.contains("2 passed, 0 failed"), "{stdout}");
}

/// Seed 2 printed a different timeline on each run before the network drove the rounds.
#[test]
fn one_seed_prints_its_hash_and_replays() {
    let (first, stdout) = simulations(&["--seed", "2"]);
    assert!(first.status.success(), "{stdout}");
    let hash = |stdout: &str| {
        stdout
            .lines()
            .find_map(|line| line.strip_prefix("hash "))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no hash line in:\n{stdout}"))
    };
    let (second, again) = simulations(&["--seed", "2"]);
    assert!(second.status.success(), "{again}");
    assert_eq!(hash(&stdout), hash(&again));
    assert_eq!(stdout, again, "the whole timeline replays");
}
