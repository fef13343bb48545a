//! The group and its read path: the caches, then the key's owner, then the getter, once per key
//! however many callers wait.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use tokio::sync::{Semaphore, SemaphorePermit};
use tracing::Instrument;

use crate::freshness::{Deadlines, Fallback, Judged, later, now};
use crate::stats::{Counters, Gauge, bump};
use crate::store::Store;
use crate::{
    BucketCounts, Buckets, Error, Found, Getter, GroupStats, LoadContext, LoadError, Loaded, Peer,
    PeerPicker, Stale, Via, escape, escape_bytes,
};

/// How often a group drops the entries whose deadline has passed.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// How long a new owner waits for the previous owner's answer to a peek before it loads the key
/// itself: a peek is answered from memory, so a member that takes longer is not worth waiting on.
pub const PEEK_TIMEOUT: Duration = Duration::from_millis(200);

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
///    owner. A peer's value is returned, and goes into the hot cache too when the owner reports
///    the key popular enough (see [`GroupBuilder::hot_rate`](crate::GroupBuilder::hot_rate)).
///    A peer's "not found" is returned as it is. A peer's failure is counted and the load goes
///    on to 3: a dead peer never fails the caller.
/// 3. The getter loads the key (one call per key, shared with concurrent gets from peers), the
///    value goes into the main cache and is returned. Errors are returned and never cached.
///
/// # A load's lifetime
/// A load belongs to the cache, not to the caller that started it. Once begun, a getter call
/// runs on a task of its own (the group needs a tokio runtime) until it ends or reaches its
/// deadline, whatever its callers do: a caller that times out or is dropped only stops waiting,
/// the value still fills the cache, and a caller that comes later joins the load still running.
/// A request to a peer is driven by its callers instead, and dropped with the last of them:
/// the load it asked for is the owner's, which keeps it (a hot copy here is all that is lost),
/// and where the owner gave no answer the load here in its place is a getter call like any
/// other, on a task of its own. A load has one deadline, the group's [load
/// timeout](crate::GroupBuilder::load_timeout) from when it begins, and it flows down: a peer asked for
/// the key is given it plus half of [`PEER_MARGIN`](crate::PEER_MARGIN) (its own load has as
/// long), and a getter call after a peer that did not answer has what is left. Past it the
/// callers get [`Error::Timeout`], the load is dropped and counted, and nothing is cached. The
/// getter is told the deadline, and that its load was abandoned, through its [`LoadContext`].
///
/// # Peers that fail
/// A peer's answer without a value (not found, an invalid key, its load failed or timed out) is
/// the caller's answer: loading the key here would ask the same origin a second time. A peer
/// that gave no answer ([`LoadError::Unreachable`]) is counted in `peer_errors` and the key loaded
/// here, with what is left of the deadline; none left, the callers get [`Error::Timeout`].
///
/// [`local`](Group::local), the owner's side, for requests from peers, skips step 2's peer: the
/// answering node never forwards, so two nodes whose views of the membership differ cannot
/// bounce a request between them.
///
/// # Expiry and writes
/// A value may expire (a getter's [`Loaded::with_ttl`](crate::Loaded::with_ttl), or the group's
/// [`ttl`](crate::GroupBuilder::ttl)); it is never served past its deadline, except under the group's
/// stale windows, and a peer's hot copy never outlives the owner's value. A "not found" may be
/// remembered ([`not_found_ttl`](crate::GroupBuilder::not_found_ttl)). [`set`](Group::set),
/// [`remove`](Group::remove) and [`purge`](Group::purge) change the cache across the cluster;
/// once one returns, no member it reached serves a value loaded before it began. The crate
/// README states what each operation guarantees and what it does not.
///
/// # Budget
/// `max_bytes` bounds both caches together, charging each entry its key's and value's bytes
/// plus [`ENTRY_OVERHEAD`](crate::ENTRY_OVERHEAD). With a picker, the hot cache gets 1/8 and the main cache the rest;
/// without one, the main cache gets it all. Every value up to the [largest cacheable
/// value](crate::GroupBuilder::max_value_bytes) is cached; a larger one is returned, not cached, and
/// counted in `values_too_large`. A cached value owns exactly its bytes: a value that is a
/// slice of a larger buffer (a network read buffer, say) is copied before it is kept, so the
/// buffer is not held alive by the cache. `max_bytes == 0` means unbounded.
#[derive(Clone)]
pub struct Group {
    pub(crate) inner: Arc<Inner>,
}

