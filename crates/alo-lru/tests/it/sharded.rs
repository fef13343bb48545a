use std::hash::{Hash, Hasher};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use alo_lru::ShardedLru;
use bytes::Bytes;

/// Charges the value's length plus the 8 bytes of a `u64` key.
fn weigh(_: &u64, v: &Bytes) -> usize {
    8 + v.len()
}

#[test]
fn threads_hammering_never_break_the_budget_or_the_accounting() {
    const BUDGET: usize = 64 * 1024;
    const KEYS: u64 = 4096;
    const THREADS: u64 = 4;
    let cache: ShardedLru<u64, Bytes> = ShardedLru::with_shards(BUDGET, 8);
    let barrier = Barrier::new(THREADS as usize + 1);
    let done = AtomicBool::new(false);
    let max_seen = AtomicUsize::new(0);

    let (gets, inserts) = thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (cache, barrier) = (&cache, &barrier);
                s.spawn(move || {
                    let (mut gets, mut inserts) = (0, 0);
                    barrier.wait();
                    // A cheap deterministic key and size sequence per thread.
                    let mut x = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                    for _ in 0..40_000 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let key = x % KEYS;
                        match x >> 60 {
                            0..=5 => {
                                let value = Bytes::from(vec![key as u8; (x >> 40) as usize % 700]);
                                cache.insert(key, value).expect("fits a shard");
                                inserts += 1;
                            }
                            6 => {
                                cache.remove(&key);
                            }
                            _ => {
                                gets += 1;
                                if let Some(v) = cache.get(&key) {
                                    assert!(v.iter().all(|&b| b == key as u8), "value of {key}");
                                }
                            }
                        }
                    }
                    (gets, inserts)
                })
            })
            .collect();
        // An observer reads the total while the workers write.
        s.spawn(|| {
            barrier.wait();
            while !done.load(Ordering::Acquire) {
                max_seen.fetch_max(cache.bytes(), Ordering::Relaxed);
            }
        });
        let (mut gets, mut inserts) = (0, 0);
        for w in workers {
            let (g, i) = w.join().expect("worker panicked");
            gets += g;
            inserts += i;
        }
        done.store(true, Ordering::Release);
        (gets, inserts)
    });

    assert!(max_seen.load(Ordering::Relaxed) <= BUDGET);
    let (mut bytes, mut len) = (0, 0);
    for k in 0..KEYS {
        if let Some(v) = cache.peek(&k) {
            bytes += k.to_le_bytes().len() + v.len();
            len += 1;
        }
    }
    assert_eq!(cache.bytes(), bytes, "bytes() is the sum of what remains");
    assert_eq!(cache.len(), len);
    assert!(cache.bytes() <= BUDGET);
    let stats = cache.stats();
    assert!(stats.evictions > 0, "the budget was under pressure");
    assert_eq!(stats.hits + stats.misses, gets);
    assert_eq!(stats.inserts, inserts);
}

#[test]
fn gets_clone_the_value_out() {
    let cache = ShardedLru::with_weigher(1000, 4, weigh);
    cache.insert(1, Bytes::from_static(b"one")).expect("fits");
    let v = cache.get(&1).expect("cached");
    cache.insert(1, Bytes::from_static(b"uno")).expect("fits");
    assert_eq!(
        v, "one",
        "a value taken out is not changed by a later insert"
    );
    assert_eq!(cache.get(&1).expect("cached"), "uno");
    assert_eq!(cache.remove(&1).expect("cached"), "uno");
    assert!(cache.is_empty());
}

#[test]
fn the_budget_is_split_across_shards_and_sums_to_the_total() {
    // 10 bytes over 4 shards: 3 + 3 + 2 + 2. Every entry weighs 1 byte.
    let one = |_: &u32, _: &()| 1;
    let cache = ShardedLru::with_weigher(10, 4, one);
    for k in 0..1000 {
        cache.insert(k, ()).expect("fits");
    }
    assert_eq!(cache.bytes(), 10);
    assert_eq!(cache.len(), 10);
}

