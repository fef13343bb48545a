//! Hot copies by measured rate: the owner counts every peer's asks for a key and reports the
//! rate with its answer; an asker keeps a copy once the rate clears the bar, which rises with
//! the cluster.

use std::sync::Arc;

use alo_group::{DEFAULT_HOT_RATE, Group, GroupBuilder, Via};

use crate::net::Cluster;

/// A key that node `n` of `cluster` owns.
fn owned_by(cluster: &Cluster, n: usize, tag: &str) -> String {
    (0..)
        .map(|i| format!("{tag}{i}"))
        .find(|key| cluster.net.owner(key.as_bytes()) == n)
        .expect("some key")
}

/// How many gets of `key` node 0 makes before its hot cache holds a copy (at most `limit`).
async fn gets_until_hot(cluster: &Cluster, key: &str, limit: u64) -> u64 {
    for gets in 1..=limit {
        cluster.node(0).get(key).await.expect("value");
        if cluster.node(0).stats().hot_cache.items > 0 {
            return gets;
        }
    }
    panic!("no copy of {key} after {limit} gets");
}

#[tokio::test]
async fn the_owner_reports_each_peer_ask_in_the_rate_it_answers_with() {
    let cluster = Cluster::new(3, |b| b);
    let key = owned_by(&cluster, 1, "k");
    let owner = cluster.node(1).local();
    let mut rates = Vec::new();
    for _ in 0..4 {
        rates.push(
            owner
                .lookup(&key)
                .await
                .expect("value")
                .rate
                .expect("a rate"),
        );
    }
    assert!(rates.windows(2).all(|w| w[0] < w[1]), "{rates:?}");
    // A group without peers has no one to report to.
    let alone = Group::builder("g", Arc::clone(&cluster.origin))
        .build()
        .expect("valid group");
    let found = alone.local().lookup("k0").await.expect("value");
    assert_eq!(found.rate, None);
    // Nor does a get of the cluster report one.
    assert_eq!(
        cluster.node(1).lookup(&key).await.expect("value").rate,
        None
    );
}

#[tokio::test]
async fn a_key_asked_often_is_kept_after_a_few_fetches_and_keys_asked_once_never() {
    let cluster = Cluster::new(3, |b| b);
    for i in 0..200 {
        let key = owned_by(&cluster, 1, &format!("once{i}-"));
        cluster.node(0).get(&key).await.expect("value");
    }
    assert_eq!(cluster.node(0).stats().hot_cache.items, 0);
    let key = owned_by(&cluster, 1, "popular");
    let gets = gets_until_hot(&cluster, &key, 50).await;
    // Asked 4 times in the last seconds: 16.7 a minute, over 8 for each of the 2 other members.
    assert_eq!(gets, 4);
    let served = cluster.node(1).stats().server_requests;
    for _ in 0..100 {
        cluster.node(0).get(&key).await.expect("value");
    }
    assert_eq!(
        cluster.node(1).stats().server_requests,
        served,
        "served from the copy"
    );
}

#[tokio::test]
async fn the_bar_rises_with_the_members_and_with_the_groups_hot_rate() {
    let five = Cluster::new(5, |b| b);
    let key = owned_by(&five, 1, "k");
    // 8 a minute for each of 4 other members: 8 asks.
    assert_eq!(gets_until_hot(&five, &key, 50).await, 8);

    let strict = |b: GroupBuilder| b.hot_rate(DEFAULT_HOT_RATE * 4);
    let three = Cluster::new(3, strict);
    let key = owned_by(&three, 1, "k");
    assert_eq!(gets_until_hot(&three, &key, 50).await, 16);

    let eager = Cluster::new(3, |b| b.hot_rate(0));
    let key = owned_by(&eager, 1, "k");
    assert_eq!(gets_until_hot(&eager, &key, 50).await, 1);
}

#[tokio::test]
async fn a_lookup_says_where_its_value_was_found() {
    let cluster = Cluster::new(3, |b| b.hot_rate(0));
    let remote = owned_by(&cluster, 1, "r");
    let own = owned_by(&cluster, 0, "o");
    let node = cluster.node(0);
    let via = |key: String| async move { node.lookup(&key).await.expect("a value").via };
    assert_eq!(via(remote.clone()).await, Via::Peer);
    assert_eq!(via(remote).await, Via::Cache, "kept in the hot cache");
    assert_eq!(via(own.clone()).await, Via::Origin);
    assert_eq!(via(own).await, Via::Cache);
}
