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

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::Bytes;

#[derive(Default)]
pub(crate) struct Ledger {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    keys: HashMap<Bytes, Pending>,
    /// Purges so far.
    purges: u64,
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
        change()
    }

    /// Runs `change` (which empties the caches) with every load in flight barred from filling a
    /// cache.
    pub(crate) fn purge<R>(&self, change: impl FnOnce() -> R) -> R {
        let mut state = self.lock();
        state.purges += 1;
        change()
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
}
