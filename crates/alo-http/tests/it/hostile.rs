//! The peer port against a hostile client or member: proof before body, bounded batches and
//! bodies, no replayed writes, writes that route around a hung member, and an answer outside
//! the protocol taken for a peer failure.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use alo_http::{PeerSecrets, PoolOptions, ServerOptions};
use bytes::Bytes;
use http::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, timeout};

use crate::failures::Hung;
use crate::node::{Behaviour, Node, value_of};
use crate::writes::send;

const SECRET: &str = "the cluster's secret";

fn secrets() -> PeerSecrets {
    PeerSecrets::new([SECRET]).expect("valid")
}

/// A lone node whose server asks every request for a proof of [`SECRET`].
async fn secret_node() -> (Node, Behaviour) {
    let behaviour = Behaviour {
        server_secrets: Some(secrets()),
        ..Behaviour::default()
    };
    let mut nodes = Node::cluster(1, behaviour.clone()).await;
    (nodes.remove(0), behaviour)
}

/// Sends `head` (a request head announcing a body, without the body) and reads what comes back
/// until the server closes the connection: all of it, as text.
async fn head_only(url: &str, head: &str) -> String {
    let mut conn = TcpStream::connect(url.trim_start_matches("http://"))
        .await
        .expect("connect");
    conn.write_all(head.as_bytes()).await.expect("sent");
    let mut answer = Vec::new();
    // The server answers from the head and closes: the body it announced never comes.
    timeout(Duration::from_secs(5), conn.read_to_end(&mut answer))
        .await
        .expect("answered and closed without waiting for the body")
        .expect("read");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn with_secrets_a_request_without_a_valid_head_proof_is_refused_before_its_body() {
    let (node, behaviour) = secret_node().await;
    let forged = PeerSecrets::new(["not the cluster's secret"]).expect("valid");
    let now = SystemTime::now();
    for (path, proof) in [
        ("/_alo/g?get", None),
        (
            "/_alo/g?get",
            Some(forged.proof(&node.url, "POST", "/_alo/g?get", b"k\n", now)),
        ),
        (
            "/_alo/g/k",
            Some(forged.proof(&node.url, "PUT", "/_alo/g/k", b"v", now)),
        ),
        ("/_alo/g/k", Some("t=1,sig=00".to_string())),
    ] {
        let method = if path.contains('?') { "POST" } else { "PUT" };
        let auth = proof.map_or(String::new(), |p| format!("x-alo-auth: {p}\r\n"));
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-length: 15728640\r\n{auth}\r\n"
        );
        let answer = head_only(&node.url, &head).await;
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
        assert!(answer.contains("x-alo-error: unauthorized"), "{answer}");
        assert!(answer.contains("connection: close"), "{answer}");
    }
    assert_eq!(behaviour.calls.load(Ordering::SeqCst), 0);
    assert_eq!(node.group.stats().sets, 0);
}

