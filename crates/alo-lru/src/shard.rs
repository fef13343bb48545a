//! The core both front ends share: entries in a dense `Vec`, a recency list linked by `u32` slot
//! numbers through a parallel `Vec` of links, and a `HashTable` from a key's hash to its slot.
//!
//! The core neither hashes nor weighs: the front ends compute a key's hash and an entry's charge
//! (outside any lock, in the sharded form) and hand both in.
//!
//! Slot `s` (from 1) is `entries[s - 1]` and `links[s]`. Slot 0 is the list's sentinel: its
//! `next` is the most recently used slot and its `prev` the least, so linking and unlinking need
//! no branch for the ends. The links live apart from the entries so that relinking a node and its
//! neighbours touches a compact array of 8-byte links rather than three whole entries.

use std::borrow::Borrow;
use std::mem;

use hashbrown::HashTable;

use crate::{Stats, TooLarge};

/// The sentinel slot.
const ENDS: u32 = 0;

/// Most entries one shard holds: slot numbers are `u32` to keep links small. A shard that
/// reaches the limit evicts as if it were out of bytes. Unit tests lower it so the limit can be
/// reached.
#[cfg(not(test))]
const MAX_ENTRIES: usize = u32::MAX as usize;
#[cfg(test)]
const MAX_ENTRIES: usize = 4;

struct Entry<K, V> {
    key: K,
    value: V,
    /// Kept so that neither eviction nor table growth calls the user's `Hash` again.
    hash: u64,
    /// Kept so that removal subtracts exactly what insertion added, whatever the weigher does.
    charge: usize,
}

#[derive(Clone, Copy)]
struct Link {
    /// Towards the most recently used end.
    prev: u32,
    /// Towards the least recently used end.
    next: u32,
}

pub(crate) struct Shard<K, V> {
    /// Dense: removing an entry moves the last one into its slot.
    entries: Vec<Entry<K, V>>,
    /// `links[0]` is the sentinel; `links[s]` belongs to `entries[s - 1]`.
    links: Vec<Link>,
    /// Slot numbers, hashed by their entry's `hash`.
    table: HashTable<u32>,
    /// Sum of the charges of the entries held. Never above `max_bytes` when bounded.
    bytes: usize,
    /// 0 means unbounded.
    max_bytes: usize,
    stats: Stats,
}

