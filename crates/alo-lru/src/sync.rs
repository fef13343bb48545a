//! The thread-safe cache: `&self`, values cloned out, one lock per shard.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use hashbrown::DefaultHashBuilder;

use crate::shard::Shard;
use crate::{ByteWeigher, Expiring, Stats, TooLarge, Weigh, Weigher};

/// Most shards a cache is split into.
const MAX_SHARDS: usize = 1 << 16;

/// A thread-safe least-recently-used cache bounded by bytes: keys are spread by hash over
/// independent shards, each an LRU behind its own mutex with its own slice of the budget.
///
/// # The budget
/// `max_bytes` is split evenly: each of the `n` shards holds at most `max_bytes / n` bytes (the
/// first `max_bytes % n` shards one byte more), so the total never exceeds `max_bytes`. Recency is
/// per shard: an insert evicts the least recently used entry *of its shard*, which with a good
/// hash is close to the global order. One entry may be charged at most its shard's budget,
/// about `max_bytes / n`: choose fewer shards ([`with_shards`](Self::with_shards)) when single
/// values are large against the budget. A bounded cache never has more shards than bytes.
///
/// # Cost
/// `get` hashes the key once (outside any lock), locks one shard, probes its table, relinks
/// one node and clones the value out: for `bytes::Bytes` a reference-count increment. Threads
/// contend only when they touch the same shard at the same moment. The weigher also runs outside
/// the lock. Evicted values are dropped while the shard's lock is held.
///
/// A panic in the user's `Hash`, `Eq` or `Clone` while a lock is held does not poison the cache:
/// the shard is consistent at every point where such code runs, and later calls go on using it.
pub struct ShardedLru<K, V, W = ByteWeigher, S = DefaultHashBuilder> {
    shards: Box<[Mutex<Shard<K, V>>]>,
    weigher: W,
    hasher: S,
    max_bytes: usize,
}

impl<K: Hash + Eq + Weigh, V: Weigh> ShardedLru<K, V> {
    /// A cache of at most `max_bytes` (0: unbounded), in the default number of shards: four
    /// per available core, rounded up to a power of two, at most 64.
    pub fn new(max_bytes: usize) -> Self {
        Self::with_shards(max_bytes, default_shards())
    }

    /// A cache of at most `max_bytes` (0: unbounded) in `shards` shards. `shards` is clamped to
    /// at least 1, at most 65,536, and, when bounded, at most `max_bytes`.
    pub fn with_shards(max_bytes: usize, shards: usize) -> Self {
        Self::with_weigher_and_hasher(
            max_bytes,
            shards,
            ByteWeigher,
            DefaultHashBuilder::default(),
        )
    }
}

impl<K: Hash + Eq, V, W: Weigher<K, V>> ShardedLru<K, V, W> {
    /// A cache whose entries are charged what `weigher` says, e.g. a closure
    /// `|k: &K, v: &V| -> usize`; `shards` is clamped as in [`with_shards`](ShardedLru::with_shards).
    pub fn with_weigher(max_bytes: usize, shards: usize, weigher: W) -> Self {
        Self::with_weigher_and_hasher(max_bytes, shards, weigher, DefaultHashBuilder::default())
    }
}

impl<K: Hash + Eq, V, W: Weigher<K, V>, S: BuildHasher> ShardedLru<K, V, W, S> {
    /// A cache with the shard count, weigher and hasher chosen by the caller; `shards` is
    /// clamped as in [`with_shards`](ShardedLru::with_shards).
    pub fn with_weigher_and_hasher(max_bytes: usize, shards: usize, weigher: W, hasher: S) -> Self {
        let mut n = shards.clamp(1, MAX_SHARDS);
        if max_bytes != 0 {
            n = n.min(max_bytes);
        }
        let (share, extra) = (max_bytes / n, max_bytes % n);
        let shards = (0..n)
            .map(|i| Mutex::new(Shard::new(share + usize::from(i < extra))))
            .collect();
        ShardedLru {
            shards,
            weigher,
            hasher,
            max_bytes,
        }
    }

    /// A clone of the value of `key`, marking the entry most recently used in its shard.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        V: Clone,
    {
        let hash = self.hasher.hash_one(key);
        self.shard(hash).get(hash, key).cloned()
    }

    /// A clone of the value of `key`, leaving the recency order and the counters as they are.
    pub fn peek<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        V: Clone,
    {
        let hash = self.hasher.hash_one(key);
        self.shard(hash).peek(hash, key).cloned()
    }

