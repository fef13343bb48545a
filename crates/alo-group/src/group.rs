//! The group: two caches, two singleflights, a getter and maybe a peer picker.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use alo_lru::ShardedLru;
use alo_singleflight::Flight;
use bytes::Bytes;
use futures_util::future::BoxFuture;

use crate::stats::{CacheStats, Counters, bump};
use crate::{Error, Getter, GroupStats, LoadError, PeerPicker};

/// The budget a group gets unless told otherwise.
pub const DEFAULT_MAX_BYTES: usize = 64 << 20;

/// The hot cache's share of the budget: at most 1/8, as groupcache keeps it.
const HOT_SHARE: usize = 8;

/// One value fetched from a peer in this many goes into the hot cache.
const HOT_CHANCE: u32 = 10;

/// Budget a shard of a group's cache gets at least (unless the whole cache is smaller): the
/// largest value a group surely caches. Larger values are served but may not be cached.
const MIN_SHARD_BYTES: usize = 1 << 20;

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
/// [`get_local`](Group::get_local), for requests from peers, skips step 2's peer: the
/// answering node never forwards, so two nodes whose views of the membership differ cannot
/// bounce a request between them.
///
/// # Budget
/// `max_bytes` bounds keys and values of both caches together. With a picker, the hot cache
/// gets 1/8 and the main cache the rest; without one, the main cache gets it all. A value larger
/// than one shard of its cache can hold (at least 1 MiB, or the whole cache when it is smaller) is
/// returned but not cached. `max_bytes == 0` means unbounded.
#[derive(Clone)]
pub struct Group {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    getter: Arc<dyn Getter>,
    picker: Option<Arc<dyn PeerPicker>>,
    main: ShardedLru<Bytes, Bytes>,
    /// `None` without a picker (nothing to copy) or with a budget too small to split.
    hot: Option<ShardedLru<Bytes, Bytes>>,
    /// Deduplicates the loads of `get`, which may ask a peer.
    remote: Flight<Bytes, Bytes, Error>,
    /// Deduplicates getter calls, from `get` and `get_local` alike. Kept apart from `remote`
    /// so that a `get_local` never waits on a load that is asking a peer.
    local: Flight<Bytes, Bytes, Error>,
    /// Decides which peer values go into the hot cache; seeded, so tests can be exact.
    rng: Mutex<fastrand::Rng>,
    counters: Counters,
}

/// Builds a [`Group`]; start with [`Group::builder`].
pub struct GroupBuilder {
    name: String,
    getter: Arc<dyn Getter>,
    max_bytes: usize,
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
    /// value; [`Error::Load`] or [`Error::Panicked`] when the getter failed.
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
                match peer.get(&inner.name, &key).await {
                    Ok(value) => {
                        bump(&inner.counters.peer_loads);
                        inner.maybe_keep_hot(&key, &value);
                        return Ok(value);
                    }
                    // The owner's answer about the key itself: asking the origin again here
                    // would get the same answer.
                    Err(e @ (LoadError::NotFound | LoadError::InvalidKey(_))) => {
                        bump(&inner.counters.peer_loads);
                        return Err(e.into());
                    }
                    Err(LoadError::Failed(reason)) => {
                        bump(&inner.counters.peer_errors);
                        tracing::warn!(group = %inner.name, %reason, "peer request failed; loading locally");
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
            .work(key, move || this.call_getter(work_key))
            .await;
        let result = flatten(out.result);
        if !out.shared && matches!(result, Err(Error::Panicked(_))) {
            bump(&self.inner.counters.local_load_errs);
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
            match inner.getter.get(key.clone()).await {
                Ok(value) => {
                    bump(&inner.counters.local_loads);
                    // A value too large for the cache is served without being kept.
                    let _ = inner.main.insert(key, value.clone());
                    Ok(value)
                }
                Err(e) => {
                    bump(&inner.counters.local_load_errs);
                    Err(e.into())
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

    fn maybe_keep_hot(&self, key: &Bytes, value: &Bytes) {
        let Some(hot) = &self.hot else { return };
        let lucky = self
            .rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .u32(..HOT_CHANCE)
            == 0;
        if lucky {
            let _ = hot.insert(key.clone(), value.clone());
        }
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
    /// [`Error::EmptyName`] when the name is empty.
    pub fn build(self) -> Result<Group, Error> {
        if self.name.is_empty() {
            return Err(Error::EmptyName);
        }
        let hot_bytes = match (&self.picker, self.max_bytes) {
            (None, _) => None,
            (Some(_), 0) => Some(0),
            (Some(_), max) => Some(max / HOT_SHARE).filter(|&b| b > 0),
        };
        let main_bytes = self.max_bytes - hot_bytes.unwrap_or(0);
        Ok(Group {
            inner: Arc::new(Inner {
                name: self.name,
                getter: self.getter,
                picker: self.picker,
                main: cache(main_bytes),
                hot: hot_bytes.map(cache),
                remote: Flight::new(),
                local: Flight::new(),
                rng: Mutex::new(fastrand::Rng::with_seed(self.seed)),
                counters: Counters::default(),
            }),
        })
    }
}

/// A thread-safe LRU of `max_bytes`, in as many shards (up to 16) as leave each at least
/// `MIN_SHARD_BYTES`.
fn cache(max_bytes: usize) -> ShardedLru<Bytes, Bytes> {
    ShardedLru::with_shards(max_bytes, (max_bytes / MIN_SHARD_BYTES).clamp(1, 16))
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
            .field("peers", &self.picker.is_some())
            .finish_non_exhaustive()
    }
}