impl<K, V> Shard<K, V> {
    pub(crate) fn new(max_bytes: usize) -> Self {
        Shard {
            entries: Vec::new(),
            links: vec![Link {
                prev: ENDS,
                next: ENDS,
            }],
            table: HashTable::new(),
            bytes: 0,
            max_bytes,
            stats: Stats::default(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(crate) fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    pub(crate) fn stats(&self) -> Stats {
        self.stats
    }

    #[inline]
    fn entry(&self, slot: u32) -> &Entry<K, V> {
        &self.entries[slot as usize - 1]
    }

    fn entry_mut(&mut self, slot: u32) -> &mut Entry<K, V> {
        &mut self.entries[slot as usize - 1]
    }

    /// The least recently used slot; `ENDS` when empty.
    #[inline]
    fn tail(&self) -> u32 {
        self.links[ENDS as usize].prev
    }

    /// Finds the slot of `key`, comparing only entries whose table slot matched `hash`.
    #[inline(always)]
    fn find<Q>(&self, hash: u64, key: &Q) -> Option<u32>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let entries = &self.entries;
        self.table
            .find(hash, |&s| entries[s as usize - 1].key.borrow() == key)
            .copied()
    }

    #[inline(always)]
    pub(crate) fn get<Q>(&mut self, hash: u64, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        match self.find(hash, key) {
            Some(s) => {
                self.stats.hits += 1;
                self.move_to_front(s);
                Some(&self.entry(s).value)
            }
            None => {
                self.stats.misses += 1;
                None
            }
        }
    }

    /// Like `get`, but an entry that `live` rejects is removed instead (counted as expired and as
    /// a miss). `live` runs only when the key is found. A separate copy of `get` rather than
    /// `get` with a closure that always says yes, so that plain caches keep their exact path.
    #[inline]
    pub(crate) fn get_if<Q>(
        &mut self,
        hash: u64,
        key: &Q,
        live: impl FnOnce(&V) -> bool,
    ) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let Some(s) = self.find(hash, key) else {
            self.stats.misses += 1;
            return None;
        };
        if live(&self.entry(s).value) {
            self.stats.hits += 1;
            self.move_to_front(s);
            return Some(&self.entry(s).value);
        }
        // Count first: the entry is dropped on return, and a panicking `Drop` must find the
        // shard and its counters consistent.
        self.stats.misses += 1;
        self.stats.expired += 1;
        self.remove_slot(s);
        None
    }

    /// Removes every entry whose value `dead` says yes to, counting each as expired, and
    /// returns how many. O(len), in slot order, not recency order.
    pub(crate) fn remove_where(&mut self, mut dead: impl FnMut(&V) -> bool) -> usize {
        let mut removed = 0;
        // From the last slot down: removing slot `s` moves the last slot into it, and that one
        // has already been looked at and kept.
        for s in (1..=self.entries.len() as u32).rev() {
            if dead(&self.entry(s).value) {
                self.stats.expired += 1;
                removed += 1;
                self.remove_slot(s);
            }
        }
        removed
    }

    #[inline]
    pub(crate) fn peek<Q>(&self, hash: u64, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.find(hash, key).map(|s| &self.entry(s).value)
    }

    pub(crate) fn contains_key<Q>(&self, hash: u64, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.find(hash, key).is_some()
    }

    /// Stores `key -> value` at the most recently used end, evicting from the other end until it
    /// fits; each evicted entry goes to `evicted`, called once the shard is consistent again.
    pub(crate) fn insert(
        &mut self,
        hash: u64,
        charge: usize,
        key: K,
        value: V,
        evicted: &mut impl FnMut(K, V),
    ) -> Result<Option<V>, TooLarge<K, V>>
    where
        K: Eq,
    {
        if self.max_bytes != 0 && charge > self.max_bytes {
            // The caller asked for `key` to hold `value`. Keeping an older value would serve
            // what the caller meant to replace, so it goes, and back to the caller with the rest.
            let previous = self.remove(hash, &key).map(|(_, v)| v);
            return Err(TooLarge {
                key,
                value,
                previous,
                charge,
                max_bytes: self.max_bytes,
            });
        }
        self.stats.inserts += 1;

        if let Some(mut s) = self.find(hash, &key) {
            self.move_to_front(s);
            // The entry keeps its old charge, counted in `bytes`, until it takes the new value:
            // `evicted` runs user code (a callback, a value's `Drop`) that may panic, and the
            // shard must then still hold exactly the charges of its entries. Subtracting the old
            // charge first left `bytes` short by it after such a panic, and a later removal of
            // the entry wrapped below zero.
            let old_charge = self.entry(s).charge;
            // `s` is the head and the new charge fits an empty shard, so the tail reaches `s`
            // only once everything else is gone, and by then the loop has stopped.
            while !self.fits(self.bytes - old_charge, charge) {
                let tail = self.tail();
                let old = self.remove_slot(tail);
                if s as usize == self.entries.len() + 1 {
                    // Ours was the last slot, so the removal moved it into the freed one.
                    s = tail;
                }
                self.stats.evictions += 1;
                evicted(old.key, old.value);
            }
            self.bytes = (self.bytes - old_charge).saturating_add(charge);
            let entry = self.entry_mut(s);
            entry.charge = charge;
            return Ok(Some(mem::replace(&mut entry.value, value)));
        }

        // Evict from the cold end until the new entry fits. The last eviction hands its slot to
        // the new entry, which saves moving another entry and two table probes.
        while self.tail() != ENDS
            && (self.entries.len() >= MAX_ENTRIES || !self.fits(self.bytes, charge))
        {
            let tail = self.tail();
            if self.fits(self.bytes - self.entry(tail).charge, charge) {
                let (old_key, old_value) = self.reuse_tail(hash, charge, key, value);
                self.stats.evictions += 1;
                evicted(old_key, old_value);
                return Ok(None);
            }
            let old = self.remove_slot(tail);
            self.stats.evictions += 1;
            evicted(old.key, old.value);
        }

        self.entries.push(Entry {
            key,
            value,
            hash,
            charge,
        });
        let s = self.entries.len() as u32;
        self.links.push(Link {
            prev: ENDS,
            next: ENDS,
        });
        self.link_front(s);
        self.index(hash, s);
        self.bytes = self.bytes.saturating_add(charge);
        Ok(None)
    }

    pub(crate) fn remove<Q>(&mut self, hash: u64, key: &Q) -> Option<(K, V)>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let s = self.find(hash, key)?;
        let entry = self.remove_slot(s);
        Some((entry.key, entry.value))
    }

    pub(crate) fn pop_lru(&mut self) -> Option<(K, V)> {
        let tail = self.tail();
        if tail == ENDS {
            return None;
        }
        let entry = self.remove_slot(tail);
        Some((entry.key, entry.value))
    }

    pub(crate) fn clear(&mut self) {
        // Forget the slots before dropping the entries: a panicking `Drop` must not leave the
        // table naming entries that are gone.
        self.table.clear();
        self.links.truncate(1);
        self.links[ENDS as usize] = Link {
            prev: ENDS,
            next: ENDS,
        };
        self.bytes = 0;
        self.entries.clear();
    }

