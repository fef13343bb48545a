//! Opt-in expiry: [`Expiring`] pairs a value with an optional deadline.
//!
//! The caches themselves know nothing of time. A cache whose values are `Expiring<V>` gains
//! `get_unexpired` and `remove_expired` (on [`Lru`](crate::Lru) and
//! [`ShardedLru`](crate::ShardedLru)); a cache of any other value type carries no deadline and
//! reads no clock.

use std::time::{Duration, Instant};

use crate::Weigh;

/// A value with an optional deadline: the opt-in form of expiry.
///
/// The deadline is an [`Instant`], so it follows the monotonic clock: a change of the wall
/// clock neither revives nor expires an entry. An entry is expired from its deadline on
/// (`now >= deadline`).
///
/// ```
/// use std::time::{Duration, Instant};
/// use alo_lru::Expiring;
///
/// let start = Instant::now();
/// let token = Expiring::until("t0k3n", start + Duration::from_secs(60));
/// assert!(!token.is_expired(start));
/// assert_eq!(token.remaining(start), Some(Duration::from_secs(60)));
/// assert!(token.is_expired(start + Duration::from_secs(60)));
/// assert_eq!(token.remaining(start + Duration::from_secs(90)), Some(Duration::ZERO));
///
/// let config = Expiring::never("v1");
/// assert_eq!(config.remaining(start), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expiring<V> {
    /// The cached value.
    pub value: V,
    /// `None`: never expires.
    pub deadline: Option<Instant>,
}

impl<V> Expiring<V> {
    /// `value`, expiring at `deadline` (never when `None`).
    pub fn new(value: V, deadline: Option<Instant>) -> Self {
        Expiring { value, deadline }
    }

    /// `value`, never expiring.
    pub fn never(value: V) -> Self {
        Self::new(value, None)
    }

    /// `value`, expiring at `deadline`.
    pub fn until(value: V, deadline: Instant) -> Self {
        Self::new(value, Some(deadline))
    }

    /// Whether the deadline has passed at `now` (expired when `now >= deadline`).
    pub fn is_expired(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|deadline| now >= deadline)
    }

    /// Time left at `now`: `None` when it never expires, `Some(Duration::ZERO)` when expired.
    pub fn remaining(&self, now: Instant) -> Option<Duration> {
        self.deadline
            .map(|deadline| deadline.saturating_duration_since(now))
    }
}

/// Weighs the value alone: the deadline is bookkeeping, like the entry's stored hash, and is not
/// charged against the budget (it adds 16 bytes per entry on 64-bit Linux; a closure weigher can
/// charge it).
impl<V: Weigh> Weigh for Expiring<V> {
    fn weigh(&self) -> usize {
        self.value.weigh()
    }
}
