//! Changes of members keep the cache warm: a down owner's keys go to its successor and are
//! loaded once; a new owner peeks at the previous owner before loading; a leaving node hands its
//! values over; a stalled owner is routed around; a remove that missed a member reaches it when
//! it answers again.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use alo_group::{FILL_GUARD, PeerPicker};
use alo_http::{HttpPool, PoolOptions};
use bytes::Bytes;
use tokio::time::timeout;

use crate::failures::Hung;
use crate::node::{Behaviour, Node, value_of};

/// Keys that the member at `url` owns, by `nodes[0]`'s ring.
fn keys_of(nodes: &[Node], url: &str, n: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("key-{i}"))
        .filter(|k| nodes[0].pool.owner(k.as_bytes()) == url)
        .take(n)
        .collect()
}

/// How many times the getters of `nodes` were called.
fn loads(nodes: &[Node]) -> usize {
    nodes
        .iter()
        .map(|n| n.loaded.lock().expect("not poisoned").len())
        .sum()
}

#[tokio::test]
async fn a_down_owners_keys_go_to_the_same_successor_from_every_node_and_load_once() {
    let mut nodes = Node::cluster(3, Behaviour::default()).await;
    let gone = nodes[2].url.clone();
    let keys = keys_of(&nodes, &gone, 20);
    // The owner stops: its port refuses connections, which marks it down at once.
    nodes[2].stop().await;
    for key in &keys {
        for node in &nodes[..2] {
            let got = node.group.get(key).await.expect("served without the owner");
            assert_eq!(got, value_of(key.as_bytes()));
        }
    }
    assert_eq!(
        loads(&nodes[..2]),
        keys.len(),
        "each key loaded once, by the successor, asked by both nodes"
    );
    for node in &nodes[..2] {
        let peer = node
            .pool
            .peer_stats()
            .into_iter()
            .find(|p| p.url == gone)
            .expect("a member");
        assert_eq!(peer.state, "down");
    }
    // Asked again, each key is a hit where it was loaded: no second load.
    for key in &keys {
        nodes[0].group.get(key).await.expect("value");
        nodes[1].group.get(key).await.expect("value");
    }
    assert_eq!(loads(&nodes[..2]), keys.len());
}

#[tokio::test]
async fn a_new_owner_peeks_at_the_previous_owner_before_its_origin() {
    let behaviour = Behaviour::default();
    let mut bound = Vec::new();
    for _ in 0..3 {
        bound.push(Node::bind().await);
    }
    let urls: Vec<String> = bound.iter().map(|(_, url)| url.clone()).collect();
    let (third, third_url) = bound.pop().expect("three");
    let first_two = &urls[..2];
    let nodes: Vec<Node> = bound
        .into_iter()
        .map(|(listener, url)| Node::start(listener, &url, first_two, behaviour.clone()))
        .collect();
    // Warm: 200 keys, each loaded once by its owner of two.
    let keys: Vec<String> = (0..200).map(|i| format!("key-{i}")).collect();
    for key in &keys {
        nodes[0].group.get(key).await.expect("value");
    }
    let warm = behaviour.calls.load(Ordering::SeqCst);
    assert_eq!(warm, keys.len());
    // A third node joins; every node learns the new members.
    let newcomer = Node::start(third, &third_url, &urls, behaviour.clone());
    for node in &nodes {
        node.pool.set_members(&urls).expect("valid");
    }
    let moved: Vec<&String> = keys
        .iter()
        .filter(|k| newcomer.pool.owner(k.as_bytes()) == third_url)
        .collect();
    assert!(!moved.is_empty(), "some keys move to the newcomer");
    for key in &keys {
        let got = newcomer.group.get(key).await.expect("value");
        assert_eq!(got, value_of(key.as_bytes()));
    }
    assert_eq!(
        behaviour.calls.load(Ordering::SeqCst),
        warm,
        "the origin was asked for nothing: the new owner peeked at the previous one"
    );
    let s = newcomer.group.stats();
    assert_eq!(
        (s.peeks, s.peek_hits),
        (moved.len() as u64, moved.len() as u64)
    );
    assert_eq!(
        s.main_cache.items,
        moved.len() as u64,
        "kept where they now live"
    );
}

