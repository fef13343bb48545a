//! The hash that places nodes and keys on the ring.

/// The seed of the default hash, fixed forever: changing it would move every key in every
/// cluster. It is "alo" in ASCII.
pub const SEED: u64 = 0x616c6f;

/// Hashes bytes to a position on the ring.
///
/// Every node of a cluster must use the same hash, so it must not depend on the process (no
/// `RandomState`), the machine, or the platform's endianness. Any `Fn(&[u8]) -> u64` is a
/// `RingHasher`, so a test can use a toy hash.
pub trait RingHasher {
    /// The position of `bytes` on the ring.
    fn hash(&self, bytes: &[u8]) -> u64;
}

impl<F: Fn(&[u8]) -> u64> RingHasher for F {
    fn hash(&self, bytes: &[u8]) -> u64 {
        self(bytes)
    }
}

/// The default hash: 64-bit xxh3 with the seed [`SEED`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Xxh3;

impl RingHasher for Xxh3 {
    fn hash(&self, bytes: &[u8]) -> u64 {
        xxhash_rust::xxh3::xxh3_64_with_seed(bytes, SEED)
    }
}
