//! An in-process cluster for tests, behind the cargo feature `testing`: `n` nodes whose groups
//! are each other's peers through direct calls, with no network.
//!
//! ```toml
//! [dev-dependencies]
//! alo-group = { version = "0.1", features = ["testing"] }
//! ```
//!
//! Each node is a [`Groups`] registry. A key belongs to the node its last byte names, modulo the
//! number of nodes ([`Cluster::owner`]); a node asks the owner's group of the same name through
//! its owner's side, [`Group::local`], for gets and writes alike, as a real transport would. A node can be
//! taken down ([`Cluster::set_down`]): the others then get [`LoadError::Unreachable`] from it and
//! load its keys themselves.
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use alo_group::testing::Cluster;
//! use alo_group::{Group, getter_fn};
//! use bytes::Bytes;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), alo_group::Error> {
//! let calls = Arc::new(AtomicUsize::new(0));
//! let counted = Arc::clone(&calls);
//! let getter = getter_fn(move |key: Bytes| {
//!     counted.fetch_add(1, Ordering::SeqCst);
//!     async move { Ok(key) }
//! });
//! let cluster = Cluster::new(3);
//! let groups = cluster.add_group(|_node| Group::builder("echo", getter.clone()))?;
//! assert_eq!(cluster.owner(b"k1"), 1);
//! for group in &groups {
//!     assert_eq!(group.get("k1").await?, "k1"); // node 1 loads it; the others ask node 1
//! }
//! assert_eq!(calls.load(Ordering::SeqCst), 1);
//! # Ok(())
//! # }
//! ```

mod direct;
mod ring;

pub use ring::RingCluster;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use self::direct::{Direct, Reach};

use crate::{Error, Group, GroupBuilder, Groups, LoadError, Peer, PeerPicker};

/// Gets [`get_until_hot`] makes before it gives up: a peer's value is kept once its owner
/// reports the key asked often enough, which a few gets in a row do at the default hot rate,
/// or one time in ten from a peer that reports no rate (500 misses in a row: about once in
/// 10^23).
const HOT_TRIES: usize = 500;

/// `n` nodes in one process, each a [`Groups`] whose picker names the other nodes as peers; see
/// the [module docs](self).
///
/// Dropping the cluster cuts the nodes off from each other: groups still held load every key
/// themselves.
pub struct Cluster {
    nodes: Arc<Vec<Node>>,
}

/// One member as the others see it.
struct Node {
    name: String,
    groups: Groups,
    /// Whether the others may reach it: a down node answers nothing and is picked for nothing.
    down: AtomicBool,
}

impl Cluster {
    /// A cluster of `n` nodes (at least one), `node0` to `node{n-1}`, with no groups yet.
    pub fn new(n: usize) -> Self {
        // The pickers hold the nodes weakly: a node's groups hold its picker, and a strong
        // link back would keep every node alive for ever.
        let nodes = Arc::new_cyclic(|nodes: &Weak<Vec<Node>>| {
            (0..n.max(1))
                .map(|me| Node {
                    name: format!("node{me}"),
                    groups: Groups::with_picker(Arc::new(Picker {
                        me,
                        nodes: nodes.clone(),
                    })),
                    down: AtomicBool::new(false),
                })
                .collect()
        });
        Cluster { nodes }
    }

    /// Builds a group on every node from `build(node)`, with the node's picker set on it
    /// (replacing any the builder had), registers it, and returns the groups by node.
    ///
    /// ```
    /// # use alo_group::{Group, getter_fn, testing::Cluster};
    /// # use bytes::Bytes;
    /// # fn main() -> Result<(), alo_group::Error> {
    /// # let cluster = Cluster::new(2);
    /// # let getter = getter_fn(|key: Bytes| async move { Ok(key) });
    /// let groups = cluster.add_group(|_| Group::builder("g", getter.clone()).max_bytes(1 << 20))?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// What [`GroupBuilder::build`] or [`Groups::insert`] says; nothing is registered when a
    /// build fails, and the nodes before the first that refuses an insert keep their group.
    pub fn add_group(
        &self,
        mut build: impl FnMut(usize) -> GroupBuilder,
    ) -> Result<Vec<Group>, Error> {
        let groups = (0..self.nodes.len())
            .map(|i| build(i).picker(self.picker(i)).build())
            .collect::<Result<Vec<_>, _>>()?;
        for (node, group) in self.nodes.iter().zip(&groups) {
            node.groups.insert(group.clone())?;
        }
        Ok(groups)
    }

    /// Node `i`'s registry of groups; its picker is the node's.
    ///
    /// # Panics
    /// When there is no node `i`.
    pub fn node(&self, i: usize) -> &Groups {
        &self.nodes[i].groups
    }

