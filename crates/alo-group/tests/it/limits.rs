//! What a group bounds: getter calls at once (a burst of cold keys waits its turn within its
//! deadline), how long a write waits for a member that does not answer, and how one load's
//! deadline flows down to the peer and the getter.

use std::future::pending;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as StdInstant};

use alo_group::{
    BoxFuture, Error, Found, Group, LoadContext, LoadError, Peer, PeerPicker, getter_fn_ctx,
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
    /// The deadline of the last remove.
    deadline: Mutex<Option<StdInstant>>,
}

impl Peer for Hung {
    fn name(&self) -> &str {
        "hung"
    }

    fn get<'a>(
        &'a self,
        _: &'a str,
        _: &'a [u8],
        _: StdInstant,
    ) -> BoxFuture<'a, Result<Found, LoadError>> {
        Box::pin(pending())
    }

    fn remove<'a>(
        &'a self,
        _: &'a str,
        _: &'a [Bytes],
        deadline: StdInstant,
    ) -> BoxFuture<'a, Result<(), LoadError>> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        *self.deadline.lock().expect("not poisoned") = Some(deadline);
        Box::pin(pending())
    }

    fn purge<'a>(&'a self, _: &'a str, _: StdInstant) -> BoxFuture<'a, Result<(), LoadError>> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        Box::pin(pending())
    }
}

/// Owns nothing, and has one other member: the hung one.
struct WithHung(Arc<Hung>);

impl PeerPicker for WithHung {
    fn pick_peer(&self, _: &[u8]) -> Option<Arc<dyn Peer>> {
        None
    }

    fn other_members(&self) -> Vec<Arc<dyn Peer>> {
        vec![Arc::clone(&self.0) as Arc<dyn Peer>]
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
    // The member was given the write timeout; the group waited half a margin more for a
    // transport that does not keep its deadline.
    let given = hung.deadline.lock().expect("not poisoned").expect("asked");
    assert_eq!(given - started.into_std(), Duration::from_millis(500));
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(500) + alo_group::PEER_MARGIN / 2
    );
    assert_eq!(written.members, 2);
    assert_eq!(written.unreachable.len(), 1);
    assert_eq!(written.unreachable[0].peer, "hung");

    // A purge has two rounds, each within the write timeout.
    let started = Instant::now();
    let written = group.purge().await;
    assert_eq!(
        started.elapsed(),
        2 * (Duration::from_millis(500) + alo_group::PEER_MARGIN / 2)
    );
    assert_eq!(written.unreachable.len(), 1);
    assert_eq!(hung.writes.load(Ordering::SeqCst), 3);
}

/// A peer that answers every get "unreachable" after `after`, noting the deadline it was given.
struct SlowlyGone {
    after: Duration,
    deadline: Mutex<Option<StdInstant>>,
}

impl Peer for SlowlyGone {
    fn name(&self) -> &str {
        "slowly-gone"
    }

    fn get<'a>(
        &'a self,
        _: &'a str,
        _: &'a [u8],
        deadline: StdInstant,
    ) -> BoxFuture<'a, Result<Found, LoadError>> {
        *self.deadline.lock().expect("not poisoned") = Some(deadline);
        Box::pin(async move {
            tokio::time::sleep(self.after).await;
            Err(LoadError::unreachable("gone"))
        })
    }
}

/// Names the slowly gone peer the owner of every key.
struct AlwaysIt(Arc<SlowlyGone>);

impl PeerPicker for AlwaysIt {
    fn pick_peer(&self, _: &[u8]) -> Option<Arc<dyn Peer>> {
        Some(Arc::clone(&self.0) as Arc<dyn Peer>)
    }
}

/// A group of load timeout 10 s whose every key's owner answers "unreachable" after `after`,
/// and the deadlines its getter was given.
fn behind_a_slow_owner(after: Duration) -> (Group, Arc<SlowlyGone>, Arc<Mutex<Vec<StdInstant>>>) {
    let peer = Arc::new(SlowlyGone {
        after,
        deadline: Mutex::default(),
    });
    let seen = Arc::new(Mutex::new(Vec::new()));
    let noted = Arc::clone(&seen);
    let getter = getter_fn_ctx(move |ctx: LoadContext| {
        noted.lock().expect("not poisoned").push(ctx.deadline());
        async move { Ok::<_, LoadError>(ctx.key().clone()) }
    });
    let group = Group::builder("g", getter)
        .load_timeout(Duration::from_secs(10))
        .picker(Arc::new(AlwaysIt(Arc::clone(&peer))))
        .build()
        .expect("valid");
    (group, peer, seen)
}

#[tokio::test(start_paused = true)]
async fn one_deadline_flows_from_the_load_to_the_peer_and_to_the_getter() {
    let (group, peer, seen) = behind_a_slow_owner(Duration::from_secs(3));
    let started = Instant::now().into_std();
    assert_eq!(group.get("k").await.expect("loaded here"), "k");
    let given = peer.deadline.lock().expect("not poisoned").expect("asked");
    let load = started + Duration::from_secs(10);
    assert_eq!(given, load + alo_group::PEER_MARGIN / 2);
    // The getter has what is left of the load's deadline, not a deadline of its own.
    assert_eq!(*seen.lock().expect("not poisoned"), [load]);
    let s = group.stats();
    assert_eq!((s.peer_errors, s.peer_load_errs, s.local_loads), (1, 0, 1));
}

#[tokio::test(start_paused = true)]
async fn an_owner_without_an_answer_by_the_deadline_is_a_timeout_and_no_load_here() {
    let (group, _peer, seen) = behind_a_slow_owner(Duration::from_secs(60));
    let started = Instant::now();
    assert_eq!(group.get("k").await, Err(Error::Timeout));
    // The peer had the load's deadline plus half the margin; the group waited half a margin
    // more for it.
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(10) + alo_group::PEER_MARGIN
    );
    assert!(
        seen.lock().expect("not poisoned").is_empty(),
        "no load here"
    );
    let s = group.stats();
    assert_eq!(
        (s.peer_errors, s.peer_load_errs, s.load_timeouts),
        (1, 0, 1)
    );
}
