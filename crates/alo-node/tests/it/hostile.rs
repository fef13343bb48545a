//! What one client can do to a node and its origin: never put more than
//! `--origin-max-concurrency` requests on the origin, however many keys it asks for at once or
//! in one batch, and never write a line of its own into the node's log.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::client::ClientApi as _;
use crate::node::Node;
use crate::process::Process;

/// Requests an origin is answering now, and the most it answered at once.
#[derive(Default)]
struct Load {
    now: AtomicUsize,
    peak: AtomicUsize,
    requests: AtomicUsize,
}

/// An origin that answers every path with its own text after 100 ms, counting requests at once.
async fn slow_origin() -> (String, Arc<Load>, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("bound"));
    let load = Arc::new(Load::default());
    let counted = Arc::clone(&load);
    let handler = move |req: Request<Incoming>| {
        let load = Arc::clone(&counted);
        async move {
            load.requests.fetch_add(1, Ordering::SeqCst);
            let now = load.now.fetch_add(1, Ordering::SeqCst) + 1;
            load.peak.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
            load.now.fetch_sub(1, Ordering::SeqCst);
            Response::new(Full::new(Bytes::from(req.uri().path().to_string())))
        }
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let options = alo_http::ServerOptions::default();
    tokio::spawn(alo_http::serve_with(listener, options, handler, stopped));
    (url, load, stop)
}

#[tokio::test]
async fn many_cold_keys_at_once_put_at_most_the_limit_on_the_origin() {
    let (origin, load, _stop) = slow_origin().await;
    let node = Node::start(&["--origin-url", &origin, "--origin-max-concurrency", "4"]).await;
    let gets = (0..40).map(|i| {
        let node = &node;
        async move { (i, node.get(&format!("/api/web/k{i}")).await) }
    });
    for (i, (status, _, body)) in join_all(gets).await {
        assert_eq!(
            (status, &body[..]),
            (StatusCode::OK, format!("/k{i}").as_bytes())
        );
    }
    assert_eq!(load.requests.load(Ordering::SeqCst), 40);
    assert_eq!(load.peak.load(Ordering::SeqCst), 4);
    let web = &node.all_stats().await["groups"]["web"];
    assert_eq!(web["loads_running"], 0);
    assert_eq!(web["loads_waiting"], 0);
    assert_eq!(web["load_waits"], 36, "{web}");
    let (_, _, metrics) = node.get("/metrics").await;
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains("alo_origin_load_waits_total{group=\"web\"} 36"),
        "{metrics}"
    );
}

#[tokio::test]
async fn one_batch_of_five_thousand_cold_keys_starts_at_most_a_batch_of_loads() {
    let (origin, load, _stop) = slow_origin().await;
    let node = Node::start(&["--origin-url", &origin, "--origin-max-concurrency", "16"]).await;
    let keys: String = (0..5000).map(|i| format!("k{i}\n")).collect();
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("{}/_alo/web?get", node.url))
        .body(Full::new(Bytes::from(keys)))
        .expect("valid");
    let response = client.request(request).await.expect("answered");
    assert_eq!(response.status(), StatusCode::OK);
    let frames = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let pending = frames
        .split(|&b| b == b'\n')
        .filter(|l| l.starts_with(b"202 "))
        .count();
    assert_eq!(
        pending, 5000,
        "every key cold: each is pending or asked for alone"
    );
    // The first 64 keys started loading; a get of each joins its load.
    let joined = (0..64).map(|i| {
        let node = &node;
        async move { node.get(&format!("/api/web/k{i}")).await.0 }
    });
    assert!(join_all(joined).await.iter().all(|s| *s == StatusCode::OK));
    let web = &node.all_stats().await["groups"]["web"];
    assert_eq!(web["local_loads"], 64, "each key loaded once: {web}");
    assert_eq!(load.requests.load(Ordering::SeqCst), 64);
    assert_eq!(load.peak.load(Ordering::SeqCst), 16);
}

#[tokio::test]
async fn a_key_cannot_write_a_line_of_its_own_into_the_log() {
    let root = tempfile::tempdir().expect("temp dir");
    let dir = root.path().to_str().expect("UTF-8 temp path");
    // An origin URL where nobody listens: every load fails, and is logged with its key.
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let gone = format!("http://{}", closed.local_addr().expect("bound"));
    drop(closed);
    let mut node = Process::start(&["--origin-url", &gone, "--origin-dir", dir]).await;
    let forged = "2026-12-06T00:00:00.000000Z  WARN alo_http::health: peer marked down";
    let key = format!("x%0A{}%00%0D%1B%5B31m", forged.replace(' ', "%20"));
    let (status, _, _) = node.get(&format!("/api/web/{key}")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    // A file key may not hold a NUL; the rest is a file name that is not there.
    let (status, _, _) = node
        .get(&format!("/api/files/{}", key.replace("%00", "")))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    node.wait_for_log("load failed").await;
    node.wait_for_log("origin load").await;
    let log = node.log();
    for line in &log {
        assert!(
            !line.starts_with("2026-12-06T00:00:00"),
            "a forged line: {line:?}"
        );
        assert!(
            !line.chars().any(|c| c.is_control()),
            "a control character: {line:?}"
        );
    }
    let escaped =
        r"x\n2026-12-06T00:00:00.000000Z  WARN alo_http::health: peer marked down\0\r\u{1b}[31m";
    assert!(
        log.iter()
            .any(|line| line.contains("load failed") && line.contains(escaped)),
        "{log:#?}"
    );
    let in_a_file = escaped.replace(r"\0", "");
    assert!(
        log.iter()
            .any(|line| line.contains("origin load") && line.contains(&in_a_file)),
        "{log:#?}"
    );
}
