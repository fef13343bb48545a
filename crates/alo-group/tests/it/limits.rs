//! What a group bounds: getter calls at once (a burst of cold keys waits its turn within its
//! deadline), and how long a write waits for a member that does not answer.

use std::future::pending;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use alo_group::{
    BoxFuture, Error, Found, Group, LoadContext, LoadError, PeerGetter, PeerPicker, getter_fn_ctx,
};
use bytes::Bytes;
use tokio::time::Instant;

/// Getter calls running now, and the most seen at once.
#[derive(Default)]
struct Running {
    now: AtomicUsize,
    peak: AtomicUsize,
    calls: AtomicUsize,
}

/// A group whose getter takes a second per key (forever for `hang`), counting calls at once.
fn slow_group(limit: usize, load_timeout: Duration) -> (Group, Arc<Running>) {
    let running = Arc::new(Running::default());
    let counted = Arc::clone(&running);
    let getter = getter_fn_ctx(move |ctx: LoadContext| {
        let running = Arc::clone(&counted);
        async move {
            running.calls.fetch_add(1, Ordering::SeqCst);
            let now = running.now.fetch_add(1, Ordering::SeqCst) + 1;
            running.peak.fetch_max(now, Ordering::SeqCst);
            if ctx.key() == "hang" {
                pending::<()>().await;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            running.now.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, LoadError>(ctx.key().clone())
        }
    });
    let group = Group::builder("slow", getter)
        .max_concurrent_loads(limit)
        .load_timeout(load_timeout)
        .build()
        .expect("valid");
    (group, running)
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_cold_keys_puts_at_most_the_limit_on_the_getter() {
    let (group, running) = slow_group(4, Duration::from_secs(60));
    let gets: Vec<_> = (0..20)
        .map(|i| {
            let group = group.clone();
            tokio::spawn(async move { group.get(format!("k{i}")).await })
        })
        .collect();
    // Half a second in: four calls run, the other sixteen wait their turn.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = group.stats();
    assert_eq!((stats.loads_running, stats.loads_waiting), (4, 16));
    for (i, get) in gets.into_iter().enumerate() {
        let value = get.await.expect("joined").expect("loaded");
        assert_eq!(value, Bytes::from(format!("k{i}")));
    }
    assert_eq!(running.peak.load(Ordering::SeqCst), 4);
    assert_eq!(running.calls.load(Ordering::SeqCst), 20);
    let stats = group.stats();
    assert_eq!(
        (stats.loads_running, stats.loads_waiting, stats.load_waits),
        (0, 0, 16)
    );
}

#[tokio::test(start_paused = true)]
async fn a_load_that_waits_for_a_turn_past_its_deadline_times_out_without_a_call() {
    let (group, running) = slow_group(1, Duration::from_secs(3));
    let hung = tokio::spawn({
        let group = group.clone();
        async move { group.get("hang").await }
    });
    tokio::task::yield_now().await;
    let started = Instant::now();
    assert_eq!(group.get("other").await, Err(Error::Timeout));
    assert!(started.elapsed() <= Duration::from_secs(3));
    assert_eq!(hung.await.expect("joined"), Err(Error::Timeout));
    assert_eq!(running.calls.load(Ordering::SeqCst), 1, "only the hung key");
    let stats = group.stats();
    assert_eq!((stats.load_timeouts, stats.loads_waiting), (2, 0));
    // The turn came back with the hung call's end: the next key is loaded.
    assert_eq!(group.get("next").await.expect("loaded"), "next");
}

#[test]
fn no_getter_calls_at_once_is_refused() {
    let getter =
        getter_fn_ctx(|ctx: LoadContext| async move { Ok::<_, LoadError>(ctx.key().clone()) });
    let built = Group::builder("g", getter).max_concurrent_loads(0).build();
    assert_eq!(built.err(), Some(Error::ZeroConcurrency));
}

/// A member that takes every write and never answers, and counts them.
#[derive(Default)]
struct Hung {
    writes: AtomicUsize,
}

impl PeerGetter for Hung {
    fn name(&self) -> &str {
        "hung"
    }

    fn get<'a>(&'a self, _: &'a str, _: &'a [u8]) -> BoxFuture<'a, Result<Found, LoadError>> {
        Box::pin(pending())
    }

    fn remove<'a>(&'a self, _: &'a str, _: &'a [Bytes]) -> BoxFuture<'a, Result<(), LoadError>> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        Box::pin(pending())
    }

    fn purge<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<(), LoadError>> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        Box::pin(pending())
    }
}

/// Owns nothing, and has one other member: the hung one.
struct WithHung(Arc<Hung>);

impl PeerPicker for WithHung {
    fn pick_peer(&self, _: &[u8]) -> Option<Arc<dyn PeerGetter>> {
        None
    }

    fn other_members(&self) -> Vec<Arc<dyn PeerGetter>> {
        vec![Arc::clone(&self.0) as Arc<dyn PeerGetter>]
    }
}

#[tokio::test(start_paused = true)]
async fn a_write_waits_for_a_hung_member_its_write_timeout_not_a_load_timeout() {
    let hung = Arc::new(Hung::default());
    let getter =
        getter_fn_ctx(|ctx: LoadContext| async move { Ok::<_, LoadError>(ctx.key().clone()) });
    let group = Group::builder("g", getter)
        .load_timeout(Duration::from_secs(60))
        .write_timeout(Duration::from_millis(500))
        .picker(Arc::new(WithHung(Arc::clone(&hung))))
        .build()
        .expect("valid");
    let started = Instant::now();
    let written = group.remove("k").await.expect("removed");
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(500) + alo_group::PEER_MARGIN
    );
    assert_eq!(written.members, 2);
    assert_eq!(written.unreachable.len(), 1);
    assert_eq!(written.unreachable[0].peer, "hung");

    // A purge has two rounds, each within the write timeout.
    let started = Instant::now();
    let written = group.purge().await;
    assert_eq!(
        started.elapsed(),
        2 * (Duration::from_millis(500) + alo_group::PEER_MARGIN)
    );
    assert_eq!(written.unreachable.len(), 1);
    assert_eq!(hung.writes.load(Ordering::SeqCst), 3);
}
