//! What a getter is told about the load it serves: the key, the deadline, whether the group has
//! given up on it, and the span its logs belong to.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Notify;
use tracing::Span;

use crate::freshness::{later, now};

/// The load a [`Getter`](crate::Getter) is asked to do: the key, the load's deadline, a signal
/// that the group abandoned the load, and the load's tracing span.
///
/// A load belongs to the cache, not to a caller: a caller that goes away only stops waiting,
/// and the load goes on. The load is abandoned when the group stops waiting for it: at its
/// deadline (the group's [load timeout](crate::GroupBuilder::load_timeout) after it began), or
/// when the group drops it unfinished (its runtime shutting down). Then the getter's future is
/// dropped and [`cancelled`](LoadContext::cancelled) completes, so that work the getter handed
/// to another task (a blocking read, a request on a pool) can stop too. It never fires for a
/// load that answered.
///
/// The group runs the getter inside [`span`](LoadContext::span) (a `load` span with the group
/// and the key, a child of the span of the get that began the load), so a getter's own events
/// nest under it; the span is handed over too, for work the getter spawns.
///
/// Cheap to clone: the key, an `Arc` and a span handle.
#[derive(Clone)]
pub struct LoadContext {
    key: Bytes,
    deadline: Instant,
    abandoned: Arc<Signal>,
    span: Span,
}

impl LoadContext {
    /// A context for calling a getter yourself (in a test, say): `key`, a deadline `timeout` from
    /// now, the current span, and a signal that never fires.
    pub fn new(key: impl Into<Bytes>, timeout: Duration) -> Self {
        let deadline = later(now(), timeout);
        LoadContext::with(key.into(), deadline, Span::current())
    }

    pub(crate) fn with(key: Bytes, deadline: Instant, span: Span) -> Self {
        LoadContext {
            key,
            deadline,
            abandoned: Arc::default(),
            span,
        }
    }

    /// The key to load.
    pub fn key(&self) -> &Bytes {
        &self.key
    }

    /// When the group stops waiting for this load. On tokio's clock (`tokio::time::Instant::
    /// from_std(ctx.deadline())` for `timeout_at`), so paused time in tests moves it too.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// How long until the deadline; zero once it has passed. Hand it to an origin's client as
    /// its timeout, so that it gives up with a reason before the group gives up without one.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(now())
    }

    /// Whether the group has abandoned the load (see the type's docs).
    pub fn is_cancelled(&self) -> bool {
        self.abandoned.is_fired()
    }

    /// Completes once the group has abandoned the load (see the type's docs); at once if it
    /// has already. Owns what it needs, so it can be moved into a spawned task.
    pub fn cancelled(&self) -> impl Future<Output = ()> + Send + 'static {
        let abandoned = Arc::clone(&self.abandoned);
        async move { abandoned.fired().await }
    }

    /// The load's span: current inside the getter, and a parent for the work it spawns
    /// (`tracing::Instrument::instrument(work, ctx.span().clone())`).
    pub fn span(&self) -> &Span {
        &self.span
    }

    /// The key, giving up the rest.
    pub(crate) fn into_key(self) -> Bytes {
        self.key
    }

    /// A guard that marks the load abandoned when dropped, unless disarmed first.
    pub(crate) fn abandon_on_drop(&self) -> AbandonOnDrop {
        AbandonOnDrop(Some(Arc::clone(&self.abandoned)))
    }
}

impl fmt::Debug for LoadContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadContext")
            .field("key", &self.key)
            .field("deadline", &self.deadline)
            .field("cancelled", &self.is_cancelled())
            .finish_non_exhaustive()
    }
}

/// A one-shot signal: fired once, seen by every waiter, past and future.
#[derive(Default)]
struct Signal {
    fired: AtomicBool,
    notify: Notify,
}

impl Signal {
    fn fire(&self) {
        self.fired.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    fn is_fired(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }

    async fn fired(&self) {
        loop {
            // Registered before the flag is read: a `fire` between the read and the wait
            // would otherwise wake nobody, and the waiter would sleep for ever.
            let notified = self.notify.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.is_fired() {
                return;
            }
            notified.await;
        }
    }
}

/// Marks a load abandoned when dropped: the group holds one while it waits for the getter,
/// and disarms it once the getter has answered.
pub(crate) struct AbandonOnDrop(Option<Arc<Signal>>);

impl AbandonOnDrop {
    /// The getter answered: the load was not abandoned.
    pub(crate) fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        if let Some(signal) = self.0.take() {
            signal.fire();
        }
    }
}
