//! Batch gets: keys bound for one peer at once go in one request, each answered as it would be
//! alone; a key the owner must load is answered `202` and asked for alone, so it holds up no
//! other.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use alo_group::{Group, Groups, LoadError, Loaded, PeerPicker, getter_fn};
use alo_http::{PeerSecrets, PoolOptions, ServerOptions, serve};
use bytes::Bytes;
use http::{Method, StatusCode};
use tokio::sync::{Notify, oneshot};

use crate::node::{Behaviour, Node, value_of};
use crate::writes::send;

/// `POST path` with `body` on the server at `url`: status, error code, body.
async fn post(url: &str, path: &str, body: &str) -> (StatusCode, Option<String>, Bytes) {
    send(url, Method::POST, path, body.as_bytes(), None).await
}

/// Keys owned by the node at `owner`, as many as asked.
fn keys_of(nodes: &[Node], owner: usize, n: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("key-{i}"))
        .filter(|k| nodes[0].pool.owner(k.as_bytes()) == nodes[owner].url)
        .take(n)
        .collect()
}

#[tokio::test]
async fn a_batch_answers_each_key_in_a_frame_in_the_order_asked() {
    // A lone server whose group remembers "not found" and sets a TTL, and whose getter holds
    // `cold` until told.
    let release = Arc::new(Notify::new());
    let held = release.clone();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let getter = getter_fn(move |key: Bytes| {
        let held = held.clone();
        counted.fetch_add(1, Ordering::SeqCst);
        async move {
            match &key[..] {
                b"missing" => Err(LoadError::NotFound),
                b"invalid" => Err(LoadError::InvalidKey("no key looks like that".into())),
                b"cold" => {
                    held.notified().await;
                    Ok(Loaded::from(value_of(&key)))
                }
                _ => Ok(Loaded::new(value_of(&key)).with_ttl(Duration::from_secs(60))),
            }
        }
    });
    let group = Group::builder("g", getter)
        .not_found_ttl(Duration::from_secs(60))
        .build()
        .expect("valid");
    let groups = Groups::new();
    groups.insert(group.clone()).expect("one group");
    let (listener, url) = Node::bind().await;
    let (_stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(serve(listener, groups, ServerOptions::default(), stopped));
    group.get("warm").await.expect("loaded");
    let _ = group.get("missing").await;

    let body = "warm\nmissing\ninvalid\ncold\n";
    let (status, _, frames) = post(&url, "/_alo/g?get", body).await;
    assert_eq!(status, StatusCode::OK);
    let frames = String::from_utf8_lossy(&frames);
    let mut frames = frames.split_inclusive('\n');
    let warm = frames.next().expect("a frame for warm");
    assert!(
        warm.starts_with("200 ttl-ms=") && warm.ends_with(" 13\n"),
        "{warm:?}"
    );
    let rest: Vec<&str> = frames.collect();
    assert_eq!(
        rest,
        [
            "value-of:warm404 not-found 14\n",
            "key not found\n",
            // The getter refuses `invalid` at once, within the batch.
            "400 invalid-key 36\n",
            "invalid key: no key looks like that\n",
            // `cold`'s load began and waits.
            "202 - 0\n",
        ]
    );
    // Asking for `cold` alone joins the load the batch started.
    release.notify_one();
    assert_eq!(group.get("cold").await.expect("value"), value_of(b"cold"));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        4,
        "warm, missing, invalid and cold, once each"
    );
}

#[tokio::test]
async fn bad_batches_get_4xx_with_a_short_text() {
    let nodes = Node::cluster(1, Behaviour::default()).await;
    let node = &nodes[0];
    let long = "k".repeat(251);
    let cases = [
        ("/_alo/g?get", String::new(), StatusCode::BAD_REQUEST, None),
        (
            "/_alo/g?get",
            "a\n\nb\n".into(),
            StatusCode::BAD_REQUEST,
            None,
        ),
        (
            "/_alo/g?get",
            "a%zz\n".into(),
            StatusCode::BAD_REQUEST,
            None,
        ),
        (
            "/_alo/g?get",
            format!("{long}\n"),
            StatusCode::URI_TOO_LONG,
            None,
        ),
        (
            "/_alo/nope?get",
            "a\n".into(),
            StatusCode::NOT_FOUND,
            Some("unknown-group"),
        ),
    ];
    for (path, body, status, code) in cases {
        let (got, got_code, text) = post(&node.url, path, &body).await;
        assert_eq!(
            (got, got_code.as_deref()),
            (status, code),
            "{path} {body:?}"
        );
        let text = String::from_utf8(text.to_vec()).expect("text");
        assert!(text.ends_with('\n') && text.len() < 100, "{text:?}");
    }
    assert_eq!(node.group.stats().loads, 0, "nothing was loaded");
}

/// Many keys of one owner asked for at once on another node.
async fn gets_at_once(nodes: &[Node], keys: &[String]) {
    let gets = keys.iter().map(|key| {
        let group = nodes[1].group.clone();
        let key = key.clone();
        tokio::spawn(async move { (group.get(&key).await, key) })
    });
    for get in gets.collect::<Vec<_>>() {
        let (value, key) = get.await.expect("no panic");
        assert_eq!(value.expect("a value"), value_of(key.as_bytes()), "{key}");
    }
}

