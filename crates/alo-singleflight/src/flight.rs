//! The group of calls in flight, keyed by what they compute.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};

use crate::Error;

/// One call in flight: its output is cloned to every caller that awaits it.
type Work<V, E> = Shared<BoxFuture<'static, Result<V, Error<E>>>>;

/// A call in the map, with a number that tells it apart from a later call for the same key
/// (a `Shared` that has completed cannot be compared with `ptr_eq`).
struct InFlight<V, E> {
    id: u64,
    work: Work<V, E>,
    /// In a detached flight: set once a task has been spawned to drive the work.
    driven: Arc<AtomicBool>,
}

/// What one caller of [`Flight::work`] got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome<V, E> {
    /// The work's value or error: the same for every caller that shared the call.
    pub result: Result<V, Error<E>>,
    /// `false` for the caller whose call started the work, `true` for every caller that joined
    /// a call already in flight.
    pub shared: bool,
}

/// Suppresses duplicate calls: while a call for a key is in flight, further calls for the same
/// key wait for its outcome instead of running the work again.
///
/// Once a call finishes, its key is forgotten: this is not a cache, and an error or a panic is
/// never remembered.
///
/// # Cancellation
/// A flight runs its work in one of two modes, chosen when it is made:
/// - [`Flight::new`]: **cancelled with its last caller.** The work is a future that every
///   caller of the call polls, so whichever caller is polled drives it: dropping any caller, the
///   one that started the work included, leaves it running for the others. When **every** caller
///   is gone (all dropped, aborted or timed out) the work future is dropped, which cancels it,
///   and the key is forgotten; the next call starts afresh. No runtime is needed and nothing is
///   spawned. Because joining callers help poll the work, work that can finish without being
///   woken may finish at a joiner's first poll.
/// - [`Flight::detached`]: **runs to its end.** The work is handed to a [`Spawn`]er (say
///   `tokio::spawn`) when it starts, and that task drives it whatever the callers do; a caller
///   that goes away only stops waiting. The key is forgotten when the work ends, so a call that
///   arrives after every caller left but before the work ended still joins it. Use it where the
///   work's result is worth keeping even if nobody waits for it any more: a cache fill from a
///   slow origin that has been asked already.
///
/// # Panics
/// A panic in the work is caught and becomes [`Error::Panicked`] for every caller; it does not
/// propagate, and the next call for the key starts afresh.
///
/// # Bounds
/// The value and the error reach every caller as clones (`V: Clone`, `E: Clone`): share
/// anything costly through an `Arc` or `bytes::Bytes`. The work must be `Send + 'static`
/// because any caller's task may end up driving it.
pub struct Flight<K, V, E> {
    /// Shared with the tasks that drive detached work, which forget their key when they end.
    calls: Arc<Mutex<HashMap<K, InFlight<V, E>>>>,
    next_id: AtomicU64,
    /// `Some` for a detached flight: where its work runs.
    spawner: Option<Box<dyn Spawn>>,
}

/// Runs a task to its end on its own, for a [`Flight::detached`]: the seam where an async
/// runtime comes in, so that this crate needs none.
///
/// Implemented for closures, e.g. for tokio:
/// ```
/// # use alo_singleflight::Flight;
/// let flight: Flight<u64, u64, String> = Flight::detached(|task| {
///     tokio::spawn(task);
/// });
/// # let _ = flight;
/// ```
pub trait Spawn: Send + Sync + 'static {
    /// Runs `task` until it completes, without anybody awaiting it.
    fn spawn(&self, task: BoxFuture<'static, ()>);
}

