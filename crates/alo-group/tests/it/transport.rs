//! What a transport is built from: the error conversions, `peer_fn`, `LatePicker`, and
//! the in-process cluster of `alo_group::testing`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use alo_group::testing::Cluster;
use alo_group::{
    Error, Found, Group, Groups, LatePicker, LoadError, Peer, PeerPicker, getter_fn, peer_fn,
};
use bytes::Bytes;
use futures_util::future::join_all;

#[test]
fn errors_convert_both_ways_as_documented() {
    let loads = [
        LoadError::NotFound,
        LoadError::failed("the database is down"),
        LoadError::InvalidKey("no such path".into()),
        LoadError::Timeout,
    ];
    for e in loads {
        assert_eq!(LoadError::from(Error::from(e.clone())), e);
    }
    let errors = [
        Error::NotFound,
        Error::Load("the database is down".into()),
        Error::InvalidKey("no such path".into()),
        Error::Timeout,
    ];
    for e in errors {
        assert_eq!(Error::from(LoadError::from(e.clone())), e);
    }

    // The rows that do not come back.
    assert_eq!(
        LoadError::from(Error::EmptyKey),
        LoadError::InvalidKey("the key is empty".into())
    );
    assert_eq!(
        LoadError::from(Error::Panicked("boom".into())),
        LoadError::failed("the getter panicked: boom")
    );
    assert_eq!(
        Error::from(LoadError::unreachable("gone")),
        Error::Load("gone".into())
    );
    // A peer that answered was reached: nothing it says makes the asker load again.
    let others = [
        Error::NotStored("the owner is down".into()),
        Error::ValueTooLarge { bytes: 2, max: 1 },
        Error::DuplicateGroup("g".into()),
        Error::EmptyName,
    ];
    for e in others {
        let message = e.to_string();
        assert_eq!(LoadError::from(e), LoadError::failed(message));
    }
}

/// Node `me` of two: a key whose last byte's parity names the other node goes to `peer`
/// (`k1` is node 1's).
struct ByParity {
    me: usize,
    peer: Arc<dyn Peer>,
}

impl PeerPicker for ByParity {
    fn pick_peer(&self, key: &[u8]) -> Option<Arc<dyn Peer>> {
        let owner = usize::from(*key.last()?) % 2;
        (owner != self.me).then(|| Arc::clone(&self.peer))
    }
}

/// Node `i`'s groups as a peer, through `peer_fn` and the error conversion.
fn peer_of(groups: &Groups, name: String) -> Arc<dyn Peer> {
    let groups = groups.clone();
    Arc::new(peer_fn(name, move |group: String, key: Bytes| {
        let groups = groups.clone();
        async move {
            let group = groups
                .get(&group)
                .ok_or_else(|| LoadError::failed("no such group"))?;
            Ok(group.local().lookup(&key).await?)
        }
    }))
}

#[tokio::test]
async fn two_nodes_ask_each_other_through_peer_getter_fn() {
    // Each node's picker needs the other node's groups: both are bound once the groups exist.
    let late = [Arc::new(LatePicker::new()), Arc::new(LatePicker::new())];
    let nodes: Vec<Groups> = late
        .iter()
        .map(|l| Groups::with_picker(l.clone()))
        .collect();
    let groups: Vec<Group> = (0..2)
        .map(|i| {
            let getter = getter_fn(move |key: Bytes| async move {
                match &key[..] {
                    k if k.starts_with(b"missing") => Err(LoadError::NotFound),
                    k => Ok(Bytes::from(format!(
                        "node{i}:{}",
                        String::from_utf8_lossy(k)
                    ))),
                }
            });
            nodes[i].create("g", 1 << 20, getter).expect("a group")
        })
        .collect();
    for i in 0..2 {
        let peer = peer_of(&nodes[1 - i], format!("node{}", 1 - i));
        assert_eq!(peer.name(), format!("node{}", 1 - i));
        assert!(late[i].set(Arc::new(ByParity { me: i, peer })).is_none());
    }

    for g in &groups {
        assert_eq!(g.get("k1").await.expect("value"), "node1:k1");
        assert_eq!(g.get("k0").await.expect("value"), "node0:k0");
    }
    let (asker, owner) = (groups[0].stats(), groups[1].stats());
    assert_eq!((asker.local_loads, asker.peer_loads), (1, 1));
    assert_eq!((owner.local_loads, owner.peer_loads), (1, 1));

    // The owner's "not found" crosses as itself, and is not loaded again by the asker.
    assert_eq!(groups[0].get("missing1").await, Err(Error::NotFound));
    let asker = groups[0].stats();
    assert_eq!((asker.local_load_errs, asker.peer_load_errs), (0, 1));
    assert_eq!(groups[1].stats().local_load_errs, 1);

    // The pickers hold each other's nodes: unbinding them frees both.
    for l in &late {
        assert!(l.clear().is_some());
    }
}