/// What every handle of a group shares.
pub(crate) struct Inner {
    pub(crate) name: String,
    pub(crate) getter: Arc<dyn Getter>,
    pub(crate) picker: Option<Arc<dyn PeerPicker>>,
    pub(crate) store: Store,
    /// Keys being reloaded in the background while their stale value is served.
    pub(crate) revalidating: Mutex<HashSet<Bytes>>,
    pub(crate) counters: Counters,
    pub(crate) deadlines: Deadlines,
    /// Turns to call the getter: at most this many calls run at once, whoever asks, so no burst
    /// of cold keys puts more than that on the origin. A load waits for its turn within its
    /// deadline.
    pub(crate) turns: Semaphore,
    /// How long each getter call took once it had its turn, answered or not (a call dropped at
    /// its deadline is not counted).
    pub(crate) load_durations: Buckets,
}

impl Group {
    /// The group's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The value of `key`, from the caches, the key's owner, or the getter; see the type's
    /// docs for the flow.
    ///
    /// # Errors
    /// [`Error::EmptyKey`]; [`Error::InvalidKey`] when the getter (here or on the owner) refuses
    /// the key; [`Error::NotFound`] when it has no value; [`Error::Load`] or
    /// [`Error::Panicked`] when it failed; [`Error::Timeout`] when the load passed its deadline.
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

    /// How long the getter's calls took, in nanoseconds, from their turn to their answer (in
    /// [`DURATION_BUCKETS_NS`](crate::DURATION_BUCKETS_NS)): the origin's latency as this node
    /// saw it.
    pub fn load_durations(&self) -> BucketCounts {
        self.inner.load_durations.snapshot()
    }

    /// A snapshot of the counters and of both caches' sizes.
    pub fn stats(&self) -> GroupStats {
        let (main, hot) = self.inner.store.stats();
        self.inner.counters.snapshot(main, hot)
    }

