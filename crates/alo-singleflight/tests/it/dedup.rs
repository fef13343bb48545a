use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use alo_singleflight::Flight;
use futures_util::future::join_all;
use tokio::sync::{Notify, mpsc, oneshot};

type Flight1 = Flight<&'static str, Arc<str>, String>;

#[tokio::test]
async fn a_thousand_callers_share_one_run() {
    const CALLERS: usize = 1000;
    let flight = Flight1::new();
    let runs = AtomicUsize::new(0);
    let joined = AtomicUsize::new(0);
    let release = Arc::new(Notify::new());

    let callers = (0..CALLERS).map(|_| async {
        // On this single-threaded runtime nothing runs between the count and the join, so
        // when the count reaches CALLERS every caller has joined the call.
        if joined.fetch_add(1, Ordering::SeqCst) + 1 == CALLERS {
            release.notify_one();
        }
        flight
            .work("key", || {
                runs.fetch_add(1, Ordering::SeqCst);
                // The work waits until every caller has joined.
                let wait = release.clone().notified_owned();
                async move {
                    wait.await;
                    Ok(Arc::from("value"))
                }
            })
            .await
    });
    let outcomes = join_all(callers).await;

    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(outcomes.len(), CALLERS);
    assert!(outcomes.iter().all(|o| o.result.as_deref() == Ok("value")));
    assert_eq!(outcomes.iter().filter(|o| !o.shared).count(), 1);
    assert_eq!(flight.in_flight(), 0);
}

#[tokio::test]
async fn different_keys_run_concurrently() {
    // Each work waits for the other to have started: if the group ran them one after the
    // other, neither would finish.
    let flight: Flight<&str, u32, String> = Flight::new();
    let (a_started, a_seen) = oneshot::channel::<()>();
    let (b_started, b_seen) = oneshot::channel::<()>();
    let a = flight.work("a", || async move {
        a_started.send(()).map_err(|_| "b is gone".to_string())?;
        b_seen.await.map_err(|_| "b never started".to_string())?;
        Ok(1)
    });
    let b = flight.work("b", || async move {
        b_started.send(()).map_err(|_| "a is gone".to_string())?;
        a_seen.await.map_err(|_| "a never started".to_string())?;
        Ok(2)
    });
    let both = tokio::time::timeout(Duration::from_secs(30), async { tokio::join!(a, b) });
    let (a, b) = both.await.expect("the two keys ran at the same time");
    assert_eq!((a.result, b.result), (Ok(1), Ok(2)));
    assert!(!a.shared && !b.shared);
    assert_eq!(flight.in_flight(), 0);
}

#[tokio::test]
async fn a_finished_call_is_forgotten() {
    let flight: Flight<u8, u8, String> = Flight::new();
    let runs = AtomicUsize::new(0);
    for i in 0..3 {
        let out = flight
            .work(1, || {
                runs.fetch_add(1, Ordering::SeqCst);
                async move { Ok(i) }
            })
            .await;
        assert_eq!(out.result, Ok(i), "not a cache: each call runs afresh");
        assert!(!out.shared);
        assert_eq!(flight.in_flight(), 0);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 3);
}

/// Polls `fut` once, so that it joins (or starts) its call, then reports that on `joined` and
/// finishes it.
async fn join_then_finish<F: Future>(fut: F, joined: mpsc::UnboundedSender<()>) -> F::Output {
    let mut fut = pin!(fut);
    let first = poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
    joined.send(()).expect("test is listening");
    match first {
        Poll::Ready(out) => out,
        Poll::Pending => fut.await,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_on_many_threads_share_one_run() {
    const CALLERS: usize = 64;
    let flight = Arc::new(Flight::<u32, u32, String>::new());
    let runs = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Notify::new());
    let (joined, mut joins) = mpsc::unbounded_channel();

    let tasks: Vec<_> = (0..CALLERS)
        .map(|_| {
            let (flight, runs, release) = (flight.clone(), runs.clone(), release.clone());
            let joined = joined.clone();
            tokio::spawn(async move {
                let call = flight.work(9, move || {
                    runs.fetch_add(1, Ordering::SeqCst);
                    async move {
                        release.notified().await;
                        Ok(99)
                    }
                });
                join_then_finish(call, joined).await
            })
        })
        .collect();
    for _ in 0..CALLERS {
        joins.recv().await.expect("callers report");
    }
    // Every caller holds the call now; only then may the work finish.
    release.notify_one();

    let mut leaders = 0;
    for task in tasks {
        let out = task.await.expect("caller");
        assert_eq!(out.result, Ok(99));
        leaders += usize::from(!out.shared);
    }
    assert_eq!(leaders, 1);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(flight.in_flight(), 0);
}
