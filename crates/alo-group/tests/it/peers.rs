//! A group with three fake peers routed by a fixed rule.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use alo_group::{Error, Group};

use crate::fakes::{Router, Source};

fn group(source: &Source, router: &Arc<Router>, max_bytes: usize) -> Group {
    Group::builder("test", source.clone())
        .max_bytes(max_bytes)
        .picker(router.clone())
        .build()
        .expect("valid group")
}

fn keys() -> Vec<String> {
    (0..40).map(|i| format!("key{i:02}")).collect()
}

#[tokio::test]
async fn each_key_is_loaded_by_its_owner() {
    let (source, router) = (Source::default(), Router::new());
    let g = group(&source, &router, 1 << 20);
    for key in keys() {
        let value = g.get(&key).await.expect("value");
        match Router::owner(key.as_bytes()) {
            None => assert_eq!(value, format!("value:{key}")),
            Some(p) => assert_eq!(value, format!("peer{p}:{key}")),
        }
    }
    // The getter saw only this node's keys; each peer only its own.
    let loaded = source.keys.lock().expect("not poisoned").clone();
    assert!(loaded.iter().all(|k| Router::owner(k).is_none()));
    assert_eq!(
        loaded.len(),
        keys()
            .iter()
            .filter(|k| Router::owner(k.as_bytes()).is_none())
            .count()
    );
    for peer in &router.peers {
        let asked = peer.asked.lock().expect("not poisoned");
        assert_eq!(asked.len(), 4, "peer {} owns 4 of the 40 keys", peer.id);
        assert!(
            asked
                .iter()
                .all(|(group, k)| group == "test" && Router::owner(k) == Some(peer.id))
        );
    }
    assert_eq!(g.stats().peer_loads, 12);
}

#[tokio::test]
async fn a_failing_peer_does_not_fail_the_get() {
    let (source, router) = (Source::default(), Router::new());
    router.peers[1].failing.store(true, Ordering::SeqCst);
    let g = group(&source, &router, 1 << 20);
    assert_eq!(g.get("key2").await.expect("local fallback"), "value:key2");
    let s = g.stats();
    assert_eq!((s.peer_errors, s.peer_loads, s.local_loads), (1, 0, 1));
    // The fallback value is cached: the dead peer is not asked again.
    g.get("key2").await.expect("cached");
    assert_eq!(router.peers[1].asked.lock().expect("not poisoned").len(), 1);
}

#[tokio::test]
async fn a_peers_not_found_is_returned_without_a_local_load() {
    let source = Source::default();
    let g = Group::builder("test", source.clone())
        .picker(Arc::new(NotFoundPeer))
        .build()
        .expect("valid");
    assert_eq!(g.get("gone").await, Err(Error::NotFound));
    assert_eq!(source.calls(), 0, "the same origin is not asked again");
    assert_eq!(
        g.stats().peer_errors,
        0,
        "not found is an answer, not a failure"
    );
}

/// A picker whose only peer says "not found" to everything.
struct NotFoundPeer;

impl alo_group::PeerPicker for NotFoundPeer {
    fn pick_peer(&self, _key: &[u8]) -> Option<Arc<dyn alo_group::Peer>> {
        Some(Arc::new(NotFoundPeer))
    }
}

impl alo_group::Peer for NotFoundPeer {
    fn name(&self) -> &str {
        "not-found"
    }

    fn get<'a>(
        &'a self,
        _group: &'a str,
        _key: &'a [u8],
        _deadline: std::time::Instant,
    ) -> alo_group::BoxFuture<'a, Result<alo_group::Found, alo_group::LoadError>> {
        Box::pin(async { Err(alo_group::LoadError::NotFound) })
    }
}

#[tokio::test]
async fn popular_remote_keys_go_to_the_hot_cache_within_an_eighth() {
    let (source, router) = (Source::default(), Router::new());
    const BUDGET: usize = 64 * 1024;
    let g = group(&source, &router, BUDGET);
    // Remote keys only (ending in 1), many times each.
    let remote: Vec<String> = (0..200).map(|i| format!("hot{i:03}-1")).collect();
    for _ in 0..5 {
        for key in &remote {
            g.get(key).await.expect("value");
        }
    }
    let s = g.stats();
    assert!(s.hot_cache.items > 0, "some remote values were kept");
    assert!(s.hot_cache.bytes as usize <= BUDGET / 8);
    assert!(s.hot_cache.hits > 0, "and served from there");
    assert!((s.main_cache.bytes + s.hot_cache.bytes) as usize <= BUDGET);
    assert_eq!(source.calls(), 0);
}

#[tokio::test]
async fn get_local_never_calls_the_picker() {
    let (source, router) = (Source::default(), Router::new());
    let g = group(&source, &router, 1 << 20);
    for key in keys() {
        assert_eq!(
            g.local().get(&key).await.expect("value"),
            format!("value:{key}")
        );
    }
    assert_eq!(router.picks.load(Ordering::SeqCst), 0);
    assert_eq!(source.calls(), 40);
    assert_eq!(g.stats().server_requests, 40);
}
