//! Peers prove who they are: with secrets, a request without a valid proof gets 401 and loads
//! nothing; both secrets of a rotation are accepted.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use alo_http::{
    AUTH_HEADER, PeerSecrets, PoolOptions, protocol::ERROR_HEADER, protocol::UNAUTHORIZED,
};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::node::{Behaviour, Node, value_of};

const OLD: &str = "the old cluster secret";
const NEW: &str = "the new cluster secret";

fn secrets(lines: &[&str]) -> PeerSecrets {
    PeerSecrets::new(lines).expect("valid secrets")
}

/// `GET path` on `node` with `proof` as `x-alo-auth`, if any: the status and error code.
async fn get(node: &Node, path: &str, proof: Option<String>) -> (StatusCode, Option<String>) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut request = Request::get(format!("{}{path}", node.url));
    if let Some(proof) = proof {
        request = request.header(AUTH_HEADER, proof);
    }
    let response = client
        .request(request.body(Empty::new()).expect("valid"))
        .await
        .expect("answered");
    let code = response
        .headers()
        .get(ERROR_HEADER)
        .map(|v| v.to_str().expect("ascii").to_string());
    let status = response.status();
    let _ = response.into_body().collect().await;
    (status, code)
}

#[tokio::test]
async fn a_request_without_a_valid_proof_is_401_and_loads_nothing() {
    let behaviour = Behaviour {
        server_secrets: Some(secrets(&[NEW])),
        ..Behaviour::default()
    };
    let nodes = Node::cluster(1, behaviour.clone()).await;
    let node = &nodes[0];
    let path = "/_alo/g/k";
    let now = SystemTime::now();
    let stale = secrets(&[NEW]).proof(&node.url, "GET", path, b"", now - Duration::from_secs(600));
    let wrong = secrets(&[OLD]).proof(&node.url, "GET", path, b"", now);
    let other_path = secrets(&[NEW]).proof(&node.url, "GET", "/_alo/g/other", b"", now);
    for proof in [
        None,
        Some(stale),
        Some(wrong),
        Some(other_path),
        Some("t=1,sig=00".into()),
    ] {
        let (status, code) = get(node, path, proof.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{proof:?}");
        assert_eq!(code.as_deref(), Some(UNAUTHORIZED));
    }
    assert_eq!(
        behaviour.calls.load(Ordering::SeqCst),
        0,
        "nothing was loaded"
    );
    assert_eq!(node.group.stats().server_requests, 0);

    let good = secrets(&[NEW]).proof(&node.url, "GET", path, b"", now);
    assert_eq!(get(node, path, Some(good)).await.0, StatusCode::OK);
    assert_eq!(behaviour.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn during_a_rotation_peers_signing_with_either_secret_are_served() {
    // Every server accepts both; one node still signs with the old secret, one with the new.
    let accept_both = secrets(&[NEW, OLD]);
    let mut bound = Vec::new();
    for _ in 0..2 {
        bound.push(Node::bind().await);
    }
    let urls: Vec<String> = bound.iter().map(|(_, url)| url.clone()).collect();
    let mut nodes = Vec::new();
    for ((listener, url), signs) in bound.into_iter().zip([OLD, NEW]) {
        let behaviour = Behaviour {
            options: Some(
                PoolOptions::builder()
                    .secrets(secrets(&[signs]))
                    .build()
                    .expect("valid options"),
            ),
            server_secrets: Some(accept_both.clone()),
            ..Behaviour::default()
        };
        nodes.push((
            Node::start(listener, &url, &urls, behaviour.clone()),
            behaviour,
        ));
    }
    for (i, (node, _)) in nodes.iter().enumerate() {
        let other = &nodes[1 - i].0;
        let key = (0..)
            .map(|n| format!("key-{n}"))
            .find(|k| node.pool.owner(k.as_bytes()) == other.url)
            .expect("a key the other node owns");
        assert_eq!(
            node.group.get(&key).await.expect("value"),
            value_of(key.as_bytes())
        );
        let s = node.group.stats();
        assert_eq!((s.peer_loads, s.peer_errors), (1, 0), "node {i}");
        let loaded_here = node.loaded.lock().expect("not poisoned").clone();
        assert!(
            !loaded_here.contains(&Bytes::from(key)),
            "node {i} did not load it itself"
        );
    }
}
