//! Pinned owners. These values were computed by independent implementations: Python's `xxhash`
//! package, from the placement rule in the crate docs; and, for groupcache's placement, a Python
//! model of golang/groupcache's `consistenthash` with its default hash (`zlib.crc32`, the same
//! CRC-32 as Go's `crc32.ChecksumIEEE`). If this test fails, the change moves keys between nodes
//! and would split a running cluster whose nodes run different versions.

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

/// CRC-32 (IEEE), bit by bit: groupcache's default hash.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xedb8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

/// groupcache's point `i` of `node`: the hash of `i` in decimal followed by the node's name.
fn groupcache_point(node: &[u8], i: u32) -> u32 {
    let mut input = i.to_string().into_bytes();
    input.extend_from_slice(node);
    crc32(&input)
}

#[test]
fn groupcache_placement_is_expressed_for_any_key() {
    assert_eq!(crc32(b"hello"), 907_060_870, "the CRC is IEEE's");
    let nodes = [
        "http://10.0.0.1:8080",
        "http://10.0.0.2:8080",
        "http://10.0.0.3:8080",
    ];
    // Owners with groupcache's HTTPPool default of 50 replicas: three nodes, then a fourth.
    let three = [1, 2, 2, 1, 1, 2, 3, 1, 1, 3, 1, 3, 1, 2, 2];
    let four = [1, 2, 2, 1, 1, 4, 3, 1, 1, 4, 4, 4, 1, 2, 2];

    // As groupcache computes it, 32-bit positions; and shifted into the top bits, which keeps
    // the order and so the owners.
    let mut narrow = HashRing::with_hashers(
        50,
        |key: &[u8]| u64::from(crc32(key)),
        |node: &[u8], i| u64::from(groupcache_point(node, i)),
    );
    let mut wide = HashRing::with_hashers(
        50,
        |key: &[u8]| u64::from(crc32(key)) << 32,
        |node: &[u8], i| u64::from(groupcache_point(node, i)) << 32,
    );
    narrow.extend(nodes);
    wide.extend(nodes);
    for ((key, _), owner) in OWNERS.iter().zip(three) {
        assert_eq!(
            octet(narrow.node_for(key).expect("nodes")),
            owner,
            "owner of {key:?}"
        );
        assert_eq!(
            octet(wide.node_for(key).expect("nodes")),
            owner,
            "owner of {key:?}"
        );
    }
    narrow.add("http://10.0.0.4:8080");
    wide.add("http://10.0.0.4:8080");
    for ((key, _), owner) in OWNERS.iter().zip(four) {
        assert_eq!(
            octet(narrow.node_for(key).expect("nodes")),
            owner,
            "owner of {key:?}"
        );
        assert_eq!(
            octet(wide.node_for(key).expect("nodes")),
            owner,
            "owner of {key:?}"
        );
    }
}
