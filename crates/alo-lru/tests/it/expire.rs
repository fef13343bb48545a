//! Expiry: `Expiring` values, `get_unexpired` and `remove_expired`, on a test clock.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use alo_lru::{Expiring, Lru, ShardedLru, Stats, Weigh};
use proptest::prelude::*;

/// A test clock: a fixed base and offsets from it in whole seconds.
#[derive(Clone, Copy, Debug)]
struct Clock(Instant);

impl Clock {
    fn new() -> Self {
        Clock(Instant::now())
    }

    /// The instant `secs` after the base.
    fn at(self, secs: u64) -> Instant {
        self.0 + Duration::from_secs(secs)
    }

    /// A `now` closure reading `secs` after the base.
    fn reads(self, secs: u64) -> impl FnOnce() -> Instant {
        move || self.at(secs)
    }
}

/// A `now` for entries that have no deadline: reading it is a bug.
fn no_clock() -> Instant {
    panic!("the clock was read for an entry without a deadline")
}

/// Single-letter keys and string values: an entry is charged 1 + the value's length.
type Cache = Lru<&'static str, Expiring<String>>;

fn put(cache: &mut Cache, key: &'static str, value: &str, deadline: Option<Instant>) {
    cache
        .insert(key, Expiring::new(value.to_string(), deadline))
        .expect("entry fits");
}

/// The value `get_unexpired` serves for `key` at `secs`.
fn value_at(cache: &mut Cache, key: &str, clock: Clock, secs: u64) -> Option<String> {
    cache
        .get_unexpired(key, clock.reads(secs))
        .map(|e| e.value.clone())
}

#[test]
fn expiring_says_whether_and_how_long() {
    let clock = Clock::new();
    let e = Expiring::until(7u8, clock.at(10));
    assert_eq!(e, Expiring::new(7, Some(clock.at(10))));
    assert!(!e.is_expired(clock.at(9)));
    assert!(e.is_expired(clock.at(10)), "expired at the deadline itself");
    assert!(e.is_expired(clock.at(11)));
    assert_eq!(e.remaining(clock.at(4)), Some(Duration::from_secs(6)));
    assert_eq!(e.remaining(clock.at(10)), Some(Duration::ZERO));
    assert_eq!(e.remaining(clock.at(99)), Some(Duration::ZERO));

    let forever = Expiring::never(7u8);
    assert_eq!(forever.deadline, None);
    assert!(!forever.is_expired(clock.at(u64::from(u32::MAX))));
    assert_eq!(forever.remaining(clock.at(0)), None);
}

#[test]
fn the_deadline_is_not_charged() {
    let clock = Clock::new();
    assert_eq!(Expiring::until("four", clock.at(1)).weigh(), 4);
    assert_eq!(Expiring::never(vec![0u8; 9]).weigh(), 9);
}

#[test]
fn an_entry_is_served_before_its_deadline_and_not_from_it() {
    let clock = Clock::new();
    let mut c = Cache::new(100);
    put(&mut c, "a", "alpha", Some(clock.at(10)));

    assert_eq!(value_at(&mut c, "a", clock, 0).as_deref(), Some("alpha"));
    assert_eq!(value_at(&mut c, "a", clock, 9).as_deref(), Some("alpha"));
    assert_eq!(value_at(&mut c, "a", clock, 10), None, "at the deadline");
    assert!(!c.contains_key("a"), "the expired entry is removed");
    assert_eq!(
        value_at(&mut c, "a", clock, 5),
        None,
        "gone for good, even for an earlier clock"
    );

    let s = c.stats();
    assert_eq!((s.hits, s.misses, s.expired, s.evictions), (2, 2, 1, 0));
}

#[test]
fn an_expired_entry_releases_its_bytes() {
    let clock = Clock::new();
    let mut c = Cache::new(100);
    put(&mut c, "a", "12345", Some(clock.at(10)));
    put(&mut c, "b", "12", None);
    assert_eq!(c.bytes(), 6 + 3);

    assert_eq!(value_at(&mut c, "a", clock, 11), None);
    assert_eq!(c.bytes(), 3);
    assert_eq!(c.len(), 1);
    assert_eq!(c.stats().expired, 1);
}