impl<F> Spawn for F
where
    F: Fn(BoxFuture<'static, ()>) + Send + Sync + 'static,
{
    fn spawn(&self, task: BoxFuture<'static, ()>) {
        self(task)
    }
}

impl<K, V, E> Flight<K, V, E>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + Sync + 'static,
    E: Clone + Send + Sync + 'static,
{
    /// A group with no call in flight, whose work is cancelled when its last caller goes away.
    pub fn new() -> Self {
        Flight {
            calls: Arc::default(),
            next_id: AtomicU64::new(0),
            spawner: None,
        }
    }

    /// A group with no call in flight, whose work runs to its end on a task of `spawner`
    /// whatever its callers do (see the type's docs on cancellation).
    pub fn detached(spawner: impl Spawn) -> Self {
        Flight {
            calls: Arc::default(),
            next_id: AtomicU64::new(0),
            spawner: Some(Box::new(spawner)),
        }
    }

    /// Runs `make()`'s future for `key`, unless a call for `key` is already in flight, in which
    /// case it waits for that call's outcome instead and `make` is not called.
    ///
    /// Cost when uncontended: one lock of the group's map to insert the key, one to remove it,
    /// and one allocation for the shared future. A detached flight also spawns one task, but
    /// only for work that does not complete at its first poll: work that is ready at once (a
    /// fast source) never leaves its caller.
    pub async fn work<F, Fut>(&self, key: K, make: F) -> Outcome<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
    {
        let (id, work, driven, shared) = {
            let mut calls = lock(&self.calls);
            match calls.get(&key) {
                Some(call) => (call.id, call.work.clone(), call.driven.clone(), true),
                None => {
                    // `make` runs under the lock so that two callers can never both make the
                    // work; if it panics, this caller alone gets the error and nothing is left
                    // in flight.
                    let fut = match catch_unwind(AssertUnwindSafe(make)) {
                        Ok(fut) => fut,
                        Err(panic) => {
                            return Outcome {
                                result: Err(Error::Panicked(message(&*panic))),
                                shared: false,
                            };
                        }
                    };
                    let work = guard(fut).boxed().shared();
                    let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                    let driven = Arc::new(AtomicBool::new(false));
                    let entry = InFlight {
                        id,
                        work: work.clone(),
                        driven: driven.clone(),
                    };
                    calls.insert(key.clone(), entry);
                    (id, work, driven, false)
                }
            }
        };

        let mut waiter = Waiter {
            flight: self,
            key: Some(key),
            id,
            work: Some(work),
            driven,
        };
        let result = std::future::poll_fn(|cx| {
            let work = waiter.work.as_mut().expect("set until finished");
            let poll = Pin::new(work).poll(cx);
            if poll.is_pending() {
                waiter.detach();
            }
            poll
        })
        .await;
        waiter.finish();
        Outcome { result, shared }
    }

    /// Stops new callers from joining the call in flight for `key`, if there is one, and says
    /// whether there was. The call goes on for the callers it has; the next `work` for `key`
    /// starts a new call.
    ///
    /// For a cache whose entry was just invalidated: a caller that comes after the invalidation
    /// must not be handed a value whose load began before it.
    pub fn forget(&self, key: &K) -> bool {
        let call = lock(&self.calls).remove(key);
        call.is_some()
    }

    /// [`forget`](Self::forget) for every key.
    pub fn forget_all(&self) {
        let calls = std::mem::take(&mut *lock(&self.calls));
        drop(calls);
    }

    /// How many keys have a call in flight.
    pub fn in_flight(&self) -> usize {
        lock(&self.calls).len()
    }
}

impl<K, V, E> Default for Flight<K, V, E>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + Sync + 'static,
    E: Clone + Send + Sync + 'static,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V, E> fmt::Debug for Flight<K, V, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Flight")
            .field("in_flight", &lock(&self.calls).len())
            .field("detached", &self.spawner.is_some())
            .finish()
    }
}

/// One caller's hold on a call. When it ends, by completion or by being dropped, it forgets the
/// key if nobody else needs the call any more.
struct Waiter<'a, K: Hash + Eq, V, E> {
    flight: &'a Flight<K, V, E>,
    /// `None` once finished.
    key: Option<K>,
    id: u64,
    /// This caller's clone of the shared work; `None` once finished.
    work: Option<Work<V, E>>,
    /// Whether the call's work has a task driving it (detached flights only).
    driven: Arc<AtomicBool>,
}

impl<K, V, E> Waiter<'_, K, V, E>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + Sync + 'static,
    E: Clone + Send + Sync + 'static,
{
    /// The work has started and is not done: in a detached flight, hand it to a task of its
    /// own (once per call), so that it runs to its end whatever the callers do.
    ///
    /// Work only runs when a waiter polls it, and every poll that leaves it unfinished ends
    /// here, so no work that has started can be left without its task:
    /// 1. a waiter polls the work for the first time; it does not finish;
    /// 2. before returning `Pending`, the waiter spawns the task, which holds its own clone;
    /// 3. from then on a waiter that leaves never counts itself the last one (the task's clone
    ///    is counted), and the task forgets the key when the work ends.
    fn detach(&self) {
        let Some(spawner) = &self.flight.spawner else {
            return;
        };
        if self.driven.swap(true, Ordering::AcqRel) {
            return;
        }
        if let (Some(key), Some(work)) = (&self.key, &self.work) {
            let calls = Arc::clone(&self.flight.calls);
            spawner.spawn(drive(calls, key.clone(), self.id, work.clone()));
        }
    }
}

