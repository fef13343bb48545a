use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use alo_singleflight::{Error, Flight};
use futures_util::future::join_all;
use tokio::sync::Notify;

#[tokio::test]
async fn an_error_reaches_every_caller_and_is_not_remembered() {
    let flight = Flight::<&str, u32, String>::new();
    let runs = AtomicUsize::new(0);
    let release = Arc::new(Notify::new());
    let callers = (0..5).map(|i| {
        let (release, runs, flight) = (&release, &runs, &flight);
        async move {
            if i == 4 {
                release.notify_one();
            }
            flight
                .work("k", || {
                    runs.fetch_add(1, Ordering::SeqCst);
                    let wait = release.clone().notified_owned();
                    async move {
                        wait.await;
                        Err("origin down".to_string())
                    }
                })
                .await
        }
    });
    let outcomes = join_all(callers).await;
    assert!(
        outcomes
            .iter()
            .all(|o| o.result == Err(Error::Failed("origin down".to_string())))
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(flight.in_flight(), 0);

    let next = flight.work("k", || async { Ok(3) }).await;
    assert_eq!(next.result, Ok(3), "the error was not remembered");
}

#[tokio::test]
async fn a_panic_becomes_an_error_for_every_caller() {
    let flight = Flight::<&str, u32, String>::new();
    let release = Arc::new(Notify::new());
    let callers = (0..3).map(|i| {
        let (release, flight) = (&release, &flight);
        async move {
            if i == 2 {
                release.notify_one();
            }
            flight
                .work("k", || {
                    let wait = release.clone().notified_owned();
                    async move {
                        wait.await;
                        panic!("the origin client blew up")
                    }
                })
                .await
        }
    });
    let outcomes = join_all(callers).await;
    for o in &outcomes {
        match &o.result {
            Err(Error::Panicked(msg)) => assert!(msg.contains("blew up"), "{msg}"),
            other => panic!("expected a panic error, got {other:?}"),
        }
    }
    assert_eq!(flight.in_flight(), 0);

    let next = flight.work("k", || async { Ok(2) }).await;
    assert_eq!(next.result, Ok(2), "a new call starts afresh");
}

#[tokio::test]
async fn a_panic_while_making_the_work_fails_only_that_call() {
    let flight = Flight::<&str, u32, String>::new();
    let out = flight
        .work("k", || -> std::future::Ready<Result<u32, String>> {
            panic!("no future for you")
        })
        .await;
    assert_eq!(out.result, Err(Error::Panicked("no future for you".into())));
    assert_eq!(flight.in_flight(), 0);
    let next = flight.work("k", || async { Ok(1) }).await;
    assert_eq!(next.result, Ok(1));
}

#[test]
fn errors_say_what_happened() {
    let failed: Error<String> = Error::Failed("origin down".into());
    assert_eq!(failed.to_string(), "origin down");
    let panicked: Error<String> = Error::Panicked("boom".into());
    assert_eq!(panicked.to_string(), "the shared work panicked: boom");
}
