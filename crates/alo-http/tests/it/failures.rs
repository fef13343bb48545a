//! What each peer failure does: an impatient caller, an owner whose origin fails, a peer that
//! hangs with its connections open.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use alo_group::{Error, Groups, getter_fn};
use alo_http::{HttpPool, PoolOptions, ServerOptions, serve};
use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot};

use crate::node::{Behaviour, Node, value_of};

/// A key that `owner` owns, by the ring every node computes.
fn key_owned_by(nodes: &[Node], owner: &Node) -> String {
    (0..)
        .map(|i| format!("key-{i}"))
        .find(|k| nodes[0].pool.owner(k.as_bytes()) == owner.url)
        .expect("some key is owned by each node")
}

#[tokio::test]
async fn an_owner_whose_origin_fails_is_asked_once_per_get() {
    let behaviour = Behaviour::default();
    let nodes = Node::cluster(2, behaviour.clone()).await;
    let asker = nodes
        .iter()
        .find(|n| n.pool.owner(b"broken") != n.url)
        .expect("one node does not own the key");
    for round in 1..=3 {
        let got = asker.group.get("broken").await;
        assert!(
            matches!(&got, Err(Error::Load(m)) if m.contains("the owner's load failed")),
            "{got:?}"
        );
        assert_eq!(
            behaviour.calls.load(Ordering::SeqCst),
            round,
            "one origin call per get"
        );
    }
    let s = asker.group.stats();
    assert_eq!((s.peer_load_errs, s.peer_errors, s.local_loads), (3, 0, 0));
}

#[tokio::test]
async fn a_caller_hanging_up_mid_fetch_leaves_the_owners_load_to_finish() {
    let gate = Arc::new(Notify::new());
    let behaviour = Behaviour {
        gate: Some(gate.clone()),
        ..Behaviour::default()
    };
    let nodes = Node::cluster(2, behaviour.clone()).await;
    let (owner, asker) = (&nodes[0], &nodes[1]);
    let key = key_owned_by(&nodes, owner);

    let caller = {
        let (group, key) = (asker.group.clone(), key.clone());
        tokio::spawn(async move { group.get(&key).await })
    };
    behaviour.started.notified().await;
    caller.abort();
    assert!(caller.await.expect_err("aborted").is_cancelled());
    gate.notify_one();

    // Whoever asks next, anywhere, gets the value of the one load.
    assert_eq!(
        owner.group.get(&key).await.expect("value"),
        value_of(key.as_bytes())
    );
    assert_eq!(
        asker.group.get(&key).await.expect("value"),
        value_of(key.as_bytes())
    );
    assert_eq!(behaviour.calls.load(Ordering::SeqCst), 1);
    assert_eq!(owner.group.stats().local_loads, 1);
    assert_eq!(owner.group.stats().main_cache.items, 1);
}

#[tokio::test]
async fn a_peer_hanging_up_does_not_cancel_the_owners_load() {
    let gate = Arc::new(Notify::new());
    let behaviour = Behaviour {
        gate: Some(gate.clone()),
        ..Behaviour::default()
    };
    let nodes = Node::cluster(1, behaviour.clone()).await;
    let owner = &nodes[0];
    // A peer's request, sent by hand, and the connection closed while the owner loads.
    let addr = owner.url.trim_start_matches("http://");
    let mut conn = TcpStream::connect(addr).await.expect("connect");
    conn.write_all(b"GET /_alo/g/slow HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("send");
    behaviour.started.notified().await;
    drop(conn);
    gate.notify_one();

    assert_eq!(
        owner.group.get("slow").await.expect("value"),
        value_of(b"slow")
    );
    assert_eq!(behaviour.calls.load(Ordering::SeqCst), 1);
    let s = owner.group.stats();
    assert_eq!((s.local_loads, s.main_cache.items), (1, 1));
}

/// A peer that accepts connections and never answers, until told to serve.
pub(crate) struct Hung {
    pub(crate) url: String,
    /// Connections it has accepted.
    pub(crate) accepted: Arc<AtomicUsize>,
    /// The group it serves once woken.
    group: alo_group::Group,
    serve: Option<oneshot::Sender<()>>,
    stop: Option<oneshot::Sender<()>>,
}

impl Hung {
    /// Keys its group dropped, once woken.
    pub(crate) fn removes(&self) -> u64 {
        self.group.stats().removes
    }

    /// Makes the peer answer from now on.
    pub(crate) fn wake(&mut self) {
        if let Some(serve) = self.serve.take() {
            let _ = serve.send(());
        }
    }

    pub(crate) async fn start() -> Hung {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("bound"));
        let (serve_tx, mut serve_rx) = oneshot::channel::<()>();
        let (stop, stopped) = oneshot::channel::<()>();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&accepted);
        // Back to life: a node whose group answers every key.
        let groups = Groups::new();
        let getter = getter_fn(|key: Bytes| async move { Ok(value_of(&key)) });
        let group = groups.create("g", 1 << 20, getter).expect("group");
        tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((conn, _)) => {
                            counted.fetch_add(1, Ordering::SeqCst);
                            held.push(conn);
                        }
                        Err(_) => return,
                    },
                    _ = &mut serve_rx => break,
                }
            }
            drop(held);
            let _ = serve(listener, groups, ServerOptions::default(), stopped).await;
        });
        Hung {
            url,
            accepted,
            group,
            serve: Some(serve_tx),
            stop: Some(stop),
        }
    }
}

