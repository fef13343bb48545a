//! The ring: sorted virtual-node points and a binary search.

use std::fmt;

use crate::{RingHasher, Xxh3};

/// Virtual nodes per unit of weight unless the ring is built with another count; chosen from the
/// balance measurements in the crate README.
pub const DEFAULT_REPLICAS: usize = 500;

/// Most virtual nodes per unit of weight: more buys no measurable balance and costs memory.
pub const MAX_REPLICAS: usize = 4096;

/// A consistent-hash ring: maps each key to one of its nodes so that adding or removing a node
/// moves only the keys that node gains or loses.
///
/// Each node is placed at `replicas × weight` points; point `i` of a node is
/// `hash(node bytes ‖ i as 4 little-endian bytes)`. A key belongs to the node of the first point
/// at or after `hash(key)`, wrapping past the top. Two nodes on one point are ordered by their
/// bytes, so the order in which nodes were added never changes the mapping.
///
/// A node is identified by its bytes (`N: AsRef<[u8]>`, e.g. a `String` URL): two nodes with the
/// same bytes would share their points, so give every node distinct bytes.
#[derive(Clone)]
pub struct HashRing<N, H = Xxh3> {
    hasher: H,
    replicas: usize,
    /// The members in the order they were added.
    nodes: Vec<Member<N>>,
    /// Every virtual node's position, ascending. Kept apart from `owners` so the binary search
    /// touches only these.
    points: Vec<u64>,
    /// `owners[i]` is the index in `nodes` of the member at `points[i]`.
    owners: Vec<u32>,
    /// A radix index over `points`: `index[j]` is the first point at or above `j << shift`, and
    /// the last entry is `points.len()`. With about one point per bucket, a lookup reads one
    /// entry here and searches a slice of one or two points instead of the whole ring.
    index: Vec<u32>,
    /// `64 - log2(index.len() - 1)`: a hash's top bits pick its bucket.
    shift: u32,
}

#[derive(Clone, Debug)]
struct Member<N> {
    node: N,
    weight: u8,
}

impl<N: AsRef<[u8]>> HashRing<N> {
    /// An empty ring with [`DEFAULT_REPLICAS`] virtual nodes per node and the [`Xxh3`] hash.
    pub fn new() -> Self {
        Self::with_replicas(DEFAULT_REPLICAS)
    }

    /// An empty ring with `replicas` virtual nodes per unit of weight, clamped to
    /// `1..=MAX_REPLICAS`.
    pub fn with_replicas(replicas: usize) -> Self {
        Self::with_hasher(replicas, Xxh3)
    }
}

impl<N: AsRef<[u8]>> Default for HashRing<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<N: AsRef<[u8]>, H: RingHasher> HashRing<N, H> {
    /// An empty ring that places nodes and keys with `hasher`; `replicas` is clamped to
    /// `1..=MAX_REPLICAS`.
    pub fn with_hasher(replicas: usize, hasher: H) -> Self {
        HashRing {
            hasher,
            replicas: replicas.clamp(1, MAX_REPLICAS),
            nodes: Vec::new(),
            points: Vec::new(),
            owners: Vec::new(),
            index: Vec::new(),
            shift: 63,
        }
    }

    /// Adds `node` with weight 1. Returns whether it was new; adding a member again sets its
    /// weight back to 1. O(P) for P points on the ring, plus sorting the new node's points.
    pub fn add(&mut self, node: N) -> bool {
        self.add_weighted(node, 1)
    }

    /// Adds `node` with `weight × replicas` virtual nodes, so that it owns about `weight` times
    /// the keys of a node of weight 1. Returns whether it was new; adding a member again changes
    /// its weight. Weight 0 owns nothing: it removes the node and returns `false`.
    pub fn add_weighted(&mut self, node: N, weight: u8) -> bool {
        let added = self.place(node, weight);
        self.reorder();
        added
    }

    /// Adds a node without restoring the order of the points; see `add_weighted`.
    fn place(&mut self, node: N, weight: u8) -> bool {
        let existing = self.position(node.as_ref());
        if let Some(i) = existing {
            if self.nodes[i].weight == weight {
                return false;
            }
            self.remove_at(i);
        }
        if weight == 0 {
            return false;
        }
        let owner = self.nodes.len() as u32;
        let mut input = node.as_ref().to_vec();
        let len = input.len();
        for i in 0..self.replicas as u32 * u32::from(weight) {
            input.truncate(len);
            input.extend_from_slice(&i.to_le_bytes());
            self.points.push(self.hasher.hash(&input));
            self.owners.push(owner);
        }
        self.nodes.push(Member { node, weight });
        existing.is_none()
    }

    /// Removes the node whose bytes are `node`; returns whether it was a member. O(P).
    pub fn remove(&mut self, node: &[u8]) -> bool {
        match self.position(node) {
            Some(i) => {
                self.remove_at(i);
                self.reindex();
                true
            }
            None => false,
        }
    }

    /// The node that owns `key`, or `None` when the ring is empty. O(log P), one hash of the key.
    pub fn node_for<K: AsRef<[u8]> + ?Sized>(&self, key: &K) -> Option<&N> {
        let i = self.first_point(key.as_ref())?;
        Some(&self.nodes[self.owners[i] as usize].node)
    }