impl<K: Hash + Eq, V, E> Waiter<'_, K, V, E> {
    /// The call completed for this caller: forget the key if it still names this call. Later
    /// callers start a new call; callers still holding this one read its stored output.
    fn finish(&mut self) {
        let Some(key) = self.key.take() else { return };
        // Dropped outside the lock: it may be the last reference to the work.
        drop(forget(&self.flight.calls, &key, self.id));
        self.work = None;
    }
}

impl<K: Hash + Eq, V, E> Drop for Waiter<'_, K, V, E> {
    /// This caller gave up before the call completed. If it was the last one waiting, the work
    /// is cancelled and the key forgotten.
    ///
    /// Counting happens under the map's lock, where new callers clone the work, so a caller
    /// that joins concurrently is either counted here or finds the key gone and starts afresh:
    /// 1. caller A holds the only clone besides the map's; caller B is about to join;
    /// 2. if B takes the lock first, the count is 3, A keeps the entry and drops its clone under
    ///    the lock (not the last one, so no user code runs);
    /// 3. if A takes it first, the count is 2, A removes the entry; B finds no call and starts one.
    fn drop(&mut self) {
        let Some(key) = self.key.take() else { return };
        let work = self.work.take();
        let mut calls = lock(&self.flight.calls);
        if !matches!(calls.get(&key), Some(call) if call.id == self.id) {
            // The call is over and forgotten already.
            drop(calls);
            drop(work);
            return;
        }
        // `None` would mean this clone saw completion; count that as done too.
        let last = work
            .as_ref()
            .and_then(Shared::strong_count)
            .is_none_or(|n| n <= 2);
        if last {
            let removed = calls.remove(&key);
            drop(calls);
            // Outside the lock: dropping the last references drops the work future.
            drop(removed);
            drop(work);
        } else {
            // Under the lock, so the next caller to leave counts without this clone. Not the
            // last reference, so this only decrements a count.
            drop(work);
            drop(calls);
        }
    }
}

/// The task of a detached call: drives the work to its end, then forgets the key if it still
/// names this call (a waiter that saw the end first may have done so already).
fn drive<K, V, E>(
    calls: Arc<Mutex<HashMap<K, InFlight<V, E>>>>,
    key: K,
    id: u64,
    work: Work<V, E>,
) -> BoxFuture<'static, ()>
where
    K: Hash + Eq + Send + 'static,
    V: Clone + Send + Sync + 'static,
    E: Clone + Send + Sync + 'static,
{
    Box::pin(async move {
        let _ = work.await;
        drop(forget(&calls, &key, id));
    })
}

/// Removes `key`'s call if it is still call `id` (a later call for the key is left alone), and
/// hands it back to be dropped outside the lock.
fn forget<K: Hash + Eq, V, E>(
    calls: &Mutex<HashMap<K, InFlight<V, E>>>,
    key: &K,
    id: u64,
) -> Option<InFlight<V, E>> {
    let mut calls = lock(calls);
    match calls.get(key) {
        Some(call) if call.id == id => calls.remove(key),
        _ => None,
    }
}

/// The work with its failures made values: an error becomes `Error::Failed`, a panic
/// `Error::Panicked`.
async fn guard<V, E>(fut: impl Future<Output = Result<V, E>>) -> Result<V, Error<E>> {
    match AssertUnwindSafe(fut).catch_unwind().await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(Error::Failed(e)),
        Err(panic) => Err(Error::Panicked(message(&*panic))),
    }
}

/// The message of a panic payload, for the common payloads `&str` and `String`.
fn message(panic: &(dyn Any + Send)) -> Arc<str> {
    if let Some(s) = panic.downcast_ref::<&str>() {
        Arc::from(*s)
    } else if let Some(s) = panic.downcast_ref::<String>() {
        Arc::from(s.as_str())
    } else {
        Arc::from("a panic with a payload that is not a string")
    }
}

/// Locks the map, going on past poisoning: no user code runs while it is held except `make`,
/// whose panic is caught, and `K`'s `Hash`/`Eq`, which cannot leave the map half-changed.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
