//! Expiry, negative caching and the stale windows, on paused time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use alo_group::{Error, Group, LoadError, Loaded, Stale, getter_fn};
use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::advance;

const SEC: Duration = Duration::from_secs(1);

/// A getter that counts its calls and answers `v<n>` (n = the call's number), for `ttl` when
/// given; it fails while `failing` is set and says "not found" while `gone` is.
#[derive(Clone, Default)]
struct Counted {
    calls: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
    gone: Arc<AtomicBool>,
}

impl Counted {
    fn group(
        &self,
        ttl: Option<Duration>,
        build: impl Fn(alo_group::GroupBuilder) -> alo_group::GroupBuilder,
    ) -> Group {
        let this = self.clone();
        let getter = getter_fn(move |_key: Bytes| {
            let this = this.clone();
            async move {
                let n = this.calls.fetch_add(1, Ordering::SeqCst) + 1;
                if this.gone.load(Ordering::SeqCst) {
                    return Err(LoadError::NotFound);
                }
                if this.failing.load(Ordering::SeqCst) {
                    return Err(LoadError::failed("origin down"));
                }
                let loaded = Loaded::new(format!("v{n}"));
                Ok(match ttl {
                    Some(ttl) => loaded.with_ttl(ttl),
                    None => loaded,
                })
            }
        });
        build(Group::builder("t", getter)).build().expect("valid")
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[tokio::test(start_paused = true)]
async fn a_value_is_served_until_its_getter_given_ttl_and_never_after() {
    let source = Counted::default();
    let g = source.group(Some(10 * SEC), |b| b);
    assert_eq!(g.get("k").await.expect("value"), "v1");
    advance(4 * SEC).await;
    let found = g.lookup("k").await.expect("value");
    assert_eq!(
        (found.value.as_ref(), found.ttl),
        (&b"v1"[..], Some(6 * SEC))
    );
    advance(6 * SEC - Duration::from_millis(1)).await;
    assert_eq!(
        g.get("k").await.expect("value"),
        "v1",
        "fresh to the last instant"
    );
    advance(Duration::from_millis(1)).await;
    assert_eq!(
        g.get("k").await.expect("value"),
        "v2",
        "expired: loaded again"
    );
    assert_eq!(source.calls(), 2);
    assert_eq!(g.stats().expired, 1);
}

#[tokio::test(start_paused = true)]
async fn the_default_ttl_applies_to_values_without_their_own() {
    let source = Counted::default();
    let g = source.group(None, |b| b.ttl(5 * SEC));
    assert_eq!(g.get("k").await.expect("value"), "v1");
    assert_eq!(g.lookup("k").await.expect("value").ttl, Some(5 * SEC));
    advance(5 * SEC).await;
    assert_eq!(g.get("k").await.expect("value"), "v2");

    // A getter's own TTL wins over the default.
    let own = Counted::default();
    let g = own.group(Some(SEC), |b| b.ttl(60 * SEC));
    g.get("k").await.expect("value");
    advance(SEC).await;
    assert_eq!(g.get("k").await.expect("value"), "v2");
}

#[tokio::test(start_paused = true)]
async fn without_a_ttl_values_do_not_expire() {
    let source = Counted::default();
    let g = source.group(None, |b| b);
    g.get("k").await.expect("value");
    advance(3600 * SEC).await;
    let found = g.lookup("k").await.expect("value");
    assert_eq!((found.value.as_ref(), found.ttl), (&b"v1"[..], None));
    assert_eq!(source.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn expired_entries_are_swept_without_being_looked_up() {
    let source = Counted::default();
    let g = source.group(Some(2 * SEC), |b| b);
    for i in 0..10 {
        g.get(format!("k{i}")).await.expect("value");
    }
    assert_eq!(g.stats().main_cache.items, 10);
    // The sweep runs every second: by 3 s past the loads it has dropped them all.
    advance(3 * SEC).await;
    for _ in 0..100 {
        if g.stats().main_cache.items == 0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    let s = g.stats();
    assert_eq!((s.main_cache.items, s.main_cache.bytes), (0, 0));
    assert_eq!(s.expired, 10);
}

#[tokio::test(start_paused = true)]
async fn a_not_found_is_remembered_for_its_window_only() {
    let source = Counted::default();
    source.gone.store(true, Ordering::SeqCst);
    let g = source.group(None, |b| b.not_found_ttl(10 * SEC));

    let gets: Vec<_> = (0..100).map(|_| g.get("missing")).collect();
    for got in futures_util::future::join_all(gets).await {
        assert_eq!(got, Err(Error::NotFound));
    }
    for _ in 0..100 {
        assert_eq!(g.get("missing").await, Err(Error::NotFound));
    }
    assert_eq!(source.calls(), 1, "one origin request per window");
    assert!(g.stats().negative_hits >= 100);

    advance(10 * SEC).await;
    assert_eq!(g.get("missing").await, Err(Error::NotFound));
    assert_eq!(source.calls(), 2, "the next window asks again");

    // A key that appears at the origin is seen once the window ends.
    source.gone.store(false, Ordering::SeqCst);
    assert_eq!(g.get("missing").await, Err(Error::NotFound));
    advance(10 * SEC).await;
    assert_eq!(g.get("missing").await.expect("value"), "v3");
}

#[tokio::test(start_paused = true)]
async fn without_a_not_found_ttl_every_get_asks() {
    let source = Counted::default();
    source.gone.store(true, Ordering::SeqCst);
    let g = source.group(None, |b| b);
    for _ in 0..5 {
        assert_eq!(g.get("missing").await, Err(Error::NotFound));
    }
    assert_eq!(source.calls(), 5);
}

#[tokio::test(start_paused = true)]
async fn stale_if_error_serves_the_old_value_while_reloads_fail_within_the_window() {
    let source = Counted::default();
    let g = source.group(Some(10 * SEC), |b| b.stale_if_error(60 * SEC));
    g.get("k").await.expect("value");
    source.failing.store(true, Ordering::SeqCst);

    advance(11 * SEC).await;
    let found = g.lookup("k").await.expect("the stale value");
    assert_eq!(found.value, "v1");
    assert_eq!(found.stale, Some(Stale::IfError));
    assert_eq!(found.ttl, Some(Duration::ZERO));
    assert_eq!(source.calls(), 2, "the reload was tried");

    // Past the window the error is the answer.
    advance(60 * SEC).await;
    assert!(matches!(g.get("k").await, Err(Error::Load(_))));

    // A reload that succeeds ends the staleness.
    let g = source.group(Some(10 * SEC), |b| b.stale_if_error(60 * SEC));
    source.failing.store(false, Ordering::SeqCst);
    g.get("k").await.expect("value");
    advance(11 * SEC).await;
    let found = g.lookup("k").await.expect("value");
    assert_eq!(found.stale, None);
    assert_eq!(g.stats().stale_serves, 0);
}

#[tokio::test(start_paused = true)]
async fn a_not_found_on_reload_is_never_answered_with_the_stale_value() {
    let source = Counted::default();
    let g = source.group(Some(10 * SEC), |b| b.stale_if_error(60 * SEC));
    g.get("k").await.expect("value");
    source.gone.store(true, Ordering::SeqCst);
    advance(11 * SEC).await;
    assert_eq!(g.get("k").await, Err(Error::NotFound));
    source.failing.store(true, Ordering::SeqCst);
    source.gone.store(false, Ordering::SeqCst);
    // The stale value went with the "not found": a failure now has nothing to fall back on.
    assert!(matches!(g.get("k").await, Err(Error::Load(_))));
}

#[tokio::test(start_paused = true)]
async fn stale_while_revalidate_serves_at_once_and_reloads_once_per_key() {
    let release = Arc::new(Notify::new());
    let calls = Arc::new(AtomicUsize::new(0));
    let getter = {
        let (release, calls) = (release.clone(), calls.clone());
        getter_fn(move |_key: Bytes| {
            let (release, calls) = (release.clone(), calls.clone());
            async move {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                if n > 1 {
                    release.notified().await;
                }
                Ok(Loaded::new(format!("v{n}")).with_ttl(10 * SEC))
            }
        })
    };
    let g = Group::builder("t", getter)
        .stale_while_revalidate(30 * SEC)
        .build()
        .expect("valid");
    g.get("k").await.expect("value");
    advance(11 * SEC).await;

    for _ in 0..50 {
        let found = g.lookup("k").await.expect("served at once");
        assert_eq!(
            (found.value.as_ref(), found.stale),
            (&b"v1"[..], Some(Stale::WhileRevalidate))
        );
    }
    // Let the background reload start.
    while calls.load(Ordering::SeqCst) < 2 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "one reload for fifty stale gets"
    );
    release.notify_one();
    loop {
        let found = g.lookup("k").await.expect("value");
        if found.stale.is_none() {
            assert_eq!(found.value, "v2");
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(g.stats().stale_serves >= 50);
}

#[tokio::test]
async fn a_zero_default_ttl_is_refused() {
    let built = Group::builder("t", getter_fn(|k: Bytes| async move { Ok(k) }))
        .ttl(Duration::ZERO)
        .build();
    assert_eq!(built.err(), Some(Error::ZeroTtl));
}
