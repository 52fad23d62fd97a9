use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;

fn gtid(text: &str) -> GtidSet {
    GtidSet::parse(text).unwrap()
}

#[test]
fn table_of_relations() {
    use Relation::*;
    let cases: &[(&str, &str, Relation, &str)] = &[
        ("", "", Equal, "two new servers"),
        ("", "0-1-10", Behind, "an empty server is behind anything"),
        ("0-1-10", "", Ahead, "anything is ahead of an empty server"),
        ("0-1-10", "0-1-9", Ahead, "one line, further along"),
        ("0-1-9", "0-1-10", Behind, "one line, not as far"),
        (
            "0-1-100,0-2-150",
            "0-1-100",
            Ahead,
            "the successor promoted and wrote on",
        ),
        (
            "0-1-100",
            "0-1-100,0-2-150",
            Behind,
            "the old primary's last is in the new one's line",
        ),
        (
            "0-1-130",
            "0-1-100,0-2-150",
            Forked,
            "both wrote on after 0-1-100: a split-brain",
        ),
        (
            "0-1-235",
            "0-2-308",
            Unrelated,
            "the issue's x1 and x2: different servers only",
        ),
        (
            "0-2-1,0-2-4",
            "0-1-235",
            Unrelated,
            "users created on a replica before it ever replicated",
        ),
        (
            "0-1-235,0-2-4",
            "0-1-235",
            Equal,
            "errant setup transactions before replication: same last GTID",
        ),
        ("0-1-10,1-3-4", "0-1-10", Ahead, "another domain on top"),
        ("0-1-10", "1-3-4", Unrelated, "different domains, different servers"),
        ("0-1-10,1-3-4", "0-1-12", Forked, "each ahead in one domain"),
        (
            "0-3-100,0-1-480",
            "0-1-500",
            Behind,
            "a replica with an older waypoint is still behind",
        ),
        ("u:1-10", "u:1-5", Ahead, "MySQL: superset"),
        ("u:1-5", "u:1-10", Behind, "MySQL: subset"),
        ("u:1-5:7-9", "u:6", Unrelated, "MySQL: disjoint sets of one uuid"),
        ("u:1-5:7-9", "u:1-6", Forked, "MySQL: common 1-5, then each its own"),
        ("U:1-3,v:1", "u:2-3", Ahead, "MySQL: uuids ignore case"),
        ("u:1-10", "v:1-10", Unrelated, "MySQL: different sources only"),
        ("u:1-10", "0-1-10", Unrelated, "different dialects"),
    ];
    for &(a, b, expected, why) in cases {
        assert_eq!(gtid(a).relation(&gtid(b)), expected, "{a} vs {b}: {why}");
    }
}

#[test]
fn stale_candidates_lose_shared_history_not_their_own_setup() {
    let cases: &[(&str, &str, bool, &str)] = &[
        ("0-1-480", "0-1-500", true, "plainly behind"),
        (
            "0-1-480,0-4-490",
            "0-1-500,0-3-2",
            true,
            "errant GTID last, but 20 of server 1 missing",
        ),
        (
            "0-1-500,0-3-2",
            "0-1-480,0-4-490",
            false,
            "the other one is the stale one",
        ),
        (
            "0-1-235",
            "0-2-308",
            false,
            "unrelated: neither is stale, other rules decide",
        ),
        ("0-1-130", "0-1-100,0-2-150", false, "a real fork: both went on"),
        ("0-1-10", "0-1-10", false, "equal"),
    ];
    for &(a, b, stale, why) in cases {
        assert_eq!(gtid(a).is_stale_against(&gtid(b)), stale, "{a} against {b}: {why}");
    }
}

#[test]
fn transactions_since_a_fork() {
    let cases: &[(&str, &str, Option<u64>)] = &[
        ("0-2-150", "0-1-100", Some(50)),
        ("0-1-120", "0-1-100", Some(20)),
        ("0-1-100", "0-1-100", Some(0)),
        ("0-1-90", "0-1-100", Some(0)),
        ("0-1-10,1-3-4", "0-1-8", Some(6)),
        ("0-1-10", "", Some(10)),
        ("u:1-10", "u:1-5", Some(5)),
        ("u:1-10,v:1-3", "u:1-5:7", Some(7)),
        ("u:1-10", "", Some(10)),
        ("u:1-10", "0-1-5", None),
    ];
    for &(state, fork, expected) in cases {
        assert_eq!(
            gtid(state).transactions_beyond(&gtid(fork)),
            expected,
            "{state} beyond {fork}"
        );
    }
}

#[test]
fn position_and_waypoints_read_together() {
    let node = GtidSet::of_node("0-1-480", "0-3-100,0-1-480").unwrap();
    assert_eq!(node, gtid("0-3-100,0-1-480"));
    assert_eq!(node.to_string(), "0-1-480");
    assert_eq!(GtidSet::of_node("0-1-5", "garbage").unwrap(), gtid("0-1-5"));
    assert_eq!(GtidSet::of_node("u:1-5", "0-1-5").unwrap(), gtid("u:1-5"));
    assert!(GtidSet::of_node("x", "").is_err());
    assert_eq!(GtidSet::empty_mariadb().to_string(), "(none)");
}

