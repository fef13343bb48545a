//! The group: two caches, two singleflights, a getter and maybe a peer picker.

use std::cell::Cell;
use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use alo_lru::{Expiring, ShardedLru};
use alo_singleflight::Flight;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use tokio::sync::{Semaphore, SemaphorePermit};
use tracing::Instrument;

use crate::ledger::{Ledger, Ticket};
use crate::stats::{CacheStats, Counters, Gauge, bump};
use crate::{
    Error, Found, Getter, GroupStats, LoadContext, LoadError, Loaded, PeerPicker, Stale, escape,
    escape_bytes,
};

/// The budget a group gets unless told otherwise.
pub const DEFAULT_MAX_BYTES: usize = 64 << 20;

/// The largest value a group caches unless told otherwise (or its main cache, if smaller).
pub const DEFAULT_MAX_VALUE_BYTES: usize = 16 << 20;

/// How long a load may take unless told otherwise.
pub const DEFAULT_LOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// How much longer than its load timeout a group waits for a peer: the owner's load has the
/// same deadline, and its answer needs time to arrive.
pub const PEER_MARGIN: Duration = Duration::from_secs(1);

/// How long a write to another member may take unless told otherwise. A member applies a write
/// in memory, without asking its origin, so a member that takes longer is taken for hung.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// How many getter calls of a group run at once unless told otherwise; more wait their turn.
pub const DEFAULT_MAX_CONCURRENT_LOADS: usize = 64;

/// What an entry costs besides its key's and value's bytes, charged to the budget so that the
/// budget is the memory: the cache's slot (with the entry's deadline) and links, its table's
/// share, the two buffers' allocator headers and shared reference counts. Measured on x86-64
/// Linux (see BENCHMARKS.md).
pub const ENTRY_OVERHEAD: usize = 256;

/// Room a shard keeps beside its largest value, for the key and the entry's overhead.
const SHARD_SLACK: usize = 64 << 10;

/// The hot cache's share of the budget: at most 1/8, as groupcache keeps it.
const HOT_SHARE: usize = 8;

/// One value fetched from a peer in this many goes into the hot cache.
const HOT_CHANCE: u32 = 10;

/// Most shards a cache is split into.
const MAX_SHARDS: usize = 16;

/// How often a group drops the entries whose deadline has passed.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

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
/// [`Error::Timeout`], the load is dropped and counted, and nothing is cached. The getter is
/// told the deadline, and that its load was abandoned, through its [`LoadContext`].
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
/// # Expiry and writes
/// A value may expire (a getter's [`Loaded::with_ttl`], or the group's
/// [`ttl`](GroupBuilder::ttl)); it is never served past its deadline, except under the group's
/// stale windows, and a peer's hot copy never outlives the owner's value. A "not found" may be
/// remembered ([`not_found_ttl`](GroupBuilder::not_found_ttl)). [`set`](Group::set),
/// [`remove`](Group::remove) and [`purge`](Group::purge) change the cache across the cluster;
/// once one returns, no member it reached serves a value loaded before it began. The crate
/// README states what each operation guarantees and what it does not.
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
    pub(crate) inner: Arc<Inner>,
}

/// A cache of the group: each value (`None` for a remembered "not found") with its deadline,
/// past which it is never served.
pub(crate) type Cache = ShardedLru<Bytes, Expiring<Option<Bytes>>, Weigher>;

