//! A group's counters: atomics while it runs, a `Serialize` snapshot to read.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// The live counters; each only grows. Relaxed atomics: they count, they do not synchronise.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Gets refused for an empty key. Gets and cache hits are not counted here: the caches
    /// count them under their shard locks anyway, so the hit path touches no shared atomic.
    pub(crate) empty_keys: AtomicU64,
    pub(crate) peer_loads: AtomicU64,
    pub(crate) peer_errors: AtomicU64,
    pub(crate) loads: AtomicU64,
    pub(crate) loads_deduped: AtomicU64,
    pub(crate) local_loads: AtomicU64,
    pub(crate) local_load_errs: AtomicU64,
    pub(crate) server_requests: AtomicU64,
    pub(crate) peer_load_errs: AtomicU64,
    pub(crate) load_timeouts: AtomicU64,
    pub(crate) values_too_large: AtomicU64,
    pub(crate) sets: AtomicU64,
    pub(crate) removes: AtomicU64,
    pub(crate) purges: AtomicU64,
    pub(crate) negative_hits: AtomicU64,
    pub(crate) stale_serves: AtomicU64,
    pub(crate) load_waits: AtomicU64,
    pub(crate) peeks: AtomicU64,
    pub(crate) peek_hits: AtomicU64,
    pub(crate) peeks_answered: AtomicU64,
    pub(crate) peeks_answered_held: AtomicU64,
    pub(crate) fills: AtomicU64,
    pub(crate) handed_over: AtomicU64,
    pub(crate) successor_loads: AtomicU64,
    /// Gauges: getter calls running, and loads waiting for a turn to call the getter.
    pub(crate) loads_running: AtomicU64,
    pub(crate) loads_waiting: AtomicU64,
}

/// One unit of a gauge, for as long as it lives.
pub(crate) struct Gauge<'a>(&'a AtomicU64);

impl<'a> Gauge<'a> {
    pub(crate) fn up(gauge: &'a AtomicU64) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        Gauge(gauge)
    }
}

impl Drop for Gauge<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// A snapshot of a group's counters, e.g. for a `/stats` endpoint (`serde::Serialize`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct GroupStats {
    /// Calls of `get` and `local().get`, including those refused for an empty key.
    pub gets: u64,
    /// Gets answered from the main or the hot cache.
    pub cache_hits: u64,
    /// Values a peer returned (its cache hits and its loads). Values only: answers without one
    /// are `peer_load_errs`.
    pub peer_loads: u64,
    /// Answers from a key's owner that carried no value: not found, an invalid key, its load
    /// failed, or its load passed its deadline. Each went to the caller as it was, with no
    /// load here.
    pub peer_load_errs: u64,
    /// Peer requests (gets and peeks) that got no answer (`LoadError::Unreachable`): refused,
    /// reset, marked down while waiting, an answer outside the protocol, or none by the
    /// deadline. Each fell back to a load here while the load had time left; otherwise the
    /// callers got `Error::Timeout`, also counted in `load_timeouts`.
    pub peer_errors: u64,
    /// Gets that missed both caches and went on to load (`gets - cache_hits`, less refusals).
    pub loads: u64,
    /// Loads that joined another caller's load of the same key instead of starting one.
    pub loads_deduped: u64,
    /// Getter calls that returned a value.
    pub local_loads: u64,
    /// Getter calls that failed, panicked or said "not found".
    pub local_load_errs: u64,
    /// Gets that came from peers (`local().get` calls).
    pub server_requests: u64,
    /// Loads dropped at their deadline: a getter call (or its wait for a turn) that passed it,
    /// or a wait for a peer without an answer that left no time to load here. Nothing was
    /// cached.
    pub load_timeouts: u64,
    /// Values served but not cached because they are larger than the group's largest cacheable
    /// value (or than its cache).
    pub values_too_large: u64,
    /// Values stored here by a set (from this node or a peer).
    pub sets: u64,
    /// Keys dropped here by a remove (from this node or a peer), whether or not they were held.
    pub removes: u64,
    /// Purges applied here (a cluster-wide purge applies two on each member).
    pub purges: u64,
    /// Entries of both caches dropped because their deadline had passed.
    pub expired: u64,
    /// Gets answered "not found" from a remembered "not found", without a load.
    pub negative_hits: u64,
    /// Gets answered with an expired value under a stale window (`stale_if_error` or
    /// `stale_while_revalidate`). A stale value found in a cache counts as a cache hit too.
    pub stale_serves: u64,
    /// Getter calls running now (a gauge): at most the group's `max_concurrent_loads`.
    pub loads_running: u64,
    /// Loads waiting now for a turn to call the getter (a gauge).
    pub loads_waiting: u64,
    /// Loads that had to wait for a turn to call the getter, because `max_concurrent_loads`
    /// calls were running.
    pub load_waits: u64,
    /// Peeks this node made: a key it owns since the members changed, missed here, asked of its
    /// previous owner before the getter.
    pub peeks: u64,
    /// Those peeks answered with a value, which was kept here instead of loading it.
    pub peek_hits: u64,
    /// Peeks answered here for a new owner (from the caches only).
    pub peeks_answered: u64,
    /// Those answered with a value this node held.
    pub peeks_answered_held: u64,
    /// Values kept here that a leaving member handed over.
    pub fills: u64,
    /// Values this node handed over to their new owners when it left.
    pub handed_over: u64,
    /// Keys asked of the member that takes a down owner's place, after the owner gave no answer.
    pub successor_loads: u64,
    /// The cache of keys this node owns or loaded.
    pub main_cache: CacheStats,
    /// The cache of copies of popular keys that other nodes own.
    pub hot_cache: CacheStats,
}

