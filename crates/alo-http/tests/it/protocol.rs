//! Every status of the wire protocol, produced by real requests.

use alo_http::protocol::{ERROR_HEADER, NOT_FOUND, RATE_HEADER, UNKNOWN_GROUP};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::node::{Behaviour, Node};

/// Sends `method path` to `node` and returns the response with its body read.
async fn send(node: &Node, method: Method, path: &str) -> Response<Bytes> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let request = Request::builder()
        .method(method)
        .uri(format!("{}{path}", node.url))
        .body(Empty::new())
        .expect("valid request");
    let response = client.request(request).await.expect("the server answers");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Response::from_parts(parts, body)
}

fn text(r: &Response<Bytes>) -> String {
    String::from_utf8_lossy(r.body()).into_owned()
}

#[tokio::test]
async fn a_value_is_200_octet_stream() {
    let nodes = Node::cluster(1, Behaviour::default()).await;
    let r = send(&nodes[0], Method::GET, "/_alo/g/a%2Fb").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    assert_eq!(r.body(), &b"value-of:a/b"[..]);

    let head = send(&nodes[0], Method::HEAD, "/_alo/g/a%2Fb").await;
    assert_eq!(head.status(), StatusCode::OK);
    assert!(head.body().is_empty());
    assert_eq!(head.headers()["content-length"], "12");
}

#[tokio::test]
async fn a_value_carries_the_owners_rate_of_asks_which_each_ask_raises() {
    let nodes = Node::cluster(1, Behaviour::default()).await;
    let rate = |r: &Response<Bytes>| -> u32 {
        let rate = r.headers()[RATE_HEADER].to_str().expect("ascii");
        rate.parse().expect("a number")
    };
    let first = rate(&send(&nodes[0], Method::GET, "/_alo/g/popular").await);
    let mut last = first;
    for _ in 0..5 {
        last = rate(&send(&nodes[0], Method::GET, "/_alo/g/popular").await);
    }
    assert!(first > 0 && last > first, "{first} then {last}");
    let other = rate(&send(&nodes[0], Method::GET, "/_alo/g/other").await);
    assert_eq!(other, first, "each key has its own rate");
}

#[tokio::test]
async fn every_error_status_has_a_short_text_body() {
    let nodes = Node::cluster(1, Behaviour::default()).await;
    let node = &nodes[0];
    let long_key = "k".repeat(251);
    let cases: [(Method, String, StatusCode, &str); 8] = [
        (
            Method::GET,
            "/_alo/g".into(),
            StatusCode::BAD_REQUEST,
            "malformed path",
        ),
        (
            Method::GET,
            "/elsewhere/g/k".into(),
            StatusCode::BAD_REQUEST,
            "malformed path",
        ),
        (
            Method::GET,
            "/_alo/g/%zz".into(),
            StatusCode::BAD_REQUEST,
            "percent-encoding",
        ),
        (
            Method::GET,
            "/_alo/nope/k".into(),
            StatusCode::NOT_FOUND,
            "no group",
        ),
        (
            Method::PATCH,
            "/_alo/g/k".into(),
            StatusCode::METHOD_NOT_ALLOWED,
            "allowed: GET, HEAD, PUT, DELETE, POST",
        ),
        (
            Method::POST,
            "/_alo/g/k".into(),
            StatusCode::BAD_REQUEST,
            "expected {group}",
        ),
        (
            Method::GET,
            format!("/_alo/g/{long_key}"),
            StatusCode::URI_TOO_LONG,
            "250 bytes",
        ),
        (
            Method::GET,
            "/_alo/g/broken".into(),
            StatusCode::BAD_GATEWAY,
            "the origin failed",
        ),
    ];
    for (method, path, status, says) in cases {
        let r = send(node, method.clone(), &path).await;
        assert_eq!(r.status(), status, "{method} {path}");
        assert!(text(&r).contains(says), "{method} {path}: {:?}", text(&r));
        assert!(r.body().len() < 200, "short body");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .expect("ascii")
                .starts_with("text/plain")
        );
    }
    let unknown = send(node, Method::GET, "/_alo/nope/k").await;
    assert_eq!(unknown.headers()[ERROR_HEADER], UNKNOWN_GROUP);
    let patch = send(node, Method::PATCH, "/_alo/g/k").await;
    assert_eq!(patch.headers()["allow"], "GET, HEAD, PUT, DELETE, POST");
    let broken = send(node, Method::GET, "/_alo/g/broken").await;
    assert_eq!(
        broken.headers()[ERROR_HEADER],
        alo_http::protocol::LOAD_FAILED
    );
}

