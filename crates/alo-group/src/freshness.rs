//! Time in a group: when a value expires and how long an expired one may still be served, and
//! the deadlines of loads and writes, each derived from the one before it.

use std::cell::Cell;
use std::time::{Duration, Instant};

use alo_lru::Expiring;
use bytes::Bytes;

use crate::{Error, Found};

/// How much longer than its load timeout a group waits for a peer: the owner's load has the
/// same deadline, and its answer needs time to arrive. Half of it is the peer's (its deadline is
/// the load's plus half the margin); the other half is the group's, waiting for a transport that
/// does not keep the deadline it was given.
pub const PEER_MARGIN: Duration = Duration::from_secs(1);

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
    pub(crate) fn window(&self) -> Duration {
        self.stale_if_error.max(self.stale_while_revalidate)
    }

    /// What a cached entry is worth at `now`. `window` is how long past its freshness a value
    /// is kept for the stale windows: the group's for the main cache, none for hot copies.
    pub(crate) fn judge(
        &self,
        entry: Expiring<Option<Bytes>>,
        window: Duration,
        now: &Now,
    ) -> Judged {
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
        if now < fresh_until + self.stale_while_revalidate {
            Judged::Revalidate(value)
        } else if now < fresh_until + self.stale_if_error {
            Judged::StaleIfError(Box::new(Fallback {
                value,
                until: fresh_until + self.stale_if_error,
            }))
        } else {
            Judged::Expired
        }
    }
}

/// What a cached entry is worth now.
pub(crate) enum Judged {
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

/// An expired value that may be served until `until` if its reload fails.
pub(crate) struct Fallback {
    pub(crate) value: Bytes,
    pub(crate) until: Instant,
}

/// The deadlines of a group's loads and writes. A load's deadline flows down: a getter call gets
/// what is left of it, a peer gets it plus half of [`PEER_MARGIN`], and the group itself stops
/// waiting for a transport half a margin after that.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Deadlines {
    /// How long a load may take, from when it begins.
    pub(crate) load_timeout: Duration,
    /// How long a write to another member may take.
    pub(crate) write_timeout: Duration,
}

impl Deadlines {
    /// The deadline of a load that begins now.
    pub(crate) fn load(&self) -> Instant {
        later(now(), self.load_timeout)
    }

    /// The deadline a peer is given to answer a get for a load with deadline `load`: the owner's
    /// own load has as long, and its answer needs time to arrive.
    pub(crate) fn peer_get(&self, load: Instant) -> Instant {
        later(load, PEER_MARGIN / 2)
    }

    /// The deadline a member is given to answer a write that begins now.
    pub(crate) fn write(&self) -> Instant {
        later(now(), self.write_timeout)
    }

    /// When the group stops waiting for a transport given `deadline`, should it not keep it.
    pub(crate) fn backstop(&self, deadline: Instant) -> tokio::time::Instant {
        tokio::time::Instant::from_std(later(deadline, PEER_MARGIN / 2))
    }
}

/// `at + by`, or about thirty years on when the clock cannot add `by`: a deadline no load
/// reaches.
pub(crate) fn later(at: Instant, by: Duration) -> Instant {
    at.checked_add(by)
        .unwrap_or_else(|| at + Duration::from_secs(30 * 365 * 86_400))
}

/// The time, read once per lookup and only when an entry has a deadline: entries without one
/// cost no clock read.
#[derive(Default)]
pub(crate) struct Now(Cell<Option<Instant>>);

impl Now {
    pub(crate) fn get(&self) -> Instant {
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

/// The group's clock: tokio's, so that tests with paused time control expiry and deadlines too.
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}
