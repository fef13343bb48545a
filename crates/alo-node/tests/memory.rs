//! The budget is the memory: a value fetched over HTTP (from a peer, from the URL origin) is
//! cached without the read buffer it arrived in. Measured with a counting allocator: dropping a
//! group must free about what its stats say it holds, not the network buffers behind it.

use std::alloc::System;
use std::sync::Arc;

use alo_group::{Group, GroupStats, Groups, getter_fn};
use alo_http::{HttpPool, PoolOptions, ServerOptions, serve, serve_with};
use alo_node::origin::UrlOrigin;
use bytes::Bytes;
use cap::Cap;
use http::Response;
use http_body_util::Full;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

/// A 100-byte value for `key`.
fn value_of(key: &[u8]) -> Bytes {
    let mut value = key.to_vec();
    value.resize(100, b'.');
    Bytes::from(value)
}

/// What dropping `group` gives back to the allocator, and what its stats said it held.
fn freed_by_dropping(group: Group) -> (usize, GroupStats) {
    let stats = group.stats();
    let before = ALLOCATOR.allocated();
    drop(group);
    (before.saturating_sub(ALLOCATOR.allocated()), stats)
}

/// The bytes the stats charge, with room for the group's own fixed structures.
fn charged(stats: &GroupStats) -> usize {
    (stats.main_cache.bytes + stats.hot_cache.bytes) as usize + (64 << 10)
}

#[tokio::test(flavor = "current_thread")]
async fn values_fetched_over_http_hold_only_their_own_bytes() {
    // An origin server that answers every path with a 100-byte value.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let origin_url = format!("http://{}", listener.local_addr().expect("bound"));
    let (_stop_origin, origin_stopped) = oneshot::channel::<()>();
    let handler = |req: http::Request<hyper::body::Incoming>| async move {
        Response::new(Full::new(value_of(req.uri().path().as_bytes())))
    };
    tokio::spawn(serve_with(
        listener,
        ServerOptions::default(),
        handler,
        origin_stopped,
    ));

    // The URL origin. The test keeps the origin (and its connections) alive, so dropping the
    // group frees only what the group holds.
    let origin = Arc::new(
        UrlOrigin::new(&origin_url, std::time::Duration::from_secs(10), 1 << 20, 64)
            .expect("valid"),
    );
    let web = Group::builder("web", origin.clone())
        .build()
        .expect("group");
    for i in 0..1000 {
        web.get(format!("key-{i}")).await.expect("value");
    }
    let (freed, stats) = freed_by_dropping(web);
    assert_eq!(stats.main_cache.items, 1000);
    assert!(
        freed <= charged(&stats),
        "the URL origin's values held {freed} bytes; the stats charge {}",
        charged(&stats)
    );

    // A peer: an owner serves 100-byte values; the asker fetches keys the owner owns.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let owner_url = format!("http://{}", listener.local_addr().expect("bound"));
    let owner = Groups::new();
    let getter = getter_fn(|key: Bytes| async move { Ok(value_of(&key)) });
    owner.create("g", 64 << 20, getter).expect("group");
    let (_stop_owner, owner_stopped) = oneshot::channel::<()>();
    tokio::spawn(serve(
        listener,
        owner,
        ServerOptions::default(),
        owner_stopped,
    ));

    let pool = HttpPool::new("http://127.0.0.1:1", PoolOptions::default()).expect("valid");
    pool.set_members(["http://127.0.0.1:1", &owner_url])
        .expect("valid");
    let local = getter_fn(|key: Bytes| async move { Ok(value_of(&key)) });
    let asker = Group::builder("g", local)
        .picker(pool.clone())
        .build()
        .expect("group");
    let theirs = (0..)
        .map(|i| format!("key-{i}"))
        .filter(|k| pool.owner(k.as_bytes()) == owner_url)
        .take(3000);
    for key in theirs {
        asker.get(&key).await.expect("value");
    }
    let (freed, stats) = freed_by_dropping(asker);
    assert_eq!(stats.peer_loads, 3000);
    assert!(
        stats.hot_cache.items > 100,
        "about one peer value in ten is kept"
    );
    assert!(
        freed <= charged(&stats),
        "the peers' values held {freed} bytes; the stats charge {}",
        charged(&stats)
    );
}
