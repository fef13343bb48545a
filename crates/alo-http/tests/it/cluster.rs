use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use tokio::sync::Notify;

use crate::node::{Behaviour, Node, value_of};

fn keys() -> Vec<String> {
    (0..300).map(|i| format!("key-{i}")).collect()
}

#[tokio::test]
async fn each_key_is_loaded_once_in_the_cluster_on_its_owner() {
    let nodes = Node::cluster(3, Behaviour::default()).await;
    for key in keys() {
        for node in &nodes {
            let value = node.group.get(&key).await.expect("every node answers");
            assert_eq!(value, value_of(key.as_bytes()), "{key} from {}", node.url);
        }
    }
    let mut loads: HashMap<Bytes, Vec<String>> = HashMap::new();
    for node in &nodes {
        for key in node.loaded.lock().expect("not poisoned").iter() {
            loads.entry(key.clone()).or_default().push(node.url.clone());
        }
    }
    assert_eq!(loads.len(), 300, "every key was loaded");
    for (key, loaders) in loads {
        let owner = nodes[0].pool.owner(&key);
        assert_eq!(loaders, [owner], "{key:?} loaded once, by its owner");
    }
    // Every node saw its share of peer requests.
    assert!(nodes.iter().all(|n| n.group.stats().server_requests > 0));
}

#[tokio::test]
async fn when_a_node_stops_the_others_serve_its_keys() {
    let mut nodes = Node::cluster(3, Behaviour::default()).await;
    let gone = nodes[2].url.clone();
    nodes[2].stop().await;
    let mut fell_back = 0;
    for key in keys() {
        for node in &nodes[..2] {
            let value = node.group.get(&key).await.expect("no client error");
            assert_eq!(value, value_of(key.as_bytes()));
        }
        fell_back += usize::from(nodes[0].pool.owner(key.as_bytes()) == gone);
    }
    assert!(
        fell_back > 50,
        "the stopped node owned about a third of the keys"
    );
    let errors: u64 = nodes[..2].iter().map(|n| n.group.stats().peer_errors).sum();
    assert!(
        errors > 0,
        "requests to the stopped node failed and were counted"
    );
}

#[tokio::test]
async fn large_values_and_odd_keys_round_trip() {
    let nodes = Node::cluster(2, Behaviour::default()).await;
    let keys: [&[u8]; 6] = [
        b"big",
        b"with/slash/es",
        b"with spaces and %25 and %",
        b"\xff\xfe\x00non-utf8",
        "ключ".as_bytes(),
        b"?query#fragment&=",
    ];
    for key in keys {
        // Ask the node that does not own the key, so the value crosses HTTP.
        let owner = nodes[0].pool.owner(key);
        let asker = nodes.iter().find(|n| n.url != owner).expect("two nodes");
        let value = asker.group.get(key).await.expect("value");
        assert_eq!(value, value_of(key), "{key:?}");
        let loader = nodes.iter().find(|n| n.url == owner).expect("owner");
        assert!(
            loader
                .loaded
                .lock()
                .expect("not poisoned")
                .iter()
                .any(|k| k == key)
        );
    }
}

#[tokio::test]
async fn a_thousand_gets_across_three_nodes_load_a_cold_key_once() {
    const CALLERS: usize = 1000;
    let gate = Arc::new(Notify::new());
    let behaviour = Behaviour {
        gate: Some(gate.clone()),
        ..Behaviour::default()
    };
    let nodes = Node::cluster(3, behaviour.clone()).await;
    let owner_url = nodes[0].pool.owner(b"cold");
    let owner = nodes
        .iter()
        .find(|n| n.url == owner_url)
        .expect("owner")
        .group
        .clone();

    let started = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..CALLERS)
        .map(|i| {
            let group = nodes[i % 3].group.clone();
            let started = started.clone();
            tokio::spawn(async move {
                // Counted in the same poll that joins the load (single-threaded runtime).
                started.fetch_add(1, Ordering::SeqCst);
                group.get("cold").await
            })
        })
        .collect();
    // The load is held until every caller has joined it: all local callers have started, and
    // each of the two other nodes has forwarded its one request to the owner. Waiting is by
    // yielding to the runtime, which runs the callers and the servers, not by sleeping.
    while started.load(Ordering::SeqCst) < CALLERS || owner.stats().server_requests < 2 {
        tokio::task::yield_now().await;
    }
    gate.notify_one();
    for task in tasks {
        assert_eq!(
            task.await.expect("caller").expect("value"),
            value_of(b"cold")
        );
    }
    assert_eq!(behaviour.calls.load(Ordering::SeqCst), 1);
    assert_eq!(owner.stats().server_requests, 2);
}