    pub(crate) fn iter(&self) -> Iter<'_, K, V> {
        Iter {
            entries: &self.entries,
            links: &self.links,
            next: self.links[ENDS as usize].next,
            remaining: self.entries.len(),
        }
    }

    /// Whether an entry of `charge` fits beside `bytes` already held.
    fn fits(&self, bytes: usize, charge: usize) -> bool {
        // `bytes <= max_bytes` holds whenever the shard is bounded, so this cannot underflow.
        self.max_bytes == 0 || charge <= self.max_bytes - bytes
    }

    /// Replaces the tail's entry with a new one, in place, and makes it the head.
    /// Returns the old key and value.
    fn reuse_tail(&mut self, hash: u64, charge: usize, key: K, value: V) -> (K, V) {
        let tail = self.tail();
        self.unindex(tail);
        self.unlink(tail);
        let bytes = self.bytes - self.entry(tail).charge + charge;
        let entry = self.entry_mut(tail);
        entry.hash = hash;
        entry.charge = charge;
        let old = (
            mem::replace(&mut entry.key, key),
            mem::replace(&mut entry.value, value),
        );
        self.bytes = bytes;
        self.link_front(tail);
        self.index(hash, tail);
        old
    }

    /// Removes slot `s` from the table, the list and the vectors, and returns its entry. The
    /// last slot moves into `s`, and its neighbours and table entry are pointed at its new place.
    fn remove_slot(&mut self, s: u32) -> Entry<K, V> {
        self.unindex(s);
        self.unlink(s);
        let entry = self.entries.swap_remove(s as usize - 1);
        self.links.swap_remove(s as usize);
        self.bytes -= entry.charge;
        let last = self.entries.len() as u32 + 1;
        if s != last {
            let hash = self.entry(s).hash;
            if let Some(slot) = self.table.find_mut(hash, |&j| j == last) {
                *slot = s;
            }
            let Link { prev, next } = self.links[s as usize];
            self.links[prev as usize].next = s;
            self.links[next as usize].prev = s;
        }
        entry
    }

    fn index(&mut self, hash: u64, s: u32) {
        let entries = &self.entries;
        self.table
            .insert_unique(hash, s, |&j| entries[j as usize - 1].hash);
    }

    fn unindex(&mut self, s: u32) {
        let hash = self.entry(s).hash;
        if let Ok(found) = self.table.find_entry(hash, |&j| j == s) {
            found.remove();
        }
    }

    #[inline(always)]
    fn move_to_front(&mut self, s: u32) {
        // One local slice, so that the compiler sees a fixed length and checks each index once.
        let links = &mut self.links[..];
        let s = s as usize;
        let head = links[ENDS as usize].next as usize;
        if head != s {
            let Link { prev, next } = links[s];
            links[prev as usize].next = next;
            links[next as usize].prev = prev;
            links[s] = Link {
                prev: ENDS,
                next: head as u32,
            };
            links[head].prev = s as u32;
            links[ENDS as usize].next = s as u32;
        }
    }

    #[inline]
    fn unlink(&mut self, s: u32) {
        let links = &mut self.links[..];
        let Link { prev, next } = links[s as usize];
        links[prev as usize].next = next;
        links[next as usize].prev = prev;
    }

    #[inline]
    fn link_front(&mut self, s: u32) {
        let links = &mut self.links[..];
        let head = links[ENDS as usize].next;
        links[s as usize] = Link {
            prev: ENDS,
            next: head,
        };
        links[head as usize].prev = s;
        links[ENDS as usize].next = s;
    }
}

/// Entries from most to least recently used; made by `Lru::iter`.
pub struct Iter<'a, K, V> {
    entries: &'a [Entry<K, V>],
    links: &'a [Link],
    next: u32,
    remaining: usize,
}