#[test]
fn one_entry_may_take_at_most_its_shards_share() {
    let cache: ShardedLru<u64, Bytes> = ShardedLru::with_shards(100, 4);
    let err = cache
        .insert(7, Bytes::from(vec![0; 20]))
        .expect_err("28 bytes > 25 per shard");
    assert_eq!((err.charge, err.max_bytes), (28, 25));
    cache
        .insert(7, Bytes::from(vec![0; 17]))
        .expect("25 bytes fit");
}

#[test]
fn shard_counts_are_clamped() {
    assert_eq!(ShardedLru::<u64, u64>::with_shards(3, 8).shards(), 3);
    assert_eq!(ShardedLru::<u64, u64>::with_shards(0, 0).shards(), 1);
    assert_eq!(
        ShardedLru::<u64, u64>::with_shards(0, usize::MAX).shards(),
        1 << 16
    );
    let default = ShardedLru::<u64, u64>::new(1 << 20);
    assert!((1..=64).contains(&default.shards()));
    assert_eq!(default.max_bytes(), 1 << 20);
}

#[test]
fn a_panic_in_user_code_does_not_poison_the_cache() {
    static PANIC_ON_EQ: AtomicBool = AtomicBool::new(false);

    /// A key whose comparison panics on demand.
    #[derive(Debug)]
    struct Touchy(u32);
    impl Hash for Touchy {
        fn hash<H: Hasher>(&self, state: &mut H) {
            self.0.hash(state);
        }
    }
    impl PartialEq for Touchy {
        fn eq(&self, other: &Self) -> bool {
            assert!(!PANIC_ON_EQ.load(Ordering::Relaxed), "comparison refused");
            self.0 == other.0
        }
    }
    impl Eq for Touchy {}

    let one = |_: &Touchy, _: &u32| 1;
    let cache = Arc::new(ShardedLru::with_weigher(0, 1, one));
    cache.insert(Touchy(1), 10).expect("unbounded");
    PANIC_ON_EQ.store(true, Ordering::Relaxed);
    let panicked = catch_unwind(AssertUnwindSafe(|| cache.get(&Touchy(1))));
    PANIC_ON_EQ.store(false, Ordering::Relaxed);
    assert!(panicked.is_err());

    assert_eq!(cache.get(&Touchy(1)), Some(10));
    cache.insert(Touchy(2), 20).expect("unbounded");
    assert_eq!(cache.len(), 2);
}

#[test]
fn a_snapshot_holds_every_entry_most_recent_first_within_each_shard() {
    let cache: ShardedLru<u64, u64> = ShardedLru::with_shards(0, 4);
    for k in 0..100 {
        cache.insert(k, k * 10).expect("unbounded");
    }
    // A hit makes 7 the most recent of its shard; a peek changes nothing.
    assert_eq!(cache.get(&7), Some(70));
    let hits = cache.stats().hits;
    let snapshot = cache.snapshot();
    assert_eq!(cache.stats().hits, hits, "a snapshot is not a hit");
    assert_eq!(snapshot.len(), 100);
    let mut keys: Vec<u64> = snapshot.iter().map(|&(k, _)| k).collect();
    assert!(snapshot.iter().all(|&(k, v)| v == k * 10));
    // The first entries are the shards' most recent, 7 among them.
    assert!(keys[..4].contains(&7), "{:?}", &keys[..4]);
    keys.sort_unstable();
    assert_eq!(keys, (0..100).collect::<Vec<_>>());

    // One shard: exactly the recency order.
    let one: ShardedLru<u64, u64> = ShardedLru::with_shards(0, 1);
    for k in 0..5 {
        one.insert(k, k).expect("unbounded");
    }
    assert_eq!(one.get(&1), Some(1));
    let order: Vec<u64> = one.snapshot().into_iter().map(|(k, _)| k).collect();
    assert_eq!(order, [1, 4, 3, 2, 0]);
}
