//! The group: two caches, two singleflights, a getter and maybe a peer picker.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use alo_lru::ShardedLru;
use alo_singleflight::Flight;
use bytes::Bytes;
use futures_util::future::BoxFuture;

use crate::stats::{CacheStats, Counters, bump};
use crate::{Error, Getter, GroupStats, LoadError, PeerPicker};

/// The budget a group gets unless told otherwise.
pub const DEFAULT_MAX_BYTES: usize = 64 << 20;

/// The largest value a group caches unless told otherwise (or its main cache, if smaller).
pub const DEFAULT_MAX_VALUE_BYTES: usize = 16 << 20;

/// How long a load may take unless told otherwise.
pub const DEFAULT_LOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// How much longer than its load timeout a group waits for a peer: the owner's load has the
/// same deadline, and its answer needs time to arrive.
pub const PEER_MARGIN: Duration = Duration::from_secs(1);

/// What an entry costs besides its key's and value's bytes, charged to the budget so that the
/// budget is the memory: the cache's slot and links, its table's share, the two buffers'
/// allocator headers and shared reference counts. Measured on x86-64 Linux (see the README).
pub const ENTRY_OVERHEAD: usize = 240;

/// Room a shard keeps beside its largest value, for the key and the entry's overhead.
const SHARD_SLACK: usize = 64 << 10;

/// The hot cache's share of the budget: at most 1/8, as groupcache keeps it.
const HOT_SHARE: usize = 8;

/// One value fetched from a peer in this many goes into the hot cache.
const HOT_CHANCE: u32 = 10;

/// Most shards a cache is split into.
const MAX_SHARDS: usize = 16;

/// A named, read-through cache of byte values: gets are answered from the local caches, else by
/// the key's owner among the peers, else by the getter, once per key however many callers wait.
///
/// A `Group` is a cheap handle (an `Arc` inside): clone it into every task that needs it.
///
/// # The flow
/// `get(key)`:
/// 1. The main cache (keys this node owns or loaded) or the hot cache (copies of popular keys
///    that peers own) has the key: return it.
/// 2. Otherwise, one load per key runs however many callers wait (a singleflight). It looks in
///    both caches again (a load may just have finished), then asks the picker for the key's
///    owner. A peer's value is returned, and one in ten also goes into the hot cache. A peer's
///    "not found" is returned as it is. A peer's failure is counted and the load goes on to 3:
///    a dead peer never fails the caller.
/// 3. The getter loads the key (one call per key, shared with concurrent `get_local`s), the
///    value goes into the main cache and is returned. Errors are returned and never cached.
///
/// # A load's lifetime
/// A load belongs to the cache, not to the caller that started it. Once begun, a getter call or
/// a peer request runs on a task of its own (the group needs a tokio runtime) until it ends or
/// reaches its deadline, whatever its callers do: a caller that times out or is dropped only
/// stops waiting, the value still fills the cache, and a caller that comes later joins the load
/// still running. A getter call has the group's [load timeout](GroupBuilder::load_timeout); a
/// wait for a peer that timeout plus [`PEER_MARGIN`]. Past it the callers get
/// [`Error::Timeout`], the load is dropped and counted, and nothing is cached.
///
/// # Peers that fail
/// A peer's answer without a value (not found, an invalid key, its load failed or timed out) is
/// the caller's answer: loading the key here would ask the same origin a second time. A peer
/// that gave no answer ([`LoadError::Unreachable`]) is counted and the key loaded here.
///
/// [`get_local`](Group::get_local), for requests from peers, skips step 2's peer: the
/// answering node never forwards, so two nodes whose views of the membership differ cannot
/// bounce a request between them.
///
/// # Budget
/// `max_bytes` bounds both caches together, charging each entry its key's and value's bytes
/// plus [`ENTRY_OVERHEAD`]. With a picker, the hot cache gets 1/8 and the main cache the rest;
/// without one, the main cache gets it all. Every value up to the [largest cacheable
/// value](GroupBuilder::max_value_bytes) is cached; a larger one is returned, not cached, and
/// counted in `values_too_large`. A cached value owns exactly its bytes: a value that is a
/// slice of a larger buffer (a network read buffer, say) is copied before it is kept, so the
/// buffer is not held alive by the cache. `max_bytes == 0` means unbounded.
#[derive(Clone)]
pub struct Group {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    getter: Arc<dyn Getter>,
    picker: Option<Arc<dyn PeerPicker>>,
    main: ShardedLru<Bytes, Bytes, Weigher>,
    /// `None` without a picker (nothing to copy) or with a budget too small to split.
    hot: Option<ShardedLru<Bytes, Bytes, Weigher>>,
    /// Deduplicates the loads of `get`, which may ask a peer.
    remote: Flight<Bytes, Bytes, Error>,
    /// Deduplicates getter calls, from `get` and `get_local` alike. Kept apart from `remote`
    /// so that a `get_local` never waits on a load that is asking a peer.
    local: Flight<Bytes, Bytes, Error>,
    /// Decides which peer values go into the hot cache; seeded, so tests can be exact.
    rng: Mutex<fastrand::Rng>,
    counters: Counters,
    /// The deadline of a getter call.
    load_timeout: Duration,
    /// Values longer than this are served and not cached.
    max_value_bytes: usize,
}