#[tokio::test]
async fn keys_asked_for_at_once_go_to_their_owner_in_batches() {
    for secrets in [false, true] {
        let mut behaviour = Behaviour::default();
        if secrets {
            let secrets = PeerSecrets::new(["a cluster secret for the test"]).expect("valid");
            behaviour.options = Some(
                PoolOptions::builder()
                    .secrets(secrets.clone())
                    .build()
                    .expect("valid options"),
            );
            behaviour.server_secrets = Some(secrets);
        }
        let nodes = Node::cluster(2, behaviour.clone()).await;
        let keys = keys_of(&nodes, 0, 200);
        // Cold on the owner: the first batch's keys are answered 202 and asked for alone.
        gets_at_once(&nodes, &keys).await;
        assert_eq!(
            behaviour.calls.load(Ordering::SeqCst),
            200,
            "one load per key"
        );
        // Warm on the owner: answered in the batches.
        nodes[1].group.local().purge();
        gets_at_once(&nodes, &keys).await;
        assert_eq!(
            behaviour.calls.load(Ordering::SeqCst),
            200,
            "no second load"
        );

        let stats = &nodes[1].pool.peer_stats()[0];
        assert!(stats.batches >= 1, "{stats:?}");
        assert!(stats.batched_keys >= 2 * stats.batches, "{stats:?}");
        assert!(stats.batched_keys <= 400, "{stats:?}");
        assert_eq!(stats.failures, 0, "{stats:?}");
    }
}

#[tokio::test]
async fn a_key_the_owner_must_load_holds_up_no_other_key_of_its_batch() {
    let gate = Arc::new(Notify::new());
    let behaviour = Behaviour {
        gate: Some(gate.clone()),
        ..Behaviour::default()
    };
    let nodes = Node::cluster(2, behaviour.clone()).await;
    let keys = keys_of(&nodes, 0, 2);
    let (warm, cold) = (&keys[0], &keys[1]);
    gate.notify_one();
    nodes[0].group.get(warm).await.expect("loaded on the owner");

    let asking = |key: &String| {
        let (group, key) = (nodes[1].group.clone(), key.clone());
        tokio::spawn(async move { group.get(&key).await })
    };
    let cold_get = asking(cold);
    let warm_get = asking(warm);
    assert_eq!(
        warm_get.await.expect("no panic"),
        Ok(value_of(warm.as_bytes()))
    );
    behaviour.started.notified().await;
    assert!(!cold_get.is_finished(), "the cold key waits for its load");
    gate.notify_one();
    assert_eq!(
        cold_get.await.expect("no panic"),
        Ok(value_of(cold.as_bytes()))
    );
    assert_eq!(
        behaviour.calls.load(Ordering::SeqCst),
        2,
        "one load per key"
    );
    assert_eq!(nodes[1].group.stats().local_loads, 0);
}

#[tokio::test]
async fn with_batching_off_every_key_is_asked_for_alone() {
    let behaviour = Behaviour {
        options: Some(
            PoolOptions::builder()
                .max_batch_keys(1)
                .build()
                .expect("valid options"),
        ),
        ..Behaviour::default()
    };
    let nodes = Node::cluster(2, behaviour.clone()).await;
    gets_at_once(&nodes, &keys_of(&nodes, 0, 50)).await;
    let stats = &nodes[1].pool.peer_stats()[0];
    assert_eq!((stats.batches, stats.batched_keys), (0, 0));
    assert_eq!(nodes[0].group.stats().server_requests, 50);
}

#[tokio::test]
async fn the_response_limit_is_per_value_not_per_batch() {
    // Every value is 15 or 16 bytes; a batch of them is far over 32.
    let behaviour = Behaviour {
        options: Some(
            PoolOptions::builder()
                .max_response_bytes(32)
                .build()
                .expect("valid options"),
        ),
        ..Behaviour::default()
    };
    let nodes = Node::cluster(2, behaviour.clone()).await;
    let keys = keys_of(&nodes, 0, 100);
    gets_at_once(&nodes, &keys).await;
    gets_at_once(&nodes, &keys).await;
    let stats = &nodes[1].pool.peer_stats()[0];
    assert!(stats.batches >= 1, "{stats:?}");
    assert_eq!(
        nodes[1].group.stats().local_loads,
        0,
        "every key came from its owner"
    );
    assert_eq!(behaviour.calls.load(Ordering::SeqCst), 100);
}

/// Polls `future` once.
async fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *future).poll(cx))).await
}

#[tokio::test]
async fn keys_queued_behind_a_first_key_whose_caller_left_are_still_sent() {
    let nodes = Node::cluster(2, Behaviour::default()).await;
    let keys = keys_of(&nodes, 0, 2);
    let peer = nodes[1]
        .pool
        .pick_peer(keys[0].as_bytes())
        .expect("the owner");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    // The first key starts the batch and waits a turn before it takes it; its caller leaves
    // in that turn, after the second key joined the batch.
    let mut first = peer.get("g", keys[0].as_bytes(), deadline);
    assert!(poll_once(&mut first).await.is_pending());
    let mut second = peer.get("g", keys[1].as_bytes(), deadline);
    assert!(poll_once(&mut second).await.is_pending());
    drop(first);
    let found = second.await.expect("the second key's value");
    assert_eq!(found.value, value_of(keys[1].as_bytes()));
    assert_eq!(nodes[1].pool.peer_stats()[0].failures, 0);
}

#[tokio::test]
async fn a_key_alone_is_asked_for_with_a_get_and_not_a_batch() {
    let nodes = Node::cluster(2, Behaviour::default()).await;
    for key in keys_of(&nodes, 0, 3) {
        let value = nodes[1].group.get(&key).await.expect("a value");
        assert_eq!(value, value_of(key.as_bytes()));
    }
    let stats = &nodes[1].pool.peer_stats()[0];
    assert_eq!((stats.batches, stats.batched_keys), (0, 0), "{stats:?}");
}
