use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use alo_singleflight::Flight;
use futures_util::future::join_all;
use tokio::sync::{Notify, oneshot};

/// Sets its flag when dropped: tells whether a work future was dropped.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn dropping_the_caller_that_started_the_work_does_not_fail_the_others() {
    let flight = Arc::new(Flight::<&str, u32, String>::new());
    let runs = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Notify::new());
    let (started, was_started) = oneshot::channel();

    let leader = {
        let (flight, runs, release) = (flight.clone(), runs.clone(), release.clone());
        tokio::spawn(async move {
            flight
                .work("k", move || {
                    runs.fetch_add(1, Ordering::SeqCst);
                    async move {
                        let _ = started.send(());
                        release.notified().await;
                        Ok(7)
                    }
                })
                .await
        })
    };
    was_started.await.expect("the leader started the work");

    // join! polls the followers first, so all ten join the call before the leader is aborted.
    let followers = join_all((0..10).map(|_| flight.work("k", || async { Ok(0) })));
    let abort_then_release = async {
        leader.abort();
        assert!(leader.await.expect_err("aborted").is_cancelled());
        release.notify_one();
    };
    let (outcomes, ()) = tokio::join!(followers, abort_then_release);

    assert!(outcomes.iter().all(|o| o.result == Ok(7) && o.shared));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(flight.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_leader_that_times_out_leaves_the_work_to_the_others() {
    let flight = Flight::<&str, u32, String>::new();
    let slow = || async {
        tokio::time::sleep(Duration::from_secs(10)).await;
        Ok(5)
    };
    // The leader gives up after 1 s (time is paused, so this is exact and instant); the
    // follower keeps waiting and gets the value at 10 s.
    let leader = tokio::time::timeout(Duration::from_secs(1), flight.work("k", slow));
    let follower = flight.work("k", || async { Ok(0) });
    let (leader, follower) = tokio::join!(leader, follower);
    assert!(leader.is_err(), "the leader timed out");
    assert_eq!(follower.result, Ok(5));
    assert!(follower.shared);
    assert_eq!(flight.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn when_every_caller_is_gone_the_work_is_cancelled_and_forgotten() {
    let flight = Flight::<&str, u32, String>::new();
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = DropFlag(dropped.clone());
    let never = Arc::new(Notify::new());
    let wait = never.clone();
    {
        let call = flight.work("k", move || async move {
            let _flag = flag;
            wait.notified().await;
            Ok(1)
        });
        let joined = tokio::time::timeout(Duration::from_millis(1), call).await;
        assert!(joined.is_err(), "the work never finishes");
    }
    assert!(
        dropped.load(Ordering::SeqCst),
        "the work future was dropped"
    );
    assert_eq!(flight.in_flight(), 0);

    let again = flight.work("k", || async { Ok(2) }).await;
    assert_eq!(again.result, Ok(2));
    assert!(!again.shared, "a new call starts afresh");
}
