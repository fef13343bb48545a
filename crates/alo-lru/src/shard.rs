//! The core both front ends share: a recency list linked by `u32` indices through a dense `Vec`,
//! beside a `HashTable` that maps a key's hash to its index.
//!
//! The core neither hashes nor weighs: the front ends compute a key's hash and an entry's charge
//! (outside any lock, in the sharded form) and hand both in.

use std::borrow::Borrow;
use std::mem;

use hashbrown::HashTable;

use crate::{Stats, TooLarge};

/// The index that links to nothing.
const NIL: u32 = u32::MAX;

/// Most entries one shard holds. Indices are `u32` to keep nodes small and `NIL` is reserved;
/// a shard that reaches the limit evicts as if it were out of bytes. Unit tests lower it so the
/// limit can be reached.
#[cfg(not(test))]
const MAX_ENTRIES: usize = NIL as usize;
#[cfg(test)]
const MAX_ENTRIES: usize = 4;

struct Node<K, V> {
    key: K,
    value: V,
    /// Kept so that neither eviction nor table growth calls the user's `Hash` again.
    hash: u64,
    /// Kept so that removal subtracts exactly what insertion added, whatever the weigher does.
    charge: usize,
    /// Towards the most recently used end; `NIL` at the head.
    prev: u32,
    /// Towards the least recently used end; `NIL` at the tail.
    next: u32,
}

pub(crate) struct Shard<K, V> {
    /// Dense: removing an entry moves the last node into its slot.
    nodes: Vec<Node<K, V>>,
    /// Indices into `nodes`, hashed by the node's `hash`.
    table: HashTable<u32>,
    /// Most recently used node.
    head: u32,
    /// Least recently used node: the next to be evicted.
    tail: u32,
    /// Sum of the charges of the entries held. Never above `max_bytes` when bounded.
    bytes: usize,
    /// 0 means unbounded.
    max_bytes: usize,
    stats: Stats,
}

