use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::client::ClientApi as _;
use crate::node::{Logs, Node, cluster};

/// A tiny HTTP origin: `/things/a` is 200, `/things/boom` is 500, anything else 404.
async fn origin() -> (String, oneshot::Sender<()>) {
    let (url, stop, _) = counted_origin().await;
    (url, stop)
}

/// [`origin`], with a count of the requests it answered.
pub(crate) async fn counted_origin() -> (String, oneshot::Sender<()>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("bound"));
    let (stop, stopped) = oneshot::channel::<()>();
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    let handler = move |req: Request<Incoming>| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            let (status, body) = match req.uri().path() {
                "/things/a" => (StatusCode::OK, "the thing a"),
                "/things/sub/b%20c" => (StatusCode::OK, "the thing b c"),
                "/things/boom" => (StatusCode::INTERNAL_SERVER_ERROR, "kaboom"),
                _ => (StatusCode::NOT_FOUND, "no"),
            };
            let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
            *resp.status_mut() = status;
            resp
        }
    };
    tokio::spawn(alo_http::serve_with(
        listener,
        alo_http::ServerOptions::default(),
        handler,
        stopped,
    ));
    (url, stop, requests)
}

#[tokio::test]
async fn an_http_origin_serves_values_404s_and_502s() {
    let (url, _stop) = origin().await;
    let base = format!("{url}/things");
    let logs = Logs::capture();
    let node = Node::start(&["--origin-url", &base]).await;

    let (status, _, body) = node.get("/api/web/a").await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"the thing a"[..]));
    let (status, _, body) = node.get("/api/web/sub%2Fb%20c").await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"the thing b c"[..]));
    let (status, _, _) = node.get("/api/web/nothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, body) = node.get("/api/web/boom").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    // The client learns the category; the origin's URL and answer go to the log only.
    assert_eq!(body, "the origin failed\n");
    assert_eq!(logs.lines_with("answered 500").len(), 1);
}

#[tokio::test]
async fn a_directory_origin_refuses_keys_that_escape_it() {
    let outside = tempfile::tempdir().expect("temp dir");
    std::fs::write(outside.path().join("secret"), "do not serve").expect("write");
    let root = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(root.path().join("sub")).expect("mkdir");
    std::fs::write(root.path().join("sub/page.html"), "<p>hi</p>").expect("write");
    std::os::unix::fs::symlink(outside.path().join("secret"), root.path().join("link"))
        .expect("symlink");
    let dir = root.path().to_str().expect("UTF-8 temp path").to_string();
    let node = Node::start(&["--origin-dir", &dir]).await;

    let (status, headers, body) = node.get("/api/files/sub%2Fpage.html").await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"<p>hi</p>"[..]));
    assert_eq!(headers["content-type"], "text/html");
    let (status, _, _) = node.get("/api/files/sub%2Fnone.html").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for escape in [
        "..%2Fsecret",
        "sub%2F..%2F..%2Fsecret",
        "%2Fetc%2Fpasswd",
        "link",
    ] {
        let (status, _, body) = node.get(&format!("/api/files/{escape}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{escape}: {body:?}");
        assert!(!String::from_utf8_lossy(&body).contains("do not serve"));
    }
}

#[tokio::test]
async fn an_owner_whose_origin_fails_costs_one_origin_request_per_get() {
    let (url, _stop, requests) = counted_origin().await;
    let base = format!("{url}/things");
    let nodes = cluster(2, &["--origin-url", &base]).await;
    // One of the two does not own the key and asks the other, whose origin fails.
    for (i, node) in nodes.iter().enumerate() {
        let (status, _, body) = node.get("/api/web/boom").await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{body:?}");
        assert_eq!(
            requests.load(Ordering::SeqCst),
            i + 1,
            "one origin request per get"
        );
    }
    let mut owner_said_it_failed = 0;
    for node in &nodes {
        let (_, _, body) = node.get("/stats").await;
        let stats: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(stats["peer_health"][0]["state"], "up");
        owner_said_it_failed += stats["groups"]["web"]["peer_load_errs"]
            .as_u64()
            .expect("a count");
    }
    assert_eq!(
        owner_said_it_failed, 1,
        "the non-owner got the owner's answer"
    );
    let (_, _, metrics) = nodes[0].get("/metrics").await;
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(metrics.contains(&format!("alo_peer_up{{peer=\"{}\"}} 1\n", nodes[1].url)));
    // One get at a time: each key went alone.
    let alone = format!("alo_peer_batches_total{{peer=\"{}\"}} 0\n", nodes[1].url);
    assert!(metrics.contains(&alone), "{metrics}");
    assert!(metrics.contains("alo_load_timeouts_total{group=\"web\"} 0\n"));
}

#[tokio::test]
async fn origin_bodies_over_the_largest_value_are_refused() {
    let root = tempfile::tempdir().expect("temp dir");
    std::fs::write(root.path().join("small"), [b's'; 100]).expect("write");
    std::fs::write(root.path().join("large"), [b'l'; 101]).expect("write");
    let dir = root.path().to_str().expect("UTF-8 temp path").to_string();
    let logs = Logs::capture();
    let node = Node::start(&["--origin-dir", &dir, "--max-value-bytes", "100"]).await;
    let (status, _, body) = node.get("/api/files/small").await;
    assert_eq!((status, body.len()), (StatusCode::OK, 100));
    let (status, _, body) = node.get("/api/files/large").await;
    assert_eq!(
        (status, &body[..]),
        (StatusCode::BAD_GATEWAY, &b"the origin failed\n"[..])
    );
    assert_eq!(logs.lines_with("larger than the largest value").len(), 1);
}
