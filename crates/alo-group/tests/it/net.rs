//! The crate's in-process cluster (`alo_group::testing`) with one group `g` over an origin
//! whose values carry a version, so tests can tell an old value from a new one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alo_group::testing;
use alo_group::{BoxFuture, Getter, Group, GroupBuilder, LoadContext, LoadError, Loaded};
use bytes::Bytes;
use tokio::sync::Notify;

/// The source of truth: `key@version`, the version bumped by `update`. A load reads the version
/// when it starts and answers after `delay`, or when `gate` is opened if one is set, so a load
/// can be caught holding an old version.
#[derive(Default)]
pub(crate) struct Origin {
    versions: Mutex<HashMap<Bytes, u64>>,
    pub(crate) calls: AtomicUsize,
    pub(crate) delay: Mutex<Duration>,
    pub(crate) gate: Mutex<Option<Arc<Notify>>>,
}

impl Origin {
    pub(crate) fn version(&self, key: &[u8]) -> u64 {
        *self
            .versions
            .lock()
            .expect("not poisoned")
            .get(key)
            .unwrap_or(&0)
    }

    /// Changes the key at the source; returns its new version.
    pub(crate) fn update(&self, key: &[u8]) -> u64 {
        let mut versions = self.versions.lock().expect("not poisoned");
        let v = versions.entry(Bytes::copy_from_slice(key)).or_insert(0);
        *v += 1;
        *v
    }

    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// The version a value says it was loaded at.
pub(crate) fn version_of(value: &[u8]) -> u64 {
    let text = std::str::from_utf8(value).expect("utf-8");
    let (_, v) = text.rsplit_once('@').expect("key@version");
    v.parse().expect("a number")
}

impl Getter for Origin {
    fn get(&self, ctx: LoadContext) -> BoxFuture<'_, Result<Loaded, LoadError>> {
        let key = ctx.key().clone();
        self.calls.fetch_add(1, Ordering::SeqCst);
        let version = self.version(&key);
        let delay = *self.delay.lock().expect("not poisoned");
        let gate = self.gate.lock().expect("not poisoned").clone();
        Box::pin(async move {
            if let Some(gate) = gate {
                gate.notified().await;
            }
            tokio::time::sleep(delay).await;
            let text = format!("{}@{version}", String::from_utf8_lossy(&key));
            Ok(Loaded::new(text))
        })
    }
}

/// `n` nodes, each with a group `g` of 1 MiB over one origin.
pub(crate) struct Cluster {
    pub(crate) net: testing::Cluster,
    groups: Vec<Group>,
    pub(crate) origin: Arc<Origin>,
}

impl Cluster {
    /// A cluster whose groups are built by `build` from a builder with the origin set.
    pub(crate) fn new(n: usize, build: impl Fn(GroupBuilder) -> GroupBuilder) -> Self {
        let origin = Arc::new(Origin::default());
        let net = testing::Cluster::new(n);
        let groups = net
            .add_group(|_| build(Group::builder("g", Arc::clone(&origin)).max_bytes(1 << 20)))
            .expect("valid groups");
        Cluster {
            net,
            groups,
            origin,
        }
    }

    pub(crate) fn node(&self, i: usize) -> &Group {
        &self.groups[i]
    }
}