pub(crate) struct Inner {
    pub(crate) name: String,
    getter: Arc<dyn Getter>,
    pub(crate) picker: Option<Arc<dyn PeerPicker>>,
    pub(crate) main: Cache,
    /// `None` without a picker (nothing to copy) or with a budget too small to split.
    pub(crate) hot: Option<Cache>,
    /// Deduplicates the loads of `get`, which may ask a peer.
    pub(crate) remote: Flight<Bytes, Found, Error>,
    /// Deduplicates getter calls, from `get` and `get_local` alike. Kept apart from `remote`
    /// so that a `get_local` never waits on a load that is asking a peer.
    pub(crate) local: Flight<Bytes, Found, Error>,
    /// Keeps loads that began before a write from filling a cache after it.
    pub(crate) ledger: Ledger,
    /// Keys being reloaded in the background while their stale value is served.
    revalidating: Mutex<HashSet<Bytes>>,
    /// Decides which peer values go into the hot cache; seeded, so tests can be exact.
    rng: Mutex<fastrand::Rng>,
    pub(crate) counters: Counters,
    /// The deadline of a getter call.
    pub(crate) load_timeout: Duration,
    /// The deadline of a write to another member.
    pub(crate) write_timeout: Duration,
    /// Turns to call the getter: at most this many calls run at once, whoever asks, so no burst
    /// of cold keys puts more than that on the origin. A load waits for its turn within its
    /// deadline.
    turns: Semaphore,
    /// Values longer than this are served and not cached.
    pub(crate) max_value_bytes: usize,
    pub(crate) expiry: Expiry,
    /// Whether any entry was given a deadline, so that sweeping has something to find.
    has_deadlines: AtomicBool,
}

/// When a group's values expire, and how long an expired one may still be served.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Expiry {
    /// For values given none of their own; `None`: they do not expire.
    pub(crate) ttl: Option<Duration>,
    /// How long a "not found" is remembered; zero: not at all.
    pub(crate) not_found_ttl: Duration,
    pub(crate) stale_if_error: Duration,
    pub(crate) stale_while_revalidate: Duration,
}

impl Expiry {
    /// How long past its freshness a main-cache entry is kept, for the stale windows.
    fn window(&self) -> Duration {
        self.stale_if_error.max(self.stale_while_revalidate)
    }
}

