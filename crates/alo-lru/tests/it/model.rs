//! Model-based test: random operation sequences against a plain `Vec` in recency order.

use std::sync::{Arc, Mutex};

use alo_lru::{Lru, Stats};
use proptest::prelude::*;

type Entry = (u8, Vec<u8>);

#[derive(Clone, Debug)]
enum Op {
    Insert(u8, usize),
    Get(u8),
    Peek(u8),
    Remove(u8),
    PopLru,
}

fn op() -> impl Strategy<Value = Op> {
    // Few keys, so that hits, replacements and removals of present keys are common.
    let key = 0u8..12;
    prop_oneof![
        4 => (key.clone(), 0usize..24).prop_map(|(k, n)| Op::Insert(k, n)),
        3 => key.clone().prop_map(Op::Get),
        1 => key.clone().prop_map(Op::Peek),
        1 => key.prop_map(Op::Remove),
        1 => Just(Op::PopLru),
    ]
}

/// The reference: entries from most to least recently used, and the same counters.
struct Model {
    entries: Vec<Entry>,
    max_bytes: usize,
    stats: Stats,
}

/// What one operation returned, in a form both sides can produce.
#[derive(Debug, PartialEq)]
enum Outcome {
    Value(Option<Vec<u8>>),
    Entry(Option<Entry>),
    Inserted(Option<Vec<u8>>),
    Refused { key: u8, previous: Option<Vec<u8>> },
}

fn charge(e: &Entry) -> usize {
    1 + e.1.len()
}

impl Model {
    fn bytes(&self) -> usize {
        self.entries.iter().map(charge).sum()
    }

    fn position(&self, k: u8) -> Option<usize> {
        self.entries.iter().position(|e| e.0 == k)
    }

    /// Applies `op`; entries it evicts are appended to `evicted`.
    fn apply(&mut self, op: &Op, evicted: &mut Vec<Entry>) -> Outcome {
        match *op {
            Op::Insert(k, n) => {
                let entry = (k, vec![k; n]);
                let previous = self.position(k).map(|i| self.entries.remove(i).1);
                if self.max_bytes != 0 && charge(&entry) > self.max_bytes {
                    return Outcome::Refused { key: k, previous };
                }
                self.stats.inserts += 1;
                self.entries.insert(0, entry);
                while self.max_bytes != 0 && self.bytes() > self.max_bytes {
                    evicted.extend(self.entries.pop());
                    self.stats.evictions += 1;
                }
                Outcome::Inserted(previous)
            }
            Op::Get(k) => match self.position(k) {
                Some(i) => {
                    self.stats.hits += 1;
                    let e = self.entries.remove(i);
                    self.entries.insert(0, e);
                    Outcome::Value(Some(self.entries[0].1.clone()))
                }
                None => {
                    self.stats.misses += 1;
                    Outcome::Value(None)
                }
            },
            Op::Peek(k) => Outcome::Value(self.position(k).map(|i| self.entries[i].1.clone())),
            Op::Remove(k) => Outcome::Entry(self.position(k).map(|i| self.entries.remove(i))),
            Op::PopLru => Outcome::Entry(self.entries.pop()),
        }
    }
}

fn apply(cache: &mut Lru<u8, Vec<u8>>, op: &Op) -> Outcome {
    match *op {
        Op::Insert(k, n) => match cache.insert(k, vec![k; n]) {
            Ok(previous) => Outcome::Inserted(previous),
            Err(e) => Outcome::Refused {
                key: e.key,
                previous: e.previous,
            },
        },
        Op::Get(k) => Outcome::Value(cache.get(&k).cloned()),
        Op::Peek(k) => Outcome::Value(cache.peek(&k).cloned()),
        Op::Remove(k) => Outcome::Entry(cache.remove(&k).map(|v| (k, v))),
        Op::PopLru => Outcome::Entry(cache.pop_lru()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn lru_behaves_like_the_model(
        max_bytes in prop_oneof![Just(0usize), 1usize..80],
        ops in prop::collection::vec(op(), 1..200),
    ) {
        let evictions = Arc::new(Mutex::new(Vec::new()));
        let mut cache: Lru<u8, Vec<u8>> = Lru::new(max_bytes);
        let sink = Arc::clone(&evictions);
        cache.set_on_evict(move |k, v| sink.lock().expect("not poisoned").push((k, v)));
        let mut model = Model { entries: Vec::new(), max_bytes, stats: Stats::default() };

        for op in &ops {
            let mut expected_evicted = Vec::new();
            let expected = model.apply(op, &mut expected_evicted);
            let got = apply(&mut cache, op);
            prop_assert_eq!(&got, &expected, "result of {:?}", op);

            let evicted = std::mem::take(&mut *evictions.lock().expect("not poisoned"));
            prop_assert_eq!(evicted, expected_evicted, "evicted by {:?}", op);

            let order: Vec<Entry> = cache.iter().map(|(k, v)| (*k, v.clone())).collect();
            prop_assert_eq!(&order, &model.entries, "order after {:?}", op);
            prop_assert_eq!(cache.bytes(), model.bytes());
            prop_assert_eq!(cache.len(), model.entries.len());
            prop_assert_eq!(cache.stats(), model.stats);
            if max_bytes != 0 {
                prop_assert!(cache.bytes() <= max_bytes);
            }
        }
    }
}