    /// Steps 2 and 3 for `get`, and the stale value's rescue. Boxed, so that the future of
    /// `get`, which every caller holds, stays small on the hit path.
    fn load(
        &self,
        key: Bytes,
        stale: Option<Box<Fallback>>,
    ) -> BoxFuture<'_, Result<Found, Error>> {
        Box::pin(async move {
            let inner = &self.inner;
            let deadline = inner.deadlines.load();
            let outcome = match &inner.picker {
                None => self.load_local(key, deadline).await,
                Some(_) => {
                    let this = self.clone();
                    let work_key = key.clone();
                    let work = move || this.fetch(work_key, deadline);
                    let out = inner.store.remote.work(key, work).await;
                    (flatten(out.result), out.shared)
                }
            };
            self.finish(outcome, stale)
        })
    }

    /// Checks the key and looks in both caches (step 1); the caches count the lookups. A
    /// remembered "not found" is returned as [`Error::NotFound`].
    pub(crate) fn begin(&self, key: &[u8], route: Route) -> Result<Lookup, Error> {
        let inner = &self.inner;
        if key.is_empty() {
            bump(&inner.counters.empty_keys);
            return Err(Error::EmptyKey);
        }
        // `stats` derives gets and hits from these lookups' own counts.
        let stale = match inner.store.lookup(key) {
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
                Route::Local => {
                    let deadline = this.inner.deadlines.load();
                    this.load_local(key.clone(), deadline).await.0
                }
            };
            lock(&this.inner.revalidating).remove(&key);
        });
    }

    /// Counts a shared load, and serves the stale value if the load failed within its window.
    pub(crate) fn finish(
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
    fn fetch(self, key: Bytes, deadline: Instant) -> BoxFuture<'static, Result<Found, Error>> {
        Box::pin(async move {
            let inner = &self.inner;
            let ticket = inner.store.begin(&key);
            if let Some(found) = inner.store.peek_fresh(&key) {
                return found;
            }
            let Some(picker) = &inner.picker else {
                drop(ticket);
                return self.load_local(key, deadline).await.0;
            };
            let mut asked: Option<Arc<dyn Peer>> = None;
            // The owner, then, if it gave no answer and the picker has since named another
            // member in its place (its successor), that one, once.
            while let Some(peer) = picker.pick_peer(&key) {
                if asked.as_ref().is_some_and(|a| a.name() == peer.name()) {
                    break;
                }
                if asked.is_some() {
                    bump(&inner.counters.successor_loads);
                }
                match self.ask(&*peer, &key, deadline).await {
                    Ok(found) => {
                        bump(&inner.counters.peer_loads);
                        let members = picker.members();
                        let served = inner.store.fill_copy(ticket, key, found, members);
                        return Ok(served.via(Via::Peer));
                    }
                    // No answer: a dead owner never fails the caller while there is time left.
                    Err(LoadError::Unreachable(reason)) => {
                        bump(&inner.counters.peer_errors);
                        if now() >= deadline {
                            bump(&inner.counters.load_timeouts);
                            tracing::warn!(group = %inner.name, key = %escape_bytes(&key), reason = %escape(&reason), "no answer from the owner in time");
                            return Err(Error::Timeout);
                        }
                        tracing::debug!(group = %inner.name, reason = %escape(&reason), "peer unreachable; asking again where the key goes");
                    }
                    // The owner's answer about the key or its load: asking the origin again
                    // here would ask it twice.
                    Err(e) => {
                        bump(&inner.counters.peer_load_errs);
                        return Err(e.into());
                    }
                }
                if asked.is_some() {
                    break;
                }
                asked = Some(peer);
            }
            drop(ticket);
            self.load_local(key, deadline).await.0
        })
    }

    /// Asks `peer` for `key` by the load's `deadline` (the peer gets half a margin more);
    /// `Unreachable` when it gave no answer, its transport's deadline included.
    async fn ask(
        &self,
        peer: &dyn Peer,
        key: &[u8],
        deadline: Instant,
    ) -> Result<Found, LoadError> {
        let inner = &self.inner;
        let given = inner.deadlines.peer_get(deadline);
        let asked = peer.get(&inner.name, key, given);
        tokio::time::timeout_at(inner.deadlines.backstop(given), asked)
            .await
            .unwrap_or_else(|_| Err(LoadError::unreachable("no answer by the deadline")))
    }

    /// Step 3 through the local singleflight, by `deadline`: the result, and whether it was
    /// shared.
    pub(crate) async fn load_local(
        &self,
        key: Bytes,
        deadline: Instant,
    ) -> (Result<Found, Error>, bool) {
        let inner = &self.inner;
        let this = self.clone();
        let work_key = key.clone();
        let work = move || this.call_getter(work_key, deadline);
        let out = inner.store.local.work(key.clone(), work).await;
        let result = flatten(out.result);
        if let (false, Err(Error::Panicked(message))) = (out.shared, &result) {
            bump(&inner.counters.local_load_errs);
            tracing::error!(group = %inner.name, key = %escape_bytes(&key), message = %escape(&message), "the getter panicked");
        }
        (result, out.shared)
    }

    /// The work of one getter call by `deadline`, shared by every caller of the key, in a span
    /// of its own.
    fn call_getter(
        self,
        key: Bytes,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<Found, Error>> {
        // Made here, in the poll of the get that begins the load, so that the span is a child
        // of that get's span, whichever task goes on to run the load.
        let span = load_span(&self.inner.name, &key);
        let work = async move {
            let inner = &self.inner;
            let ticket = inner.store.begin(&key);
            if let Some(found) = inner.store.peek_fresh(&key) {
                return found;
            }
            if let Some(found) = inner.peek_previous_owner(&key, deadline).await {
                let loaded = Loaded {
                    value: found.value,
                    ttl: found.ttl,
                };
                return Ok(inner.fill(ticket, key, loaded).via(Via::Peer));
            }
            let ctx = LoadContext::with(key.clone(), deadline, tracing::Span::current());
            // Fires if the getter's future is dropped unanswered: at the deadline below, or
            // with this whole load (its runtime shutting down).
            let abandon = ctx.abandon_on_drop();
            let call = async {
                let _turn = inner.turn().await;
                let began = std::time::Instant::now();
                let loaded = inner.getter.get(ctx).await;
                inner.load_durations.observe_duration(began.elapsed());
                loaded
            };
            let until = tokio::time::Instant::from_std(deadline);
            let loaded = tokio::time::timeout_at(until, call).await;
            if loaded.is_ok() {
                abandon.disarm();
            } else {
                drop(abandon);
            }
            match loaded {
                Ok(Ok(loaded)) => {
                    bump(&inner.counters.local_loads);
                    Ok(inner.fill(ticket, key, loaded))
                }
                Ok(Err(LoadError::NotFound)) => {
                    bump(&inner.counters.local_load_errs);
                    inner.store.remember_not_found(ticket, key);
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
                    tracing::warn!(group = %inner.name, key = %escape_bytes(&key), timeout = ?inner.deadlines.load_timeout, "load timed out; dropped");
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
    /// The value of `key` from the member that owned it before the members changed, if the
    /// picker names one and it holds the key fresh: a new owner's peek, within
    /// [`PEEK_TIMEOUT`] (and the load's deadline). `None` on a miss or no answer: load as ever.
    ///
    /// No peek for a key written here in the last [`FILL_GUARD`](crate::FILL_GUARD): a write
    /// reaches the key's owner first and the other members after, so the previous owner may
    /// not have taken it yet. (A write that comes during the peek bars its value through the
    /// load's ticket.)
    async fn peek_previous_owner(&self, key: &[u8], deadline: Instant) -> Option<Found> {
        let peer = self.picker.as_ref()?.previous_owner(key)?;
        if self.store.written_recently(key) {
            return None;
        }
        bump(&self.counters.peeks);
        let given = deadline.min(later(now(), PEEK_TIMEOUT));
        let peeked = peer.peek(&self.name, key, given);
        let answer = tokio::time::timeout_at(self.deadlines.backstop(given), peeked).await;
        match answer {
            Ok(Ok(Some(found))) if found.stale.is_none() => {
                bump(&self.counters.peek_hits);
                Some(found)
            }
            Ok(Ok(_)) => None,
            // No answer is counted as any peer request's; an answer about the key is a miss.
            Ok(Err(LoadError::Unreachable(reason))) => {
                bump(&self.counters.peer_errors);
                tracing::debug!(group = %self.name, peer = peer.name(), reason = %escape(&reason), "a peek got no answer; loading");
                None
            }
            Ok(Err(_)) => None,
            Err(_) => {
                bump(&self.counters.peer_errors);
                None
            }
        }
    }

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

    /// Keeps a loaded value in the main cache, unless a write came first, and returns what to
    /// serve; a value too large to keep is served, and counted.
    fn fill(&self, ticket: crate::ledger::Ticket<'_>, key: Bytes, loaded: Loaded) -> Found {
        let found = match self.store.fill(ticket, key.clone(), loaded) {
            Ok(found) => found,
            Err(found) => {
                bump(&self.counters.values_too_large);
                let max = self.store.max_value_bytes;
                tracing::info!(group = %self.name, key = %escape_bytes(&key), bytes = found.value.len(), max, "value too large to cache; served");
                found
            }
        };
        found.via(Via::Origin)
    }
}

/// Sweeps a group's expired entries every [`SWEEP_INTERVAL`] until the group is dropped.
pub(crate) async fn sweep(inner: Weak<Inner>) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match inner.upgrade() {
            Some(inner) => inner.store.sweep(),
            None => return,
        }
    }
}

/// A getter call's turn: the semaphore's permit and the call counted as running.
struct Turn<'a> {
    _permit: SemaphorePermit<'a>,
    _running: Gauge<'a>,
}

/// Which loads serve a request: the cluster's (`get`) or only this node's (`local().get`).
#[derive(Clone, Copy)]
pub(crate) enum Route {
    Cluster,
    Local,
}

/// What step 1 found.
pub(crate) enum Lookup {
    Hit(Found),
    /// Not cached, or stale: the key, owned, for the load, and the stale value to serve if the
    /// load fails (boxed: rare, and it would double the size of every lookup's result).
    Miss {
        key: Bytes,
        stale: Option<Box<Fallback>>,
    },
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

impl fmt::Debug for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group")
            .field("name", &self.inner.name)
            .field("peers", &self.inner.picker.is_some())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}