/// Builds a [`Group`]; start with [`Group::builder`].
pub struct GroupBuilder {
    name: String,
    getter: Arc<dyn Getter>,
    max_bytes: usize,
    max_value_bytes: usize,
    load_timeout: Duration,
    write_timeout: Duration,
    max_concurrent_loads: usize,
    picker: Option<Arc<dyn PeerPicker>>,
    seed: u64,
    expiry: Expiry,
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
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            max_concurrent_loads: DEFAULT_MAX_CONCURRENT_LOADS,
            picker: None,
            seed: 0x616c6f,
            expiry: Expiry::default(),
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
        // Not `self.lookup(key).await.map(..)`: a future nested in another cost the hit path
        // 13 ns (63 against 76 ns in the `hit` bench).
        match self.begin(key.as_ref(), Route::Cluster)? {
            Lookup::Hit(found) => Ok(found.value),
            Lookup::Miss { key, stale } => self.load(key, stale).await.map(|f| f.value),
        }
    }

    /// [`get`](Group::get) with what a server needs besides the value: how long it stays fresh,
    /// and whether it was served stale.
    ///
    /// # Errors
    /// As [`get`](Group::get).
    pub async fn lookup(&self, key: impl AsRef<[u8]>) -> Result<Found, Error> {
        match self.begin(key.as_ref(), Route::Cluster)? {
            Lookup::Hit(found) => Ok(found),
            Lookup::Miss { key, stale } => self.load(key, stale).await,
        }
    }

    /// Steps 2 and 3 for `get`, and the stale value's rescue. Boxed, so that the future of
    /// `get`, which every caller holds, stays small on the hit path.
    fn load(
        &self,
        key: Bytes,
        stale: Option<Box<Fallback>>,
    ) -> BoxFuture<'_, Result<Found, Error>> {
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
            self.finish(outcome, stale)
        })
    }

    /// The value of `key` from the caches or the getter, never from a peer: what a request
    /// from a peer is answered with. Counts a server request.
    ///
    /// # Errors
    /// As [`get`](Group::get).
    pub async fn get_local(&self, key: impl AsRef<[u8]>) -> Result<Bytes, Error> {
        self.lookup_local(key).await.map(|f| f.value)
    }

    /// [`get_local`](Group::get_local) with how long the value stays fresh and whether it was
    /// served stale, for the answer to a peer.
    ///
    /// # Errors
    /// As [`get`](Group::get).
    pub async fn lookup_local(&self, key: impl AsRef<[u8]>) -> Result<Found, Error> {
        bump(&self.inner.counters.server_requests);
        match self.begin(key.as_ref(), Route::Local)? {
            Lookup::Hit(found) => Ok(found),
            Lookup::Miss { key, stale } => {
                let outcome = Box::pin(self.load_local(key)).await;
                self.finish(outcome, stale)
            }
        }
    }

    /// A snapshot of the counters and of both caches' sizes.
    pub fn stats(&self) -> GroupStats {
        let inner = &self.inner;
        let hot = inner.hot.as_ref().map(CacheStats::of).unwrap_or_default();
        inner.counters.snapshot(CacheStats::of(&inner.main), hot)
    }

    /// Checks the key and looks in both caches (step 1); the caches count the lookups. A
    /// remembered "not found" is returned as [`Error::NotFound`].
    fn begin(&self, key: &[u8], route: Route) -> Result<Lookup, Error> {
        let inner = &self.inner;
        if key.is_empty() {
            bump(&inner.counters.empty_keys);
            return Err(Error::EmptyKey);
        }
        let now = Now::default();
        let clock = || now.get();
        // `stats` derives gets and hits from these lookups' own counts.
        let judged = match inner.main.get_unexpired(key, clock) {
            Some(entry) => inner.judge(entry, inner.expiry.window(), &now),
            None => match inner.hot.as_ref().and_then(|h| h.get_unexpired(key, clock)) {
                Some(entry) => inner.judge(entry, Duration::ZERO, &now),
                None => Judged::Expired,
            },
        };
        let stale = match judged {
            Judged::Fresh(Ok(found)) => return Ok(Lookup::Hit(found)),
            Judged::Fresh(Err(e)) => {
                bump(&inner.counters.negative_hits);
                return Err(e);
            }
            Judged::Revalidate(value) => {
                bump(&inner.counters.stale_serves);
                self.revalidate(key, route);
                return Ok(Lookup::Hit(Found::stale(value, Stale::WhileRevalidate)));
            }
            Judged::StaleIfError(fallback) => Some(fallback),
            Judged::Expired => None,
        };
        bump(&inner.counters.loads);
        Ok(Lookup::Miss {
            key: Bytes::copy_from_slice(key),
            stale,
        })
    }

    /// Reloads `key` on a task of its own, unless it is being reloaded already.
    fn revalidate(&self, key: &[u8], route: Route) {
        let key = Bytes::copy_from_slice(key);
        if !lock(&self.inner.revalidating).insert(key.clone()) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            // The load fills the cache or fails; either way it was logged and counted, and the
            // stale value goes on being served until its window closes.
            let _ = match route {
                Route::Cluster => this.load(key.clone(), None).await,
                Route::Local => this.load_local(key.clone()).await.0,
            };
            lock(&this.inner.revalidating).remove(&key);
        });
    }

    /// Counts a shared load, and serves the stale value if the load failed within its window.
    fn finish(
        &self,
        (result, shared): (Result<Found, Error>, bool),
        stale: Option<Box<Fallback>>,
    ) -> Result<Found, Error> {
        let inner = &self.inner;
        if shared {
            bump(&inner.counters.loads_deduped);
        }
        match (result, stale) {
            (Err(Error::Load(_) | Error::Timeout | Error::Panicked(_)), Some(stale))
                if now() < stale.until =>
            {
                bump(&inner.counters.stale_serves);
                Ok(Found::stale(stale.value, Stale::IfError))
            }
            (result, _) => result,
        }
    }

    /// Step 2: the work of one `get` load, shared by every caller of the key.
    fn fetch(self, key: Bytes) -> BoxFuture<'static, Result<Found, Error>> {
        Box::pin(async move {
            let inner = &self.inner;
            // Taken before the caches are looked at, so that a write in between bars the load.
            let ticket = inner.ledger.begin(&key);
            if let Some(found) = inner.peek_fresh(&key) {
                return found;
            }
            let peer = inner.picker.as_ref().and_then(|p| p.pick_peer(&key));
            if let Some(peer) = peer {
                let wait = inner.load_timeout + PEER_MARGIN;
                match tokio::time::timeout(wait, peer.get(&inner.name, &key)).await {
                    Ok(Ok(found)) => {
                        bump(&inner.counters.peer_loads);
                        return Ok(inner.keep_fetched(ticket, key, found));
                    }
                    // The peer could not be asked: a dead owner never fails the caller.
                    Ok(Err(LoadError::Unreachable(reason))) => {
                        bump(&inner.counters.peer_errors);
                        tracing::debug!(group = %inner.name, reason = %escape(&reason), "peer unreachable; loading locally");
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
                        tracing::warn!(group = %inner.name, key = %escape_bytes(&key), ?wait, "no answer from the owner in time");
                        return Err(Error::Timeout);
                    }
                }
            }
            drop(ticket);
            self.load_local(key).await.0
        })
    }

    /// Step 3 through the local singleflight: the result, and whether it was shared.
    async fn load_local(&self, key: Bytes) -> (Result<Found, Error>, bool) {
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
            tracing::error!(group = %self.inner.name, key = %escape_bytes(&key), message = %escape(&message), "the getter panicked");
        }
        (result, out.shared)
    }

    /// The work of one getter call, shared by every caller of the key, in a span of its own.
    fn call_getter(self, key: Bytes) -> BoxFuture<'static, Result<Found, Error>> {
        // Made here, in the poll of the get that begins the load, so that the span is a child
        // of that get's span, whichever task goes on to run the load.
        let span = load_span(&self.inner.name, &key);
        let work = async move {
            let inner = &self.inner;
            let ticket = inner.ledger.begin(&key);
            if let Some(found) = inner.peek_fresh(&key) {
                return found;
            }
            let deadline = now() + inner.load_timeout;
            let ctx = LoadContext::with(key.clone(), deadline, tracing::Span::current());
            // Fires if the getter's future is dropped unanswered: at the deadline below, or
            // with this whole load (its runtime shutting down).
            let abandon = ctx.abandon_on_drop();
            let deadline = tokio::time::Instant::from_std(deadline);
            let call = async {
                let _turn = inner.turn().await;
                inner.getter.get(ctx).await
            };
            let loaded = tokio::time::timeout_at(deadline, call).await;
            if loaded.is_ok() {
                abandon.disarm();
            } else {
                drop(abandon);
            }
            match loaded {
                Ok(Ok(loaded)) => {
                    bump(&inner.counters.local_loads);
                    Ok(inner.keep(ticket, key, loaded))
                }
                Ok(Err(LoadError::NotFound)) => {
                    bump(&inner.counters.local_load_errs);
                    inner.remember_not_found(ticket, key);
                    Err(Error::NotFound)
                }
                Ok(Err(e)) => {
                    bump(&inner.counters.local_load_errs);
                    // A refused key is an answer, not a failure.
                    if !matches!(e, LoadError::InvalidKey(_)) {
                        tracing::warn!(group = %inner.name, key = %escape_bytes(&key), error = %escape(&e), "load failed");
                    }
                    Err(e.into())
                }
                Err(_) => {
                    bump(&inner.counters.local_load_errs);
                    bump(&inner.counters.load_timeouts);
                    tracing::warn!(group = %inner.name, key = %escape_bytes(&key), timeout = ?inner.load_timeout, "load timed out; dropped");
                    Err(Error::Timeout)
                }
            }
        };
        Box::pin(work.instrument(span))
    }
}

