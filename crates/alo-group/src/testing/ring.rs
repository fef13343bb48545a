//! A cluster on a consistent-hash ring whose members come and go, in one process: for tests and
//! simulations of membership changes at any scale. Its pickers follow the rules `alo-http`'s
//! `HttpPool` follows: a down owner's keys go to the next member of their preference list that
//! is up; within the peek window after a change, an owner that misses a key peeks at the key's
//! successor, which held it before; a leaving node's heirs are the owners on the ring without
//! it.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

use alo_hashring::HashRing;

use super::direct::{Direct, Reach};
use crate::freshness::now;
use crate::{Error, Group, GroupBuilder, LoadError, Peer, PeerPicker};

/// How a node's group is built, again at each restart.
type Build = dyn Fn(usize) -> GroupBuilder + Send + Sync;

/// `n` nodes `node0` to `node{n-1}` with one group each, placed on a consistent-hash ring:
/// [`leave`](RingCluster::leave) and [`join`](RingCluster::join) change the members,
/// [`restart`](RingCluster::restart) gives a node an empty group (a process that starts again),
/// [`set_down`](RingCluster::set_down) makes it answer nothing. The groups reach each other
/// through direct calls.
///
/// ```
/// use alo_group::testing::RingCluster;
/// use alo_group::{Group, getter_fn};
/// use bytes::Bytes;
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), alo_group::Error> {
/// let getter = getter_fn(|key: Bytes| async move { Ok(key) });
/// let ring = RingCluster::new(5, Duration::from_secs(60), move |_| Group::builder("g", getter.clone()))?;
/// let owner = ring.owner(b"k").expect("members");
/// ring.set_down(owner, true);
/// // The owner's successor loads it, once, whichever node is asked.
/// for i in (0..5).filter(|&i| i != owner) {
///     assert_eq!(ring.group(i).get("k").await?, "k");
/// }
/// # Ok(())
/// # }
/// ```
pub struct RingCluster {
    shared: Arc<Shared>,
}

/// What the cluster and every node's picker share.
struct Shared {
    nodes: Vec<RingNode>,
    /// Each node's index, by name.
    index: HashMap<String, usize>,
    members: RwLock<Arc<Members>>,
    peek_window: Duration,
    build: Box<Build>,
}

/// One node: its group (replaced when it restarts) and whether it answers.
struct RingNode {
    name: String,
    group: RwLock<Option<Group>>,
    down: AtomicBool,
}

/// The members now, and when they last changed.
struct Members {
    ring: HashRing<String>,
    changed: Instant,
}

impl RingCluster {
    /// A cluster of `n` members (at least one), each with the group `build(node)` makes (the
    /// node's picker set on it); a new owner peeks at previous owners for `peek_window` after
    /// each change.
    ///
    /// # Errors
    /// What [`GroupBuilder::build`] says.
    pub fn new(
        n: usize,
        peek_window: Duration,
        build: impl Fn(usize) -> GroupBuilder + Send + Sync + 'static,
    ) -> Result<Self, Error> {
        let n = n.max(1);
        let nodes = (0..n)
            .map(|i| RingNode {
                name: format!("node{i}"),
                group: RwLock::new(None),
                down: AtomicBool::new(false),
            })
            .collect::<Vec<_>>();
        let mut ring = HashRing::new();
        ring.extend(nodes.iter().map(|n| n.name.clone()));
        let index = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.clone(), i))
            .collect();
        let shared = Arc::new(Shared {
            nodes,
            index,
            members: RwLock::new(Arc::new(Members {
                ring,
                changed: now(),
            })),
            peek_window,
            build: Box::new(build),
        });
        let cluster = RingCluster { shared };
        for i in 0..n {
            cluster.restart(i)?;
        }
        Ok(cluster)
    }

    /// Node `i`'s group now.
    ///
    /// # Panics
    /// When there is no node `i`.
    pub fn group(&self, i: usize) -> Group {
        self.shared.nodes[i]
            .group
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .expect("every node has a group")
    }

    /// The nodes, members or not.
    pub fn len(&self) -> usize {
        self.shared.nodes.len()
    }

    /// Whether there are no nodes (never: a cluster has at least one).
    pub fn is_empty(&self) -> bool {
        self.shared.nodes.is_empty()
    }

    /// The node that owns `key` among the members; `None` when there are none.
    pub fn owner(&self, key: &[u8]) -> Option<usize> {
        let members = self.shared.current();
        members
            .ring
            .node_for(key)
            .map(|name| self.shared.index(name))
    }

    /// The members, by node.
    pub fn members(&self) -> Vec<usize> {
        let members = self.shared.current();
        members
            .ring
            .nodes()
            .map(|name| self.shared.index(name))
            .collect()
    }

    /// Takes node `i` down (`true`) or brings it back: while down it answers nothing, and the
    /// others send its keys to their successors.
    pub fn set_down(&self, i: usize, down: bool) {
        self.shared.nodes[i].down.store(down, Ordering::SeqCst);
    }

    /// Node `i` leaves the members (its group goes on serving its own callers).
    pub fn leave(&self, i: usize) {
        let name = &self.shared.nodes[i].name;
        self.shared.change(|ring| {
            ring.remove(name.as_bytes());
        });
    }

    /// Node `i` joins the members.
    pub fn join(&self, i: usize) {
        let name = self.shared.nodes[i].name.clone();
        self.shared.change(|ring| {
            ring.add(name);
        });
    }

    /// Node `i` starts again: a new, empty group (its old one is dropped), up.
    ///
    /// # Errors
    /// What [`GroupBuilder::build`] says; the node keeps its old group then.
    pub fn restart(&self, i: usize) -> Result<(), Error> {
        let picker = Arc::new(RingPicker {
            me: i,
            shared: Arc::downgrade(&self.shared),
        });
        let group = (self.shared.build)(i).picker(picker).build()?;
        let node = &self.shared.nodes[i];
        *node.group.write().unwrap_or_else(PoisonError::into_inner) = Some(group);
        node.down.store(false, Ordering::SeqCst);
        Ok(())
    }
}

