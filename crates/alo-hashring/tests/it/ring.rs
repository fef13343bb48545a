use alo_hashring::{HashRing, MAX_REPLICAS};

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
fn adding_again_is_not_new_and_removing_twice_is_false() {
    let mut ring = HashRing::new();
    assert!(ring.add("a".to_string()));
    assert!(!ring.add("a".to_string()));
    assert_eq!(ring.len(), 1);
    assert!(ring.contains(b"a"));
    assert!(ring.remove(b"a"));
    assert!(!ring.remove(b"a"));
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
    ring.add_weighted("a", 2);
    assert!(!ring.add_weighted("a", 1));
    assert_eq!(ring.nodes().collect::<Vec<_>>(), [&"a"]);
    assert!(!ring.add_weighted("a", 0), "weight 0 removes");
    assert!(ring.is_empty());
    assert!(!ring.add_weighted("b", 0), "weight 0 adds nothing");
    assert!(ring.is_empty());
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
