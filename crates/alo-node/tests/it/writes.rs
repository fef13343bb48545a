//! Writes and expiry through the client API of node processes: `--allow-writes`, set, remove
//! (also during a slow load), purge, what a remove reports when a member is gone, the stale
//! header and the remembered "not found".

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};

use crate::client::{ClientApi as _, stats};
use crate::node::{Node, cluster};

/// An HTTP origin that answers `{path}@{version}`, the version read when the request arrives;
/// `/missing` is 404, and every path is 500 while `failing` is set. While `held` is set, each
/// request waits for a notification of `gate` before answering.
struct Origin {
    url: String,
    version: Arc<AtomicU64>,
    requests: Arc<AtomicUsize>,
    held: Arc<AtomicBool>,
    failing: Arc<AtomicBool>,
    gate: Arc<Notify>,
    _stop: oneshot::Sender<()>,
}

async fn origin() -> Origin {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("bound"));
    let (stop, stopped) = oneshot::channel::<()>();
    let origin = Origin {
        url,
        version: Arc::default(),
        requests: Arc::default(),
        held: Arc::default(),
        failing: Arc::default(),
        gate: Arc::default(),
        _stop: stop,
    };
    let (version, requests, held, gate) = (
        origin.version.clone(),
        origin.requests.clone(),
        origin.held.clone(),
        origin.gate.clone(),
    );
    let failing = origin.failing.clone();
    let handler = move |req: Request<Incoming>| {
        let version = version.load(Ordering::SeqCst);
        requests.fetch_add(1, Ordering::SeqCst);
        let wait = held.load(Ordering::SeqCst).then(|| gate.clone());
        let status = match (failing.load(Ordering::SeqCst), req.uri().path()) {
            (true, _) => StatusCode::INTERNAL_SERVER_ERROR,
            (false, "/missing") => StatusCode::NOT_FOUND,
            (false, _) => StatusCode::OK,
        };
        async move {
            if let Some(gate) = wait {
                gate.notified().await;
            }
            let body = format!("{}@{version}", req.uri().path());
            let mut resp = Response::new(Full::new(Bytes::from(body)));
            *resp.status_mut() = status;
            resp
        }
    };
    let options = alo_http::ServerOptions::default();
    tokio::spawn(alo_http::serve_with(listener, options, handler, stopped));
    origin
}

/// Three nodes over `origin` as group `web`, with writes allowed.
async fn three_nodes(origin: &Origin) -> Vec<Node> {
    cluster(3, &["--origin-url", &origin.url, "--allow-writes"]).await
}

async fn get(node: &Node, key: &str) -> String {
    let (status, _, body) = node.get(&format!("/api/web/{key}")).await;
    assert_eq!(status, StatusCode::OK, "{key}");
    String::from_utf8(body.to_vec()).expect("UTF-8")
}

async fn hot_items(node: &Node) -> u64 {
    stats(node, "web").await["hot_cache"]["items"]
        .as_u64()
        .expect("a count")
}

#[tokio::test]
async fn without_allow_writes_writes_are_405() {
    let node = Node::start(&[]).await;
    for method in [Method::PUT, Method::DELETE, Method::POST] {
        let (status, headers, _) = node.send(method.clone(), "/api/demo/x", &[], "v").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(headers["allow"], "GET, HEAD");
    }
}