/// The span of one getter call: `load` with the group and the key. When the subscriber does not
/// want it, the span current here instead, so that the context's span is always the one the
/// getter runs in.
fn load_span(group: &str, key: &[u8]) -> tracing::Span {
    let span = tracing::info_span!("load", group, key = %escape_bytes(key));
    if span.is_disabled() {
        tracing::Span::current()
    } else {
        span
    }
}

impl Inner {
    /// A turn to call the getter, once one is free: held for the call, counted while waited for
    /// and while held.
    async fn turn(&self) -> Turn<'_> {
        let counters = &self.counters;
        let permit = match self.turns.try_acquire() {
            Ok(permit) => permit,
            Err(_) => {
                bump(&counters.load_waits);
                let _waiting = Gauge::up(&counters.loads_waiting);
                self.turns
                    .acquire()
                    .await
                    .expect("the group never closes its turns")
            }
        };
        Turn {
            _permit: permit,
            _running: Gauge::up(&counters.loads_running),
        }
    }

    /// What a cached entry is worth at `now`. `window` is how long past its freshness a value
    /// is kept for the stale windows: the group's for the main cache, none for hot copies.
    fn judge(&self, entry: Expiring<Option<Bytes>>, window: Duration, now: &Now) -> Judged {
        let Some(deadline) = entry.deadline else {
            return Judged::fresh(entry.value, None);
        };
        let now = now.get();
        let Some(value) = entry.value else {
            // A remembered "not found" has no stale window.
            return match deadline.checked_duration_since(now) {
                Some(left) if !left.is_zero() => Judged::Fresh(Err(Error::NotFound)),
                _ => Judged::Expired,
            };
        };
        let fresh_until = deadline.checked_sub(window).unwrap_or(deadline);
        if now < fresh_until {
            return Judged::fresh(Some(value), Some(fresh_until - now));
        }
        let expiry = &self.expiry;
        if now < fresh_until + expiry.stale_while_revalidate {
            Judged::Revalidate(value)
        } else if now < fresh_until + expiry.stale_if_error {
            Judged::StaleIfError(Box::new(Fallback {
                value,
                until: fresh_until + expiry.stale_if_error,
            }))
        } else {
            Judged::Expired
        }
    }

    /// A fresh entry of `key` in either cache, without counting a cache get or changing
    /// recency: a load that finds one ends there.
    fn peek_fresh(&self, key: &[u8]) -> Option<Result<Found, Error>> {
        let now = Now::default();
        let main = self.main.peek(key).map(|e| (e, self.expiry.window()));
        let hot = || self.hot.as_ref()?.peek(key).map(|e| (e, Duration::ZERO));
        let (entry, window) = main.or_else(hot)?;
        match self.judge(entry, window, &now) {
            Judged::Fresh(found) => Some(found),
            _ => None,
        }
    }

    /// The deadline of a value fresh for `ttl` and then kept `window` longer; `None` when it
    /// does not expire (or so far ahead that the clock cannot say).
    fn deadline(&self, ttl: Option<Duration>, window: Duration) -> Option<Instant> {
        let deadline = now().checked_add(ttl?.checked_add(window)?)?;
        self.has_deadlines.store(true, Ordering::Relaxed);
        Some(deadline)
    }

    /// Keeps one peer value in ten in the hot cache, until the owner's deadline, unless a write
    /// came first; returns the value to serve. A value of the key in the main cache (loaded
    /// here while the owner was unreachable) gives way to the owner's answer.
    fn keep_fetched(&self, ticket: Ticket<'_>, key: Bytes, found: Found) -> Found {
        let copy = self.hot_copy(&found);
        let served = match &copy {
            Some((_, owned, _)) => Found::new(owned.clone(), found.ttl),
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

    /// For one peer value in ten that may be kept: the hot cache, a copy that owns exactly its
    /// bytes, and the owner's deadline.
    fn hot_copy(&self, found: &Found) -> Option<(&Cache, Bytes, Option<Instant>)> {
        let hot = self.hot.as_ref()?;
        let ttl = found.ttl.or(self.expiry.ttl);
        let keepable = ttl != Some(Duration::ZERO) && found.value.len() <= self.max_value_bytes;
        if !keepable || lock(&self.rng).u32(..HOT_CHANCE) != 0 {
            return None;
        }
        let owned = Bytes::copy_from_slice(&found.value);
        Some((hot, owned, self.deadline(ttl, Duration::ZERO)))
    }

    /// Puts a loaded value into the main cache, unless a write came first, and returns what to
    /// serve: a copy that owns exactly its bytes when it is kept (the value handed in may be a
    /// slice of a larger buffer, which the cache must not hold alive), the value itself when it
    /// is too large.
    fn keep(&self, ticket: Ticket<'_>, key: Bytes, loaded: Loaded) -> Found {
        let ttl = loaded.ttl.or(self.expiry.ttl);
        let value = loaded.value;
        if ttl == Some(Duration::ZERO) {
            return Found::new(value, ttl);
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
                return Found::new(owned, ttl);
            }
        }
        bump(&self.counters.values_too_large);
        tracing::info!(group = %self.name, key = %escape_bytes(&key), bytes = value.len(), max = self.max_value_bytes, "value too large to cache; served");
        Found::new(value, ttl)
    }

    /// The getter said "not found": remember it for the not-found TTL, or else drop any stale
    /// value of the key, which must not be served once the source says there is none.
    fn remember_not_found(&self, ticket: Ticket<'_>, key: Bytes) {
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

    /// Stores a written value here, as the key's owner, barring the loads of the key in flight
    /// and dropping its hot copy; says whether it fit.
    pub(crate) fn store(&self, key: Bytes, value: &Bytes, ttl: Option<Duration>) -> bool {
        let ttl = ttl.or(self.expiry.ttl);
        let owned = Bytes::copy_from_slice(value);
        let entry = Expiring::new(Some(owned), self.deadline(ttl, self.expiry.window()));
        self.ledger.write(std::slice::from_ref(&key), || {
            self.remote.forget(&key);
            self.local.forget(&key);
            if let Some(hot) = &self.hot {
                hot.remove(&key);
            }
            // A value too large is refused, and the key's old value goes with it.
            self.main.insert(key.clone(), entry).is_ok()
        })
    }

    /// Drops the entries whose deadline has passed.
    fn sweep(&self) {
        if !self.has_deadlines.load(Ordering::Relaxed) {
            return;
        }
        let now = now();
        self.main.remove_expired(now);
        if let Some(hot) = &self.hot {
            hot.remove_expired(now);
        }
    }
}

/// Sweeps a group's expired entries every [`SWEEP_INTERVAL`] until the group is dropped.
async fn sweep(inner: Weak<Inner>) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match inner.upgrade() {
            Some(inner) => inner.sweep(),
            None => return,
        }
    }
}

