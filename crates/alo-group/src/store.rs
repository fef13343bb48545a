//! What a group holds: its two caches, the singleflights of the loads that fill them, and the
//! ledger that keeps a load from putting back what a write took out. Every change to the caches
//! goes through here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use alo_lru::{Expiring, ShardedLru};
use alo_singleflight::Flight;
use bytes::Bytes;
use futures_util::future::BoxFuture;

use crate::freshness::{Expiry, Judged, Now, later, now};
use crate::ledger::{Ledger, Ticket};
use crate::rate::Rates;
use crate::stats::CacheStats;
use crate::{Error, Found, Loaded};

/// What an entry costs besides its key's and value's bytes, charged to the budget so that the
/// budget is the memory: the cache's slot (with the entry's deadline) and links, its table's
/// share, the two buffers' allocator headers and shared reference counts. Measured on x86-64
/// Linux (see BENCHMARKS.md).
pub const ENTRY_OVERHEAD: usize = 256;

/// Room a shard keeps beside its largest value, for the key and the entry's overhead.
const SHARD_SLACK: usize = 64 << 10;

/// Most shards a cache is split into.
const MAX_SHARDS: usize = 16;

/// One value fetched from a peer that reports no rate in this many goes into the hot cache.
const HOT_CHANCE: u32 = 10;

/// A cache of the group: each value (`None` for a remembered "not found") with its deadline,
/// past which it is never served.
pub(crate) type Cache = ShardedLru<Bytes, Expiring<Option<Bytes>>, Weigher>;

/// How a cache charges an entry: its key's and value's bytes and the entry's overhead.
pub(crate) type Weigher = fn(&Bytes, &Expiring<Option<Bytes>>) -> usize;

/// A group's caches and loads in flight.
pub(crate) struct Store {
    /// Keys this node owns or loaded.
    pub(crate) main: Cache,
    /// Copies of popular keys that peers own. `None` without a picker (nothing to copy) or with
    /// a budget too small to split.
    pub(crate) hot: Option<Cache>,
    /// Deduplicates the loads of `get`, which may ask a peer. Not detached: the callers drive
    /// it, so a hop costs no task of its own, and it ends with its last caller. What it starts
    /// that the cache must keep outlives it all the same: the owner's load is the owner's, and
    /// a load here in the owner's place goes through `local`.
    pub(crate) remote: Flight<Bytes, Found, Error>,
    /// Deduplicates getter calls, from `get` and `local().get` alike. Kept apart from `remote`
    /// so that an owner's get never waits on a load that is asking a peer.
    pub(crate) local: Flight<Bytes, Found, Error>,
    /// Keeps loads that began before a write from filling a cache after it.
    ledger: Ledger,
    /// The peers' asks of each key this node answered, for the rate it reports with a value.
    /// `None` without a hot cache (no peers).
    rates: Option<Rates>,
    /// The rate per asking member that a peer's value needs to be kept in the hot cache.
    hot_rate: u32,
    /// Decides which values of peers that report no rate go into the hot cache; seeded, so
    /// tests can be exact.
    rng: Mutex<fastrand::Rng>,
    /// Values longer than this are served and not cached.
    pub(crate) max_value_bytes: usize,
    pub(crate) expiry: Expiry,
    /// Whether any entry was given a deadline, so that sweeping has something to find.
    has_deadlines: AtomicBool,
}

impl Store {
    /// A store of `main_bytes` and, if any, `hot_bytes` (0 for either: unbounded), caching values
    /// of at most `max_value_bytes`.
    pub(crate) fn new(
        main_bytes: usize,
        hot_bytes: Option<usize>,
        max_value_bytes: usize,
        expiry: Expiry,
        hot_rate: u32,
        seed: u64,
    ) -> Self {
        Store {
            main: cache(main_bytes, max_value_bytes),
            hot: hot_bytes.map(|bytes| cache(bytes, max_value_bytes)),
            remote: Flight::new(),
            local: Flight::detached(spawn),
            ledger: Ledger::default(),
            rates: hot_bytes.map(|_| Rates::new()),
            hot_rate,
            rng: Mutex::new(fastrand::Rng::with_seed(seed)),
            max_value_bytes,
            expiry,
            has_deadlines: AtomicBool::new(false),
        }
    }

    /// Looks `key` up in the main cache, then the hot cache, counting the lookups: what its
    /// entry is worth now.
    pub(crate) fn lookup(&self, key: &[u8]) -> Judged {
        let now = Now::default();
        let clock = || now.get();
        match self.main.get_unexpired(key, clock) {
            Some(entry) => self.expiry.judge(entry, self.expiry.window(), &now),
            None => match self.hot.as_ref().and_then(|h| h.get_unexpired(key, clock)) {
                Some(entry) => self.expiry.judge(entry, Duration::ZERO, &now),
                None => Judged::Expired,
            },
        }
    }