/// One cache's size and counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CacheStats {
    /// Bytes of keys and values held.
    pub bytes: u64,
    /// The cache's budget in bytes, which `bytes` never passes (0: unbounded).
    pub max_bytes: u64,
    /// Entries held.
    pub items: u64,
    /// Lookups.
    pub gets: u64,
    /// Lookups that found their key.
    pub hits: u64,
    /// Entries evicted to stay within the budget.
    pub evictions: u64,
    /// Entries dropped because their deadline had passed.
    pub expired: u64,
}

impl Counters {
    pub(crate) fn snapshot(&self, main_cache: CacheStats, hot_cache: CacheStats) -> GroupStats {
        GroupStats {
            // Every get that passes the key check looks in the main cache first, once.
            gets: main_cache.gets + read(&self.empty_keys),
            cache_hits: main_cache.hits + hot_cache.hits,
            peer_loads: read(&self.peer_loads),
            peer_errors: read(&self.peer_errors),
            loads: read(&self.loads),
            loads_deduped: read(&self.loads_deduped),
            local_loads: read(&self.local_loads),
            local_load_errs: read(&self.local_load_errs),
            server_requests: read(&self.server_requests),
            peer_load_errs: read(&self.peer_load_errs),
            load_timeouts: read(&self.load_timeouts),
            values_too_large: read(&self.values_too_large),
            sets: read(&self.sets),
            removes: read(&self.removes),
            purges: read(&self.purges),
            expired: main_cache.expired + hot_cache.expired,
            negative_hits: read(&self.negative_hits),
            stale_serves: read(&self.stale_serves),
            loads_running: read(&self.loads_running),
            loads_waiting: read(&self.loads_waiting),
            load_waits: read(&self.load_waits),
            peeks: read(&self.peeks),
            peek_hits: read(&self.peek_hits),
            peeks_answered: read(&self.peeks_answered),
            peeks_answered_held: read(&self.peeks_answered_held),
            fills: read(&self.fills),
            handed_over: read(&self.handed_over),
            successor_loads: read(&self.successor_loads),
            main_cache,
            hot_cache,
        }
    }
}

impl CacheStats {
    pub(crate) fn of<K, V, W, S>(cache: &alo_lru::ShardedLru<K, V, W, S>) -> Self {
        let s = cache.stats();
        CacheStats {
            bytes: cache.bytes() as u64,
            max_bytes: cache.max_bytes() as u64,
            items: cache.len() as u64,
            gets: s.hits + s.misses,
            hits: s.hits,
            evictions: s.evictions,
            expired: s.expired,
        }
    }
}