#[test]
fn entries_without_a_deadline_never_read_the_clock() {
    let mut c = Cache::new(100);
    put(&mut c, "a", "alpha", None);
    for _ in 0..3 {
        let got = c.get_unexpired("a", no_clock).map(|e| e.value.as_str());
        assert_eq!(got, Some("alpha"));
    }
    assert!(c.get_unexpired("missing", no_clock).is_none());
    let s = c.stats();
    assert_eq!((s.hits, s.misses, s.expired), (3, 1, 0));

    let sharded: ShardedLru<u64, Expiring<u64>> = ShardedLru::with_shards(0, 4);
    sharded.insert(1, Expiring::never(10)).expect("unbounded");
    assert_eq!(
        sharded.get_unexpired(&1, no_clock),
        Some(Expiring::never(10))
    );
    assert_eq!(sharded.get_unexpired(&2, no_clock), None);
}

#[test]
fn the_clock_is_read_once_per_get_of_an_entry_with_a_deadline() {
    let clock = Clock::new();
    let mut c = Cache::new(100);
    put(&mut c, "a", "alpha", Some(clock.at(10)));
    let reads = Cell::new(0);
    let now = || {
        reads.set(reads.get() + 1);
        clock.at(1)
    };
    assert!(c.get_unexpired("a", now).is_some());
    assert_eq!(reads.get(), 1);
}

#[test]
fn a_hit_marks_the_entry_most_recently_used() {
    let clock = Clock::new();
    let mut c = Cache::new(6); // three entries of 2 bytes
    put(&mut c, "a", "1", Some(clock.at(10)));
    put(&mut c, "b", "2", None);
    put(&mut c, "c", "3", None);
    assert!(c.get_unexpired("a", clock.reads(1)).is_some());
    put(&mut c, "d", "4", None);
    let order: Vec<_> = c.iter().map(|(k, _)| *k).collect();
    assert_eq!(order, ["d", "a", "c"], "b was the least recently used");
}

#[test]
fn remove_expired_removes_exactly_the_expired_ones() {
    let clock = Clock::new();
    let (tx, rx) = mpsc::channel();
    let mut c = Cache::new(100);
    c.set_on_evict(move |k, _| tx.send(k).expect("receiver lives"));
    put(&mut c, "a", "1", Some(clock.at(5)));
    put(&mut c, "b", "2", None);
    put(&mut c, "c", "3", Some(clock.at(10)));
    put(&mut c, "d", "4", Some(clock.at(11)));
    put(&mut c, "e", "5", Some(clock.at(1)));
    c.get_unexpired("b", no_clock);

    assert_eq!(c.remove_expired(clock.at(0)), 0);
    assert_eq!(
        c.remove_expired(clock.at(10)),
        3,
        "a, c (at its deadline) and e"
    );
    let order: Vec<_> = c.iter().map(|(k, _)| *k).collect();
    assert_eq!(order, ["b", "d"], "the survivors keep their order");
    assert_eq!(c.bytes(), 4);
    assert_eq!(c.stats().expired, 3);
    assert_eq!(c.stats().evictions, 0);
    assert!(rx.try_recv().is_err(), "expiry is not eviction");

    assert_eq!(c.remove_expired(clock.at(10)), 0, "nothing left to expire");
    assert_eq!(c.remove_expired(clock.at(100)), 1);
    assert_eq!(c.len(), 1);
}

#[test]
fn plain_get_serves_an_expired_entry() {
    // Only `get_unexpired` looks at deadlines; `get` and `peek` hand out the entry as stored.
    let clock = Clock::new();
    let mut c = Cache::new(100);
    put(&mut c, "a", "1", Some(clock.at(5)));
    let e = c.get("a").expect("still cached");
    assert!(e.is_expired(clock.at(6)));
    assert_eq!(c.stats().expired, 0);
}

#[test]
fn sharded_serves_before_the_deadline_and_releases_after() {
    let clock = Clock::new();
    let weigh = |_: &u64, e: &Expiring<Vec<u8>>| 8 + e.value.len();
    let cache = ShardedLru::with_weigher(0, 4, weigh);
    for k in 0..100u64 {
        // Even keys expire at 10 s, odd ones never.
        let deadline = (k % 2 == 0).then(|| clock.at(10));
        cache
            .insert(k, Expiring::new(vec![k as u8; 10], deadline))
            .expect("unbounded");
    }
    assert_eq!(cache.bytes(), 100 * 18);

    let hit = cache.get_unexpired(&4, clock.reads(9)).expect("not yet");
    assert_eq!(hit, Expiring::until(vec![4; 10], clock.at(10)));
    assert_eq!(cache.get_unexpired(&4, clock.reads(10)), None);
    assert_eq!(cache.bytes(), 99 * 18);
    assert!(cache.get_unexpired(&5, no_clock).is_some());

    assert_eq!(cache.remove_expired(clock.at(9)), 0);
    assert_eq!(cache.remove_expired(clock.at(10)), 49);
    assert_eq!(cache.len(), 50);
    assert_eq!(cache.bytes(), 50 * 18);
    assert!((0..100).all(|k| cache.contains_key(&k) == (k % 2 == 1)));
    let s = cache.stats();
    assert_eq!((s.hits, s.misses, s.expired), (2, 1, 50));
}

