//! The hash that places nodes and keys on the ring.

use std::fmt;

/// The seed of the default hash, fixed forever: changing it would move every key in every
/// cluster. It is "alo" in ASCII.
pub const SEED: u64 = 0x616c6f;

/// Hashes keys, and places each node's points, on the ring.
///
/// Every node of a cluster must use the same hash, so it must not depend on the process (no
/// `RandomState`), the machine, or the platform's endianness. Any `Fn(&[u8]) -> u64` is a
/// `RingHasher` that places point `i` of a node at the hash of the node's bytes followed by `i`,
/// so a test can use a toy hash. To place points by a function of their own (to match another
/// implementation's placement, say), use [`SplitHasher`] or
/// [`HashRing::with_hashers`](crate::HashRing::with_hashers).
///
/// A lookup is O(1) expected when positions spread over the whole `u64` range: the ring's index
/// buckets points by their top bits. A hash of fewer bits (a 32-bit CRC) still gives the same
/// owners, but every lookup becomes a binary search, O(log P); shifting such a hash into the top
/// bits (`u64::from(crc) << 32`) keeps the order, so the placement, and restores O(1).
pub trait RingHasher {
    /// The position of `bytes`, a key, on the ring.
    fn hash(&self, bytes: &[u8]) -> u64;

    /// The position of point `i` of `node` (`i` in `0..replicas × weight`). By default
    /// `hash(node ‖ i as 4 little-endian bytes)`.
    fn hash_point(&self, node: &[u8], i: u32) -> u64 {
        suffixed(node, i, |bytes| self.hash(bytes))
    }
}

impl<F: Fn(&[u8]) -> u64> RingHasher for F {
    fn hash(&self, bytes: &[u8]) -> u64 {
        self(bytes)
    }
}

/// The default hash: 64-bit xxh3 with the seed [`SEED`], for keys and, over the node's bytes
/// followed by the point's number, for points.
#[derive(Clone, Copy, Debug, Default)]
pub struct Xxh3;

impl RingHasher for Xxh3 {
    fn hash(&self, bytes: &[u8]) -> u64 {
        xxhash_rust::xxh3::xxh3_64_with_seed(bytes, SEED)
    }
}

/// A [`RingHasher`] with one function for keys and another for points: `key(bytes)` places a
/// key and `point(node, i)` places point `i` of `node`.
///
/// The two are needed apart to reproduce a placement whose points are not the key hash of the
/// node's bytes followed by 4 bytes, such as groupcache's `hash(strconv.Itoa(i) + node)`: one
/// function cannot tell a key from a point's input when a key may hold any bytes.
#[derive(Clone, Copy)]
pub struct SplitHasher<K, P> {
    key: K,
    point: P,
}

impl<K, P> SplitHasher<K, P>
where
    K: Fn(&[u8]) -> u64,
    P: Fn(&[u8], u32) -> u64,
{
    /// Keys placed by `key`, points by `point(node bytes, i)`.
    pub fn new(key: K, point: P) -> Self {
        SplitHasher { key, point }
    }
}

impl<K, P> RingHasher for SplitHasher<K, P>
where
    K: Fn(&[u8]) -> u64,
    P: Fn(&[u8], u32) -> u64,
{
    fn hash(&self, bytes: &[u8]) -> u64 {
        (self.key)(bytes)
    }

    fn hash_point(&self, node: &[u8], i: u32) -> u64 {
        (self.point)(node, i)
    }
}

impl<K, P> fmt::Debug for SplitHasher<K, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SplitHasher").finish_non_exhaustive()
    }
}

/// Calls `f` with `node ‖ i as 4 little-endian bytes`, built on the stack when it is short (as
/// node URLs are), so placing a node's hundreds of points allocates nothing.
fn suffixed(node: &[u8], i: u32, f: impl FnOnce(&[u8]) -> u64) -> u64 {
    const STACK: usize = 128;
    let len = node.len() + 4;
    if len <= STACK {
        let mut buf = [0u8; STACK];
        buf[..node.len()].copy_from_slice(node);
        buf[node.len()..len].copy_from_slice(&i.to_le_bytes());
        f(&buf[..len])
    } else {
        let mut buf = Vec::with_capacity(len);
        buf.extend_from_slice(node);
        buf.extend_from_slice(&i.to_le_bytes());
        f(&buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_point_is_the_hash_of_the_node_and_its_number_short_or_long() {
        for len in [0, 1, 123, 124, 125, 300] {
            let node = vec![b'n'; len];
            let mut input = node.clone();
            input.extend_from_slice(&0x0102_0304u32.to_le_bytes());
            assert_eq!(
                Xxh3.hash_point(&node, 0x0102_0304),
                Xxh3.hash(&input),
                "{len} bytes"
            );
        }
    }
}
