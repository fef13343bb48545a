//! set, remove and purge across an in-memory cluster of three groups.

use std::sync::Arc;
use std::time::Duration;

use alo_group::Error;
use alo_group::testing::get_until_hot;
use bytes::Bytes;
use tokio::sync::Notify;

use crate::net::{Cluster, version_of};

/// A key that node `n` of `cluster` owns.
fn owned_by(cluster: &Cluster, n: usize) -> String {
    let key = format!("k{n}");
    assert_eq!(cluster.net.owner(key.as_bytes()), n);
    key
}

#[tokio::test]
async fn a_set_on_one_node_is_read_on_the_others() {
    let cluster = Cluster::new(3, |b| b);
    let key = owned_by(&cluster, 1);
    let written = cluster
        .node(0)
        .set(&key, "new@99", None)
        .await
        .expect("set");
    assert!(written.is_complete());
    assert_eq!(written.members, 3);
    for n in 0..3 {
        assert_eq!(cluster.node(n).get(&key).await.expect("value"), "new@99");
    }
    assert_eq!(
        cluster.origin.calls(),
        0,
        "a set value is served without a load"
    );
    assert_eq!(cluster.node(1).stats().sets, 1, "stored on the owner");
    assert_eq!(cluster.node(0).stats().main_cache.items, 0);
}

#[tokio::test]
async fn a_set_replaces_the_hot_copies_elsewhere() {
    let cluster = Cluster::new(3, |b| b);
    let key = owned_by(&cluster, 1);
    assert!(
        get_until_hot(cluster.node(2), &key).await.expect("value"),
        "no hot copy"
    );
    cluster.node(0).set(&key, "new@7", None).await.expect("set");
    assert_eq!(cluster.node(2).stats().hot_cache.items, 0);
    assert_eq!(cluster.node(2).get(&key).await.expect("value"), "new@7");
}

#[tokio::test]
async fn a_remove_sent_to_one_node_drops_the_hot_copy_on_another() {
    let cluster = Cluster::new(3, |b| b);
    let key = owned_by(&cluster, 1);
    assert!(
        get_until_hot(cluster.node(2), &key).await.expect("value"),
        "no hot copy"
    );
    assert_eq!(version_of(&cluster.node(2).get(&key).await.expect("v")), 0);

    cluster.origin.update(key.as_bytes());
    let written = cluster.node(0).remove(&key).await.expect("remove");
    assert!(written.is_complete());
    assert_eq!(cluster.node(2).stats().hot_cache.items, 0);
    for n in 0..3 {
        let value = cluster.node(n).get(&key).await.expect("value");
        assert_eq!(version_of(&value), 1, "node {n} serves the new version");
    }
}

#[tokio::test]
async fn a_remove_during_a_slow_load_leaves_no_node_serving_the_old_value() {
    let cluster = Cluster::new(3, |b| b);
    let key = owned_by(&cluster, 1);
    let gate = Arc::new(Notify::new());
    *cluster.origin.gate.lock().expect("not poisoned") = Some(gate.clone());

    // Node 0 asks the owner, whose load reads version 0 and then waits.
    let slow = {
        let g = cluster.node(0).clone();
        let key = key.clone();
        tokio::spawn(async move { g.get(&key).await })
    };
    while cluster.origin.calls() == 0 {
        tokio::task::yield_now().await;
    }
    cluster.origin.update(key.as_bytes());
    *cluster.origin.gate.lock().expect("not poisoned") = None;
    cluster.node(2).remove(&key).await.expect("remove");
    gate.notify_one();

    // The caller that was waiting gets what its load read; nobody keeps it.
    let old = slow.await.expect("joined").expect("value");
    assert_eq!(version_of(&old), 0);
    for n in 0..3 {
        for _ in 0..20 {
            let value = cluster.node(n).get(&key).await.expect("value");
            assert_eq!(version_of(&value), 1, "node {n} serves the new version");
        }
    }
}

#[tokio::test]
async fn remove_keys_sends_one_request_per_owner_and_member() {
    let cluster = Cluster::new(3, |b| b);
    let keys: Vec<Bytes> = (0..30).map(|i| Bytes::from(format!("key{i}"))).collect();
    for key in &keys {
        cluster.node(0).get(key).await.expect("value");
    }
    let written = cluster.node(0).remove_keys(&keys).await.expect("remove");
    assert!(written.is_complete());
    for n in 0..3 {
        let s = cluster.node(n).stats();
        assert_eq!((s.main_cache.items, s.hot_cache.items), (0, 0), "node {n}");
    }
    // Round 1: each owner its keys; round 2: the other members all 30, and node 0 those it
    // does not own.
    let mine = keys.iter().filter(|k| cluster.net.owner(k) == 0).count() as u64;
    let removed: u64 = (0..3).map(|n| cluster.node(n).stats().removes).sum();
    assert_eq!(removed, 30 + 2 * 30 + (30 - mine));
}