#[test]
fn refuses_unreadable_text() {
    for text in ["0-1", "a-b-c", "u:5-1", "0-1-2-3", "u:x"] {
        assert!(GtidSet::parse(text).is_err(), "{text}");
    }
    assert_eq!(gtid(" 0-1-5 ,\n1-2-3"), gtid("0-1-5,1-2-3"));
}

/// (server id, sequence number) of each transaction a node holds, in order.
type Transactions = Vec<(u32, u64)>;

/// A random history tree of one MariaDB domain: a common line written by servers 1 and 2, then
/// two branches, each written by servers of its own (as after a partition: a server writes on
/// one line only), and two nodes somewhere on it. Returns each node's transactions.
fn two_nodes_on_a_tree(
    prefix: Vec<u32>,
    branch_a: Vec<u32>,
    branch_b: Vec<u32>,
    cut_a: usize,
    cut_b: usize,
) -> (Transactions, Transactions) {
    let common: Vec<(u32, u64)> = prefix
        .iter()
        .enumerate()
        .map(|(i, server)| (*server, i as u64 + 1))
        .collect();
    let extend = |branch: &[u32], base_server: u32| -> Vec<(u32, u64)> {
        let mut line = common.clone();
        for (i, server) in branch.iter().enumerate() {
            line.push((base_server + server, (common.len() + i) as u64 + 1));
        }
        line
    };
    let line_a = extend(&branch_a, 10);
    let line_b = extend(&branch_b, 20);
    let a = line_a[..cut_a.min(line_a.len())].to_vec();
    let b = line_b[..cut_b.min(line_b.len())].to_vec();
    (a, b)
}

/// The node's announcement of its transactions: last GTID and a waypoint per server id.
fn announced(transactions: &[(u32, u64)]) -> GtidSet {
    let text: Vec<String> = transactions
        .iter()
        .map(|(server, seq)| format!("0-{server}-{seq}"))
        .collect();
    gtid(&text.join(","))
}

fn true_relation(a: &[(u32, u64)], b: &[(u32, u64)]) -> Relation {
    let a: BTreeSet<_> = a.iter().collect();
    let b: BTreeSet<_> = b.iter().collect();
    match (a.is_subset(&b), b.is_subset(&a), a.intersection(&b).next().is_some()) {
        (true, true, _) => Relation::Equal,
        (true, false, _) => Relation::Behind,
        (false, true, _) => Relation::Ahead,
        (false, false, true) => Relation::Forked,
        (false, false, false) => Relation::Unrelated,
    }
}

proptest! {
    /// On any history tree, the relation read from the announced waypoints is the relation of
    /// the transaction sets themselves.
    #[test]
    fn mariadb_waypoints_give_the_true_relation(
        prefix in prop::collection::vec(1u32..3, 0..6),
        branch_a in prop::collection::vec(0u32..2, 0..6),
        branch_b in prop::collection::vec(0u32..2, 0..6),
        cut_a in 0usize..13,
        cut_b in 0usize..13,
    ) {
        let (a, b) = two_nodes_on_a_tree(prefix, branch_a, branch_b, cut_a, cut_b);
        prop_assert_eq!(announced(&a).relation(&announced(&b)), true_relation(&a, &b), "{:?} vs {:?}", a, b);
    }

    /// MySQL sets are compared exactly.
    #[test]
    fn mysql_sets_give_the_true_relation(
        a in prop::collection::btree_set((0u8..2, 1u64..8), 0..8),
        b in prop::collection::btree_set((0u8..2, 1u64..8), 0..8),
    ) {
        let text = |set: &BTreeSet<(u8, u64)>| {
            set.iter().map(|(uuid, id)| format!("u{uuid}:{id}")).collect::<Vec<_>>().join(",")
        };
        let as_list = |set: &BTreeSet<(u8, u64)>| set.iter().map(|(u, id)| (*u as u32, *id)).collect::<Vec<_>>();
        let relation = gtid(&text(&a)).relation(&gtid(&text(&b)));
        // Two empty sets parse as MariaDB; the relation of empties is still Equal.
        prop_assert_eq!(relation, true_relation(&as_list(&a), &as_list(&b)));
    }

    /// The relation read one way is the mirror of the other way.
    #[test]
    fn relations_mirror(a in "(0-[1-3]-[0-9],){0,3}", b in "(0-[1-3]-[0-9],){0,3}") {
        use Relation::*;
        let (a, b) = (gtid(&a), gtid(&b));
        let mirrored = match a.relation(&b) {
            Behind => Ahead,
            Ahead => Behind,
            other => other,
        };
        prop_assert_eq!(b.relation(&a), mirrored);
    }
}

#[test]
fn a_history_holds_what_its_domains_reached_whoever_wrote_it() {
    let fork = gtid("0-1-100,1-2-5");
    let cases: &[(u32, u64, bool)] = &[
        (0, 99, true),
        (0, 100, true),
        (0, 101, false),
        (1, 5, true),
        (1, 6, false),
        (2, 1, false),
    ];
    for &(domain, seq, held) in cases {
        assert_eq!(fork.holds(domain, seq), held, "{domain}-?-{seq}");
    }
    assert!(!gtid("").holds(0, 1), "an empty fork holds nothing");
    assert!(!gtid("u1:1-5").holds(0, 1), "MySQL sets hold no MariaDB GTID");
}