impl<'a, K, V> Iterator for Iter<'a, K, V> {
    type Item = (&'a K, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        let entry = &self.entries[self.next as usize - 1];
        self.next = self.links[self.next as usize].next;
        self.remaining -= 1;
        Some((&entry.key, &entry.value))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl<K, V> ExactSizeIterator for Iter<'_, K, V> {}

impl<K, V> std::iter::FusedIterator for Iter<'_, K, V> {}

impl<K, V> std::fmt::Debug for Iter<'_, K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Iter")
            .field("remaining", &self.remaining)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    impl<K, V> Shard<K, V> {
        /// Asserts every structural invariant: the list visits each node once in both
        /// directions, the table names each node under its hash, and the bytes add up.
        fn check(&self) {
            assert_eq!(self.table.len(), self.entries.len());
            assert_eq!(self.links.len(), self.entries.len() + 1);
            assert!(self.entries.len() <= MAX_ENTRIES);
            let (mut s, mut prev, mut seen) = (self.links[0].next, ENDS, 0);
            while s != ENDS {
                assert_eq!(self.links[s as usize].prev, prev, "back link of {s}");
                let hash = self.entry(s).hash;
                assert!(
                    self.table.find(hash, |&j| j == s).is_some(),
                    "{s} is indexed"
                );
                (prev, s) = (s, self.links[s as usize].next);
                seen += 1;
                assert!(seen <= self.entries.len(), "the list has a cycle");
            }
            assert_eq!(self.tail(), prev);
            assert_eq!(seen, self.entries.len());
            assert_eq!(
                self.bytes,
                self.entries.iter().map(|e| e.charge).sum::<usize>()
            );
            if self.max_bytes != 0 {
                assert!(self.bytes <= self.max_bytes);
            }
        }
    }

    /// Few distinct hashes, so that keys collide and the table must compare keys.
    fn hash(k: u8) -> u64 {
        u64::from(k % 3) << 20
    }

    #[test]
    fn a_full_shard_evicts_even_when_unbounded() {
        let mut s = Shard::new(0);
        let mut evicted = Vec::new();
        for k in 0..=MAX_ENTRIES as u8 {
            s.insert(hash(k), 1, k, (), &mut |k, _| evicted.push(k))
                .expect("unbounded");
            s.check();
        }
        assert_eq!(s.len(), MAX_ENTRIES);
        assert_eq!(evicted, [0]);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u8, usize),
        Get(u8),
        Remove(u8),
        Pop,
        Clear,
        /// `get_if` of the key, `live` answering the flag.
        GetIf(u8, bool),
        /// `remove_where` of the values below the bound.
        RemoveBelow(u8),
    }

    proptest! {
        #[test]
        fn structure_stays_consistent(
            max_bytes in prop_oneof![Just(0usize), 1usize..20],
            ops in prop::collection::vec(
                prop_oneof![
                    5 => (0u8..8, 0usize..12).prop_map(|(k, c)| Op::Insert(k, c)),
                    3 => (0u8..8).prop_map(Op::Get),
                    2 => (0u8..8).prop_map(Op::Remove),
                    1 => Just(Op::Pop),
                    1 => Just(Op::Clear),
                    3 => (0u8..8, any::<bool>()).prop_map(|(k, live)| Op::GetIf(k, live)),
                    1 => (0u8..9).prop_map(Op::RemoveBelow),
                ],
                1..100,
            ),
        ) {
            let mut s = Shard::new(max_bytes);
            for op in ops {
                match op {
                    Op::Insert(k, c) => {
                        let _ = s.insert(hash(k), c, k, k, &mut |_, _| {});
                        if c <= max_bytes || max_bytes == 0 {
                            prop_assert_eq!(s.peek(hash(k), &k), Some(&k));
                        }
                    }
                    Op::Get(k) => {
                        if let Some(&v) = s.get(hash(k), &k) {
                            prop_assert_eq!(v, k);
                            prop_assert_eq!(s.links[0].next, s.find(hash(k), &k).expect("present"));
                        }
                    }
                    Op::Remove(k) => {
                        s.remove(hash(k), &k);
                        prop_assert!(!s.contains_key(hash(k), &k));
                    }
                    Op::Pop => {
                        s.pop_lru();
                    }
                    Op::Clear => s.clear(),
                    Op::GetIf(k, live) => {
                        let (present, before) = (s.contains_key(hash(k), &k), s.stats());
                        let got = s.get_if(hash(k), &k, |&v| {
                            assert_eq!(v, k, "live sees the value of the key");
                            live
                        });
                        let hit = present && live;
                        prop_assert_eq!(got.copied(), hit.then_some(k));
                        let after = s.stats();
                        prop_assert_eq!(after.hits - before.hits, u64::from(hit));
                        prop_assert_eq!(after.misses - before.misses, u64::from(!hit));
                        let expired = present && !live;
                        prop_assert_eq!(after.expired - before.expired, u64::from(expired));
                        if hit {
                            prop_assert_eq!(s.links[0].next, s.find(hash(k), &k).expect("present"));
                        } else {
                            prop_assert!(!s.contains_key(hash(k), &k));
                        }
                    }
                    Op::RemoveBelow(bound) => {
                        let (len, before) = (s.len(), s.stats().expired);
                        let doomed = s.iter().filter(|&(_, &v)| v < bound).count();
                        let kept: Vec<u8> =
                            s.iter().map(|(&k, _)| k).filter(|&k| k >= bound).collect();
                        prop_assert_eq!(s.remove_where(|&v| v < bound), doomed);
                        prop_assert_eq!(s.len(), len - doomed);
                        prop_assert_eq!(s.stats().expired - before, doomed as u64);
                        let order: Vec<u8> = s.iter().map(|(&k, _)| k).collect();
                        prop_assert_eq!(order, kept, "the survivors keep their recency order");
                    }
                }
                s.check();
            }
        }
    }
}
