//! A load belongs to the cache: it outlives impatient callers, has a deadline, and what it
//! keeps owns its bytes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use alo_group::{Error, Group, getter_fn};
use bytes::Bytes;

/// A getter that takes `delay` per load and counts its calls.
fn slow(delay: Duration, calls: &Arc<AtomicUsize>) -> Group {
    let calls = calls.clone();
    let getter = getter_fn(move |key: Bytes| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(delay).await;
            Ok(key)
        }
    });
    Group::builder("slow", getter)
        .load_timeout(Duration::from_secs(10))
        .build()
        .expect("valid")
}

#[tokio::test(start_paused = true)]
async fn a_load_whose_callers_all_gave_up_still_fills_the_cache() {
    let calls = Arc::new(AtomicUsize::new(0));
    let g = slow(Duration::from_millis(200), &calls);
    let impatient = (0..50).map(|_| tokio::time::timeout(Duration::from_millis(50), g.get("k")));
    for waited in futures_util::future::join_all(impatient).await {
        assert!(waited.is_err(), "every caller gives up at 50 ms");
    }
    // Nobody waits; the load goes on and fills the cache.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(g.get("k").await.expect("cached"), "k");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(g.stats().cache_hits, 1);
}

#[tokio::test(start_paused = true)]
async fn waves_of_impatient_callers_cost_one_load() {
    let calls = Arc::new(AtomicUsize::new(0));
    let g = slow(Duration::from_millis(200), &calls);
    for _ in 0..10 {
        let wave = (0..10).map(|_| tokio::time::timeout(Duration::from_millis(100), g.get("k")));
        futures_util::future::join_all(wave).await;
    }
    assert_eq!(g.get("k").await.expect("cached"), "k");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_load_past_its_deadline_fails_clearly_and_caches_nothing() {
    let calls = Arc::new(AtomicUsize::new(0));
    let g = slow(Duration::from_secs(60), &calls);
    let (a, b) = tokio::join!(g.get("k"), g.get("k"));
    assert_eq!((a, b), (Err(Error::Timeout), Err(Error::Timeout)));
    let s = g.stats();
    assert_eq!(
        (s.load_timeouts, s.local_loads, s.main_cache.items),
        (1, 0, 0)
    );
    // Dropped, not remembered: the next get loads again.
    let next = tokio::time::timeout(Duration::from_secs(1), g.get("k")).await;
    assert!(next.is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[test]
fn a_zero_load_timeout_is_refused() {
    let getter = getter_fn(|key: Bytes| async move { Ok(key) });
    let err = Group::builder("g", getter)
        .load_timeout(Duration::ZERO)
        .build()
        .expect_err("zero");
    assert_eq!(err, Error::ZeroTimeout);
}

#[tokio::test]
async fn a_ten_megabyte_value_is_cached_with_the_default_budget() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let getter = getter_fn(move |_key: Bytes| {
        counted.fetch_add(1, Ordering::SeqCst);
        async { Ok(Bytes::from(vec![1u8; 10_000_000])) }
    });
    let g = Group::builder("big", getter).build().expect("valid");
    assert_eq!(g.get("k").await.expect("value").len(), 10_000_000);
    assert_eq!(g.get("k").await.expect("value").len(), 10_000_000);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(g.stats().values_too_large, 0);
}

#[tokio::test]
async fn a_value_over_the_largest_cacheable_is_served_and_counted() {
    let getter = getter_fn(|_key: Bytes| async { Ok(Bytes::from(vec![1u8; 2000])) });
    let g = Group::builder("big", getter)
        .max_value_bytes(1000)
        .build()
        .expect("valid");
    for _ in 0..2 {
        assert_eq!(g.get("k").await.expect("served").len(), 2000);
    }
    let s = g.stats();
    assert_eq!(
        (s.values_too_large, s.local_loads, s.main_cache.items),
        (2, 2, 0)
    );
}

/// A buffer that says when it is freed.
struct Buffer {
    bytes: Vec<u8>,
    freed: Arc<AtomicBool>,
}

impl AsRef<[u8]> for Buffer {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        self.freed.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_cached_value_does_not_keep_the_buffer_it_was_sliced_from() {
    let freed = Arc::new(AtomicBool::new(false));
    let flag = freed.clone();
    // Like a network read: a 64 KiB buffer of which the value is 10 bytes.
    let getter = getter_fn(move |_key: Bytes| {
        let buffer = Buffer {
            bytes: vec![b'x'; 64 << 10],
            freed: flag.clone(),
        };
        async move { Ok(Bytes::from_owner(buffer).slice(..10)) }
    });
    let g = Group::builder("g", getter).build().expect("valid");
    let value = g.get("k").await.expect("value");
    drop(value);
    assert!(freed.load(Ordering::SeqCst), "the read buffer was freed");
    assert_eq!(g.get("k").await.expect("cached"), "xxxxxxxxxx");
    assert_eq!(g.stats().cache_hits, 1);
}

#[tokio::test]
async fn an_owner_whose_load_failed_is_not_loaded_again_here() {
    let (source, router) = (crate::fakes::Source::default(), crate::fakes::Router::new());
    let g = Group::builder("test", source.clone())
        .picker(router.clone())
        .build()
        .expect("valid");
    // `broken1` belongs to peer 1, whose origin fails.
    let got = g.get("broken1").await;
    assert_eq!(got, Err(Error::Load("peer 1: origin down".into())));
    assert_eq!(source.calls(), 0, "the origin is asked once, by the owner");
    let s = g.stats();
    assert_eq!((s.peer_loads, s.peer_load_errs, s.peer_errors), (0, 1, 0));
}

#[tokio::test]
async fn an_unreachable_owner_means_a_local_load() {
    let (source, router) = (crate::fakes::Source::default(), crate::fakes::Router::new());
    router.peers[0].failing.store(true, Ordering::SeqCst);
    let g = Group::builder("test", source.clone())
        .picker(router.clone())
        .build()
        .expect("valid");
    assert_eq!(g.get("k1").await.expect("value"), "value:k1");
    assert_eq!(source.calls(), 1);
    let s = g.stats();
    assert_eq!((s.peer_loads, s.peer_load_errs, s.peer_errors), (0, 0, 1));
}