#[tokio::test]
async fn purge_empties_every_member() {
    let cluster = Cluster::new(3, |b| b);
    for i in 0..60 {
        for n in 0..3 {
            cluster.node(n).get(format!("key{i}")).await.expect("value");
        }
    }
    let written = cluster.node(1).purge().await;
    assert!(written.is_complete());
    for n in 0..3 {
        let s = cluster.node(n).stats();
        assert_eq!((s.main_cache.items, s.hot_cache.items), (0, 0), "node {n}");
        assert_eq!(s.purges, 2, "two rounds");
    }
}

#[tokio::test]
async fn a_remove_reports_the_members_it_could_not_reach() {
    let cluster = Cluster::new(3, |b| b);
    let key = owned_by(&cluster, 0);
    cluster.net.set_down(2, true);
    let written = cluster.node(0).remove(&key).await.expect("remove");
    assert_eq!(written.members, 3);
    assert_eq!(written.unreachable.len(), 1);
    assert_eq!(written.unreachable[0].peer, "node2");
    assert!(written.unreachable[0].reason.contains("down"));
}

#[tokio::test]
async fn a_set_whose_owner_is_down_fails_and_writes_nothing() {
    let cluster = Cluster::new(3, |b| b);
    let key = owned_by(&cluster, 2);
    cluster.net.set_down(2, true);
    let set = cluster.node(0).set(&key, "x@1", None).await;
    assert!(matches!(set, Err(Error::NotStored(_))), "{set:?}");
    assert_eq!(cluster.node(0).stats().main_cache.items, 0);
}

#[tokio::test]
async fn bad_writes_are_refused() {
    let cluster = Cluster::new(1, |b| b.max_value_bytes(16));
    let g = cluster.node(0);
    assert_eq!(g.set("", "v", None).await, Err(Error::EmptyKey));
    assert_eq!(
        g.set("k", "v", Some(Duration::ZERO)).await,
        Err(Error::ZeroTtl)
    );
    assert_eq!(
        g.set("k", vec![0u8; 17], None).await,
        Err(Error::ValueTooLarge { bytes: 17, max: 16 })
    );
    assert_eq!(g.remove("").await, Err(Error::EmptyKey));
    assert_eq!(g.stats().sets, 0);
}

#[tokio::test(start_paused = true)]
async fn a_set_with_a_ttl_expires_on_the_owner_and_its_copies() {
    let cluster = Cluster::new(3, |b| b);
    let key = owned_by(&cluster, 1);
    cluster
        .node(0)
        .set(&key, "set@5", Some(Duration::from_secs(2)))
        .await
        .expect("set");
    assert!(
        get_until_hot(cluster.node(2), &key).await.expect("value"),
        "no hot copy"
    );
    let found = cluster.node(2).lookup(&key).await.expect("value");
    assert_eq!(found.value, "set@5");
    assert!(found.ttl.is_some_and(|t| t <= Duration::from_secs(2)));
    tokio::time::advance(Duration::from_secs(2)).await;
    for n in 0..3 {
        let value = cluster.node(n).get(&key).await.expect("value");
        assert_eq!(version_of(&value), 0, "node {n}: the set value expired");
    }
}

#[tokio::test(start_paused = true)]
async fn a_value_loaded_while_the_owner_was_down_gives_way_to_the_owner() {
    let cluster = Cluster::new(2, |b| {
        b.ttl(Duration::from_secs(10))
            .stale_while_revalidate(Duration::from_secs(60))
    });
    let key = "k1";
    assert_eq!(cluster.net.owner(key.as_bytes()), 1);
    cluster.net.set_down(1, true);
    cluster.node(0).get(key).await.expect("loaded here");
    assert_eq!(cluster.node(0).stats().main_cache.items, 1);

    cluster.net.set_down(1, false);
    cluster.origin.update(key.as_bytes());
    tokio::time::advance(Duration::from_secs(11)).await;
    // Stale: served at once, and reloaded through the owner in the background.
    let stale = cluster.node(0).get(key).await.expect("stale value");
    assert_eq!(version_of(&stale), 0);
    for _ in 0..100 {
        if cluster.node(0).stats().main_cache.items == 0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(cluster.node(0).stats().main_cache.items, 0);
    assert_eq!(version_of(&cluster.node(0).get(key).await.expect("v")), 1);
}
