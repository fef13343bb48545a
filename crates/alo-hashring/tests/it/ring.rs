use alo_hashring::{Change, HashRing, MAX_REPLICAS};

/// A toy hash that puts bytes where a test wants them: the first byte, scaled to the ring.
fn first_byte(bytes: &[u8]) -> u64 {
    u64::from(bytes.first().copied().unwrap_or(0)) << 56
}

#[test]
fn an_empty_ring_answers_none() {
    let ring: HashRing<String> = HashRing::new();
    assert!(ring.is_empty());
    assert_eq!(ring.node_for("key"), None);
    assert!(ring.nodes_for("key", 3).is_empty());
}

#[test]
fn a_key_belongs_to_the_first_point_clockwise_and_wraps() {
    // With one replica and the toy hash, node "b" sits at b'b' << 56, and so on.
    let mut ring = HashRing::with_hasher(1, first_byte);
    ring.extend(["b", "d", "f"]);
    assert_eq!(ring.node_for("a"), Some(&"b"));
    assert_eq!(
        ring.node_for("b"),
        Some(&"b"),
        "a point is owned by its node"
    );
    assert_eq!(ring.node_for("c"), Some(&"d"));
    assert_eq!(ring.node_for("e"), Some(&"f"));
    assert_eq!(
        ring.node_for("g"),
        Some(&"b"),
        "past the last point wraps to the first"
    );
    assert_eq!(ring.nodes_for("e", 5), [&"f", &"b", &"d"]);
}

#[test]
fn equal_points_go_to_the_smaller_node_bytes_whatever_the_order() {
    // Both nodes hash to the same point under the toy hash: "x1" and "x2" start with 'x'.
    let mut one = HashRing::with_hasher(1, first_byte);
    one.extend(["x2", "x1"]);
    let mut other = HashRing::with_hasher(1, first_byte);
    other.extend(["x1", "x2"]);
    assert_eq!(one.node_for("a"), Some(&"x1"));
    assert_eq!(other.node_for("a"), Some(&"x1"));
}

#[test]
fn adding_again_and_removing_twice_change_nothing() {
    let mut ring = HashRing::new();
    assert_eq!(ring.add("a".to_string()), Change::Added);
    assert_eq!(ring.add("a".to_string()), Change::Unchanged);
    assert_eq!(ring.len(), 1);
    assert!(ring.contains(b"a"));
    assert_eq!(ring.remove(b"a"), Change::Removed);
    assert_eq!(ring.remove(b"a"), Change::Unchanged);
    assert!(!ring.contains(b"a"));
    assert_eq!(ring.node_for("k"), None);
}

#[test]
fn weight_scales_the_share_of_keys() {
    let mut ring = HashRing::new();
    ring.add_weighted("heavy", 3);
    ring.add("light");
    let heavy = (0..100_000)
        .filter(|i| ring.node_for(&format!("key:{i}")) == Some(&"heavy"))
        .count();
    let share = heavy as f64 / 100_000.0;
    assert!((0.70..0.80).contains(&share), "weight 3 of 4 got {share}");
}

#[test]
fn reweighting_a_member_keeps_one_member() {
    let mut ring = HashRing::new();
    assert_eq!(ring.add_weighted("a", 2), Change::Added);
    assert_eq!(ring.add_weighted("a", 2), Change::Unchanged);
    assert_eq!(ring.add_weighted("a", 1), Change::Reweighted);
    assert_eq!(ring.add("a"), Change::Unchanged, "add is weight 1");
    assert_eq!(ring.nodes().collect::<Vec<_>>(), [&"a"]);
    assert_eq!(
        ring.add_weighted("a", 0),
        Change::Removed,
        "weight 0 removes"
    );
    assert!(ring.is_empty());
    assert_eq!(
        ring.add_weighted("b", 0),
        Change::Unchanged,
        "weight 0 adds nothing"
    );
    assert!(ring.is_empty());
}

#[test]
fn points_are_placed_by_their_own_function() {
    // groupcache's own test: the hash of a key is its number, point `i` of node "6" is the
    // number "{i}6", so with 3 replicas nodes 6, 4 and 2 sit at 2, 4, 6, 12, 14, 16, 22, 24, 26.
    // Keys are any bytes: "11" is a key here, never mistaken for point 1 of node "1".
    let number = |bytes: &[u8]| -> u64 {
        std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    };
    let point = move |node: &[u8], i: u32| {
        let mut input = i.to_string().into_bytes();
        input.extend_from_slice(node);
        number(&input)
    };
    let mut ring = HashRing::with_hashers(3, number, point);
    ring.extend(["6", "4", "2"]);
    for (key, owner) in [("2", "2"), ("11", "2"), ("23", "4"), ("27", "2")] {
        assert_eq!(ring.node_for(key), Some(&owner), "owner of {key}");
    }
    ring.add("8");
    for (key, owner) in [("2", "2"), ("11", "2"), ("23", "4"), ("27", "8")] {
        assert_eq!(ring.node_for(key), Some(&owner), "owner of {key}");
    }
}

#[test]
fn nodes_lists_members_in_the_order_added() {
    let mut ring = HashRing::new();
    ring.extend(["c", "a", "b"]);
    ring.remove(b"a");
    ring.add("d");
    assert_eq!(ring.nodes().copied().collect::<Vec<_>>(), ["c", "b", "d"]);
}

#[test]
fn replicas_are_clamped() {
    assert_eq!(HashRing::<&str>::with_replicas(0).replicas(), 1);
    assert_eq!(
        HashRing::<&str>::with_replicas(usize::MAX).replicas(),
        MAX_REPLICAS
    );
}

#[test]
fn the_preference_of_a_large_ring_names_every_node_once() {
    // More nodes than one word of the walk's bitset holds.
    let ring: HashRing<String> = (0..130).map(|i| format!("node-{i}")).collect();
    let mut preference = ring.preference("key");
    assert_eq!(preference.len(), 130);
    assert_eq!(preference.next(), ring.node_for("key"));
    let mut rest: Vec<&String> = preference.by_ref().collect();
    assert_eq!(rest.len(), 129);
    assert_eq!(preference.next(), None);
    rest.push(ring.node_for("key").expect("members"));
    rest.sort();
    rest.dedup();
    assert_eq!(rest.len(), 130);
    assert_eq!(HashRing::<String>::new().preference("key").next(), None);
}