#[tokio::test]
async fn a_leaving_node_hands_its_values_to_their_new_owners() {
    let behaviour = Behaviour::default();
    let nodes = Node::cluster(3, behaviour.clone()).await;
    let leaving = &nodes[2];
    let theirs = keys_of(&nodes, &leaving.url, 50);
    for key in &theirs {
        nodes[0].group.get(key).await.expect("value");
    }
    assert_eq!(behaviour.calls.load(Ordering::SeqCst), theirs.len());
    let deadline = Instant::now() + Duration::from_secs(5);
    let handover = leaving.group.hand_over(usize::MAX, deadline).await;
    assert_eq!(handover.values, theirs.len(), "{handover:?}");
    assert!(handover.unreachable.is_empty());
    // The others see it gone, and find its keys where it handed them.
    let staying: Vec<String> = nodes[..2].iter().map(|n| n.url.clone()).collect();
    for node in &nodes[..2] {
        node.pool.set_members(&staying).expect("valid");
    }
    for key in &theirs {
        for node in &nodes[..2] {
            assert_eq!(
                node.group.get(key).await.expect("value"),
                value_of(key.as_bytes())
            );
        }
    }
    assert_eq!(
        behaviour.calls.load(Ordering::SeqCst),
        theirs.len(),
        "nothing loaded again"
    );
    let fills: u64 = nodes[..2].iter().map(|n| n.group.stats().fills).sum();
    assert_eq!(fills, theirs.len() as u64);
    // A fill never overwrites: handing over again keeps nothing new.
    let again = leaving.group.hand_over(usize::MAX, deadline).await;
    assert_eq!(again.values, theirs.len(), "taken");
    let fills_again: u64 = nodes[..2].iter().map(|n| n.group.stats().fills).sum();
    assert_eq!(fills_again, fills, "but none kept over a value held");
}

