//! The harness's own promises, which every other test leans on.

mod common;

use common::claims;

#[test]
fn a_claim_is_exclusive_until_its_holder_lets_go() {
    let name = format!("harness-test-{}", std::process::id());
    let held = claims::claim(&name).expect("a fresh claim is free");
    assert!(
        claims::claim(&name).is_none(),
        "a second holder got a claim that is held"
    );
    drop(held);
    assert!(claims::claim(&name).is_some(), "a released claim stays taken");
    let _ = std::fs::remove_file(format!("/tmp/gossip-ha-test-claims/{name}"));
}

#[test]
fn ports_are_distinct_and_below_the_ephemeral_range() {
    let ports: Vec<u16> = (0..100).map(|_| common::free_port()).collect();
    let mut distinct = ports.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), ports.len(), "a port was handed out twice: {ports:?}");
    assert!(
        ports.iter().all(|port| (20_000..32_768).contains(port)),
        "a port outside 20000–32767: {ports:?}"
    );
}