/// A getter call's turn: the semaphore's permit and the call counted as running.
struct Turn<'a> {
    _permit: SemaphorePermit<'a>,
    _running: Gauge<'a>,
}

/// Which loads serve a request: the cluster's (`get`) or only this node's (`get_local`).
#[derive(Clone, Copy)]
enum Route {
    Cluster,
    Local,
}

/// What step 1 found.
enum Lookup {
    Hit(Found),
    /// Not cached, or stale: the key, owned, for the load, and the stale value to serve if the
    /// load fails (boxed: rare, and it would double the size of every lookup's result).
    Miss {
        key: Bytes,
        stale: Option<Box<Fallback>>,
    },
}

/// An expired value that may be served until `until` if its reload fails.
struct Fallback {
    value: Bytes,
    until: Instant,
}

/// What a cached entry is worth now.
enum Judged {
    /// Fresh: the value with the time it has left, or a remembered "not found".
    Fresh(Result<Found, Error>),
    /// Expired within the stale-while-revalidate window: serve it and reload it.
    Revalidate(Bytes),
    /// Expired within the stale-if-error window: reload, and serve it if that fails.
    StaleIfError(Box<Fallback>),
    /// Expired for good, or nothing there.
    Expired,
}

impl Judged {
    fn fresh(value: Option<Bytes>, ttl: Option<Duration>) -> Self {
        Judged::Fresh(value.map(|v| Found::new(v, ttl)).ok_or(Error::NotFound))
    }
}

