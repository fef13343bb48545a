//! Pinned owners. These values were computed by an independent implementation (Python's
//! `xxhash` package, from the placement rule in the crate docs). If this test fails, the change
//! moves keys between nodes and would split a running cluster whose nodes run different versions.

use alo_hashring::{DEFAULT_REPLICAS, HashRing, RingHasher, SEED, Xxh3};

const NODES: [&str; 5] = [
    "http://10.0.0.1:8001",
    "http://10.0.0.2:8001",
    "http://10.0.0.3:8001",
    "http://10.0.0.4:8001",
    "http://10.0.0.5:8001",
];

/// Each key and the last octet of its owner's address.
const OWNERS: [(&[u8], u8); 15] = [
    (b"", 4),
    (b"a", 4),
    (b"user:1", 5),
    (b"user:2", 3),
    (b"user:42", 2),
    (b"photo/2024/cat.jpg", 4),
    (b"k\0ey", 2),
    ("ключ".as_bytes(), 1),
    (b"0", 1),
    (b"9999", 3),
    (b"alo", 5),
    (b"groupcache", 3),
    (b"the quick brown fox", 1),
    (&[b'x'; 300], 3),
    (b"\xff\xfe", 5),
];

fn octet(node: &str) -> u8 {
    node[node.len() - 6..node.len() - 5]
        .parse()
        .expect("one digit")
}

#[test]
fn the_hash_is_xxh3_with_the_fixed_seed() {
    assert_eq!(SEED, 0x616c6f);
    assert_eq!(Xxh3.hash(b""), 0x3a1c_55b4_222b_88d3);
    assert_eq!(Xxh3.hash(b"user:1"), 0xe2b2_7fca_647f_e556);
    // The first and the 160th point of a node: its bytes, then the point's number in 4
    // little-endian bytes.
    assert_eq!(
        Xxh3.hash(b"http://10.0.0.1:8001\0\0\0\0"),
        0xb581_edca_47af_5a3d
    );
    assert_eq!(
        Xxh3.hash(b"http://10.0.0.1:8001\x9f\0\0\0"),
        0x08c0_d0d1_d676_7927
    );
}

#[test]
fn owners_are_pinned() {
    assert_eq!(DEFAULT_REPLICAS, 500, "the default is part of the mapping");
    let ring: HashRing<&str> = NODES.into_iter().collect();
    for (key, owner) in OWNERS {
        let node = ring.node_for(key).expect("ring has nodes");
        assert_eq!(octet(node), owner, "owner of {key:?}");
    }
}

#[test]
fn weighted_owners_are_pinned() {
    let mut ring = HashRing::new();
    for node in NODES {
        ring.add_weighted(node, if node.ends_with(".3:8001") { 3 } else { 1 });
    }
    let moved_to_3 = [&b"\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87"[..], b"alo"];
    for (key, owner) in OWNERS {
        let expected = if moved_to_3.contains(&key) { 3 } else { owner };
        let node = ring.node_for(key).expect("ring has nodes");
        assert_eq!(octet(node), expected, "owner of {key:?}");
    }
}