    /// Up to `n` distinct nodes for `key`, walking clockwise from its position: the owner first,
    /// then the nodes a replicated or hedged read would try next. Returns `min(n, len())` nodes.
    pub fn nodes_for<K: AsRef<[u8]> + ?Sized>(&self, key: &K, n: usize) -> Vec<&N> {
        let want = n.min(self.nodes.len());
        let mut found: Vec<u32> = Vec::with_capacity(want);
        if let Some(start) = self.first_point(key.as_ref()) {
            let clockwise = self.owners[start..].iter().chain(&self.owners[..start]);
            for &owner in clockwise {
                if found.len() == want {
                    break;
                }
                if !found.contains(&owner) {
                    found.push(owner);
                }
            }
        }
        found
            .into_iter()
            .map(|i| &self.nodes[i as usize].node)
            .collect()
    }

    /// Whether `node` is a member. O(nodes).
    pub fn contains(&self, node: &[u8]) -> bool {
        self.position(node).is_some()
    }

    /// The index of the first point at or after the key's hash, wrapping to 0.
    fn first_point(&self, key: &[u8]) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let h = self.hasher.hash(key);
        let bucket = (h >> self.shift) as usize;
        let (lo, hi) = (self.index[bucket] as usize, self.index[bucket + 1] as usize);
        let i = lo + self.points[lo..hi].partition_point(|&p| p < h);
        Some(if i == self.points.len() { 0 } else { i })
    }

    fn position(&self, node: &[u8]) -> Option<usize> {
        self.nodes.iter().position(|m| m.node.as_ref() == node)
    }

    fn remove_at(&mut self, index: usize) {
        self.nodes.remove(index);
        let index = index as u32;
        let mut kept = 0;
        for i in 0..self.points.len() {
            let owner = self.owners[i];
            if owner != index {
                self.points[kept] = self.points[i];
                // Members after the removed one moved down by one place.
                self.owners[kept] = owner - u32::from(owner > index);
                kept += 1;
            }
        }
        self.points.truncate(kept);
        self.owners.truncate(kept);
    }

    /// Sorts the points by position, and points at one position by their node's bytes, so that
    /// the result depends only on the members, never on the order they came in; then rebuilds
    /// the index. The sort is stable and finds the already sorted run, so adding one node costs
    /// O(P) plus sorting that node's points.
    fn reorder(&mut self) {
        let nodes = &self.nodes;
        let mut pairs: Vec<(u64, u32)> = self
            .points
            .iter()
            .copied()
            .zip(self.owners.iter().copied())
            .collect();
        pairs.sort_by(|a, b| {
            a.0.cmp(&b.0).then_with(|| {
                let (x, y) = (&nodes[a.1 as usize].node, &nodes[b.1 as usize].node);
                x.as_ref().cmp(y.as_ref())
            })
        });
        for (i, (point, owner)) in pairs.into_iter().enumerate() {
            self.points[i] = point;
            self.owners[i] = owner;
        }
        self.reindex();
    }

    fn reindex(&mut self) {
        // About one bucket per point, at least two so that the shift stays below 64.
        let bits = self
            .points
            .len()
            .next_power_of_two()
            .trailing_zeros()
            .max(1);
        self.shift = 64 - bits;
        let buckets = 1usize << bits;
        self.index.clear();
        self.index.reserve(buckets + 1);
        let mut i = 0;
        for bucket in 0..buckets as u64 {
            let floor = bucket << self.shift;
            while i < self.points.len() && self.points[i] < floor {
                i += 1;
            }
            self.index.push(i as u32);
        }
        self.index.push(self.points.len() as u32);
    }
}

impl<N: AsRef<[u8]>, H: RingHasher> Extend<N> for HashRing<N, H> {
    /// Adds every node with weight 1, sorting the ring once at the end.
    fn extend<I: IntoIterator<Item = N>>(&mut self, nodes: I) {
        for node in nodes {
            self.place(node, 1);
        }
        self.reorder();
    }
}

impl<N: AsRef<[u8]>> FromIterator<N> for HashRing<N> {
    /// A ring of these nodes, each of weight 1, with the default replicas and hash.
    fn from_iter<I: IntoIterator<Item = N>>(nodes: I) -> Self {
        let mut ring = HashRing::new();
        ring.extend(nodes);
        ring
    }
}

impl<N, H> HashRing<N, H> {
    /// How many nodes are members.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the ring has no nodes (every lookup answers `None`).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The members, in the order they were added.
    pub fn nodes(&self) -> impl ExactSizeIterator<Item = &N> {
        self.nodes.iter().map(|m| &m.node)
    }

    /// Virtual nodes per unit of weight.
    pub fn replicas(&self) -> usize {
        self.replicas
    }
}

impl<N: fmt::Debug, H> fmt::Debug for HashRing<N, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HashRing")
            .field("replicas", &self.replicas)
            .field("nodes", &self.nodes)
            .field("points", &self.points.len())
            .finish_non_exhaustive()
    }
}