    /// Whether `key` is cached, leaving the recency order and the counters as they are.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hasher.hash_one(key);
        self.shard(hash).contains_key(hash, key)
    }

    /// Stores `key -> value` as the most recently used entry of its shard and returns the value it
    /// replaced. Least recently used entries of that shard are evicted until it fits.
    ///
    /// # Errors
    /// [`TooLarge`], carrying the entry back, when its charge alone exceeds its shard's budget.
    /// The key's previous value is removed and returned in the error.
    pub fn insert(&self, key: K, value: V) -> Result<Option<V>, TooLarge<K, V>> {
        let hash = self.hasher.hash_one(&key);
        let charge = self.weigher.weigh(&key, &value);
        self.shard(hash)
            .insert(hash, charge, key, value, &mut |_, _| {})
    }

    /// Removes `key` and returns its value.
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hasher.hash_one(key);
        self.shard(hash).remove(hash, key).map(|(_, v)| v)
    }

    /// The shard that holds keys of this hash, locked.
    fn shard(&self, hash: u64) -> MutexGuard<'_, Shard<K, V>> {
        // Bits 24..56 pick the shard: hashbrown takes a bucket from the low bits and a tag from the
        // top seven, and reusing either would leave each shard's table fewer bits to tell keys
        // apart. Multiply-shift maps them onto any shard count without a division.
        let bits = u64::from((hash >> 24) as u32);
        let i = ((bits * self.shards.len() as u64) >> 32) as usize;
        lock(&self.shards[i])
    }
}

/// Expiry, for caches of [`Expiring`] values. `get`, `peek` and `insert` do not look at
/// deadlines: `get` serves an expired entry, and eviction stays least-recently-used first.
impl<K, V, W, S> ShardedLru<K, Expiring<V>, W, S>
where
    K: Hash + Eq,
    W: Weigher<K, Expiring<V>>,
    S: BuildHasher,
{
    /// A clone of the entry of `key` if it has not expired, marking it most recently used in its
    /// shard (a hit). An expired entry is removed (counted in [`Stats::expired`] and as a miss)
    /// and `None` returned.
    ///
    /// `now` is called only when the entry found has a deadline, so entries without one cost no
    /// clock read; pass `Instant::now`, or a closure for a test clock. It runs while the shard is
    /// locked, since only the entry says whether it is needed.
    pub fn get_unexpired<Q>(&self, key: &Q, now: impl FnOnce() -> Instant) -> Option<Expiring<V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        V: Clone,
    {
        let hash = self.hasher.hash_one(key);
        self.shard(hash)
            .get_if(hash, key, |e| match e.deadline {
                None => true,
                Some(deadline) => now() < deadline,
            })
            .cloned()
    }

    /// Removes every entry expired at `now`, locking one shard at a time; returns how many
    /// (counted in [`Stats::expired`]). O(len): each shard is locked while it is scanned, so
    /// calls on that shard wait for one shard's scan, not the whole cache's.
    pub fn remove_expired(&self, now: Instant) -> usize {
        self.shards
            .iter()
            .map(|s| lock(s).remove_where(|e| e.is_expired(now)))
            .sum()
    }
}

impl<K, V, W, S> ShardedLru<K, V, W, S> {
    /// How many entries are cached, summed over the shards one at a time (not a snapshot of one
    /// instant while other threads write).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// Whether no entry is cached (as of the moment each shard was looked at).
    pub fn is_empty(&self) -> bool {
        self.shards.iter().all(|s| lock(s).len() == 0)
    }

    /// The sum of the charges of the cached entries, summed over the shards one at a time. It
    /// never exceeds `max_bytes`, since no shard ever exceeds its share.
    pub fn bytes(&self) -> usize {
        self.shards.iter().map(|s| lock(s).bytes()).sum()
    }

    /// The byte budget over all shards; 0 means unbounded.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// How many shards the budget is split across.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// A copy of every entry, most recently used first: each shard's entries in their order,
    /// the shards taken in turns (recency is per shard, so across shards the order is close to,
    /// not exactly, the global one). Each shard is locked once, while its entries are cloned
    /// (for `bytes::Bytes`, reference counts); nothing is reordered or counted as a hit.
    pub fn snapshot(&self) -> Vec<(K, V)>
    where
        K: Clone,
        V: Clone,
    {
        let per_shard: Vec<Vec<(K, V)>> = self
            .shards
            .iter()
            .map(|s| {
                let shard = lock(s);
                shard.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
            })
            .collect();
        let total = per_shard.iter().map(Vec::len).sum();
        let mut turns: Vec<_> = per_shard.into_iter().map(Vec::into_iter).collect();
        let mut all = Vec::with_capacity(total);
        while all.len() < total {
            for shard in &mut turns {
                all.extend(shard.next());
            }
        }
        all
    }

    /// Removes every entry, one shard at a time. The counters are kept.
    pub fn clear(&self) {
        for s in self.shards.iter() {
            lock(s).clear();
        }
    }

    /// The counters of all shards added up.
    pub fn stats(&self) -> Stats {
        let mut total = Stats::default();
        for s in self.shards.iter() {
            total += lock(s).stats();
        }
        total
    }
}

impl<K, V, W, S> fmt::Debug for ShardedLru<K, V, W, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardedLru")
            .field("shards", &self.shards())
            .field("len", &self.len())
            .field("bytes", &self.bytes())
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

/// Locks a shard, going on past poisoning: a shard is consistent at every point where user code
/// (`Eq`, `Clone`, `Drop`) can panic while it is locked.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn default_shards() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores * 4).next_power_of_two().min(64)
}