/// Builds a [`Group`]; start with [`Group::builder`].
pub struct GroupBuilder {
    name: String,
    getter: Arc<dyn Getter>,
    max_bytes: usize,
    max_value_bytes: usize,
    load_timeout: Duration,
    picker: Option<Arc<dyn PeerPicker>>,
    seed: u64,
}

impl Group {
    /// A builder for a group called `name` that loads through `getter`, with a budget of
    /// [`DEFAULT_MAX_BYTES`] and no peers.
    pub fn builder(name: impl Into<String>, getter: impl Getter) -> GroupBuilder {
        GroupBuilder {
            name: name.into(),
            getter: Arc::new(getter),
            max_bytes: DEFAULT_MAX_BYTES,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            load_timeout: DEFAULT_LOAD_TIMEOUT,
            picker: None,
            seed: 0x616c6f,
        }
    }

    /// The group's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The value of `key`, from the caches, the key's owner, or the getter; see the type's
    /// docs for the flow.
    ///
    /// # Errors
    /// [`Error::EmptyKey`]; [`Error::NotFound`] when the getter (here or on the owner) has no
    /// value; [`Error::Load`] or [`Error::Panicked`] when the getter failed; [`Error::Timeout`]
    /// when the load passed its deadline.
    pub async fn get(&self, key: impl AsRef<[u8]>) -> Result<Bytes, Error> {
        match self.begin(key.as_ref())? {
            Lookup::Hit(value) => Ok(value),
            Lookup::Miss(key) => self.load(key).await,
        }
    }