#[tokio::test]
async fn the_base_path_alone_is_the_liveness_probe() {
    let nodes = Node::cluster(1, Behaviour::default()).await;
    let r = send(&nodes[0], Method::GET, "/_alo/").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(text(&r), "ok\n");
    assert_eq!(
        nodes[0].group.stats().server_requests,
        0,
        "no group was asked"
    );
}

#[tokio::test]
async fn a_key_the_getter_lacks_is_a_distinct_404() {
    let nodes = Node::cluster(1, Behaviour::default()).await;
    let r = send(&nodes[0], Method::GET, "/_alo/g/missing").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.headers()[ERROR_HEADER], NOT_FOUND);
    assert!(text(&r).contains("key not found"));
}

#[tokio::test]
async fn a_peers_not_found_reaches_the_caller_without_a_local_load() {
    let nodes = Node::cluster(2, Behaviour::default()).await;
    let owner = nodes[0].pool.owner(b"missing");
    let asker = nodes.iter().find(|n| n.url != owner).expect("two nodes");
    assert_eq!(
        asker.group.get("missing").await,
        Err(alo_group::Error::NotFound)
    );
    assert!(asker.loaded.lock().expect("not poisoned").is_empty());
    assert_eq!(asker.group.stats().peer_errors, 0);
}

#[tokio::test]
async fn a_key_the_getter_refuses_is_a_distinct_400_and_not_loaded_elsewhere() {
    let nodes = Node::cluster(2, Behaviour::default()).await;
    let owner = nodes[0].pool.owner(b"invalid");
    let owner_node = nodes.iter().find(|n| n.url == owner).expect("owner");
    let r = send(owner_node, Method::GET, "/_alo/g/invalid").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.headers()[ERROR_HEADER], alo_http::protocol::INVALID_KEY);
    assert!(text(&r).contains("no key looks like that"));

    let asker = nodes.iter().find(|n| n.url != owner).expect("two nodes");
    assert_eq!(
        asker.group.get("invalid").await,
        Err(alo_group::Error::InvalidKey(
            "no key looks like that".into()
        ))
    );
    assert!(asker.loaded.lock().expect("not poisoned").is_empty());
}

#[test]
fn bad_urls_and_base_paths_are_refused() {
    use alo_http::{HttpPool, PoolOptions, ServerOptions};
    for url in [
        "",
        "10.0.0.1:8001",
        "https://10.0.0.1",
        "http://h:1/path",
        "http://h:1/?q",
    ] {
        assert!(
            HttpPool::new(url, PoolOptions::default()).is_err(),
            "{url:?}"
        );
    }
    let pool = HttpPool::new("http://10.0.0.1:8001/", PoolOptions::default()).expect("valid");
    assert_eq!(pool.self_url(), "http://10.0.0.1:8001");
    let err = pool
        .set_members(["http://10.0.0.2:8001", "ftp://x"])
        .expect_err("bad peer");
    assert!(err.to_string().contains("ftp://x"));
    assert_eq!(
        pool.members(),
        ["http://10.0.0.1:8001"],
        "unchanged after an error"
    );
    assert!(
        ServerOptions::builder()
            .base_path("no-slash")
            .build()
            .is_err()
    );
    assert!(PoolOptions::builder().base_path("/x/").build().is_ok());
}

#[test]
fn a_port_that_does_not_parse_is_refused_never_replaced_by_80() {
    use alo_http::{Error, HttpPool, PoolOptions};
    for url in [
        "http://127.0.0.1:99999",
        "http://127.0.0.1:65536",
        "http://127.0.0.1:0",
        "http://127.0.0.1:",
        "http://[::1]:99999",
    ] {
        let err = HttpPool::new(url, PoolOptions::default()).expect_err(url);
        assert!(
            matches!(&err, Error::InvalidUrl { reason, .. } if reason.contains("1 to 65535")),
            "{url}: {err}"
        );
    }
    let pool = HttpPool::new("http://127.0.0.1:8001", PoolOptions::default()).expect("valid");
    let err = pool
        .set_members(["http://127.0.0.1:8001", "http://127.0.0.1:99999"])
        .expect_err("a bad port");
    assert!(err.to_string().contains("99999"), "{err}");
    assert_eq!(
        pool.members(),
        ["http://127.0.0.1:8001"],
        "the list refused"
    );
    // A port left out is HTTP's own; the highest port is a port.
    let pool = HttpPool::new("http://Example.test", PoolOptions::default()).expect("valid");
    assert_eq!(pool.self_url(), "http://example.test:80");
    let pool = HttpPool::new("http://[::1]:65535/", PoolOptions::default()).expect("valid");
    assert_eq!(pool.self_url(), "http://[::1]:65535");
}
