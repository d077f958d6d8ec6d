//! Rendezvous (highest-random-weight) hashing: for each object, every upstream gets a score
//! from the object's key and the upstream's name, and the upstreams are tried from the
//! highest score down. Every edge computes the same order from the same list, so each
//! object has one owner in a shield pool (one upstream fetch however many edges ask), and
//! when the owner fails the next owner is the same for every edge. Removing an upstream
//! moves only the objects it owned.
//!
//! A node coming back (or newly listed) with an empty cache is *ramped in*: it takes each
//! of its objects only once that object's own fraction, a second hash of key and node,
//! falls below the node's weight, which grows from 0 to 1. Every edge with the same weight
//! makes the same choice, and the objects return a slice at a time instead of all at once
//! (every one a miss at the returning node, so a burst at the origin).

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

/// Moves to the front of `order` (from [`order`]) the first node that takes `key` at its
/// ramp-in weight (`weight(i)` in [0, 1] for `nodes[i]`, 1 when not ramping); the others
/// keep their order. With every weight 1 the order is unchanged.
pub fn ramp(key: &str, nodes: &[&str], order: &mut [usize], weight: impl Fn(usize) -> f64) {
    let takes = |i: usize| {
        let w = weight(i);
        w >= 1.0 || fraction(key, nodes[i]) < w
    };
    if let Some(p) = order.iter().position(|&i| takes(i))
        && p > 0
    {
        order[..=p].rotate_right(1);
    }
}

/// A key's place in [0, 1) for one node, independent of its score.
fn fraction(key: &str, node: &str) -> f64 {
    let h = xxh3_64_with_seed(
        key.as_bytes(),
        xxh3_64_with_seed(node.as_bytes(), 0x7261_6d70),
    );
    (h >> 11) as f64 / (1u64 << 53) as f64
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

    #[test]
    fn a_ramping_owner_takes_its_share_of_its_objects() {
        for (w, lo, hi) in [
            (0.0, 0, 0),
            (0.25, 2_250, 2_750),
            (0.75, 7_250, 7_750),
            (1.0, 10_000, 10_000),
        ] {
            let (mut owned, mut taken) = (0, 0);
            for i in 0..40_000 {
                let key = format!("/live/x/720p/{i}.ts");
                let plain = order(&key, &NODES);
                let mut o = plain.clone();
                ramp(&key, &NODES, &mut o, |n| if n == 2 { w } else { 1.0 });
                if plain[0] == 2 {
                    owned += 1;
                    if o[0] == 2 {
                        taken += 1;
                    } else {
                        // Its objects go to their next owner, the rest of the order kept.
                        assert_eq!(o[0], plain[1]);
                        assert_eq!(o[1], 2);
                    }
                } else {
                    assert_eq!(o, plain, "objects of other nodes never move");
                }
            }
            let share = taken * 10_000 / owned;
            assert!((lo..=hi).contains(&share), "weight {w}: {taken} of {owned}");
        }
    }

    proptest! {
        /// Ramping is deterministic, keeps a permutation, and a larger weight never gives
        /// back an object a smaller one took.
        #[test]
        fn ramping_is_monotonic(key in ".{0,80}", w1 in 0.0f64..1.0, w2 in 0.0f64..1.0) {
            let (lo, hi) = if w1 <= w2 { (w1, w2) } else { (w2, w1) };
            let mut a = order(&key, &NODES);
            let mut b = a.clone();
            ramp(&key, &NODES, &mut a, |n| if n == 0 { lo } else { 1.0 });
            ramp(&key, &NODES, &mut b, |n| if n == 0 { hi } else { 1.0 });
            if a[0] == 0 {
                prop_assert_eq!(b[0], 0);
            }
            let mut sorted = a.clone();
            sorted.sort_unstable();
            prop_assert_eq!(sorted, vec![0, 1, 2, 3]);
        }

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
