//! A group with no peers: caching, dedup, eviction, errors.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use alo_group::{
    BoxFuture, ENTRY_OVERHEAD, Error, Getter, Group, LoadContext, LoadError, Loaded, getter_fn,
};
use bytes::Bytes;
use futures_util::future::join_all;
use tokio::sync::Notify;

use crate::fakes::Source;

fn group(source: &Source, max_bytes: usize) -> Group {
    Group::builder("test", source.clone())
        .max_bytes(max_bytes)
        .build()
        .expect("valid group")
}

#[tokio::test]
async fn the_second_get_does_not_call_the_getter() {
    let source = Source::default();
    let g = group(&source, 1 << 20);
    assert_eq!(g.get("k").await.expect("value"), "value:k");
    assert_eq!(g.get(b"k").await.expect("value"), "value:k");
    assert_eq!(source.calls(), 1);
    let s = g.stats();
    assert_eq!((s.gets, s.cache_hits, s.loads, s.local_loads), (2, 1, 1, 1));
    // The key's byte, the value's seven, and the entry's bookkeeping.
    assert_eq!(s.main_cache.items, 1);
    assert_eq!(s.main_cache.bytes as usize, 1 + 7 + ENTRY_OVERHEAD);
}

/// Holds every load until released.
struct Gated {
    calls: AtomicUsize,
    release: Arc<Notify>,
}

impl Getter for Gated {
    fn get(&self, ctx: LoadContext) -> BoxFuture<'_, Result<Loaded, LoadError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let release = self.release.clone().notified_owned();
        Box::pin(async move {
            release.await;
            Ok(Loaded::new(ctx.key().clone()))
        })
    }
}

#[tokio::test]
async fn concurrent_gets_of_a_cold_key_call_the_getter_once() {
    const CALLERS: usize = 100;
    let release = Arc::new(Notify::new());
    let getter = Arc::new(Gated {
        calls: AtomicUsize::new(0),
        release: release.clone(),
    });
    let g = Group::builder("test", getter.clone())
        .build()
        .expect("valid");
    let joined = AtomicUsize::new(0);
    let gets = (0..CALLERS).map(|_| async {
        // Single-threaded runtime: a caller joins the load in the same poll as it counts, so
        // the last count means every caller is waiting.
        if joined.fetch_add(1, Ordering::SeqCst) + 1 == CALLERS {
            release.notify_one();
        }
        g.get("cold").await
    });
    let values = join_all(gets).await;
    assert!(values.iter().all(|v| v.as_deref() == Ok(&b"cold"[..])));
    assert_eq!(getter.calls.load(Ordering::SeqCst), 1);
    let s = g.stats();
    assert_eq!((s.loads, s.loads_deduped, s.local_loads), (100, 99, 1));
}

#[tokio::test]
async fn a_small_budget_evicts_old_keys_which_load_again() {
    let source = Source::default();
    // Each entry is a 2-byte key, an 8-byte value and the overhead; the budget holds three.
    const BUDGET: usize = 3 * (10 + ENTRY_OVERHEAD) + 5;
    let g = group(&source, BUDGET);
    for k in ["k1", "k2", "k3", "k4"] {
        g.get(k).await.expect("value");
        assert!(g.stats().main_cache.bytes as usize <= BUDGET);
    }
    assert_eq!(g.stats().main_cache.items, 3);
    assert_eq!(g.stats().main_cache.evictions, 1);
    g.get("k1").await.expect("value"); // evicted: loads again
    assert_eq!(source.calls(), 5);
    g.get("k4").await.expect("value"); // still cached
    assert_eq!(source.calls(), 5);
    assert!(g.stats().main_cache.bytes as usize <= BUDGET);
}

#[tokio::test]
async fn a_getter_error_is_returned_and_not_cached() {
    let source = Source::default();
    let g = group(&source, 1 << 20);
    assert_eq!(
        g.get("broken").await,
        Err(Error::Load("origin down".into()))
    );
    assert_eq!(
        g.get("broken").await,
        Err(Error::Load("origin down".into()))
    );
    assert_eq!(g.get("missing").await, Err(Error::NotFound));
    assert_eq!(g.get("missing").await, Err(Error::NotFound));
    assert_eq!(source.calls(), 4, "every failed get asked again");
    let s = g.stats();
    assert_eq!(
        (s.local_loads, s.local_load_errs, s.main_cache.items),
        (0, 4, 0)
    );
}

#[tokio::test]
async fn a_panicking_getter_fails_the_get_and_caches_nothing() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let getter = getter_fn(move |_key: Bytes| {
        counted.fetch_add(1, Ordering::SeqCst);
        async move {
            if true {
                panic!("driver bug");
            }
            Ok(Bytes::new())
        }
    });
    let g = Group::builder("test", getter).build().expect("valid");
    for _ in 0..2 {
        match g.get("k").await {
            Err(Error::Panicked(m)) => assert!(m.contains("driver bug")),
            other => panic!("expected a panic error, got {other:?}"),
        }
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(g.stats().local_load_errs, 2);
}

#[tokio::test]
async fn an_empty_key_is_refused() {
    let source = Source::default();
    let g = group(&source, 1 << 20);
    assert_eq!(g.get("").await, Err(Error::EmptyKey));
    assert_eq!(g.local().get(b"").await, Err(Error::EmptyKey));
    assert_eq!(source.calls(), 0);
}

#[tokio::test]
async fn a_value_larger_than_the_cache_is_served_but_not_kept() {
    let big = getter_fn(|_key: Bytes| async { Ok(Bytes::from(vec![7u8; 100])) });
    let g = Group::builder("test", big)
        .max_bytes(50)
        .build()
        .expect("valid");
    assert_eq!(g.get("k").await.expect("served").len(), 100);
    assert_eq!(g.stats().main_cache.items, 0);
    assert_eq!(g.stats().values_too_large, 1);
}

#[test]
fn a_group_needs_a_name() {
    let err = Group::builder("", Source::default())
        .build()
        .expect_err("no name");
    assert_eq!(err, Error::EmptyName);
}

#[tokio::test]
async fn stats_serialize_to_json() {
    let source = Source::default();
    let g = group(&source, 1 << 20);
    g.get("k").await.expect("value");
    let json = serde_json::to_value(g.stats()).expect("serializable");
    assert_eq!(json["gets"], 1);
    assert_eq!(json["local_loads"], 1);
    assert_eq!(json["main_cache"]["items"], 1);
    assert_eq!(json["hot_cache"]["items"], 0);
}