    /// Steps 2 and 3 for `get`. Boxed, so that the future of `get`, which every caller holds,
    /// stays small on the hit path.
    fn load(&self, key: Bytes) -> BoxFuture<'_, Result<Bytes, Error>> {
        Box::pin(async move {
            let outcome = match &self.inner.picker {
                None => self.load_local(key).await,
                Some(_) => {
                    let this = self.clone();
                    let work_key = key.clone();
                    let out = self
                        .inner
                        .remote
                        .work(key, move || this.fetch(work_key))
                        .await;
                    (flatten(out.result), out.shared)
                }
            };
            self.finish(outcome)
        })
    }

    /// The value of `key` from the caches or the getter, never from a peer: what a request
    /// from a peer is answered with. Counts a server request.
    ///
    /// # Errors
    /// As [`get`](Group::get).
    pub async fn get_local(&self, key: impl AsRef<[u8]>) -> Result<Bytes, Error> {
        bump(&self.inner.counters.server_requests);
        match self.begin(key.as_ref())? {
            Lookup::Hit(value) => Ok(value),
            Lookup::Miss(key) => {
                let outcome = Box::pin(self.load_local(key)).await;
                self.finish(outcome)
            }
        }
    }

    /// A snapshot of the counters and of both caches' sizes.
    pub fn stats(&self) -> GroupStats {
        let inner = &self.inner;
        let hot = inner.hot.as_ref().map(CacheStats::of).unwrap_or_default();
        inner.counters.snapshot(CacheStats::of(&inner.main), hot)
    }

    /// Checks the key and looks in both caches (step 1); the caches count the lookups.
    fn begin(&self, key: &[u8]) -> Result<Lookup, Error> {
        let inner = &self.inner;
        if key.is_empty() {
            bump(&inner.counters.empty_keys);
            return Err(Error::EmptyKey);
        }
        // `stats` derives gets and hits from these lookups' own counts.
        let cached = inner.main.get(key);
        if let Some(value) = cached.or_else(|| inner.hot.as_ref().and_then(|h| h.get(key))) {
            return Ok(Lookup::Hit(value));
        }
        bump(&inner.counters.loads);
        Ok(Lookup::Miss(Bytes::copy_from_slice(key)))
    }

    fn finish(&self, (result, shared): (Result<Bytes, Error>, bool)) -> Result<Bytes, Error> {
        if shared {
            bump(&self.inner.counters.loads_deduped);
        }
        result
    }

    /// Step 2: the work of one `get` load, shared by every caller of the key.
    fn fetch(self, key: Bytes) -> BoxFuture<'static, Result<Bytes, Error>> {
        Box::pin(async move {
            let inner = &self.inner;
            if let Some(value) = inner.peek(&key) {
                return Ok(value);
            }
            let peer = inner.picker.as_ref().and_then(|p| p.pick_peer(&key));
            if let Some(peer) = peer {
                let wait = inner.load_timeout + PEER_MARGIN;
                match tokio::time::timeout(wait, peer.get(&inner.name, &key)).await {
                    Ok(Ok(value)) => {
                        bump(&inner.counters.peer_loads);
                        return Ok(inner.maybe_keep_hot(key, value));
                    }
                    // The peer could not be asked: a dead owner never fails the caller.
                    Ok(Err(LoadError::Unreachable(reason))) => {
                        bump(&inner.counters.peer_errors);
                        tracing::debug!(group = %inner.name, %reason, "peer unreachable; loading locally");
                    }
                    // The owner's answer about the key or its load: asking the origin again
                    // here would ask it twice.
                    Ok(Err(e)) => {
                        bump(&inner.counters.peer_load_errs);
                        return Err(e.into());
                    }
                    Err(_) => {
                        bump(&inner.counters.peer_errors);
                        bump(&inner.counters.load_timeouts);
                        tracing::warn!(group = %inner.name, key = %String::from_utf8_lossy(&key), ?wait, "no answer from the owner in time");
                        return Err(Error::Timeout);
                    }
                }
            }
            self.load_local(key).await.0
        })
    }

    /// Step 3 through the local singleflight: the result, and whether it was shared.
    async fn load_local(&self, key: Bytes) -> (Result<Bytes, Error>, bool) {
        let this = self.clone();
        let work_key = key.clone();
        let out = self
            .inner
            .local
            .work(key.clone(), move || this.call_getter(work_key))
            .await;
        let result = flatten(out.result);
        if let (false, Err(Error::Panicked(message))) = (out.shared, &result) {
            bump(&self.inner.counters.local_load_errs);
            tracing::error!(group = %self.inner.name, key = %String::from_utf8_lossy(&key), %message, "the getter panicked");
        }
        (result, out.shared)
    }

    /// The work of one getter call, shared by every caller of the key.
    fn call_getter(self, key: Bytes) -> BoxFuture<'static, Result<Bytes, Error>> {
        Box::pin(async move {
            let inner = &self.inner;
            if let Some(value) = inner.peek(&key) {
                return Ok(value);
            }
            let loaded = tokio::time::timeout(inner.load_timeout, inner.getter.get(key.clone()));
            match loaded.await {
                Ok(Ok(value)) => {
                    bump(&inner.counters.local_loads);
                    Ok(inner.keep(&inner.main, key, value))
                }
                Ok(Err(e)) => {
                    bump(&inner.counters.local_load_errs);
                    // "Not found" and a refused key are answers, not failures.
                    if !matches!(e, LoadError::NotFound | LoadError::InvalidKey(_)) {
                        tracing::warn!(group = %inner.name, key = %String::from_utf8_lossy(&key), error = %e, "load failed");
                    }
                    Err(e.into())
                }
                Err(_) => {
                    bump(&inner.counters.local_load_errs);
                    bump(&inner.counters.load_timeouts);
                    tracing::warn!(group = %inner.name, key = %String::from_utf8_lossy(&key), timeout = ?inner.load_timeout, "load timed out; dropped");
                    Err(Error::Timeout)
                }
            }
        })
    }
}

impl Inner {
    /// Looks in both caches without counting a cache get or changing recency.
    fn peek(&self, key: &[u8]) -> Option<Bytes> {
        self.main
            .peek(key)
            .or_else(|| self.hot.as_ref().and_then(|h| h.peek(key)))
    }

    /// Keeps one peer value in ten in the hot cache; returns the value to serve.
    fn maybe_keep_hot(&self, key: Bytes, value: Bytes) -> Bytes {
        let Some(hot) = &self.hot else { return value };
        let lucky = self
            .rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .u32(..HOT_CHANCE)
            == 0;
        if !lucky || value.len() > self.max_value_bytes {
            return value;
        }
        let owned = Bytes::copy_from_slice(&value);
        // A copy too large for the hot cache is simply not kept: the owner caches the key.
        let _ = hot.insert(key, owned.clone());
        owned
    }

    /// Puts a loaded value into `cache` and returns the value to serve: a copy that owns
    /// exactly its bytes when it is kept (the value handed in may be a slice of a larger
    /// buffer, which the cache must not hold alive), the value itself when it is too large.
    fn keep(&self, cache: &ShardedLru<Bytes, Bytes, Weigher>, key: Bytes, value: Bytes) -> Bytes {
        if value.len() <= self.max_value_bytes {
            let owned = Bytes::copy_from_slice(&value);
            if cache.insert(key.clone(), owned.clone()).is_ok() {
                return owned;
            }
        }
        bump(&self.counters.values_too_large);
        tracing::info!(group = %self.name, key = %String::from_utf8_lossy(&key), bytes = value.len(), max = self.max_value_bytes, "value too large to cache; served");
        value
    }
}

