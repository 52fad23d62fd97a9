//! Server master election (DESIGN §1.3): among live nodes with role `server` and `master > 0`,
//! the highest `master` wins; ties go to the lexicographically smallest node name, so every agent
//! with the same view elects the same master (Pandora picks at random among ties).

use std::cmp::Reverse;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate<'a> {
    pub name: &'a str,
    pub master: u8,
    pub alive: bool,
    pub is_server: bool,
}

impl Candidate<'_> {
    pub fn eligible(&self) -> bool {
        self.alive && self.is_server && self.master > 0
    }
}

pub fn elect_server_master<'a>(candidates: impl IntoIterator<Item = Candidate<'a>>) -> Option<Candidate<'a>> {
    candidates
        .into_iter()
        .filter(Candidate::eligible)
        .max_by_key(|candidate| (candidate.master, Reverse(candidate.name)))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn candidate(name: &str, master: u8, alive: bool, is_server: bool) -> Candidate<'_> {
        Candidate {
            name,
            master,
            alive,
            is_server,
        }
    }

    /// `(name, master, alive, is_server)`
    type Row = (&'static str, u8, bool, bool);

    #[test]
    fn table_of_elections() {
        let cases: &[(&[Row], Option<&str>)] = &[
            (&[], None),
            (&[("a", 0, true, true)], None),
            (&[("a", 1, false, true)], None),
            (&[("a", 7, true, false)], None),
            (&[("a", 1, true, true), ("b", 2, true, true)], Some("b")),
            (&[("a", 3, true, true), ("b", 3, true, true)], Some("a")),
            (&[("b", 3, true, true), ("a", 3, true, true)], Some("a")),
            (&[("a", 7, false, true), ("b", 1, true, true)], Some("b")),
            (&[("a", 7, true, false), ("b", 1, true, true)], Some("b")),
            (&[("a", 0, true, true), ("b", 0, true, true)], None),
        ];
        for (nodes, expected) in cases {
            let elected = elect_server_master(
                nodes
                    .iter()
                    .map(|&(name, master, alive, is_server)| candidate(name, master, alive, is_server)),
            );
            assert_eq!(elected.map(|c| c.name), *expected, "nodes {nodes:?}");
        }
    }

    fn arbitrary_nodes() -> impl Strategy<Value = Vec<(String, u8, bool, bool)>> {
        prop::collection::btree_map("[a-e]{1,2}", (0u8..8, any::<bool>(), any::<bool>()), 0..12)
            .prop_map(|map| map.into_iter().map(|(name, (m, a, s))| (name, m, a, s)).collect())
    }

    proptest! {
        /// Agents that hold the same view, in any order, elect the same master.
        #[test]
        fn same_view_same_master(nodes in arbitrary_nodes(), seed in any::<u64>()) {
            let mut shuffled = nodes.clone();
            let len = shuffled.len().max(1) as u64;
            shuffled.rotate_left((seed % len) as usize);
            if seed % 2 == 0 { shuffled.reverse(); }
            let elect = |list: &Vec<(String, u8, bool, bool)>| {
                elect_server_master(list.iter().map(|(n, m, a, s)| candidate(n, *m, *a, *s)))
                    .map(|c| c.name.to_string())
            };
            prop_assert_eq!(elect(&nodes), elect(&shuffled));
        }

        /// The winner is eligible and no eligible node beats it; master 0 never wins.
        #[test]
        fn winner_is_the_best_eligible(nodes in arbitrary_nodes()) {
            let all: Vec<Candidate> = nodes.iter().map(|(n, m, a, s)| candidate(n, *m, *a, *s)).collect();
            match elect_server_master(all.iter().copied()) {
                None => prop_assert!(all.iter().all(|c| !c.eligible())),
                Some(winner) => {
                    prop_assert!(winner.eligible());
                    for other in all.iter().filter(|c| c.eligible()) {
                        prop_assert!(other.master < winner.master
                            || (other.master == winner.master && other.name >= winner.name));
                    }
                }
            }
        }
    }
}
