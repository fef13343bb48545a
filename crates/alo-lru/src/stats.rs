//! Counters a cache keeps about its own use.

use std::ops::AddAssign;

/// A snapshot of a cache's counters, which only ever grow (`clear` keeps them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// `get` calls that found their key, and `get_unexpired` calls that found it unexpired.
    pub hits: u64,
    /// `get` and `get_unexpired` calls that did not, an expired entry counting as not found.
    /// (`peek` and `contains_key` count neither.)
    pub misses: u64,
    /// Entries stored by `insert`, replacements included, refusals not.
    pub inserts: u64,
    /// Entries pushed out to stay within the budget. (`remove`, `pop_lru` and `clear` are not
    /// evictions.)
    pub evictions: u64,
    /// Entries removed because their deadline had passed, by `get_unexpired` or
    /// `remove_expired`; not evictions.
    pub expired: u64,
}

impl AddAssign for Stats {
    fn add_assign(&mut self, other: Stats) {
        self.hits += other.hits;
        self.misses += other.misses;
        self.inserts += other.inserts;
        self.evictions += other.evictions;
        self.expired += other.expired;
    }
}