/// The time, read once per lookup and only when an entry has a deadline: entries without one
/// cost no clock read.
#[derive(Default)]
struct Now(Cell<Option<Instant>>);

impl Now {
    fn get(&self) -> Instant {
        match self.0.get() {
            Some(now) => now,
            None => {
                let now = now();
                self.0.set(Some(now));
                now
            }
        }
    }
}

/// The group's clock: tokio's, so that tests with paused time control expiry too.
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The singleflight's error folded into the group's.
fn flatten(result: Result<Found, alo_singleflight::Error<Error>>) -> Result<Found, Error> {
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

    /// How long a write to another member may take (default [`DEFAULT_WRITE_TIMEOUT`], 2 s); the
    /// group waits this plus [`PEER_MARGIN`] for the transport's answer. A member that takes
    /// longer is listed unreachable in the write's [`Written`](crate::Written): a member applies
    /// a write in memory, so one that does not answer in this time is hung or gone.
    pub fn write_timeout(mut self, write_timeout: Duration) -> Self {
        self.write_timeout = write_timeout;
        self
    }

    /// How many getter calls run at once (default [`DEFAULT_MAX_CONCURRENT_LOADS`], 64): a load
    /// beyond it waits for a turn within its deadline, so no burst of cold keys, from one
    /// request or many, puts more than this on the origin at once. `GroupStats` counts the
    /// calls running and waiting (`loads_running`, `loads_waiting`) and the loads that waited
    /// (`load_waits`); a load that reaches its deadline waiting is a load timeout.
    pub fn max_concurrent_loads(mut self, loads: usize) -> Self {
        self.max_concurrent_loads = loads;
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

    /// How long a value is served when its getter gives it no time to live of its own, and
    /// a [`set`](Group::set) gives none (default: for as long as it stays in the cache).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.expiry.ttl = Some(ttl);
        self
    }

    /// How long the getter's "not found" for a key is remembered (default: not at all). Within
    /// it, gets of the key are answered [`Error::NotFound`] without asking the getter: one
    /// origin request per key per window, however many gets. The price: a key created at the
    /// origin in the meantime stays "not found" here until the window ends (or a `set` or
    /// `remove` of it).
    pub fn not_found_ttl(mut self, ttl: Duration) -> Self {
        self.expiry.not_found_ttl = ttl;
        self
    }

    /// How long past its expiry a value may still be served when its reload fails (default:
    /// not at all). The caller gets the old value, marked [`Stale::IfError`], instead of the
    /// error.
    pub fn stale_if_error(mut self, window: Duration) -> Self {
        self.expiry.stale_if_error = window;
        self
    }

    /// How long past its expiry a value is served at once, marked [`Stale::WhileRevalidate`],
    /// while one background load per key reloads it (default: not at all).
    pub fn stale_while_revalidate(mut self, window: Duration) -> Self {
        self.expiry.stale_while_revalidate = window;
        self
    }

    /// The group.
    ///
    /// # Errors
    /// [`Error::EmptyName`] when the name is empty; [`Error::ZeroTimeout`] for a zero load or
    /// write timeout; [`Error::ZeroConcurrency`] for no getter calls at once;
    /// [`Error::ZeroTtl`] for a zero default TTL.
    ///
    /// Built inside a tokio runtime, the group sweeps its expired entries once a second on a
    /// task of its own, which ends when the group is dropped. Outside one, expired entries are
    /// dropped only when a lookup finds them, or by eviction.
    pub fn build(self) -> Result<Group, Error> {
        if self.name.is_empty() {
            return Err(Error::EmptyName);
        }
        if self.load_timeout.is_zero() || self.write_timeout.is_zero() {
            return Err(Error::ZeroTimeout);
        }
        if self.max_concurrent_loads == 0 {
            return Err(Error::ZeroConcurrency);
        }
        if self.expiry.ttl == Some(Duration::ZERO) {
            return Err(Error::ZeroTtl);
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
        let inner = Arc::new(Inner {
            name: self.name,
            getter: self.getter,
            picker: self.picker,
            main: cache(main_bytes, max_value_bytes),
            hot: hot_bytes.map(|bytes| cache(bytes, max_value_bytes)),
            remote: Flight::detached(spawn),
            local: Flight::detached(spawn),
            ledger: Ledger::default(),
            revalidating: Mutex::default(),
            rng: Mutex::new(fastrand::Rng::with_seed(self.seed)),
            counters: Counters::default(),
            load_timeout: self.load_timeout,
            write_timeout: self.write_timeout,
            turns: Semaphore::new(self.max_concurrent_loads.min(Semaphore::MAX_PERMITS)),
            max_value_bytes,
            expiry: self.expiry,
            has_deadlines: AtomicBool::new(false),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(sweep(Arc::downgrade(&inner)));
        }
        Ok(Group { inner })
    }
}

/// How a cache charges an entry: its key's and value's bytes and the entry's overhead.
pub(crate) type Weigher = fn(&Bytes, &Expiring<Option<Bytes>>) -> usize;

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
            .field("write_timeout", &self.write_timeout)
            .field("max_concurrent_loads", &self.max_concurrent_loads)
            .field("peers", &self.picker.is_some())
            .field("expiry", &self.expiry)
            .finish_non_exhaustive()
    }
}
