use std::sync::mpsc;

use alo_lru::{Lru, Stats, TooLarge};

/// The keys from most to least recently used.
fn order<V>(cache: &Lru<&'static str, V, impl Sized, impl Sized>) -> Vec<&'static str> {
    cache.iter().map(|(k, _)| *k).collect()
}

/// A cache of single-letter keys and string values, charged 1 + the value's length.
fn cache(max_bytes: usize) -> Lru<&'static str, String> {
    Lru::new(max_bytes)
}

fn put(cache: &mut Lru<&'static str, String>, key: &'static str, value: &str) -> Option<String> {
    cache.insert(key, value.to_string()).expect("entry fits")
}

#[test]
fn iter_runs_from_most_to_least_recently_used() {
    let mut c = cache(100);
    put(&mut c, "a", "1");
    put(&mut c, "b", "2");
    put(&mut c, "c", "3");
    assert_eq!(order(&c), ["c", "b", "a"]);
    assert_eq!(c.iter().len(), 3);

    assert_eq!(c.get("a").map(String::as_str), Some("1"));
    assert_eq!(order(&c), ["a", "c", "b"]);
    c.get("b");
    assert_eq!(order(&c), ["b", "a", "c"]);
}

#[test]
fn least_recently_used_is_evicted_first() {
    let mut c = cache(6); // three entries of 2 bytes
    put(&mut c, "a", "1");
    put(&mut c, "b", "2");
    put(&mut c, "c", "3");
    c.get("a");
    put(&mut c, "d", "4");
    assert_eq!(order(&c), ["d", "a", "c"], "b was the least recently used");
    put(&mut c, "e", "5");
    assert_eq!(order(&c), ["e", "d", "a"]);
}

#[test]
fn peek_and_contains_key_do_not_reorder_or_count() {
    let mut c = cache(100);
    put(&mut c, "a", "1");
    put(&mut c, "b", "2");
    let before = c.stats();
    assert_eq!(c.peek("a").map(String::as_str), Some("1"));
    assert!(c.contains_key("a"));
    assert!(c.peek("zz").is_none());
    assert!(!c.contains_key("zz"));
    assert_eq!(order(&c), ["b", "a"]);
    assert_eq!(c.stats(), before);
}

#[test]
fn reinsert_moves_to_front_recharges_and_returns_the_old_value() {
    let mut c = cache(100);
    put(&mut c, "a", "1");
    put(&mut c, "b", "22");
    assert_eq!(c.bytes(), 2 + 3);

    assert_eq!(put(&mut c, "a", "4444").as_deref(), Some("1"));
    assert_eq!(order(&c), ["a", "b"]);
    assert_eq!(c.bytes(), 5 + 3);
    assert_eq!(c.len(), 2);

    assert_eq!(put(&mut c, "a", "").as_deref(), Some("4444"));
    assert_eq!(c.bytes(), 1 + 3);
}

#[test]
fn growing_an_entry_evicts_others_but_never_itself() {
    let mut c = cache(10);
    put(&mut c, "a", "1");
    put(&mut c, "b", "2");
    put(&mut c, "c", "3"); // 6 bytes
    assert_eq!(put(&mut c, "a", "12345678").as_deref(), Some("1")); // 9 bytes: b goes, then c
    assert_eq!(order(&c), ["a"]);
    assert_eq!(c.bytes(), 9);
    assert_eq!(c.stats().evictions, 2);
}

#[test]
fn growing_the_last_node_keeps_it_reachable() {
    // "c" sits in the last slot of the node vector; evicting "a" moves it. The cache must still
    // find it under its key and charge it correctly.
    let mut c = cache(9);
    put(&mut c, "a", "1");
    put(&mut c, "b", "2");
    put(&mut c, "c", "3");
    put(&mut c, "c", "333333");
    assert_eq!(order(&c), ["c", "b"]);
    assert_eq!(c.get("c").map(String::as_str), Some("333333"));
    assert_eq!(c.bytes(), 7 + 2);
}

#[test]
fn bytes_follow_inserts_removes_and_pops() {
    let mut c = cache(0);
    put(&mut c, "a", "123");
    put(&mut c, "b", "12345");
    assert_eq!(c.bytes(), 4 + 6);
    assert_eq!(c.remove("a").as_deref(), Some("123"));
    assert_eq!(c.bytes(), 6);
    assert_eq!(c.remove("a"), None);
    assert_eq!(c.bytes(), 6);
    assert_eq!(c.pop_lru(), Some(("b", "12345".to_string())));
    assert_eq!(c.bytes(), 0);
    assert!(c.is_empty());
    assert_eq!(c.pop_lru(), None);
}

#[test]
fn pop_lru_takes_the_least_recent() {
    let mut c = cache(100);
    put(&mut c, "a", "1");
    put(&mut c, "b", "2");
    put(&mut c, "c", "3");
    c.get("a");
    assert_eq!(c.pop_lru().map(|(k, _)| k), Some("b"));
    assert_eq!(c.pop_lru().map(|(k, _)| k), Some("c"));
    assert_eq!(c.pop_lru().map(|(k, _)| k), Some("a"));
    assert_eq!(c.stats().evictions, 0, "popping is not evicting");
}