/// What step 1 found.
enum Lookup {
    Hit(Bytes),
    /// Not cached: the key, owned, for the load.
    Miss(Bytes),
}

/// The singleflight's error folded into the group's.
fn flatten(result: Result<Bytes, alo_singleflight::Error<Error>>) -> Result<Bytes, Error> {
    result.map_err(|e| match e {
        alo_singleflight::Error::Failed(e) => e,
        alo_singleflight::Error::Panicked(message) => Error::Panicked(message),
        other => Error::Load(other.to_string().into()),
    })
}

impl GroupBuilder {
    /// The budget of both caches together, in bytes of keys and values; 0 means unbounded.
    pub fn max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// The largest value the group caches, in bytes (default [`DEFAULT_MAX_VALUE_BYTES`], and at
    /// most the main cache's budget). Larger values are served, not cached, and counted in
    /// `values_too_large`. The caches are split into as many shards (at most 16) as leave each
    /// room for a value this large, so a larger limit means fewer shards to spread the locks.
    pub fn max_value_bytes(mut self, max_value_bytes: usize) -> Self {
        self.max_value_bytes = max_value_bytes;
        self
    }

    /// How long a getter call may take (default [`DEFAULT_LOAD_TIMEOUT`]); a wait for a peer
    /// gets this plus [`PEER_MARGIN`]. Past it the callers get [`Error::Timeout`], the load is
    /// dropped and counted in `load_timeouts`, and nothing is cached.
    pub fn load_timeout(mut self, load_timeout: Duration) -> Self {
        self.load_timeout = load_timeout;
        self
    }

    /// Where to find the owner of a key. Without a picker the group loads every key itself.
    pub fn picker(mut self, picker: Arc<dyn PeerPicker>) -> Self {
        self.picker = Some(picker);
        self
    }

    /// Seeds the choice of which peer values go into the hot cache (for repeatable tests).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The group.
    ///
    /// # Errors
    /// [`Error::EmptyName`] when the name is empty; [`Error::ZeroTimeout`] for a zero load
    /// timeout.
    pub fn build(self) -> Result<Group, Error> {
        if self.name.is_empty() {
            return Err(Error::EmptyName);
        }
        if self.load_timeout.is_zero() {
            return Err(Error::ZeroTimeout);
        }
        let hot_bytes = match (&self.picker, self.max_bytes) {
            (None, _) => None,
            (Some(_), 0) => Some(0),
            (Some(_), max) => Some(max / HOT_SHARE).filter(|&b| b > 0),
        };
        let main_bytes = self.max_bytes - hot_bytes.unwrap_or(0);
        let max_value_bytes = match main_bytes {
            0 => self.max_value_bytes,
            main => self.max_value_bytes.min(main),
        };
        Ok(Group {
            inner: Arc::new(Inner {
                name: self.name,
                getter: self.getter,
                picker: self.picker,
                main: cache(main_bytes, max_value_bytes),
                hot: hot_bytes.map(|bytes| cache(bytes, max_value_bytes)),
                remote: Flight::detached(spawn),
                local: Flight::detached(spawn),
                rng: Mutex::new(fastrand::Rng::with_seed(self.seed)),
                counters: Counters::default(),
                load_timeout: self.load_timeout,
                max_value_bytes,
            }),
        })
    }
}

/// How a cache charges an entry: its key's and value's bytes and the entry's overhead.
type Weigher = fn(&Bytes, &Bytes) -> usize;

fn weigh(key: &Bytes, value: &Bytes) -> usize {
    key.len() + value.len() + ENTRY_OVERHEAD
}

/// A thread-safe LRU of `max_bytes`, in as many shards (up to 16) as leave each room for a value
/// of `max_value_bytes`: the shard layout must never decide what is cached.
fn cache(max_bytes: usize, max_value_bytes: usize) -> ShardedLru<Bytes, Bytes, Weigher> {
    let per_shard = max_value_bytes.saturating_add(SHARD_SLACK);
    let shards = (max_bytes / per_shard).clamp(1, MAX_SHARDS);
    ShardedLru::with_weigher(max_bytes, shards, weigh as Weigher)
}

/// Where the group's loads run: on a tokio task of their own, so that they finish whatever
/// their callers do.
fn spawn(task: BoxFuture<'static, ()>) {
    tokio::spawn(task);
}

impl fmt::Debug for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group")
            .field("name", &self.inner.name)
            .field("peers", &self.inner.picker.is_some())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for GroupBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupBuilder")
            .field("name", &self.name)
            .field("max_bytes", &self.max_bytes)
            .field("max_value_bytes", &self.max_value_bytes)
            .field("load_timeout", &self.load_timeout)
            .field("peers", &self.picker.is_some())
            .finish_non_exhaustive()
    }
}
