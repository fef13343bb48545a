//! The node under stress: out of file descriptors, and stopping with a deadline.

use std::time::{Duration, Instant};

use http::StatusCode;
use tokio::net::TcpStream;

use crate::client::ClientApi as _;
use crate::process::Process;

const EPHEMERAL: [&str; 4] = ["--listen", "127.0.0.1:0", "--api", "127.0.0.1:0"];

#[tokio::test]
async fn the_api_serves_again_after_its_descriptors_ran_out() {
    let mut node = Process::start_with_file_limit(64, &EPHEMERAL).await;
    let addr = node.api.trim_start_matches("http://").to_string();
    // More connections than the node has descriptors: it accepts what it can, the rest wait.
    let mut flood = Vec::new();
    for _ in 0..100 {
        flood.push(
            TcpStream::connect(&addr)
                .await
                .expect("the backlog takes it"),
        );
    }
    node.wait_for_log("accepting a connection failed").await;
    drop(flood);
    // Descriptors free up as the server sees the clients go; the listener lives on.
    let (status, _, body) = node.get("/healthz").await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"ok\n"[..]));
    node.wait_for_log("accepting connections again").await;
}

#[tokio::test]
async fn a_request_in_flight_holds_shutdown_only_until_the_deadline() {
    let mut args = EPHEMERAL.to_vec();
    args.extend(["--demo-delay-ms", "20000", "--shutdown-timeout-ms", "300"]);
    let mut node = Process::start(&args).await;
    let stuck = node.get_in_background("/api/demo/cherry");
    node.wait_for_log("demo origin load started").await;
    let started = Instant::now();
    node.terminate();
    let exit = tokio::time::timeout(Duration::from_secs(10), node.child.wait())
        .await
        .expect("exited by the deadline, not after the 20 s load")
        .expect("the node exits");
    assert!(exit.success(), "{exit:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    stuck.abort();
}

#[tokio::test]
async fn a_second_signal_exits_at_once() {
    let mut args = EPHEMERAL.to_vec();
    args.extend(["--demo-delay-ms", "20000", "--shutdown-timeout-ms", "20000"]);
    let mut node = Process::start(&args).await;
    let waiting = node.get_in_background("/api/demo/cherry");
    node.wait_for_log("demo origin load started").await;
    node.terminate();
    node.wait_for_log("shutting down").await;
    node.terminate();
    let exit = tokio::time::timeout(Duration::from_secs(5), node.child.wait())
        .await
        .expect("the second signal ends it at once")
        .expect("the node exits");
    assert!(
        !exit.success(),
        "a cut-short shutdown is not a clean exit: {exit:?}"
    );
    waiting.abort();
}