// ---------------------------------------------------------------------------------------------
// Model-based: `Lru` and `ShardedLru`, both unbounded, against a map of deadlines.

#[derive(Clone, Debug)]
enum Op {
    /// Key, value length, deadline in seconds from the current time (`None`: never).
    Insert(u8, usize, Option<u64>),
    Get(u8),
    RemoveExpired,
    /// Moves the clock on by this many seconds.
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0u8..8;
    prop_oneof![
        4 => (key.clone(), 0usize..8, prop::option::of(0u64..6))
            .prop_map(|(k, n, ttl)| Op::Insert(k, n, ttl)),
        4 => key.prop_map(Op::Get),
        1 => Just(Op::RemoveExpired),
        2 => (0u64..4).prop_map(Op::Advance),
    ]
}

/// Entries as key -> (value, deadline in seconds from the clock's base), and the counters.
#[derive(Default)]
struct Model {
    entries: HashMap<u8, (Vec<u8>, Option<u64>)>,
    stats: Stats,
}

impl Model {
    /// What `get_unexpired` returns at `now` seconds, and whether it read the clock.
    fn get(&mut self, k: u8, now: u64) -> (Option<Vec<u8>>, bool) {
        let Some((value, deadline)) = self.entries.get(&k).cloned() else {
            self.stats.misses += 1;
            return (None, false);
        };
        match deadline {
            Some(d) if now >= d => {
                self.entries.remove(&k);
                self.stats.misses += 1;
                self.stats.expired += 1;
                (None, true)
            }
            _ => {
                self.stats.hits += 1;
                (Some(value), deadline.is_some())
            }
        }
    }

    fn remove_expired(&mut self, now: u64) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, (_, d)| d.is_none_or(|d| now < d));
        let removed = before - self.entries.len();
        self.stats.expired += removed as u64;
        removed
    }

    fn bytes(&self) -> usize {
        self.entries.values().map(|(v, _)| 1 + v.len()).sum()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn both_caches_expire_like_the_model(ops in prop::collection::vec(op(), 1..150)) {
        let clock = Clock::new();
        let mut lru: Lru<u8, Expiring<Vec<u8>>> = Lru::new(0);
        let sharded: ShardedLru<u8, Expiring<Vec<u8>>> = ShardedLru::with_shards(0, 4);
        let mut model = Model::default();
        let mut now = 0;

        for op in &ops {
            match *op {
                Op::Insert(k, n, ttl) => {
                    let deadline = ttl.map(|t| now + t);
                    let e = Expiring::new(vec![k; n], deadline.map(|d| clock.at(d)));
                    lru.insert(k, e.clone()).expect("unbounded");
                    sharded.insert(k, e).expect("unbounded");
                    model.entries.insert(k, (vec![k; n], deadline));
                    model.stats.inserts += 1;
                }
                Op::Get(k) => {
                    let (expected, reads_clock) = model.get(k, now);
                    let reads = Cell::new(0);
                    let read = || {
                        reads.set(reads.get() + 1);
                        clock.at(now)
                    };
                    let got = lru.get_unexpired(&k, read).map(|e| e.value.clone());
                    prop_assert_eq!(&got, &expected, "Lru, get of {} at {}", k, now);
                    let got = sharded.get_unexpired(&k, read).map(|e| e.value);
                    prop_assert_eq!(&got, &expected, "ShardedLru, get of {} at {}", k, now);
                    prop_assert_eq!(reads.get(), 2 * u32::from(reads_clock), "clock reads");
                }
                Op::RemoveExpired => {
                    let expected = model.remove_expired(now);
                    prop_assert_eq!(lru.remove_expired(clock.at(now)), expected);
                    prop_assert_eq!(sharded.remove_expired(clock.at(now)), expected);
                }
                Op::Advance(secs) => now += secs,
            }
            prop_assert_eq!(lru.len(), model.entries.len());
            prop_assert_eq!(sharded.len(), model.entries.len());
            prop_assert_eq!(lru.bytes(), model.bytes());
            prop_assert_eq!(sharded.bytes(), model.bytes());
            prop_assert_eq!(lru.stats(), model.stats);
            prop_assert_eq!(sharded.stats(), model.stats);
        }
    }
}
