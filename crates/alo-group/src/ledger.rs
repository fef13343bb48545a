//! Keeps loads from putting back what a write took out.
//!
//! A load (a getter call, or a fetch from the key's owner) takes a [`Ticket`] before it starts.
//! A write (set, remove, purge) bumps the write count of every key it touches that has a load
//! in flight, or the purge count for all, and changes the caches, all under the ledger's lock.
//! A ticket may put its value into a cache only while holding that same lock and only if
//! neither count moved since it was taken. So a value loaded before a write began never lands
//! in a cache after the write: either the value went in first and the write takes it out, or
//! the write came first and the value is refused.
//!
//! Only keys with a load in flight have an entry, so the ledger holds at most as many keys as
//! there are loads running; the hit path never touches it.
//!
//! A fill (a value another member read before and hands over) has no ticket here: it was read
//! on another node, at a time this one cannot place. So the ledger also remembers the writes of
//! the last [`FILL_GUARD`], and a fill of a key written in that time, or of any key after a purge
//! in that time, is refused. Those writes fit in a fixed number of bytes; past it every fill is
//! refused until the guard has passed, which costs loads, never a wrong value.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::freshness::now;

/// How long a write here bars fills of its key (a purge: of every key): the longest a value
/// handed over may travel from its read on the leaving member to a fill here.
/// [`Group::hand_over`](crate::Group::hand_over) stops offering values half this long after it
/// read them.
pub const FILL_GUARD: Duration = Duration::from_secs(30);

/// The most bytes the writes of the last [`FILL_GUARD`] are remembered in, each write charged
/// its key's length and [`RECENT_OVERHEAD`] (a key written again is charged again: each write
/// has its own queue entry).
const RECENT_BYTES: usize = 4 << 20;

/// What a remembered write costs beyond its key's bytes: its queue entry, and its share of the
/// key's map entry.
const RECENT_OVERHEAD: usize = 64;

#[derive(Default)]
pub(crate) struct Ledger {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    keys: HashMap<Bytes, Pending>,
    /// Purges so far.
    purges: u64,
    recent: Recent,
}

/// The writes of the last [`FILL_GUARD`].
#[derive(Default)]
struct Recent {
    /// Each key written, and when last.
    keys: HashMap<Bytes, Instant>,
    /// The same writes in the order they came, to forget them when the guard has passed.
    order: VecDeque<(Instant, Bytes)>,
    /// What the writes in `order` are charged, at most [`RECENT_BYTES`].
    bytes: usize,
    /// Every fill is refused until then: a purge came, or more keys were written than fit.
    all_until: Option<Instant>,
}

impl Recent {
    fn forget_before(&mut self, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            if now.saturating_duration_since(*at) < FILL_GUARD {
                break;
            }
            let (at, key) = self.order.pop_front().expect("a front");
            self.bytes -= key.len() + RECENT_OVERHEAD;
            // The key stays while a later write of it is remembered.
            if self.keys.get(&key) == Some(&at) {
                self.keys.remove(&key);
            }
        }
        if self.all_until.is_some_and(|until| until <= now) {
            self.all_until = None;
        }
    }

    fn written(&mut self, keys: &[Bytes]) {
        let now = now();
        self.forget_before(now);
        for key in keys {
            let cost = key.len() + RECENT_OVERHEAD;
            if self.bytes + cost > RECENT_BYTES {
                self.all_until = Some(now + FILL_GUARD);
                continue;
            }
            self.bytes += cost;
            self.keys.insert(key.clone(), now);
            self.order.push_back((now, key.clone()));
        }
    }

    fn purged(&mut self) {
        *self = Recent {
            all_until: Some(now() + FILL_GUARD),
            ..Recent::default()
        };
    }

    fn bars(&mut self, key: &[u8]) -> bool {
        self.forget_before(now());
        self.all_until.is_some() || self.keys.contains_key(key)
    }
}

/// The loads of one key in flight, and the writes to it since the oldest began.
struct Pending {
    loads: usize,
    writes: u64,
}

/// One load's right to fill a cache, unless a write comes first. Dropping it unused ends the
/// load's claim.
pub(crate) struct Ticket<'a> {
    ledger: &'a Ledger,
    key: Bytes,
    writes: u64,
    purges: u64,
}

