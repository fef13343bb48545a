//! `Flight::detached`: the work runs to its end on a spawned task whatever its callers do.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use alo_singleflight::{Error, Flight};
use tokio::sync::{Notify, oneshot};

fn detached<V, E>() -> Flight<&'static str, V, E>
where
    V: Clone + Send + Sync + 'static,
    E: Clone + Send + Sync + 'static,
{
    Flight::detached(|task| {
        tokio::spawn(task);
    })
}

#[tokio::test]
async fn the_work_finishes_after_every_caller_has_gone() {
    let flight = Arc::new(detached::<u32, String>());
    let release = Arc::new(Notify::new());
    let (started, was_started) = oneshot::channel();
    let (finished, was_finished) = oneshot::channel();

    let caller = {
        let (flight, release) = (flight.clone(), release.clone());
        tokio::spawn(async move {
            flight
                .work("k", move || async move {
                    let _ = started.send(());
                    release.notified().await;
                    let _ = finished.send(());
                    Ok(7)
                })
                .await
        })
    };
    was_started.await.expect("the work started");
    caller.abort();
    assert!(caller.await.expect_err("aborted").is_cancelled());

    // Nobody waits any more, yet the call is still in flight and completes when released.
    assert_eq!(flight.in_flight(), 1);
    release.notify_one();
    was_finished.await.expect("the work ran to its end");
    // The driving task forgets the key once the work ends.
    while flight.in_flight() != 0 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_caller_arriving_after_the_others_left_joins_the_running_work() {
    let flight = detached::<u32, String>();
    let runs = Arc::new(AtomicUsize::new(0));
    let work = |runs: Arc<AtomicUsize>| {
        move || async move {
            runs.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok(7)
        }
    };

    // Impatient callers, one after another, each giving up before the work is done.
    for _ in 0..5 {
        let waited =
            tokio::time::timeout(Duration::from_secs(1), flight.work("k", work(runs.clone())))
                .await;
        assert!(waited.is_err(), "the work takes 10 s");
    }
    let last = flight.work("k", work(runs.clone())).await;
    assert_eq!(last.result, Ok(7));
    assert!(last.shared, "the last caller joined the one call");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_panic_in_detached_work_reaches_the_callers_and_is_forgotten() {
    let flight = detached::<u32, String>();
    let out = flight
        .work("k", || async {
            if true {
                panic!("boom");
            }
            Ok(1)
        })
        .await;
    assert_eq!(out.result, Err(Error::Panicked("boom".into())));
    let out = flight.work("k", || async { Ok(2) }).await;
    assert_eq!(out.result, Ok(2));
}

#[tokio::test]
async fn concurrent_callers_of_detached_work_share_one_run() {
    let flight = detached::<u32, String>();
    let runs = AtomicUsize::new(0);
    let release = Arc::new(Notify::new());
    let call = || {
        flight.work("k", || {
            runs.fetch_add(1, Ordering::SeqCst);
            let release = release.clone();
            async move {
                release.notified().await;
                Ok(3)
            }
        })
    };
    // join! polls in order: the first call starts the work, the others join it, then it is
    // released.
    let (a, b, c, ()) = tokio::join!(call(), call(), call(), async {
        release.notify_one();
    });
    assert!([a.result, b.result, c.result].iter().all(|r| *r == Ok(3)));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn only_work_that_waits_gets_a_task_and_only_one() {
    let spawned = Arc::new(AtomicUsize::new(0));
    let counter = spawned.clone();
    let flight: Flight<&str, u32, String> = Flight::detached(move |task| {
        counter.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(task);
    });
    // Ready at its first poll: it never leaves the caller.
    assert_eq!(flight.work("ready", || async { Ok(1) }).await.result, Ok(1));
    assert_eq!(spawned.load(Ordering::SeqCst), 0);

    // Pending at first: one task, however many callers poll it.
    let release = Arc::new(Notify::new());
    let call = || {
        let release = release.clone();
        flight.work("slow", move || async move {
            release.notified().await;
            Ok(2)
        })
    };
    let (a, b, c, ()) = tokio::join!(call(), call(), call(), async {
        release.notify_one();
    });
    assert!([a.result, b.result, c.result].iter().all(|r| *r == Ok(2)));
    assert_eq!(spawned.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_forgotten_call_finishes_for_its_callers_and_is_not_joined() {
    let flight = Arc::new(detached::<u32, String>());
    let release = Arc::new(Notify::new());
    let (started, was_started) = oneshot::channel();
    let first = {
        let (flight, release) = (flight.clone(), release.clone());
        tokio::spawn(async move {
            flight
                .work("k", move || async move {
                    let _ = started.send(());
                    release.notified().await;
                    Ok(1)
                })
                .await
        })
    };
    was_started.await.expect("the first call started");

    assert!(flight.forget(&"k"));
    assert!(!flight.forget(&"k"), "nothing left to forget");
    // A caller after the forget starts a call of its own, not the one in flight.
    let second = flight.work("k", || async { Ok(2) }).await;
    assert_eq!((second.result, second.shared), (Ok(2), false));

    release.notify_one();
    let first = first.await.expect("the first caller");
    assert_eq!(
        first.result,
        Ok(1),
        "the forgotten call still answers its caller"
    );
}

#[tokio::test]
async fn forget_all_leaves_no_call_to_join() {
    let flight = detached::<u32, String>();
    let release = Arc::new(Notify::new());
    let pending = |release: Arc<Notify>| {
        move || async move {
            release.notified().await;
            Ok(0)
        }
    };
    let a = flight.work("a", pending(release.clone()));
    let b = flight.work("b", pending(release.clone()));
    tokio::pin!(a, b);
    // Poll both once so that their calls are registered and detached.
    assert!(futures_poll(&mut a).await.is_none());
    assert!(futures_poll(&mut b).await.is_none());
    assert_eq!(flight.in_flight(), 2);
    flight.forget_all();
    assert_eq!(flight.in_flight(), 0);
    release.notify_waiters();
    assert_eq!(a.await.result, Ok(0));
    assert_eq!(b.await.result, Ok(0));
}

/// Polls `fut` once: its output if it was ready.
async fn futures_poll<F: std::future::Future + Unpin>(fut: &mut F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match std::pin::Pin::new(&mut *fut).poll(cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        })
    })
    .await
}