impl Shared {
    fn current(&self) -> Arc<Members> {
        Arc::clone(&self.members.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Applies `change` to the ring, now.
    fn change(&self, change: impl FnOnce(&mut HashRing<String>)) {
        let mut members = self.members.write().unwrap_or_else(PoisonError::into_inner);
        let mut ring = members.ring.clone();
        change(&mut ring);
        *members = Arc::new(Members {
            ring,
            changed: now(),
        });
    }

    fn index(&self, name: &str) -> usize {
        self.index[name]
    }

    fn is_down(&self, i: usize) -> bool {
        self.nodes[i].down.load(Ordering::SeqCst)
    }
}

impl fmt::Debug for RingCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingCluster")
            .field("nodes", &self.len())
            .field("members", &self.members().len())
            .finish_non_exhaustive()
    }
}

/// One node's picker: the ring's rules, from node `me`.
struct RingPicker {
    me: usize,
    shared: Weak<Shared>,
}

impl RingPicker {
    fn peer(shared: &Arc<Shared>, i: usize) -> Arc<dyn Peer> {
        Arc::new(Direct(RingPeer {
            shared: Arc::clone(shared),
            i,
        }))
    }
}

impl PeerPicker for RingPicker {
    fn pick_peer(&self, key: &[u8]) -> Option<Arc<dyn Peer>> {
        let shared = self.shared.upgrade()?;
        let members = shared.current();
        for name in members.ring.preference(key) {
            let i = shared.index(name);
            if i == self.me {
                return None;
            }
            if !shared.is_down(i) {
                return Some(RingPicker::peer(&shared, i));
            }
        }
        None
    }

    fn pick_owner(&self, key: &[u8]) -> Option<Arc<dyn Peer>> {
        let shared = self.shared.upgrade()?;
        let owner = shared.index(shared.current().ring.node_for(key)?);
        (owner != self.me).then(|| RingPicker::peer(&shared, owner))
    }

    fn other_members(&self) -> Vec<Arc<dyn Peer>> {
        let Some(shared) = self.shared.upgrade() else {
            return Vec::new();
        };
        let members = shared.current();
        members
            .ring
            .nodes()
            .map(|name| shared.index(name))
            .filter(|&i| i != self.me)
            .map(|i| RingPicker::peer(&shared, i))
            .collect()
    }

    fn previous_owner(&self, key: &[u8]) -> Option<Arc<dyn Peer>> {
        let shared = self.shared.upgrade()?;
        let members = shared.current();
        if now().saturating_duration_since(members.changed) > shared.peek_window {
            return None;
        }
        let [owner, successor] = members.ring.nodes_for(key, 2)[..] else {
            return None;
        };
        let (owner, successor) = (shared.index(owner), shared.index(successor));
        (owner == self.me && !shared.is_down(successor))
            .then(|| RingPicker::peer(&shared, successor))
    }

    fn heir(&self, key: &[u8]) -> Option<Arc<dyn Peer>> {
        let shared = self.shared.upgrade()?;
        let members = shared.current();
        let heir = (members.ring.preference(key))
            .map(|name| shared.index(name))
            .find(|&i| i != self.me && !shared.is_down(i))?;
        Some(RingPicker::peer(&shared, heir))
    }
}

/// Node `i` as a peer: calls its group's owner side directly, unless it is down.
struct RingPeer {
    shared: Arc<Shared>,
    i: usize,
}

impl Reach for RingPeer {
    fn name(&self) -> &str {
        &self.shared.nodes[self.i].name
    }

    /// The node's group (a ring cluster's nodes have one), as long as the node is up.
    fn group(&self, _group: &str) -> Result<Group, LoadError> {
        let node = &self.shared.nodes[self.i];
        if node.down.load(Ordering::SeqCst) {
            return Err(LoadError::unreachable(format_args!(
                "{} is down",
                node.name
            )));
        }
        let group = node.group.read().unwrap_or_else(PoisonError::into_inner);
        group
            .clone()
            .ok_or_else(|| LoadError::unreachable(format_args!("{} has no group", node.name)))
    }
}