#[test]
fn an_entry_larger_than_the_budget_is_refused_and_handed_back() {
    let mut c = cache(5);
    put(&mut c, "a", "1");
    put(&mut c, "b", "2");

    let err = c
        .insert("c", "123456".to_string())
        .expect_err("7 bytes > 5");
    let TooLarge {
        key,
        value,
        previous,
        charge,
        max_bytes,
        ..
    } = err;
    assert_eq!((key, value.as_str(), previous), ("c", "123456", None));
    assert_eq!((charge, max_bytes), (7, 5));
    assert_eq!(order(&c), ["b", "a"], "the other entries stay");
    assert_eq!(c.bytes(), 4);
    assert_eq!(c.stats().inserts, 2, "a refusal is not an insert");
}

#[test]
fn refusing_a_replacement_removes_the_stale_value() {
    let mut c = cache(5);
    put(&mut c, "a", "1");
    put(&mut c, "b", "2");
    let err = c
        .insert("a", "too long".to_string())
        .expect_err("9 bytes > 5");
    assert_eq!(err.previous.as_deref(), Some("1"));
    assert!(
        c.get("a").is_none(),
        "never answer with the value the caller replaced"
    );
    assert_eq!(order(&c), ["b"]);
    assert_eq!(c.bytes(), 2);
    assert!(err.to_string().contains("9 bytes exceeds the 5-byte limit"));
}

#[test]
fn an_entry_of_exactly_the_budget_fits_alone() {
    let mut c = cache(5);
    put(&mut c, "a", "1");
    put(&mut c, "b", "2");
    put(&mut c, "c", "1234");
    assert_eq!(order(&c), ["c"]);
    assert_eq!(c.bytes(), 5);
}

#[test]
fn zero_max_bytes_is_unbounded() {
    let mut c: Lru<u32, Vec<u8>> = Lru::new(0);
    for k in 0..10_000 {
        c.insert(k, vec![0; 100]).expect("unbounded");
    }
    assert_eq!(c.len(), 10_000);
    assert_eq!(c.bytes(), 10_000 * 104);
    assert_eq!(c.max_bytes(), 0);
    assert_eq!(c.stats().evictions, 0);
    c.insert(0, vec![0; 1 << 20])
        .expect("no entry is too large");
}

#[test]
fn eviction_callback_gets_exactly_the_evicted_entries_in_order() {
    let (tx, rx) = mpsc::channel();
    let mut c = cache(6);
    c.set_on_evict(move |k, v| tx.send((k, v)).expect("receiver lives"));
    put(&mut c, "a", "1");
    put(&mut c, "b", "2");
    put(&mut c, "c", "3");
    c.get("a");
    c.remove("c"); // removal is not eviction
    put(&mut c, "d", "4");
    put(&mut c, "e", "5555"); // 5 bytes: needs 5 of 6 bytes, so evicts b, a and d
    put(&mut c, "e", "5"); // replacement is not eviction

    let evicted: Vec<_> = rx.try_iter().collect();
    let expected = [("b", "2"), ("a", "1"), ("d", "4")];
    let expected: Vec<_> = expected.map(|(k, v)| (k, v.to_string())).into();
    assert_eq!(evicted, expected);
    assert_eq!(c.stats().evictions, 3);
}

#[test]
fn string_keys_are_found_by_str() {
    let mut c: Lru<String, u64> = Lru::new(1000);
    c.insert("key".to_string(), 7).expect("fits");
    assert_eq!(c.get("key"), Some(&7));
    assert_eq!(c.peek("key"), Some(&7));
    assert_eq!(c.remove("key"), Some(7));
}

#[test]
fn closure_weigher_decides_the_charge() {
    let mut c = Lru::with_weigher(100, |_: &u32, v: &Vec<u8>| v.len() * 10);
    c.insert(1, vec![0; 3]).expect("30 bytes");
    c.insert(2, vec![0; 5]).expect("50 bytes");
    assert_eq!(c.bytes(), 80);
    c.insert(3, vec![0; 3]).expect("30 bytes, evicts 1");
    assert_eq!(c.bytes(), 80);
    assert!(!c.contains_key(&1));
    assert!(c.insert(4, vec![0; 11]).is_err(), "110 bytes");
}

#[test]
fn counters_count_hits_misses_inserts_evictions() {
    let mut c = cache(4);
    put(&mut c, "a", "1");
    put(&mut c, "a", "2");
    put(&mut c, "b", "3");
    put(&mut c, "c", "4"); // evicts a
    c.get("b");
    c.get("c");
    c.get("a");
    let s = c.stats();
    assert_eq!((s.hits, s.misses, s.inserts, s.evictions), (2, 1, 4, 1));
}

#[test]
fn clear_empties_but_keeps_counters() {
    let mut c = cache(100);
    put(&mut c, "a", "1");
    c.get("a");
    c.clear();
    assert!(c.is_empty());
    assert_eq!(c.bytes(), 0);
    assert_eq!(c.iter().count(), 0);
    assert_eq!(c.stats().hits, 1);
    put(&mut c, "b", "2");
    assert_eq!(order(&c), ["b"]);
    assert_eq!(
        Stats::default(),
        Lru::<u8, u8>::new(1).stats(),
        "a new cache counts nothing"
    );
}

#[test]
fn caches_move_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Lru<String, bytes::Bytes>>();
    send_sync::<alo_lru::ShardedLru<String, bytes::Bytes>>();
}
