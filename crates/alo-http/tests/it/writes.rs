//! Writes over the wire: set, remove, batch remove and purge between real servers, the time to
//! live carried as time remaining, and the write endpoints' statuses.

use std::time::{Duration, SystemTime};

use alo_group::PeerPicker;
use alo_group::testing::get_until_hot;
use alo_http::{
    AUTH_HEADER, PeerSecrets, PoolOptions, ServerOptions, protocol::ERROR_HEADER,
    protocol::TOO_LARGE,
};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::node::{Behaviour, Node, value_of};

/// `method path` with `body` on the server at `url`, signed with `proof` if given: status, error
/// code, body.
pub(crate) async fn send(
    url: &str,
    method: Method,
    path: &str,
    body: &[u8],
    proof: Option<String>,
) -> (StatusCode, Option<String>, Bytes) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = Request::builder()
        .method(method)
        .uri(format!("{url}{path}"));
    if let Some(proof) = proof {
        request = request.header(AUTH_HEADER, proof);
    }
    let request = request
        .body(Full::new(Bytes::copy_from_slice(body)))
        .expect("valid");
    let response = client.request(request).await.expect("answered");
    let code = response
        .headers()
        .get(ERROR_HEADER)
        .map(|v| v.to_str().expect("ascii").to_string());
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, code, body)
}

/// The index of the node that owns `key`.
fn owner(nodes: &[Node], key: &str) -> usize {
    let url = nodes[0].pool.owner(key.as_bytes());
    nodes.iter().position(|n| n.url == url).expect("a member")
}

/// A key owned by node `n`.
fn key_of(nodes: &[Node], n: usize) -> String {
    (0..)
        .map(|i| format!("key{i}"))
        .find(|k| owner(nodes, k) == n)
        .expect("some key")
}

#[tokio::test]
async fn a_set_on_one_node_is_read_on_the_others() {
    let nodes = Node::cluster(3, Behaviour::default()).await;
    let keys: Vec<String> = (0..3).map(|n| key_of(&nodes, n)).collect();
    for key in &keys {
        let written = nodes[0]
            .group
            .set(key, format!("set:{key}"), None)
            .await
            .expect("set");
        assert!(written.is_complete(), "{written:?}");
        assert_eq!(written.members, 3);
    }
    for node in &nodes {
        for key in &keys {
            assert_eq!(
                node.group.get(key).await.expect("value"),
                format!("set:{key}")
            );
        }
        assert!(
            node.loaded.lock().expect("not poisoned").is_empty(),
            "nothing loaded"
        );
    }
}

#[tokio::test]
async fn a_key_asked_a_few_times_is_kept_and_then_served_without_a_hop() {
    let nodes = Node::cluster(3, Behaviour::default()).await;
    let key = key_of(&nodes, 1);
    let mut gets = 0;
    while nodes[0].group.stats().hot_cache.items == 0 {
        nodes[0].group.get(&key).await.expect("value");
        gets += 1;
        assert!(gets < 50, "no copy");
    }
    // The owner's rate after 4 asks clears 8 a minute for each of the 2 other members.
    assert_eq!(gets, 4);
    let served = nodes[1].group.stats().server_requests;
    for _ in 0..20 {
        nodes[0].group.get(&key).await.expect("value");
    }
    assert_eq!(nodes[1].group.stats().server_requests, served);
}

#[tokio::test]
async fn a_remove_drops_the_hot_copy_on_another_node() {
    let nodes = Node::cluster(3, Behaviour::default()).await;
    let key = key_of(&nodes, 1);
    assert!(
        get_until_hot(&nodes[2].group, &key).await.expect("value"),
        "no hot copy"
    );
    nodes[1]
        .group
        .set(&key, "changed", None)
        .await
        .expect("set");
    assert_eq!(
        nodes[2].group.stats().hot_cache.items,
        0,
        "the set dropped the copy"
    );
    assert!(
        get_until_hot(&nodes[2].group, &key).await.expect("value"),
        "no hot copy"
    );

    let written = nodes[0].group.remove(&key).await.expect("remove");
    assert!(written.is_complete());
    assert_eq!(nodes[2].group.stats().hot_cache.items, 0);
    assert_eq!(
        nodes[2].group.get(&key).await.expect("value"),
        value_of(key.as_bytes())
    );
}

// On the wall clock: with real sockets, paused time may jump a sweep tick (1 s) past a read the
// kernel has not handed over yet, and expire the value before it is first read.
#[tokio::test]
async fn the_wire_carries_the_time_remaining_and_copies_expire_with_the_owner() {
    let nodes = Node::cluster(2, Behaviour::default()).await;
    let key = key_of(&nodes, 1);
    let ttl = Duration::from_millis(600);
    nodes[0]
        .group
        .set(&key, "short-lived", Some(ttl))
        .await
        .expect("set");

    let getter = nodes[0]
        .pool
        .pick_peer(key.as_bytes())
        .expect("node 1 owns it");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let found = getter
        .get("g", key.as_bytes(), deadline)
        .await
        .expect("value");
    assert_eq!(found.value, "short-lived");
    let left = found.ttl.expect("it expires");
    assert!(left <= ttl && left > Duration::ZERO, "{left:?}");

    assert!(
        get_until_hot(&nodes[0].group, &key).await.expect("value"),
        "no hot copy"
    );
    // Waiting for the deadline to pass, not for another task.
    tokio::time::sleep(ttl).await;
    for node in &nodes {
        assert_eq!(
            node.group.get(&key).await.expect("value"),
            value_of(key.as_bytes())
        );
    }
}

