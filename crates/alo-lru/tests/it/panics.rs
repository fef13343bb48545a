//! User code that panics while a cache hands an entry out (an eviction callback, a value's
//! `Drop`) must leave the cache's accounting exact: `bytes()` is the sum of the charges of the
//! entries held, and later operations neither wrap nor lose track of an entry.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use alo_lru::{Expiring, Lru, ShardedLru, Weigher};

/// A value of `len` bytes whose `Drop` panics when `armed`.
#[derive(Debug)]
struct Bomb {
    len: usize,
    armed: bool,
}

impl Drop for Bomb {
    fn drop(&mut self) {
        // Never while unwinding already: a second panic would abort the test binary.
        if self.armed && !std::thread::panicking() {
            panic!("a value's Drop panicked");
        }
    }
}

fn safe(len: usize) -> Bomb {
    Bomb { len, armed: false }
}

fn armed(len: usize) -> Bomb {
    Bomb { len, armed: true }
}

/// A cache of one-letter keys, each entry charged 1 + the value's `len`.
fn cache(max_bytes: usize) -> Lru<&'static str, Bomb, impl Weigher<&'static str, Bomb>> {
    Lru::with_weigher(max_bytes, |k: &&'static str, v: &Bomb| k.len() + v.len)
}

/// Runs `f`, which must panic.
fn panics(f: impl FnOnce()) {
    assert!(
        catch_unwind(AssertUnwindSafe(f)).is_err(),
        "expected a panic"
    );
}

/// Asserts that `bytes()` and `len()` are those of the entries held (`charge` being the value's
/// part), then removes every entry and fills the whole budget again, so that a count left wrong
/// would show up as a wrap or a refusal.
fn assert_exact<V, W: Weigher<&'static str, V>>(
    cache: &mut Lru<&'static str, V, W>,
    charge: impl Fn(&V) -> usize,
    fill: impl FnOnce() -> V,
) {
    let held: usize = cache.iter().map(|(k, v)| k.len() + charge(v)).sum();
    assert_eq!(
        cache.bytes(),
        held,
        "bytes are the charges of the entries held"
    );
    assert_eq!(cache.len(), cache.iter().count());
    let keys: Vec<&str> = cache.iter().map(|(k, _)| *k).collect();
    for k in keys {
        let before = cache.bytes();
        let value = cache.remove(k).expect("an entry listed is found");
        assert_eq!(cache.bytes(), before - k.len() - charge(&value));
    }
    assert_eq!((cache.len(), cache.bytes()), (0, 0));
    let value = fill();
    assert_eq!(
        1 + charge(&value),
        cache.max_bytes(),
        "fill takes the whole budget"
    );
    cache.insert("z", value).expect("the whole budget is free");
    assert_eq!(cache.bytes(), cache.max_bytes());
}

#[test]
fn a_panicking_callback_during_a_replacement_keeps_the_old_entry_charged() {
    // The case: the replacement of "a" must evict "b", and the callback panics. "a"
    // still holds its old value, charged 5; `bytes()` used to read 0 here, and removing "a"
    // then wrapped it to 2^64 - 5.
    let mut c = cache(10);
    c.insert("a", safe(4)).expect("fits");
    c.insert("b", safe(4)).expect("fits");
    c.set_on_evict(|_, _| panic!("the eviction callback panicked"));
    panics(|| {
        let _ = c.insert("a", safe(5));
    });
    assert_eq!(
        c.iter().map(|(k, v)| (*k, v.len)).collect::<Vec<_>>(),
        [("a", 4)]
    );
    assert_eq!(c.bytes(), 5);
    c.set_on_evict(|_, _| {});
    assert_exact(&mut c, |v| v.len, || safe(9));
}

#[test]
fn a_panicking_drop_during_a_replacement_keeps_the_old_entry_charged() {
    let mut c = cache(10);
    c.insert("a", safe(4)).expect("fits");
    c.insert("b", armed(4)).expect("fits");
    panics(|| {
        let _ = c.insert("a", safe(5)); // evicts "b", whose Drop panics
    });
    assert!(!c.contains_key("b"));
    assert_exact(&mut c, |v| v.len, || safe(9));
}

#[test]
fn a_panicking_drop_during_eviction_for_a_new_key_leaves_the_rest_exact() {
    // The evicted entry is removed outright: after it, "c" still does not fit beside "b".
    let mut c = cache(10);
    c.insert("a", armed(4)).expect("fits");
    c.insert("b", safe(4)).expect("fits");
    panics(|| {
        let _ = c.insert("c", safe(8));
    });
    assert_eq!(c.iter().map(|(k, _)| *k).collect::<Vec<_>>(), ["b"]);
    assert_exact(&mut c, |v| v.len, || safe(9));

    // The evicted entry's slot is reused: "c" takes it, then the old value is dropped.
    let mut c = cache(10);
    c.insert("a", armed(4)).expect("fits");
    c.insert("b", safe(4)).expect("fits");
    panics(|| {
        let _ = c.insert("c", safe(4));
    });
    assert_eq!(c.iter().map(|(k, _)| *k).collect::<Vec<_>>(), ["c", "b"]);
    assert_exact(&mut c, |v| v.len, || safe(9));
}

#[test]
fn a_panicking_drop_during_clear_leaves_the_cache_empty() {
    let mut c = cache(20);
    c.insert("a", safe(4)).expect("fits");
    c.insert("b", armed(4)).expect("fits");
    c.insert("c", safe(4)).expect("fits");
    panics(|| c.clear());
    assert!(c.iter().next().is_none());
    assert_exact(&mut c, |v| v.len, || safe(19));
}

#[test]
fn a_panicking_drop_of_an_expired_entry_leaves_the_rest_exact() {
    let start = Instant::now();
    let later = start + Duration::from_secs(60);
    let weigh = |k: &&'static str, e: &Expiring<Bomb>| k.len() + e.value.len;
    let mut c = Lru::with_weigher(20, weigh);
    c.insert("a", Expiring::until(armed(4), start))
        .expect("fits");
    c.insert("b", Expiring::never(safe(4))).expect("fits");
    c.insert("c", Expiring::until(armed(4), start))
        .expect("fits");
    panics(|| {
        c.get_unexpired("a", || later);
    });
    assert!(!c.contains_key("a"));
    panics(|| {
        c.remove_expired(later);
    });
    assert!(!c.contains_key("c"));
    assert_eq!(c.stats().expired, 2);
    assert_exact(&mut c, |e| e.value.len, || Expiring::never(safe(19)));
}

#[test]
fn a_sharded_cache_stays_exact_after_a_panicking_drop() {
    // One shard, so that both keys share a budget and a lock (poisoned by the panic).
    let weigh = |_: &u8, v: &Bomb| v.len;
    let c = ShardedLru::with_weigher(10, 1, weigh);
    c.insert(1, safe(5)).expect("fits");
    c.insert(2, armed(5)).expect("fits");
    panics(|| {
        let _ = c.insert(1, safe(6)); // evicts 2, whose Drop panics
    });
    assert_eq!(
        (c.len(), c.bytes()),
        (1, 5),
        "1 keeps its old value and charge"
    );
    assert_eq!(c.remove(&1).map(|v| v.len), Some(5));
    assert_eq!((c.len(), c.bytes()), (0, 0));
    c.insert(3, safe(10)).expect("the whole budget is free");
    assert_eq!(c.bytes(), 10);
}
