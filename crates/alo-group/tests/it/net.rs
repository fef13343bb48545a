//! An in-memory cluster: groups that are each other's peers through direct calls, with an
//! origin whose values carry a version, so tests can tell an old value from a new one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use alo_group::{
    BoxFuture, Found, Getter, Group, LoadContext, LoadError, Loaded, PeerGetter, PeerPicker,
};
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

/// One member as the others see it: its group, called directly, unless it is down.
pub(crate) struct Member {
    name: String,
    group: OnceLock<Group>,
    pub(crate) down: AtomicBool,
}

impl Member {
    fn group(&self) -> Result<&Group, LoadError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(LoadError::unreachable(format!("{} is down", self.name)));
        }
        Ok(self.group.get().expect("the cluster is built"))
    }
}

impl PeerGetter for Member {
    fn name(&self) -> &str {
        &self.name
    }

    fn get<'a>(
        &'a self,
        _group: &'a str,
        key: &'a [u8],
    ) -> BoxFuture<'a, Result<Found, LoadError>> {
        Box::pin(async move {
            let group = self.group()?;
            group.lookup_local(key).await.map_err(|e| match e {
                alo_group::Error::NotFound => LoadError::NotFound,
                alo_group::Error::Timeout => LoadError::Timeout,
                other => LoadError::failed(other),
            })
        })
    }

    fn set<'a>(
        &'a self,
        _group: &'a str,
        key: &'a [u8],
        value: Bytes,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), LoadError>> {
        Box::pin(async move {
            self.group()?
                .set_local(key, value, ttl)
                .map_err(LoadError::failed)
        })
    }

    fn remove<'a>(
        &'a self,
        _group: &'a str,
        keys: &'a [Bytes],
    ) -> BoxFuture<'a, Result<(), LoadError>> {
        Box::pin(async move {
            self.group()?.remove_local(keys);
            Ok(())
        })
    }

    fn purge<'a>(&'a self, _group: &'a str) -> BoxFuture<'a, Result<(), LoadError>> {
        Box::pin(async move {
            self.group()?.purge_local();
            Ok(())
        })
    }
}

/// One member's picker: a key belongs to member `owner(key)`.
struct Picker {
    me: usize,
    members: Arc<Vec<Arc<Member>>>,
}

/// The member that owns `key`: its last byte modulo the cluster's size.
pub(crate) fn owner(key: &[u8], members: usize) -> usize {
    usize::from(*key.last().expect("non-empty")) % members
}

impl PeerPicker for Picker {
    fn pick_peer(&self, key: &[u8]) -> Option<Arc<dyn PeerGetter>> {
        let owner = owner(key, self.members.len());
        let member = &self.members[owner];
        if owner == self.me || member.down.load(Ordering::SeqCst) {
            return None;
        }
        Some(Arc::clone(member) as Arc<dyn PeerGetter>)
    }

    fn pick_owner(&self, key: &[u8]) -> Option<Arc<dyn PeerGetter>> {
        let owner = owner(key, self.members.len());
        (owner != self.me).then(|| Arc::clone(&self.members[owner]) as Arc<dyn PeerGetter>)
    }

    fn other_members(&self) -> Vec<Arc<dyn PeerGetter>> {
        let others = self
            .members
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != self.me);
        others
            .map(|(_, m)| Arc::clone(m) as Arc<dyn PeerGetter>)
            .collect()
    }
}

/// `n` groups over one origin, each the others' peer.
pub(crate) struct Cluster {
    pub(crate) members: Arc<Vec<Arc<Member>>>,
    pub(crate) origin: Arc<Origin>,
}

impl Cluster {
    /// A cluster whose groups are built by `build` from a builder with the origin and picker
    /// set (seeded so that every peer value is kept as a hot copy when `hot_always`).
    pub(crate) fn new(
        n: usize,
        build: impl Fn(alo_group::GroupBuilder) -> alo_group::GroupBuilder,
    ) -> Self {
        let origin = Arc::new(Origin::default());
        let members: Arc<Vec<Arc<Member>>> = Arc::new(
            (0..n)
                .map(|i| {
                    Arc::new(Member {
                        name: format!("node{i}"),
                        group: OnceLock::new(),
                        down: AtomicBool::new(false),
                    })
                })
                .collect(),
        );
        for (i, member) in members.iter().enumerate() {
            let picker = Picker {
                me: i,
                members: Arc::clone(&members),
            };
            let builder = Group::builder("g", Arc::clone(&origin))
                .max_bytes(1 << 20)
                .picker(Arc::new(picker));
            let group = build(builder).build().expect("valid group");
            assert!(member.group.set(group).is_ok());
        }
        Cluster { members, origin }
    }

    pub(crate) fn node(&self, i: usize) -> &Group {
        self.members[i].group.get().expect("built")
    }
}