#[tokio::test]
async fn set_remove_and_purge_reach_every_node() {
    let origin = origin().await;
    let nodes = three_nodes(&origin).await;
    let keys: Vec<String> = (0..6).map(|i| format!("k{i}")).collect();

    // A set on node 1 is read on nodes 2 and 3, with the TTL it was given.
    for key in &keys {
        let path = format!("/api/web/{key}");
        let (status, _, body) = nodes[0]
            .send(Method::PUT, &path, &[("x-alo-ttl-ms", "60000")], "set")
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "{\"members\": 3, \"unreachable\": 0}\n");
    }
    for node in &nodes[1..] {
        for key in &keys {
            let (_, headers, body) = node.get(&format!("/api/web/{key}")).await;
            assert_eq!(body, "set");
            let left: u64 = headers["x-alo-ttl-ms"]
                .to_str()
                .expect("ascii")
                .parse()
                .expect("ms");
            assert!(left <= 60_000 && left > 50_000, "{left}");
        }
    }
    assert_eq!(
        origin.requests.load(Ordering::SeqCst),
        0,
        "sets load nothing"
    );

    // A copy held hot on node 3 is gone after a remove sent to node 1.
    let key = &keys[0];
    let mut tries = 0;
    while hot_items(&nodes[2]).await == 0 {
        for key in &keys {
            get(&nodes[2], key).await;
        }
        tries += 1;
        assert!(tries < 200, "no hot copy on node 3");
    }
    for key in &keys {
        let (status, _, body) = nodes[0]
            .send(Method::DELETE, &format!("/api/web/{key}"), &[], "")
            .await;
        assert_eq!(
            (status, body.as_ref()),
            (
                StatusCode::OK,
                &b"{\"members\": 3, \"unreachable\": 0}\n"[..]
            )
        );
    }
    assert_eq!(hot_items(&nodes[2]).await, 0);
    assert_eq!(
        get(&nodes[2], key).await,
        format!("/{key}@0"),
        "loaded from the origin"
    );

    // Purge empties every member.
    for node in &nodes {
        for key in &keys {
            get(node, key).await;
        }
    }
    let (status, _, _) = nodes[1].send(Method::DELETE, "/api/web", &[], "").await;
    assert_eq!(status, StatusCode::OK);
    for node in &nodes {
        let s = stats(node, "web").await;
        assert_eq!(s["main_cache"]["items"], 0);
        assert_eq!(s["hot_cache"]["items"], 0);
    }
}

#[tokio::test]
async fn a_remove_during_a_slow_load_leaves_no_node_serving_the_old_value() {
    let origin = origin().await;
    let mut nodes = three_nodes(&origin).await;
    origin.held.store(true, Ordering::SeqCst);
    let slow = nodes[1].get_in_background("/api/web/key");
    while origin.requests.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    // The source changes while its old version is in flight, and the key is removed.
    origin.version.store(1, Ordering::SeqCst);
    origin.held.store(false, Ordering::SeqCst);
    let (status, _, _) = nodes[2].send(Method::DELETE, "/api/web/key", &[], "").await;
    assert_eq!(status, StatusCode::OK);
    origin.gate.notify_waiters();
    slow.await.expect("the slow get ended");
    for node in &nodes {
        for _ in 0..10 {
            assert_eq!(get(node, "key").await, "/key@1");
        }
    }

    // A member that is gone is reported by count; its URL stays in the log.
    let gone = nodes.pop().expect("three nodes");
    gone.stop().await.expect("stopped");
    let (status, _, body) = nodes[0].send(Method::DELETE, "/api/web/key", &[], "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "{\"members\": 3, \"unreachable\": 1}\n");
}

// On the wall clock: with real sockets, paused time may jump past a read the kernel has not
// handed over yet, and expire the value before it is first read.
#[tokio::test]
async fn an_expired_value_is_served_stale_with_a_header_while_the_origin_fails() {
    let origin = origin().await;
    let args = [
        "--origin-url",
        &origin.url,
        "--ttl-ms",
        "300",
        "--stale-if-error-ms",
        "60000",
        "--not-found-ttl-ms",
        "60000",
    ];
    let node = Node::start(&args).await;
    let (_, headers, body) = node.get("/api/web/k").await;
    assert_eq!(
        (body.as_ref(), headers.get("x-alo-stale")),
        (&b"/k@0"[..], None)
    );
    origin.failing.store(true, Ordering::SeqCst);
    // Waiting for the TTL to pass, not for another task.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (status, headers, body) = node.get("/api/web/k").await;
    assert_eq!((status, body.as_ref()), (StatusCode::OK, &b"/k@0"[..]));
    assert_eq!(headers["x-alo-stale"], "if-error");
    assert_eq!(stats(&node, "web").await["stale_serves"], 1);

    // A "not found" is remembered: one origin request for many gets.
    origin.failing.store(false, Ordering::SeqCst);
    let before = origin.requests.load(Ordering::SeqCst);
    for _ in 0..5 {
        let (status, _, _) = node.get("/api/web/missing").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    assert_eq!(origin.requests.load(Ordering::SeqCst), before + 1);
    assert_eq!(stats(&node, "web").await["negative_hits"], 4);
}