#[tokio::test]
async fn with_secrets_a_body_that_is_not_the_one_signed_is_refused() {
    let (node, _) = secret_node().await;
    let signer = secrets();
    let proof = signer.proof(&node.url, "PUT", "/_alo/g/k", b"signed", SystemTime::now());
    let (status, _, _) = send(&node.url, Method::PUT, "/_alo/g/k", b"swapped", Some(proof)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(node.group.stats().sets, 0);
}

#[tokio::test]
async fn a_body_that_announces_more_than_its_limit_is_refused_before_it_is_read() {
    let nodes = Node::cluster(1, Behaviour::default()).await;
    let url = &nodes[0].url;
    // A batch get's keys: 64 keys of 250 bytes, encoded, at most (48,064 bytes).
    let answer = head_only(
        url,
        "POST /_alo/g?get HTTP/1.1\r\nhost: x\r\ncontent-length: 48065\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("x-alo-error: too-large"), "{answer}");
    // A set's value: the largest value, 16 MiB, at most.
    let answer = head_only(
        url,
        "PUT /_alo/g/k HTTP/1.1\r\nhost: x\r\ncontent-length: 16777217\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(nodes[0].group.stats().sets, 0);
}

/// The statuses of a batch get's frames, in order.
fn statuses(frames: &[u8]) -> Vec<u16> {
    let mut statuses = Vec::new();
    let mut rest = frames;
    while !rest.is_empty() {
        let line_end = rest.iter().position(|&b| b == b'\n').expect("a frame head");
        let head = std::str::from_utf8(&rest[..line_end]).expect("text");
        let fields: Vec<&str> = head.split(' ').collect();
        statuses.push(fields[0].parse().expect("a status"));
        let len: usize = fields[2].parse().expect("a length");
        rest = &rest[line_end + 1 + len..];
    }
    statuses
}

#[tokio::test]
async fn a_batch_get_starts_at_most_max_batch_keys_loads_and_the_rest_ask_alone() {
    let behaviour = Behaviour {
        server: Some(ServerOptions::builder().max_batch_keys(4)),
        ..Behaviour::default()
    };
    let nodes = Node::cluster(1, behaviour.clone()).await;
    let node = &nodes[0];
    let keys: Vec<String> = (0..10).map(|i| format!("cold-{i}")).collect();
    let body = keys.iter().map(|k| format!("{k}\n")).collect::<String>();
    let (status, _, frames) = send(
        &node.url,
        Method::POST,
        "/_alo/g?get",
        body.as_bytes(),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // The first four are looked up (and loaded: the getter answers at once); the rest are
    // answered "ask for it alone" without a lookup.
    let answered = [200, 200, 200, 200, 202, 202, 202, 202, 202, 202];
    assert_eq!(statuses(&frames), answered);
    assert_eq!(behaviour.calls.load(Ordering::SeqCst), 4);
    assert_eq!(node.group.stats().server_requests, 4);
    let loaded = node.loaded.lock().expect("not poisoned").clone();
    let first: Vec<Bytes> = keys[..4].iter().map(|k| Bytes::from(k.clone())).collect();
    assert_eq!(loaded, first);
}

#[tokio::test]
async fn a_captured_signed_write_applies_nothing_when_sent_again() {
    let (node, _) = secret_node().await;
    let signer = secrets();
    let path = "/_alo/g/k";
    let old = signer.proof(&node.url, "PUT", path, b"old", SystemTime::now());
    let (status, _, _) = send(&node.url, Method::PUT, path, b"old", Some(old.clone())).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let new = signer.proof(&node.url, "PUT", path, b"new", SystemTime::now());
    let (status, _, _) = send(&node.url, Method::PUT, path, b"new", Some(new)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // The capture of the first, sent again: refused, and the newer value stays.
    let (status, code, _) = send(&node.url, Method::PUT, path, b"old", Some(old)).await;
    assert_eq!(
        (status, code.as_deref()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );
    assert_eq!(node.group.local().get("k").await.expect("value"), "new");

    // A remove and a purge apply once too.
    let remove = signer.proof(&node.url, "DELETE", path, b"", SystemTime::now());
    let purge = signer.proof(&node.url, "DELETE", "/_alo/g", b"", SystemTime::now());
    for (path, proof, want) in [
        (path, &remove, StatusCode::NO_CONTENT),
        (path, &remove, StatusCode::UNAUTHORIZED),
        ("/_alo/g", &purge, StatusCode::NO_CONTENT),
        ("/_alo/g", &purge, StatusCode::UNAUTHORIZED),
    ] {
        let (status, _, _) = send(&node.url, Method::DELETE, path, b"", Some(proof.clone())).await;
        assert_eq!(status, want, "{path}");
    }
    let s = node.group.stats();
    assert_eq!((s.sets, s.removes, s.purges), (2, 1, 1));
}

#[tokio::test]
async fn a_captured_signed_write_applies_nothing_on_another_member() {
    let behaviour = Behaviour {
        server_secrets: Some(secrets()),
        ..Behaviour::default()
    };
    let nodes = Node::cluster(2, behaviour).await;
    let signer = secrets();
    let path = "/_alo/g/k";
    // Made for node 0, sent to node 1 (which never saw its sequence number).
    let for_node_0 = signer.proof(&nodes[0].url, "PUT", path, b"old", SystemTime::now());
    let (status, _, _) = send(
        &nodes[1].url,
        Method::PUT,
        path,
        b"old",
        Some(for_node_0.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(nodes[1].group.stats().sets, 0);
    let (status, _, _) = send(&nodes[0].url, Method::PUT, path, b"old", Some(for_node_0)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_write_waits_for_a_hung_member_its_write_timeout_and_not_at_all_once_it_is_down() {
    let hung = Hung::start().await;
    let (listener, url) = Node::bind().await;
    let options = PoolOptions::builder()
        .probe_timeout(Duration::from_millis(100))
        .down_after(2)
        // No probe brings it back during the test.
        .backoff(Duration::from_secs(60), Duration::from_secs(60))
        .build()
        .expect("valid options");
    let behaviour = Behaviour {
        options: Some(options),
        write_timeout: Some(Duration::from_millis(300)),
        ..Behaviour::default()
    };
    let node = Node::start(listener, &url, &[url.clone(), hung.url.clone()], behaviour);

    // A remove: the member does not answer within the write deadline (its silence and an
    // unanswered quick probe end the wait sooner), and the probes then mark it down.
    let started = Instant::now();
    let written = node.group.remove("k").await.expect("removed");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(written.unreachable.len(), 1);
    assert_eq!(written.unreachable[0].peer, hung.url);
    let marked = tokio::time::Instant::now() + Duration::from_secs(5);
    while node.pool.peer_stats()[0].state != "down" {
        assert!(
            tokio::time::Instant::now() < marked,
            "marked down by its probes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let peer = &node.pool.peer_stats()[0];
    assert!(peer.failures >= 2, "{peer:?}");

    // Down: reported unreached at once, without a connection.
    let asked = hung.accepted.load(Ordering::SeqCst);
    let started = Instant::now();
    let written = node.group.remove("k").await.expect("removed");
    let purged = node.group.purge().await;
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "{:?}",
        started.elapsed()
    );
    for written in [&written, &purged] {
        assert_eq!(written.unreachable.len(), 1);
        assert!(
            written.unreachable[0].reason.contains("is down"),
            "{written:?}"
        );
    }
    assert_eq!(hung.accepted.load(Ordering::SeqCst), asked);
}

#[tokio::test]
async fn a_member_that_announces_a_body_over_the_limit_and_stalls_is_a_peer_failure() {
    // A member that answers every request with a head announcing a terabyte, then nothing.
    let liar = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let liar_url = format!("http://{}", liar.local_addr().expect("bound"));
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut conn, _)) = liar.accept().await {
            let mut head = [0; 4096];
            let _ = conn.read(&mut head).await;
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000000000000\r\n\r\n")
                .await;
            held.push(conn);
        }
    });
    let (listener, url) = Node::bind().await;
    let node = Node::start(
        listener,
        &url,
        &[url.clone(), liar_url.clone()],
        Behaviour::default(),
    );
    let key = (0..)
        .map(|i| format!("key-{i}"))
        .find(|k| node.pool.owner(k.as_bytes()) == liar_url)
        .expect("a key of the liar");
    let got = timeout(Duration::from_secs(5), node.group.get(&key))
        .await
        .expect("not held until the peer timeout");
    assert_eq!(got.expect("loaded here"), value_of(key.as_bytes()));
    let s = node.group.stats();
    assert_eq!((s.peer_errors, s.local_loads, s.load_timeouts), (1, 1, 0));
    assert_eq!(node.pool.peer_stats()[0].failures, 1);
}
