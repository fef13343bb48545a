//! The properties that make the ring consistent.

use std::collections::BTreeMap;

use alo_hashring::{Change, HashRing};
use proptest::prelude::*;
use proptest::sample::subsequence;

/// Node names, a pool to draw member sets from.
fn pool() -> Vec<String> {
    (0..24).map(|i| format!("node-{i}")).collect()
}

fn members() -> impl Strategy<Value = Vec<String>> {
    subsequence(pool(), 1..12).prop_shuffle()
}

fn keys() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..16), 1..64)
}

/// A small replica count keeps rings cheap to build and leaves gaps that make collisions and
/// wrap-around likely.
fn ring(nodes: &[String]) -> HashRing<String> {
    let mut ring = HashRing::with_replicas(8);
    ring.extend(nodes.iter().cloned());
    ring
}

fn owners(ring: &HashRing<String>, keys: &[Vec<u8>]) -> Vec<String> {
    keys.iter()
        .map(|k| ring.node_for(k).expect("ring has nodes").clone())
        .collect()
}

proptest! {
    #[test]
    fn the_mapping_does_not_depend_on_the_order_of_adding(
        nodes in members(), keys in keys(), seed in any::<u64>(),
    ) {
        let mut shuffled = nodes.clone();
        // A cheap deterministic shuffle driven by the seed.
        shuffled.sort_by_key(|n| n.bytes().fold(seed, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)));
        let mut one_by_one = HashRing::with_replicas(8);
        for n in &shuffled {
            one_by_one.add(n.clone());
        }
        prop_assert_eq!(owners(&ring(&nodes), &keys), owners(&one_by_one, &keys));
    }

    #[test]
    fn a_joining_node_takes_keys_only_for_itself(
        nodes in members(), keys in keys(), new in "[a-z]{1,8}",
    ) {
        prop_assume!(!nodes.contains(&new));
        let mut ring = ring(&nodes);
        let before = owners(&ring, &keys);
        ring.add(new.clone());
        for (b, a) in before.iter().zip(owners(&ring, &keys)) {
            prop_assert!(*b == a || a == new, "{} moved to {}, not to the new node", b, a);
        }
    }

    #[test]
    fn a_leaving_node_gives_up_only_its_own_keys(nodes in members(), keys in keys(), pick in any::<usize>()) {
        prop_assume!(nodes.len() > 1);
        let gone = nodes[pick % nodes.len()].clone();
        let mut ring = ring(&nodes);
        let before = owners(&ring, &keys);
        prop_assert_eq!(ring.remove(gone.as_bytes()), Change::Removed);
        for (b, a) in before.iter().zip(owners(&ring, &keys)) {
            prop_assert!(*b == a || *b == gone, "{} lost a key to {}", b, a);
            prop_assert_ne!(&a, &gone);
        }
    }

    #[test]
    fn nodes_for_gives_distinct_nodes_owner_first(nodes in members(), keys in keys(), n in 0usize..16) {
        let ring = ring(&nodes);
        for key in &keys {
            let found = ring.nodes_for(key, n);
            prop_assert_eq!(found.len(), n.min(ring.len()));
            let mut distinct = found.clone();
            distinct.sort();
            distinct.dedup();
            prop_assert_eq!(distinct.len(), found.len());
            if n > 0 {
                prop_assert_eq!(Some(found[0]), ring.node_for(key));
            }
        }
    }

    #[test]
    fn each_of_the_preference_is_the_owner_once_those_before_it_are_gone(
        nodes in members(), keys in keys(),
    ) {
        // What failover relies on: the next of the list is where the key goes when every node
        // before it has left, on every node that computes it.
        let ring = ring(&nodes);
        for key in keys.iter().take(8) {
            let preference: Vec<&String> = ring.preference(key).collect();
            prop_assert_eq!(preference.len(), ring.len());
            let mut without = ring.clone();
            for node in preference {
                prop_assert_eq!(without.node_for(key), Some(node));
                prop_assert_eq!(without.remove(node.as_bytes()), Change::Removed);
            }
        }
    }

    #[test]
    fn lookups_agree_with_a_linear_scan(nodes in members(), keys in keys(), replicas in 1usize..40) {
        // The radix index must find exactly the first point at or after the key's hash.
        let mut ring = HashRing::with_hasher(replicas, toy);
        ring.extend(nodes.iter().cloned());
        let mut points: Vec<(u64, &String)> = Vec::new();
        for n in &nodes {
            for i in 0..replicas as u32 {
                let mut input = n.as_bytes().to_vec();
                input.extend_from_slice(&i.to_le_bytes());
                points.push((toy(&input), n));
            }
        }
        points.sort();
        for key in &keys {
            let h = toy(key);
            let expected = points.iter().find(|p| p.0 >= h).unwrap_or(&points[0]).1;
            prop_assert_eq!(ring.node_for(key), Some(expected));
        }
    }

    #[test]
    fn lookups_with_split_hashers_agree_with_a_linear_scan(
        nodes in members(), keys in keys(), replicas in 1usize..40,
    ) {
        // Points placed groupcache's way, "{i}{node}", by a function apart from the keys'.
        let point = |node: &[u8], i: u32| {
            let mut input = i.to_string().into_bytes();
            input.extend_from_slice(node);
            toy(&input)
        };
        let mut ring = HashRing::with_hashers(replicas, toy, point);
        ring.extend(nodes.iter().cloned());
        let mut points: Vec<(u64, &String)> = Vec::new();
        for n in &nodes {
            for i in 0..replicas {
                points.push((toy(format!("{i}{n}").as_bytes()), n));
            }
        }
        points.sort();
        for key in &keys {
            let h = toy(key);
            let expected = points.iter().find(|p| p.0 >= h).unwrap_or(&points[0]).1;
            prop_assert_eq!(ring.node_for(key), Some(expected));
        }
    }

    #[test]
    fn changes_are_reported_as_a_model_of_the_membership_sees_them(
        ops in prop::collection::vec((0usize..6, prop::option::of(0u8..4)), 1..40),
    ) {
        // `Some(w)`: add_weighted(node, w); `None`: remove(node).
        let mut ring = HashRing::with_replicas(4);
        let mut model: BTreeMap<String, u8> = BTreeMap::new();
        for (n, op) in ops {
            let node = format!("node-{n}");
            let before = model.get(&node).copied();
            let (change, expected) = match op {
                Some(w) => {
                    let expected = match (before, w) {
                        (None, 0) => Change::Unchanged,
                        (None, _) => Change::Added,
                        (Some(_), 0) => Change::Removed,
                        (Some(old), w) if old == w => Change::Unchanged,
                        (Some(_), _) => Change::Reweighted,
                    };
                    if w == 0 {
                        model.remove(&node);
                    } else {
                        model.insert(node.clone(), w);
                    }
                    (ring.add_weighted(node.clone(), w), expected)
                }
                None => {
                    let expected = if model.remove(&node).is_some() {
                        Change::Removed
                    } else {
                        Change::Unchanged
                    };
                    (ring.remove(node.as_bytes()), expected)
                }
            };
            prop_assert_eq!(change, expected, "{:?} of {}", op, node);
            let mut members: Vec<&String> = ring.nodes().collect();
            members.sort();
            prop_assert_eq!(members, model.keys().collect::<Vec<_>>());
        }
    }

    #[test]
    fn an_empty_ring_returns_none(key in prop::collection::vec(any::<u8>(), 0..16)) {
        let ring: HashRing<String> = HashRing::new();
        prop_assert_eq!(ring.node_for(&key), None);
        prop_assert!(ring.nodes_for(&key, 3).is_empty());
    }
}

/// A weak hash (FNV-1a folded to few distinct values), so points collide and cluster.
fn toy(bytes: &[u8]) -> u64 {
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    (h % 97) << 57 | (h % 5)
}