#[tokio::test]
async fn a_value_handed_over_after_a_write_of_its_key_reached_its_new_owner_is_not_kept() {
    let behaviour = Behaviour::default();
    let nodes = Node::cluster(3, behaviour.clone()).await;
    let leaving = &nodes[2];
    let theirs = keys_of(&nodes, &leaving.url, 20);
    for key in &theirs {
        nodes[0].group.get(key).await.expect("value");
    }
    // A remove reached the others but not yet the leaving node, which hands over what it read
    // before: the values it offers are older than the write, and nobody keeps them.
    let keys: Vec<Bytes> = theirs.iter().map(|k| Bytes::from(k.clone())).collect();
    for node in &nodes[..2] {
        node.group.local().remove(&keys);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let handover = leaving.group.hand_over(usize::MAX, deadline).await;
    assert_eq!(handover.values, theirs.len(), "offered and answered");
    let fills: u64 = nodes[..2].iter().map(|n| n.group.stats().fills).sum();
    assert_eq!(fills, 0, "none kept over the write");
    let staying: Vec<String> = nodes[..2].iter().map(|n| n.url.clone()).collect();
    for node in &nodes[..2] {
        node.pool.set_members(&staying).expect("valid");
    }
    for key in &theirs {
        nodes[0].group.get(key).await.expect("value");
    }
    assert_eq!(
        behaviour.calls.load(Ordering::SeqCst),
        2 * theirs.len(),
        "each key loaded again, after the write"
    );
}

#[tokio::test(start_paused = true)]
async fn a_node_left_out_of_the_members_for_half_the_fill_guard_hands_nothing_over() {
    let pool = HttpPool::new("http://127.0.0.1:1", PoolOptions::default()).expect("valid url");
    let other = "http://127.0.0.1:2";
    pool.set_members(["http://127.0.0.1:1", other])
        .expect("valid");
    assert!(
        pool.heir(b"k").is_some(),
        "a member hands over to the others"
    );
    // The lists now leave it out: it keeps its view, and still hands over for a while.
    assert!(pool.set_members([other]).is_err());
    tokio::time::advance(FILL_GUARD / 2).await;
    assert!(pool.heir(b"k").is_some());
    assert!(
        pool.set_members([other]).is_err(),
        "left out again: the time runs from the first"
    );
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(
        pool.heir(b"k").is_none(),
        "it may have missed writes the others took for longer than a fill is refused after one"
    );
    pool.set_members(["http://127.0.0.1:1", other])
        .expect("valid");
    assert!(pool.heir(b"k").is_some(), "named again");
}

#[tokio::test(start_paused = true)]
async fn a_stalled_owner_is_routed_around_once_a_quick_probe_goes_unanswered() {
    let hung = Hung::start().await;
    let (listener, url) = Node::bind().await;
    let options = PoolOptions::builder()
        .stall_after(Duration::from_millis(50))
        .probe_timeout(Duration::from_secs(2))
        .build()
        .expect("valid options");
    let behaviour = Behaviour {
        options: Some(options),
        ..Behaviour::default()
    };
    let node = Node::start(listener, &url, &[url.clone(), hung.url.clone()], behaviour);
    let theirs: Vec<String> = (0..)
        .map(|i| format!("key-{i}"))
        .filter(|k| node.pool.owner(k.as_bytes()) == hung.url)
        .take(2)
        .collect();
    // A key waits on the hung owner: its silence, then a quick probe without an answer, release
    // it well before a probe timeout (2 s) would mark the owner down.
    let first = timeout(Duration::from_millis(500), node.group.get(&theirs[0]))
        .await
        .expect("released by the stall");
    assert_eq!(first.expect("loaded here"), value_of(theirs[0].as_bytes()));
    // New keys do not wait on it at all while the stall stands.
    let second = timeout(Duration::from_millis(10), node.group.get(&theirs[1]))
        .await
        .expect("not sent to the stalled owner");
    assert_eq!(second.expect("loaded here"), value_of(theirs[1].as_bytes()));
    let peer = &node.pool.peer_stats()[0];
    assert_eq!((peer.stalls, peer.state), (1, "up"), "{peer:?}");
}

#[tokio::test(start_paused = true)]
async fn a_slow_owner_answers_its_quick_probe_and_is_waited_for() {
    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    let options = PoolOptions::builder()
        .stall_after(Duration::from_millis(50))
        .build()
        .expect("valid options");
    let behaviour = Behaviour {
        options: Some(options),
        gate: Some(gate.clone()),
        ..Behaviour::default()
    };
    let nodes = Node::cluster(2, behaviour.clone()).await;
    let key = keys_of(&nodes, &nodes[1].url, 1).remove(0);
    let asker = nodes[0].group.clone();
    let asked = key.clone();
    let waiting = tokio::spawn(async move { asker.get(asked).await });
    // The owner's origin takes a second: the asker's quick probes are answered meanwhile.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!waiting.is_finished(), "still waiting on the slow owner");
    gate.notify_one();
    let got = waiting.await.expect("joined").expect("the owner's value");
    assert_eq!(got, value_of(key.as_bytes()));
    assert_eq!(
        behaviour.calls.load(Ordering::SeqCst),
        1,
        "loaded once, by the owner"
    );
    assert!(
        nodes[0].pool.peer_stats()[0].stalls >= 1,
        "suspected, then cleared"
    );
}

#[tokio::test(start_paused = true)]
async fn a_remove_that_missed_a_member_reaches_it_before_it_is_marked_up() {
    let mut hung = Hung::start().await;
    let (listener, url) = Node::bind().await;
    let options = PoolOptions::builder()
        .probe_timeout(Duration::from_millis(100))
        .backoff(Duration::from_millis(100), Duration::from_millis(200))
        .down_after(1)
        .build()
        .expect("valid options");
    let behaviour = Behaviour {
        options: Some(options),
        write_timeout: Some(Duration::from_millis(200)),
        ..Behaviour::default()
    };
    let node = Node::start(listener, &url, &[url.clone(), hung.url.clone()], behaviour);
    let written = node
        .group
        .remove_keys(&[Bytes::from_static(b"a"), Bytes::from_static(b"b")])
        .await
        .expect("removed");
    assert_eq!(written.unreachable.len(), 1);
    let peer = &node.pool.peer_stats()[0];
    assert_eq!((peer.state, peer.pending_writes), ("down", 2), "{peer:?}");
    // The member answers again: the removes reach it, then it is marked up.
    hung.wake();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while node.pool.peer_stats()[0].state != "up" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the member came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let peer = &node.pool.peer_stats()[0];
    assert_eq!((peer.pending_writes, peer.late_writes), (0, 2), "{peer:?}");
    assert_eq!(hung.removes(), 2, "the member applied them");
}
