//! The single-threaded cache: `&mut self`, references out.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::time::Instant;

use hashbrown::DefaultHashBuilder;

use crate::shard::{Iter, Shard};
use crate::{ByteWeigher, Expiring, Stats, TooLarge, Weigh, Weigher};

/// The eviction callback: boxed so that `Lru`'s type does not name it.
type OnEvict<K, V> = Box<dyn FnMut(K, V) + Send + Sync>;

/// A least-recently-used cache bounded by the bytes its entries are charged.
///
/// Each entry is charged `W::weigh(key, value)`; with the default [`ByteWeigher`] that is
/// `key.weigh() + value.weigh()`. When an insert would take the total over `max_bytes`, the least
/// recently used entries are evicted until it fits. `max_bytes == 0` means unbounded.
///
/// Every operation is O(1) (amortised, as the table and the node vector grow).
pub struct Lru<K, V, W = ByteWeigher, S = DefaultHashBuilder> {
    shard: Shard<K, V>,
    weigher: W,
    hasher: S,
    on_evict: Option<OnEvict<K, V>>,
}

impl<K: Hash + Eq + Weigh, V: Weigh> Lru<K, V> {
    /// A cache holding at most `max_bytes` of `key.weigh() + value.weigh()`; 0 means unbounded.
    pub fn new(max_bytes: usize) -> Self {
        Self::with_weigher(max_bytes, ByteWeigher)
    }
}

impl<K: Hash + Eq, V, W: Weigher<K, V>> Lru<K, V, W> {
    /// A cache whose entries are charged what `weigher` says, e.g. a closure
    /// `|k: &K, v: &V| -> usize`.
    pub fn with_weigher(max_bytes: usize, weigher: W) -> Self {
        Self::with_weigher_and_hasher(max_bytes, weigher, DefaultHashBuilder::default())
    }
}

impl<K: Hash + Eq, V, W: Weigher<K, V>, S: BuildHasher> Lru<K, V, W, S> {
    /// A cache with both the weigher and the hasher chosen by the caller.
    pub fn with_weigher_and_hasher(max_bytes: usize, weigher: W, hasher: S) -> Self {
        Lru {
            shard: Shard::new(max_bytes),
            weigher,
            hasher,
            on_evict: None,
        }
    }

    /// Calls `f(key, value)` with each entry evicted to stay within the budget, in eviction order
    /// (least recently used first). Entries taken out by `remove`, `pop_lru` or `clear`, or
    /// replaced by `insert`, are not evictions and are not passed to it. Replaces any earlier
    /// callback.
    ///
    /// It runs once the entry is out of the cache and the cache is consistent, so a panic in it
    /// (or in a value's `Drop`) leaves `len` and `bytes` exact; the `insert` that was evicting
    /// may or may not have stored its entry.
    pub fn set_on_evict(&mut self, f: impl FnMut(K, V) + Send + Sync + 'static) {
        self.on_evict = Some(Box::new(f));
    }

    /// The value of `key`, marking the entry most recently used. Counts a hit or a miss.
    #[inline]
    pub fn get<Q>(&mut self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shard.get(self.hasher.hash_one(key), key)
    }

    /// The value of `key`, leaving the recency order and the counters as they are.
    pub fn peek<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shard.peek(self.hasher.hash_one(key), key)
    }

    /// Whether `key` is cached, leaving the recency order and the counters as they are.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shard.contains_key(self.hasher.hash_one(key), key)
    }

    /// Stores `key -> value` as the most recently used entry and returns the value it replaced.
    ///
    /// A replaced entry is charged anew. Least recently used entries are evicted until the new
    /// one fits; they go to the [`set_on_evict`](Self::set_on_evict) callback, if any.
    ///
    /// # Errors
    /// [`TooLarge`], carrying the entry back, when its charge alone exceeds `max_bytes`. The other
    /// entries stay; the key's previous value is removed and returned in the error.
    pub fn insert(&mut self, key: K, value: V) -> Result<Option<V>, TooLarge<K, V>> {
        let hash = self.hasher.hash_one(&key);
        let charge = self.weigher.weigh(&key, &value);
        match &mut self.on_evict {
            Some(f) => self
                .shard
                .insert(hash, charge, key, value, &mut |k, v| f(k, v)),
            None => self.shard.insert(hash, charge, key, value, &mut |_, _| {}),
        }
    }

    /// Removes `key` and returns its value.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.remove_entry(key).map(|(_, v)| v)
    }

    /// Removes `key` and returns the stored key and its value.
    pub fn remove_entry<Q>(&mut self, key: &Q) -> Option<(K, V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shard.remove(self.hasher.hash_one(key), key)
    }
}

/// Expiry, for caches of [`Expiring`] values. `get`, `peek`, `iter` and `insert` do not look at
/// deadlines: `get` serves an expired entry, and eviction stays least-recently-used first.
impl<K: Hash + Eq, V, W: Weigher<K, Expiring<V>>, S: BuildHasher> Lru<K, Expiring<V>, W, S> {
    /// The entry of `key` if it has not expired, marking it most recently used (a hit). An
    /// expired entry is removed (counted in [`Stats::expired`] and as a miss) and `None`
    /// returned.
    ///
    /// `now` is called only when the entry found has a deadline, so entries without one cost no
    /// clock read; pass `Instant::now`, or a closure for a test clock. O(1), like `get`.
    #[inline]
    pub fn get_unexpired<Q>(
        &mut self,
        key: &Q,
        now: impl FnOnce() -> Instant,
    ) -> Option<&Expiring<V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hasher.hash_one(key);
        self.shard.get_if(hash, key, |e| match e.deadline {
            None => true,
            Some(deadline) => now() < deadline,
        })
    }

    /// Removes every entry expired at `now`; returns how many (counted in [`Stats::expired`],
    /// not passed to the eviction callback). O(len): call it now and then to release what no
    /// `get_unexpired` comes back for, rather than on every operation.
    pub fn remove_expired(&mut self, now: Instant) -> usize {
        self.shard.remove_where(|e| e.is_expired(now))
    }
}

impl<K, V, W, S> Lru<K, V, W, S> {
    /// Removes and returns the least recently used entry.
    pub fn pop_lru(&mut self) -> Option<(K, V)> {
        self.shard.pop_lru()
    }

    /// How many entries are cached.
    pub fn len(&self) -> usize {
        self.shard.len()
    }

    /// Whether no entry is cached.
    pub fn is_empty(&self) -> bool {
        self.shard.len() == 0
    }

    /// The sum of the charges of the cached entries.
    pub fn bytes(&self) -> usize {
        self.shard.bytes()
    }

    /// The byte budget; 0 means unbounded.
    pub fn max_bytes(&self) -> usize {
        self.shard.max_bytes()
    }

    /// Removes every entry. The counters are kept; the callback is not called.
    pub fn clear(&mut self) {
        self.shard.clear();
    }

    /// The entries from most to least recently used, leaving the order as it is.
    pub fn iter(&self) -> Iter<'_, K, V> {
        self.shard.iter()
    }

    /// The counters: hits, misses, inserts, evictions, expired.
    pub fn stats(&self) -> Stats {
        self.shard.stats()
    }
}

impl<'a, K, V, W, S> IntoIterator for &'a Lru<K, V, W, S> {
    type Item = (&'a K, &'a V);
    type IntoIter = Iter<'a, K, V>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<K, V, W, S> fmt::Debug for Lru<K, V, W, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lru")
            .field("len", &self.len())
            .field("bytes", &self.bytes())
            .field("max_bytes", &self.max_bytes())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}