    /// A fresh entry of `key` in either cache, without counting a cache get or changing
    /// recency: a load that finds one ends there.
    pub(crate) fn peek_fresh(&self, key: &[u8]) -> Option<Result<Found, Error>> {
        let now = Now::default();
        let main = self.main.peek(key).map(|e| (e, self.expiry.window()));
        let hot = || self.hot.as_ref()?.peek(key).map(|e| (e, Duration::ZERO));
        let (entry, window) = main.or_else(hot)?;
        match self.expiry.judge(entry, window, &now) {
            Judged::Fresh(found) => Some(found),
            _ => None,
        }
    }

    /// A load of `key` begins: its right to fill a cache, unless a write comes first. Taken
    /// before the caches are looked at, so that a write in between bars the load.
    pub(crate) fn begin(&self, key: &Bytes) -> Ticket<'_> {
        self.ledger.begin(key)
    }

    /// Puts a loaded value into the main cache, unless a write came first, and returns what to
    /// serve: a copy that owns exactly its bytes when it is kept (the value handed in may be a
    /// slice of a larger buffer, which the cache must not hold alive). `Err` with the value
    /// itself when it is too large to keep.
    pub(crate) fn fill(
        &self,
        ticket: Ticket<'_>,
        key: Bytes,
        loaded: Loaded,
    ) -> Result<Found, Found> {
        let ttl = loaded.ttl.or(self.expiry.ttl);
        let value = loaded.value;
        if ttl == Some(Duration::ZERO) {
            return Ok(Found::new(value, ttl));
        }
        if value.len() <= self.max_value_bytes {
            let owned = Bytes::copy_from_slice(&value);
            let entry = Expiring::new(
                Some(owned.clone()),
                self.deadline(ttl, self.expiry.window()),
            );
            let mut fits = true;
            ticket.keep(|| fits = self.main.insert(key.clone(), entry).is_ok());
            if fits {
                return Ok(Found::new(owned, ttl));
            }
        }
        Err(Found::new(value, ttl))
    }

    /// Counts a peer's ask for `key` and marks `found`, the answer, with the key's rate.
    pub(crate) fn rate(&self, key: &[u8], found: &mut Found) {
        if let Some(rates) = &self.rates {
            found.rate = Some(rates.ask(key));
        }
    }

    /// Keeps a peer's value in the hot cache, until the owner's deadline, unless a write came
    /// first, when the owner reports its key asked often enough by `members` (see
    /// [`hot_copy`](Store::hot_copy)); returns the value to serve. A value of the key in the
    /// main cache (loaded here while the owner was unreachable) gives way to the owner's
    /// answer.
    pub(crate) fn fill_copy(
        &self,
        ticket: Ticket<'_>,
        key: Bytes,
        found: Found,
        members: usize,
    ) -> Found {
        let copy = self.hot_copy(&found, members);
        let served = match &copy {
            Some((_, owned, _)) => Found {
                value: owned.clone(),
                ..found
            },
            None => found,
        };
        ticket.keep(|| {
            self.main.remove(&key);
            if let Some((hot, owned, deadline)) = copy {
                // A copy too large for the hot cache is simply not kept: the owner caches it.
                let _ = hot.insert(key, Expiring::new(Some(owned), deadline));
            }
        });
        served
    }

    /// For a peer value that may be kept and is popular enough, the hot cache, a copy that owns
    /// exactly its bytes, and the owner's deadline. Popular enough: the owner reports at least
    /// the hot rate for each of the `members` but itself (the owner's count holds every
    /// member's asks), or, from a peer that reports no rate, one value in ten.
    fn hot_copy(&self, found: &Found, members: usize) -> Option<(&Cache, Bytes, Option<Instant>)> {
        let hot = self.hot.as_ref()?;
        let ttl = found.ttl.or(self.expiry.ttl);
        let keepable = ttl != Some(Duration::ZERO) && found.value.len() <= self.max_value_bytes;
        let askers = u32::try_from(members.saturating_sub(1).max(1)).unwrap_or(u32::MAX);
        let chosen = || match found.rate {
            Some(rate) => rate >= self.hot_rate.saturating_mul(askers),
            None => {
                let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
                rng.u32(..HOT_CHANCE) == 0
            }
        };
        if !keepable || !chosen() {
            return None;
        }
        let owned = Bytes::copy_from_slice(&found.value);
        Some((hot, owned, self.deadline(ttl, Duration::ZERO)))
    }

    /// The getter said "not found": remember it for the not-found TTL, or else drop any stale
    /// value of the key, which must not be served once the source says there is none.
    pub(crate) fn remember_not_found(&self, ticket: Ticket<'_>, key: Bytes) {
        let ttl = self.expiry.not_found_ttl;
        if ttl.is_zero() {
            ticket.keep(|| {
                self.main.remove(&key);
            });
            return;
        }
        let entry = Expiring::new(None, self.deadline(Some(ttl), Duration::ZERO));
        ticket.keep(|| {
            let _ = self.main.insert(key, entry);
        });
    }

    /// Keeps `found`, a value another member holds, unless this node holds the key already (a
    /// fill never overwrites), it is stale or too large, or the key was written here within the
    /// last [`FILL_GUARD`](crate::ledger::FILL_GUARD) (the value may be older than the write);
    /// says whether it was kept. The value is copied, to own exactly its bytes.
    pub(crate) fn fill_absent(&self, key: Bytes, found: &Found) -> bool {
        let ttl = found.ttl.or(self.expiry.ttl);
        if found.stale.is_some() || ttl == Some(Duration::ZERO) {
            return false;
        }
        if found.value.len() > self.max_value_bytes || self.main.contains_key(&key) {
            return false;
        }
        let owned = Bytes::copy_from_slice(&found.value);
        let entry = Expiring::new(Some(owned), self.deadline(ttl, self.expiry.window()));
        let written = key.clone();
        self.ledger.fill(&written, || {
            // Looked at again under the ledger's lock: a load may have filled it meanwhile.
            !self.main.contains_key(&key) && self.main.insert(key, entry).is_ok()
        })
    }

    /// Whether `key` was written here in the last [`FILL_GUARD`](crate::ledger::FILL_GUARD),
    /// or a purge came in that time: a value read elsewhere may be older than the write.
    pub(crate) fn written_recently(&self, key: &[u8]) -> bool {
        self.ledger.written_recently(key)
    }

    /// Every value of the main cache that is fresh now, most recently used first (nearly: see
    /// `ShardedLru::snapshot`), with the time it has left: what a leaving node hands over.
    pub(crate) fn fresh_values(&self) -> Vec<(Bytes, Found)> {
        let now = Now::default();
        let window = self.expiry.window();
        self.main
            .snapshot()
            .into_iter()
            .filter_map(
                |(key, entry)| match self.expiry.judge(entry, window, &now) {
                    Judged::Fresh(Ok(found)) => Some((key, found)),
                    _ => None,
                },
            )
            .collect()
    }

    /// Stores a written value here, as the key's owner, barring the loads of the key in flight
    /// and dropping its hot copy; says whether it fit (a value too large is refused, and the
    /// key's old value goes with it).
    pub(crate) fn set(&self, key: Bytes, value: &Bytes, ttl: Option<Duration>) -> bool {
        let ttl = ttl.or(self.expiry.ttl);
        let owned = Bytes::copy_from_slice(value);
        let entry = Expiring::new(Some(owned), self.deadline(ttl, self.expiry.window()));
        let keys = std::slice::from_ref(&key);
        self.ledger.write(keys, || {
            self.forget(keys);
            self.main.insert(key.clone(), entry).is_ok()
        })
    }

    /// Drops `keys` from both caches, barring the loads of them in flight: a get that begins
    /// after this returns starts a new load.
    pub(crate) fn invalidate(&self, keys: &[Bytes]) {
        self.ledger.write(keys, || {
            self.forget(keys);
            for key in keys {
                self.main.remove(key);
            }
        });
    }

    /// Drops every entry, barring every load in flight.
    pub(crate) fn clear(&self) {
        self.ledger.purge(|| {
            self.remote.forget_all();
            self.local.forget_all();
            self.main.clear();
            if let Some(hot) = &self.hot {
                hot.clear();
            }
        });
    }

    /// Under the ledger's lock: no get joins a load of `keys` begun before now, and no hot copy
    /// of them stays.
    fn forget(&self, keys: &[Bytes]) {
        for key in keys {
            self.remote.forget(key);
            self.local.forget(key);
            if let Some(hot) = &self.hot {
                hot.remove(key);
            }
        }
    }

    /// Drops the entries whose deadline has passed.
    pub(crate) fn sweep(&self) {
        if !self.has_deadlines.load(Ordering::Relaxed) {
            return;
        }
        let now = now();
        self.main.remove_expired(now);
        if let Some(hot) = &self.hot {
            hot.remove_expired(now);
        }
    }

    /// Both caches' sizes and counters: main, hot.
    pub(crate) fn stats(&self) -> (CacheStats, CacheStats) {
        let hot = self.hot.as_ref().map(CacheStats::of).unwrap_or_default();
        (CacheStats::of(&self.main), hot)
    }

    /// The deadline of a value fresh for `ttl` and then kept `window` longer; `None` when it
    /// does not expire.
    fn deadline(&self, ttl: Option<Duration>, window: Duration) -> Option<Instant> {
        let deadline = later(now(), ttl?.saturating_add(window));
        self.has_deadlines.store(true, Ordering::Relaxed);
        Some(deadline)
    }
}

fn weigh(key: &Bytes, entry: &Expiring<Option<Bytes>>) -> usize {
    key.len() + entry.value.as_ref().map_or(0, Bytes::len) + ENTRY_OVERHEAD
}

/// A thread-safe LRU of `max_bytes`, in as many shards (up to 16) as leave each room for a value
/// of `max_value_bytes`: the shard layout must never decide what is cached.
fn cache(max_bytes: usize, max_value_bytes: usize) -> Cache {
    let per_shard = max_value_bytes.saturating_add(SHARD_SLACK);
    let shards = (max_bytes / per_shard).clamp(1, MAX_SHARDS);
    ShardedLru::with_weigher(max_bytes, shards, weigh as Weigher)
}

/// Where the group's loads run: on a tokio task of their own, so that they finish whatever
/// their callers do.
fn spawn(task: BoxFuture<'static, ()>) {
    tokio::spawn(task);
}