    /// Node `i`'s picker, for a group built by hand and inserted into [`node(i)`](Cluster::node).
    ///
    /// # Panics
    /// When there is no node `i`.
    pub fn picker(&self, i: usize) -> Arc<dyn PeerPicker> {
        assert!(i < self.nodes.len(), "no node {i}");
        Arc::new(Picker {
            me: i,
            nodes: Arc::downgrade(&self.nodes),
        })
    }

    /// The node that owns `key`: its last byte modulo the number of nodes. With three nodes,
    /// `k0`, `k1` and `k2` belong to nodes 0, 1 and 2 (`'0'` is 48).
    pub fn owner(&self, key: &[u8]) -> usize {
        owner(key, self.nodes.len())
    }

    /// Takes node `i` down (`true`) or brings it back: while down, the others pick it for no
    /// read, and its answers to them (a write must still try the owner) are
    /// [`LoadError::Unreachable`]. Its own groups go on serving their callers.
    ///
    /// # Panics
    /// When there is no node `i`.
    pub fn set_down(&self, i: usize, down: bool) {
        self.nodes[i].down.store(down, Ordering::SeqCst);
    }
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let down: Vec<&str> = self
            .nodes
            .iter()
            .filter(|n| n.down.load(Ordering::SeqCst))
            .map(|n| n.name.as_str())
            .collect();
        f.debug_struct("Cluster")
            .field("nodes", &self.nodes.len())
            .field("down", &down)
            .finish()
    }
}

/// Gets `key` from `group` until its hot cache holds a copy (a peer's value is kept once its
/// owner reports the key asked often enough): `Ok(true)` then, `Ok(false)` if 500 gets kept
/// none. For a test of what happens to copies of a key on nodes that do not own it; give it a
/// group whose hot cache is empty.
///
/// # Errors
/// The first get that fails.
pub async fn get_until_hot(group: &Group, key: impl AsRef<[u8]>) -> Result<bool, Error> {
    for _ in 0..HOT_TRIES {
        group.get(key.as_ref()).await?;
        if group.stats().hot_cache.items > 0 {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The owner of `key` among `nodes`.
fn owner(key: &[u8], nodes: usize) -> usize {
    key.last().map_or(0, |&b| usize::from(b) % nodes)
}

/// One node's picker: the other nodes by the ownership rule, reached while the cluster lives.
struct Picker {
    me: usize,
    nodes: Weak<Vec<Node>>,
}

impl Picker {
    /// The node that owns `key`, if it is another one and the cluster still exists.
    fn other_owner(&self, key: &[u8]) -> Option<Arc<dyn Peer>> {
        let nodes = self.nodes.upgrade()?;
        let owner = owner(key, nodes.len());
        (owner != self.me).then(|| peer(nodes, owner))
    }
}

impl PeerPicker for Picker {
    fn pick_peer(&self, key: &[u8]) -> Option<Arc<dyn Peer>> {
        let nodes = self.nodes.upgrade()?;
        let owner = owner(key, nodes.len());
        // A down owner is skipped for reads, as a transport's health check would.
        if owner == self.me || nodes[owner].down.load(Ordering::SeqCst) {
            return None;
        }
        Some(peer(nodes, owner))
    }

    fn pick_owner(&self, key: &[u8]) -> Option<Arc<dyn Peer>> {
        self.other_owner(key)
    }

    fn other_members(&self) -> Vec<Arc<dyn Peer>> {
        let Some(nodes) = self.nodes.upgrade() else {
            return Vec::new();
        };
        (0..nodes.len())
            .filter(|&i| i != self.me)
            .map(|i| peer(Arc::clone(&nodes), i))
            .collect()
    }
}

/// Node `i` of `nodes` as a peer.
fn peer(nodes: Arc<Vec<Node>>, i: usize) -> Arc<dyn Peer> {
    Arc::new(Direct(InProcess { nodes, i }))
}

/// A node, as a peer: calls its groups directly.
struct InProcess {
    nodes: Arc<Vec<Node>>,
    i: usize,
}

impl Reach for InProcess {
    fn name(&self) -> &str {
        &self.nodes[self.i].name
    }

    /// The node's group `name`, as long as the node is up.
    fn group(&self, name: &str) -> Result<Group, LoadError> {
        let node = &self.nodes[self.i];
        if node.down.load(Ordering::SeqCst) {
            return Err(LoadError::unreachable(format_args!(
                "{} is down",
                node.name
            )));
        }
        node.groups
            .get(name)
            .ok_or_else(|| LoadError::failed(format_args!("{} has no group {name:?}", node.name)))
    }
}