/// A picker that sends every key to one peer.
struct Always(Arc<dyn Peer>);

impl PeerPicker for Always {
    fn pick_peer(&self, _key: &[u8]) -> Option<Arc<dyn Peer>> {
        Some(Arc::clone(&self.0))
    }
}

/// A peer called `name` that answers `<name>:<key>`.
fn named(name: &'static str) -> Arc<dyn Peer> {
    Arc::new(peer_fn(name, move |_group: String, key: Bytes| {
        let value = format!("{name}:{}", String::from_utf8_lossy(&key));
        async move { Ok(Found::new(Bytes::from(value), None)) }
    }))
}

#[tokio::test]
async fn swapping_the_picker_changes_where_keys_go() {
    let late = Arc::new(LatePicker::new());
    let getter = getter_fn(|key: Bytes| async move {
        Ok(Bytes::from(format!(
            "local:{}",
            String::from_utf8_lossy(&key)
        )))
    });
    let group = Group::builder("g", getter)
        .picker(late.clone())
        .build()
        .expect("a group");

    assert_eq!(group.get("k1").await.expect("value"), "local:k1");
    assert!(late.set(Arc::new(Always(named("a")))).is_none());
    assert_eq!(group.get("k2").await.expect("value"), "a:k2");
    let replaced = late.set(Arc::new(Always(named("b"))));
    assert!(replaced.is_some());
    assert_eq!(group.get("k3").await.expect("value"), "b:k3");
    assert!(late.clear().is_some());
    assert_eq!(group.get("k4").await.expect("value"), "local:k4");
    // What was fetched before a swap stays where it is cached.
    assert_eq!(group.get("k1").await.expect("value"), "local:k1");
    let s = group.stats();
    assert_eq!((s.local_loads, s.peer_loads), (2, 2));
}

#[tokio::test]
async fn the_testing_cluster_loads_each_key_once_on_its_owner() {
    let cluster = Cluster::new(3);
    let loads: Arc<Mutex<HashMap<Bytes, Vec<usize>>>> = Arc::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let groups = cluster
        .add_group(|node| {
            let (loads, calls) = (Arc::clone(&loads), Arc::clone(&calls));
            let getter = getter_fn(move |key: Bytes| {
                calls.fetch_add(1, Ordering::SeqCst);
                let mut loads = loads.lock().expect("not poisoned");
                loads.entry(key.clone()).or_default().push(node);
                async move { Ok(key) }
            });
            Group::builder("g", getter)
        })
        .expect("groups");
    assert!(cluster.node(2).get("g").is_some());

    // Every node asks for every key, twice, all at once.
    let keys: Vec<String> = (0..30).map(|i| format!("key{i}")).collect();
    let gets = (0..2)
        .flat_map(|_| &groups)
        .flat_map(|g| keys.iter().map(move |k| async move { (k, g.get(k).await) }));
    for (key, value) in join_all(gets).await {
        assert_eq!(value.expect("value"), key.as_str());
    }

    assert_eq!(calls.load(Ordering::SeqCst), keys.len());
    let loads = loads.lock().expect("not poisoned");
    for key in &keys {
        let owner = cluster.owner(key.as_bytes());
        assert_eq!(loads[key.as_bytes()], [owner], "{key}");
    }
}

#[tokio::test]
async fn a_node_taken_down_has_its_keys_loaded_elsewhere() {
    let cluster = Cluster::new(2);
    let getter = getter_fn(|key: Bytes| async move { Ok(key) });
    let groups = cluster
        .add_group(|_| Group::builder("g", getter.clone()))
        .expect("groups");
    cluster.set_down(1, true);
    assert_eq!(groups[0].get("k1").await.expect("value"), "k1");
    assert_eq!(groups[0].stats().local_loads, 1);
    assert_eq!(groups[1].stats().server_requests, 0);
    cluster.set_down(1, false);
    assert_eq!(groups[0].get("k3").await.expect("value"), "k3");
    assert_eq!(groups[1].stats().local_loads, 1, "k3 is node 1's");
}