impl<K, V> Shard<K, V> {
    pub(crate) fn new(max_bytes: usize) -> Self {
        Shard {
            nodes: Vec::new(),
            table: HashTable::new(),
            head: NIL,
            tail: NIL,
            bytes: 0,
            max_bytes,
            stats: Stats::default(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
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

    /// Finds the index of `key`, comparing only nodes whose table slot matched `hash`.
    fn find<Q>(&self, hash: u64, key: &Q) -> Option<u32>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let nodes = &self.nodes;
        self.table
            .find(hash, |&i| nodes[i as usize].key.borrow() == key)
            .copied()
    }

    pub(crate) fn get<Q>(&mut self, hash: u64, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        match self.find(hash, key) {
            Some(i) => {
                self.stats.hits += 1;
                self.move_to_front(i);
                Some(&self.nodes[i as usize].value)
            }
            None => {
                self.stats.misses += 1;
                None
            }
        }
    }

    pub(crate) fn peek<Q>(&self, hash: u64, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.find(hash, key).map(|i| &self.nodes[i as usize].value)
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

        if let Some(mut i) = self.find(hash, &key) {
            self.move_to_front(i);
            self.bytes -= self.nodes[i as usize].charge;
            // `i` is the head and the new charge fits an empty shard, so the tail reaches `i`
            // only once everything else is gone, and by then the loop has stopped.
            while !self.fits(self.bytes, charge) {
                let t = self.tail;
                let node = self.remove_index(t);
                if i as usize == self.nodes.len() {
                    // Our node was the last one, so the removal moved it into the freed slot.
                    i = t;
                }
                self.stats.evictions += 1;
                evicted(node.key, node.value);
            }
            let node = &mut self.nodes[i as usize];
            node.charge = charge;
            self.bytes = self.bytes.saturating_add(charge);
            return Ok(Some(mem::replace(&mut node.value, value)));
        }

        // Evict from the cold end until the new entry fits. The last eviction hands its slot to
        // the new entry, which saves the move of another node and two table probes.
        while self.tail != NIL
            && (self.nodes.len() >= MAX_ENTRIES || !self.fits(self.bytes, charge))
        {
            let t = self.tail;
            if self.fits(self.bytes - self.nodes[t as usize].charge, charge) {
                let (old_key, old_value) = self.reuse_tail(hash, charge, key, value);
                self.stats.evictions += 1;
                evicted(old_key, old_value);
                return Ok(None);
            }
            let node = self.remove_index(t);
            self.stats.evictions += 1;
            evicted(node.key, node.value);
        }

        let i = self.nodes.len() as u32;
        self.nodes.push(Node {
            key,
            value,
            hash,
            charge,
            prev: NIL,
            next: NIL,
        });
        self.link_front(i);
        self.index(hash, i);
        self.bytes = self.bytes.saturating_add(charge);
        Ok(None)
    }

    pub(crate) fn remove<Q>(&mut self, hash: u64, key: &Q) -> Option<(K, V)>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let i = self.find(hash, key)?;
        let node = self.remove_index(i);
        Some((node.key, node.value))
    }

    pub(crate) fn pop_lru(&mut self) -> Option<(K, V)> {
        if self.tail == NIL {
            return None;
        }
        let node = self.remove_index(self.tail);
        Some((node.key, node.value))
    }

    pub(crate) fn clear(&mut self) {
        // Forget the indices before dropping the entries: a panicking `Drop` must not leave the
        // table naming nodes that are gone.
        self.table.clear();
        self.head = NIL;
        self.tail = NIL;
        self.bytes = 0;
        self.nodes.clear();
    }

    pub(crate) fn iter(&self) -> Iter<'_, K, V> {
        Iter {
            nodes: &self.nodes,
            next: self.head,
            remaining: self.nodes.len(),
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
        let t = self.tail;
        self.unindex(t);
        self.unlink(t);
        let node = &mut self.nodes[t as usize];
        self.bytes = self.bytes - node.charge + charge;
        node.hash = hash;
        node.charge = charge;
        let old = (
            mem::replace(&mut node.key, key),
            mem::replace(&mut node.value, value),
        );
        self.link_front(t);
        self.index(hash, t);
        old
    }

    /// Removes node `i` from the table, the list and `nodes`, and returns it. The last node moves
    /// into slot `i`, and its neighbours and table slot are pointed at its new place.
    fn remove_index(&mut self, i: u32) -> Node<K, V> {
        self.unindex(i);
        self.unlink(i);
        let node = self.nodes.swap_remove(i as usize);
        self.bytes -= node.charge;
        if let Some(moved) = self.nodes.get(i as usize) {
            let last = self.nodes.len() as u32;
            let (hash, prev, next) = (moved.hash, moved.prev, moved.next);
            if let Some(slot) = self.table.find_mut(hash, |&j| j == last) {
                *slot = i;
            }
            match prev {
                NIL => self.head = i,
                p => self.nodes[p as usize].next = i,
            }
            match next {
                NIL => self.tail = i,
                n => self.nodes[n as usize].prev = i,
            }
        }
        node
    }

    fn index(&mut self, hash: u64, i: u32) {
        let nodes = &self.nodes;
        self.table
            .insert_unique(hash, i, |&j| nodes[j as usize].hash);
    }

    fn unindex(&mut self, i: u32) {
        let hash = self.nodes[i as usize].hash;
        if let Ok(entry) = self.table.find_entry(hash, |&j| j == i) {
            entry.remove();
        }
    }

    fn move_to_front(&mut self, i: u32) {
        if self.head != i {
            self.unlink(i);
            self.link_front(i);
        }
    }

    fn unlink(&mut self, i: u32) {
        let Node { prev, next, .. } = self.nodes[i as usize];
        match prev {
            NIL => self.head = next,
            p => self.nodes[p as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.nodes[n as usize].prev = prev,
        }
    }

    fn link_front(&mut self, i: u32) {
        let head = self.head;
        let node = &mut self.nodes[i as usize];
        node.prev = NIL;
        node.next = head;
        match head {
            NIL => self.tail = i,
            h => self.nodes[h as usize].prev = i,
        }
        self.head = i;
    }
}

/// Entries from most to least recently used; made by `Lru::iter`.
pub struct Iter<'a, K, V> {
    nodes: &'a [Node<K, V>],
    next: u32,
    remaining: usize,
}

impl<'a, K, V> Iterator for Iter<'a, K, V> {
    type Item = (&'a K, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        let node = self.nodes.get(self.next as usize)?;
        self.next = node.next;
        self.remaining -= 1;
        Some((&node.key, &node.value))
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
            assert_eq!(self.table.len(), self.nodes.len());
            assert!(self.nodes.len() <= MAX_ENTRIES);
            let (mut i, mut prev, mut seen) = (self.head, NIL, 0);
            while i != NIL {
                let node = &self.nodes[i as usize];
                assert_eq!(node.prev, prev, "back link of {i}");
                assert!(
                    self.table.find(node.hash, |&j| j == i).is_some(),
                    "{i} is indexed"
                );
                (prev, i) = (i, node.next);
                seen += 1;
                assert!(seen <= self.nodes.len(), "the list has a cycle");
            }
            assert_eq!(self.tail, prev);
            assert_eq!(seen, self.nodes.len());
            assert_eq!(
                self.bytes,
                self.nodes.iter().map(|n| n.charge).sum::<usize>()
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
                            prop_assert_eq!(s.head, s.find(hash(k), &k).expect("present"));
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
                }
                s.check();
            }
        }
    }
}