impl Ledger {
    /// Registers a load of `key` that starts now.
    pub(crate) fn begin(&self, key: &Bytes) -> Ticket<'_> {
        let mut state = self.lock();
        let purges = state.purges;
        let pending = state.keys.entry(key.clone()).or_insert(Pending {
            loads: 0,
            writes: 0,
        });
        pending.loads += 1;
        Ticket {
            ledger: self,
            key: key.clone(),
            writes: pending.writes,
            purges,
        }
    }

    /// Runs `change` (which takes `keys` out of the caches, or puts a written value in) with
    /// every load of `keys` in flight barred from filling a cache.
    pub(crate) fn write<R>(&self, keys: &[Bytes], change: impl FnOnce() -> R) -> R {
        let mut state = self.lock();
        for key in keys {
            if let Some(pending) = state.keys.get_mut(key) {
                pending.writes += 1;
            }
        }
        state.recent.written(keys);
        change()
    }

    /// Runs `change` (which empties the caches) with every load in flight barred from filling a
    /// cache.
    pub(crate) fn purge<R>(&self, change: impl FnOnce() -> R) -> R {
        let mut state = self.lock();
        state.purges += 1;
        state.recent.purged();
        change()
    }

    /// Runs `fill` (which puts a value another member handed over into a cache) unless `key`
    /// was written here within the last [`FILL_GUARD`], or a purge came in that time; says
    /// whether it ran and kept the value.
    pub(crate) fn fill(&self, key: &[u8], fill: impl FnOnce() -> bool) -> bool {
        let mut state = self.lock();
        !state.recent.bars(key) && fill()
    }

    /// Whether `key` was written here within the last [`FILL_GUARD`], or a purge came in that
    /// time.
    pub(crate) fn written_recently(&self, key: &[u8]) -> bool {
        self.lock().recent.bars(key)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Ticket<'_> {
    /// Runs `fill` (which puts the load's value into a cache) unless a write to the key or a
    /// purge began since the load did; says whether it ran.
    pub(crate) fn keep(self, fill: impl FnOnce()) -> bool {
        let state = self.ledger.lock();
        let current = state.keys.get(&self.key).map(|p| p.writes);
        let unchanged = current == Some(self.writes) && state.purges == self.purges;
        if unchanged {
            fill();
        }
        // The lock is released before `drop` takes it again to end the claim.
        drop(state);
        unchanged
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let mut state = self.ledger.lock();
        if let Some(pending) = state.keys.get_mut(&self.key) {
            pending.loads -= 1;
            if pending.loads == 0 {
                state.keys.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &'static str) -> Bytes {
        Bytes::from_static(k.as_bytes())
    }

    #[test]
    fn a_load_keeps_its_value_when_nothing_was_written() {
        let ledger = Ledger::default();
        let ticket = ledger.begin(&key("a"));
        assert!(ticket.keep(|| {}));
        assert!(
            ledger.lock().keys.is_empty(),
            "the claim ends with the ticket"
        );
    }

    #[test]
    fn a_write_to_the_key_bars_loads_begun_before_it_and_not_after() {
        let ledger = Ledger::default();
        let before = ledger.begin(&key("a"));
        let other = ledger.begin(&key("b"));
        ledger.write(&[key("a")], || {});
        let after = ledger.begin(&key("a"));
        assert!(!before.keep(|| unreachable!("barred")));
        assert!(other.keep(|| {}), "another key is not touched");
        assert!(after.keep(|| {}));
        assert!(ledger.lock().keys.is_empty());
    }

    #[test]
    fn a_purge_bars_every_load_in_flight() {
        let ledger = Ledger::default();
        let a = ledger.begin(&key("a"));
        ledger.purge(|| {});
        let b = ledger.begin(&key("b"));
        assert!(!a.keep(|| {}));
        assert!(b.keep(|| {}));
    }

    #[test]
    fn a_write_with_no_load_in_flight_leaves_nothing_behind() {
        let ledger = Ledger::default();
        ledger.write(&[key("a")], || {});
        assert!(ledger.lock().keys.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_bars_fills_of_its_key_for_the_guard() {
        let ledger = Ledger::default();
        assert!(ledger.fill(b"a", || true), "nothing written yet");
        ledger.write(&[key("a")], || {});
        tokio::time::advance(FILL_GUARD - Duration::from_millis(1)).await;
        assert!(!ledger.fill(b"a", || true));
        assert!(ledger.fill(b"b", || true), "another key");
        // A second write of the key starts its guard again.
        ledger.write(&[key("a")], || {});
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(
            !ledger.fill(b"a", || true),
            "the first write's guard passed, not the second's"
        );
        tokio::time::advance(FILL_GUARD).await;
        assert!(ledger.fill(b"a", || true));
        let state = ledger.lock();
        assert!(state.recent.keys.is_empty() && state.recent.order.is_empty());
        assert_eq!(
            state.recent.bytes, 0,
            "forgotten writes give their bytes back"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_purge_bars_every_fill_for_the_guard() {
        let ledger = Ledger::default();
        ledger.purge(|| {});
        assert!(!ledger.fill(b"a", || true));
        tokio::time::advance(FILL_GUARD).await;
        assert!(ledger.fill(b"a", || true));
    }

    #[tokio::test(start_paused = true)]
    async fn more_writes_than_fit_bar_every_fill_for_the_guard() {
        let ledger = Ledger::default();
        let big = vec![b'k'; 1 << 16];
        let keys: Vec<Bytes> = (0..RECENT_BYTES / big.len() + 1)
            .map(|i| [&big[..], i.to_string().as_bytes()].concat().into())
            .collect();
        ledger.write(&keys, || {});
        assert!(ledger.lock().recent.bytes <= RECENT_BYTES);
        assert!(
            !ledger.fill(b"never written", || true),
            "a write may have been forgotten"
        );
        tokio::time::advance(FILL_GUARD).await;
        assert!(ledger.fill(b"never written", || true));
    }

    #[tokio::test(start_paused = true)]
    async fn one_key_written_over_and_over_is_remembered_within_the_bytes() {
        let ledger = Ledger::default();
        let writes = RECENT_BYTES / (1 + RECENT_OVERHEAD) + 1;
        for _ in 0..writes {
            ledger.write(&[key("a")], || {});
        }
        {
            let state = ledger.lock();
            let recent = &state.recent;
            assert!(recent.bytes <= RECENT_BYTES);
            assert!(recent.order.len() * (1 + RECENT_OVERHEAD) <= RECENT_BYTES);
        }
        assert!(
            !ledger.fill(b"b", || true),
            "a write may have been forgotten"
        );
        tokio::time::advance(FILL_GUARD).await;
        assert!(ledger.fill(b"a", || true));
        assert_eq!(ledger.lock().recent.bytes, 0);
    }

    #[test]
    fn a_refused_fill_does_not_run() {
        let ledger = Ledger::default();
        ledger.write(&[key("a")], || {});
        assert!(!ledger.fill(b"a", || unreachable!("barred")));
        assert!(!ledger.fill(b"b", || false), "the fill itself said no");
    }
}
