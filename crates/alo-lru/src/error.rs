//! The one way an insert can fail.

use std::fmt;

/// An entry that [`insert`](crate::Lru::insert) refused because its own charge exceeds the
/// cache's byte budget (for [`ShardedLru`](crate::ShardedLru), the budget of the key's shard).
///
/// Storing it would mean evicting everything and still being over budget, so the cache keeps its
/// other entries and gives the refused one back. The key's previous value, if it had one, is
/// removed as well and returned in `previous`: after `insert(k, v)` the cache never answers `k`
/// with anything but `v`.
#[derive(thiserror::Error)]
#[error(
    "entry of {charge} bytes exceeds the {max_bytes}-byte limit for one entry; raise the \
     cache's budget (or, when sharded, use fewer shards)"
)]
#[non_exhaustive]
pub struct TooLarge<K, V> {
    /// The refused key.
    pub key: K,
    /// The refused value.
    pub value: V,
    /// The value the key held before the call, now removed.
    pub previous: Option<V>,
    /// What the entry would have been charged.
    pub charge: usize,
    /// The most one entry may be charged.
    pub max_bytes: usize,
}

impl<K, V> fmt::Debug for TooLarge<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TooLarge")
            .field("charge", &self.charge)
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}
