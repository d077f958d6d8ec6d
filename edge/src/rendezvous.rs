//! Rendezvous (highest-random-weight) hashing: for each object, every upstream gets a score
//! from the object's key and the upstream's name, and the upstreams are tried from the
//! highest score down. Every edge computes the same order from the same list, so each
//! object has one owner in a shield pool (one upstream fetch however many edges ask), and
//! when the owner fails the next owner is the same for every edge. Removing an upstream
//! moves only the objects it owned.

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// The indices of `nodes` in the order to try them for `key`.
pub fn order(key: &str, nodes: &[&str]) -> Vec<usize> {
    let mut scored: Vec<(u64, usize)> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (score(key, n), i))
        .collect();
    // Highest score first; ties (astronomically rare) by position, so the order is total.
    scored.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.into_iter().map(|(_, i)| i).collect()
}

fn score(key: &str, node: &str) -> u64 {
    xxh3_64_with_seed(
        key.as_bytes(),
        xxh3_64_with_seed(node.as_bytes(), 0x6564_6765),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NODES: [&str; 4] = [
        "shield-a:8081",
        "shield-b:8081",
        "shield-c:8081",
        "shield-d:8081",
    ];

    #[test]
    fn owners_are_spread_evenly() {
        let mut owned = [0usize; 4];
        for i in 0..40_000 {
            owned[order(&format!("/live/x/720p/{i}.ts"), &NODES)[0]] += 1;
        }
        for n in owned {
            assert!((9_000..11_000).contains(&n), "{owned:?}");
        }
    }

    proptest! {
        /// Same inputs, same order; every node appears once.
        #[test]
        fn a_permutation_that_every_edge_agrees_on(key in ".{0,80}") {
            let a = order(&key, &NODES);
            prop_assert_eq!(&a, &order(&key, &NODES));
            let mut sorted = a.clone();
            sorted.sort_unstable();
            prop_assert_eq!(sorted, vec![0, 1, 2, 3]);
        }

        /// Removing a node changes nothing for the objects it did not own, and its objects
        /// go to their second choice.
        #[test]
        fn removing_a_node_moves_only_its_objects(key in ".{0,80}", gone in 0usize..4) {
            let full = order(&key, &NODES);
            let rest: Vec<&str> = NODES.iter().enumerate().filter(|(i, _)| *i != gone).map(|(_, n)| *n).collect();
            let fewer = order(&key, &rest);
            let name = |o: &[usize], nodes: &[&str]| nodes[o[0]].to_string();
            let was = NODES[full[0]];
            if full[0] == gone {
                prop_assert_eq!(name(&fewer, &rest), NODES[full[1]].to_string());
            } else {
                prop_assert_eq!(name(&fewer, &rest), was.to_string());
            }
        }
    }
}