#[tokio::test]
async fn purge_and_batch_remove_reach_every_member() {
    let nodes = Node::cluster(3, Behaviour::default()).await;
    let keys: Vec<Bytes> = (0..20).map(|i| Bytes::from(format!("key{i}"))).collect();
    for node in &nodes {
        for key in &keys {
            node.group.get(key).await.expect("value");
        }
    }
    let written = nodes[0]
        .group
        .remove_keys(&keys[..10])
        .await
        .expect("remove");
    assert!(written.is_complete());
    // Round 1: each owner its keys; round 2: the other members all ten, and node 0 those it
    // does not own.
    let mine = keys[..10]
        .iter()
        .filter(|k| owner(&nodes, &String::from_utf8_lossy(k)) == 0);
    let mine = mine.count() as u64;
    let removes: u64 = nodes.iter().map(|n| n.group.stats().removes).sum();
    assert_eq!(removes, 10 + 2 * 10 + (10 - mine));
    for node in &nodes {
        assert!(
            node.group.stats().main_cache.items <= 10,
            "the other ten stay"
        );
    }
    let written = nodes[1].group.purge().await;
    assert!(written.is_complete());
    for node in &nodes {
        let s = node.group.stats();
        assert_eq!((s.main_cache.items, s.hot_cache.items), (0, 0));
    }
}

#[tokio::test]
async fn a_remove_reports_a_member_it_could_not_reach() {
    let mut nodes = Node::cluster(3, Behaviour::default()).await;
    nodes[2].stop().await;
    let key = key_of(&nodes, 0);
    let written = nodes[0].group.remove(&key).await.expect("remove");
    assert_eq!(written.members, 3);
    assert_eq!(written.unreachable.len(), 1);
    assert_eq!(written.unreachable[0].peer, nodes[2].url);

    // A set whose owner is gone fails, and says so.
    let key = key_of(&nodes, 2);
    let set = nodes[0].group.set(&key, "v", None).await;
    assert!(
        matches!(set, Err(alo_group::Error::NotStored(_))),
        "{set:?}"
    );
}

/// A request (method, path, body) and its expected status and error code.
type Case = (
    Method,
    &'static str,
    &'static [u8],
    StatusCode,
    Option<&'static str>,
);

#[tokio::test]
async fn the_write_endpoints_answer_with_the_protocol_statuses() {
    let behaviour = Behaviour {
        server: Some(ServerOptions::builder().max_body_bytes(64)),
        ..Behaviour::default()
    };
    let nodes = Node::cluster(1, behaviour).await;
    let node = &nodes[0];
    let cases: [Case; 9] = [
        (
            Method::PUT,
            "/_alo/g/k?ttl-ms=5000",
            b"v",
            StatusCode::NO_CONTENT,
            None,
        ),
        (
            Method::PUT,
            "/_alo/g/k?ttl-ms=0",
            b"v",
            StatusCode::BAD_REQUEST,
            None,
        ),
        (
            Method::PUT,
            "/_alo/g/k?other=1",
            b"v",
            StatusCode::BAD_REQUEST,
            None,
        ),
        (
            Method::PUT,
            "/_alo/g/k",
            &[0; 65],
            StatusCode::PAYLOAD_TOO_LARGE,
            Some(TOO_LARGE),
        ),
        (
            Method::PUT,
            "/_alo/nope/k",
            b"v",
            StatusCode::NOT_FOUND,
            Some("unknown-group"),
        ),
        (
            Method::DELETE,
            "/_alo/g/k",
            b"",
            StatusCode::NO_CONTENT,
            None,
        ),
        (
            Method::POST,
            "/_alo/g",
            b"a\nb%2Fc\n",
            StatusCode::NO_CONTENT,
            None,
        ),
        (
            Method::POST,
            "/_alo/g",
            b"a\n\nb\n",
            StatusCode::BAD_REQUEST,
            None,
        ),
        (Method::DELETE, "/_alo/g", b"", StatusCode::NO_CONTENT, None),
    ];
    for (method, path, body, status, code) in cases {
        let (got, got_code, text) = send(&node.url, method.clone(), path, body, None).await;
        assert_eq!(got, status, "{method} {path}: {text:?}");
        assert_eq!(got_code.as_deref(), code, "{method} {path}");
        assert!(text.len() < 200);
    }
    let s = node.group.stats();
    assert_eq!((s.sets, s.removes, s.purges), (1, 3, 1));
}

#[tokio::test]
async fn with_secrets_the_write_endpoints_need_a_proof() {
    let secrets = PeerSecrets::new(["a cluster secret"]).expect("valid");
    let behaviour = Behaviour {
        server_secrets: Some(secrets.clone()),
        options: Some(
            PoolOptions::builder()
                .secrets(secrets.clone())
                .build()
                .expect("valid options"),
        ),
        ..Behaviour::default()
    };
    let nodes = Node::cluster(2, behaviour).await;
    let path = "/_alo/g/k";
    let (status, code, _) = send(&nodes[0].url, Method::PUT, path, b"v", None).await;
    assert_eq!(
        (status, code.as_deref()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );
    // A proof of another body does not do.
    let other = secrets.proof(&nodes[0].url, "PUT", path, b"w", SystemTime::now());
    let (status, _, _) = send(&nodes[0].url, Method::PUT, path, b"v", Some(other)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let proof = secrets.proof(&nodes[0].url, "PUT", path, b"v", SystemTime::now());
    let (status, _, _) = send(&nodes[0].url, Method::PUT, path, b"v", Some(proof)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(nodes[0].group.stats().sets, 1);

    // Between the nodes themselves, writes are signed and go through.
    let key = key_of(&nodes, 1);
    let written = nodes[0].group.set(&key, "signed", None).await.expect("set");
    assert!(written.is_complete());
    assert_eq!(nodes[1].group.get(&key).await.expect("value"), "signed");
    assert_eq!(nodes[1].loaded.lock().expect("not poisoned").len(), 0);
}