impl Drop for Hung {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_hung_peer_is_marked_down_its_keys_load_locally_and_it_comes_back() {
    let mut hung = Hung::start().await;
    let (listener, url) = Node::bind().await;
    let options = PoolOptions::builder()
        .probe_timeout(Duration::from_millis(100))
        .down_after(2)
        .backoff(Duration::from_millis(100), Duration::from_millis(200))
        .build()
        .expect("valid options");
    let behaviour = Behaviour {
        options: Some(options),
        ..Behaviour::default()
    };
    let members = [url.clone(), hung.url.clone()];
    let node = Node::start(listener, &url, &members, behaviour.clone());
    let theirs: Vec<String> = (0..)
        .map(|i| format!("key-{i}"))
        .filter(|k| node.pool.owner(k.as_bytes()) == hung.url)
        .take(20)
        .collect();

    // The first get waits on the hung peer until its silence and an unanswered quick probe
    // confirm a stall, then loads locally; the usual probes then mark it down.
    let first = tokio::time::timeout(Duration::from_secs(10), node.group.get(&theirs[0])).await;
    assert_eq!(
        first.expect("not stuck").expect("value"),
        value_of(theirs[0].as_bytes())
    );
    let marked = tokio::time::Instant::now() + Duration::from_secs(10);
    while node.pool.peer_stats()[0].state != "down" {
        assert!(
            tokio::time::Instant::now() < marked,
            "marked down by its probes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let peers = node.pool.peer_stats();
    assert_eq!((peers[0].state, peers[0].marked_down), ("down", 1));

    // While it is down, its keys load here without waiting on it.
    for key in &theirs[1..] {
        let got = tokio::time::timeout(Duration::from_millis(500), node.group.get(key)).await;
        assert_eq!(
            got.expect("no wait").expect("value"),
            value_of(key.as_bytes())
        );
    }
    assert_eq!(behaviour.calls.load(Ordering::SeqCst), 20);

    // It answers again: a probe brings it back, and its keys are fetched from it.
    hung.wake();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while node.pool.peer_stats()[0].state != "up" {
        assert!(tokio::time::Instant::now() < deadline, "the peer came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let peers = node.pool.peer_stats();
    assert_eq!(peers[0].marked_up, 1);
    let fresh = (0..)
        .map(|i| format!("fresh-{i}"))
        .find(|k| node.pool.owner(k.as_bytes()) == hung.url)
        .expect("a key of the peer");
    assert_eq!(
        node.group.get(&fresh).await.expect("value"),
        value_of(fresh.as_bytes())
    );
    assert_eq!(
        behaviour.calls.load(Ordering::SeqCst),
        20,
        "loaded by the peer"
    );
    assert_eq!(node.group.stats().peer_loads, 1);
}

#[tokio::test]
async fn a_refused_connection_is_unreachable_and_loads_locally() {
    // A port nobody listens on.
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let gone = format!("http://{}", closed.local_addr().expect("bound"));
    drop(closed);
    let pool = HttpPool::new("http://127.0.0.1:1", PoolOptions::default()).expect("valid");
    pool.set_members(["http://127.0.0.1:1", &gone])
        .expect("valid");
    let groups = Groups::with_picker(pool.clone());
    let getter = getter_fn(|key: Bytes| async move { Ok(value_of(&key)) });
    let g = groups.create("g", 1 << 20, getter).expect("group");
    let key = (0..)
        .map(|i| format!("key-{i}"))
        .find(|k| pool.owner(k.as_bytes()) == gone)
        .expect("a key of the gone peer");
    assert_eq!(g.get(&key).await.expect("value"), value_of(key.as_bytes()));
    let s = g.stats();
    assert_eq!((s.peer_errors, s.local_loads), (1, 1));
    assert_eq!(pool.peer_stats()[0].failures, 1);
}
