//! The ring: sorted virtual-node points and a radix index over them.

use std::fmt;

use crate::{RingHasher, SplitHasher, Xxh3};

/// Virtual nodes per unit of weight unless the ring is built with another count; chosen from the
/// balance measurements in the crate README.
pub const DEFAULT_REPLICAS: usize = 500;

/// Most virtual nodes per unit of weight: more buys no measurable balance and costs memory.
pub const MAX_REPLICAS: usize = 4096;

/// A consistent-hash ring: maps each key to one of its nodes so that adding or removing a node
/// moves only the keys that node gains or loses.
///
/// Each node is placed at `replicas × weight` points; point `i` of a node is
/// `hash(node bytes ‖ i as 4 little-endian bytes)` unless the hasher places points by a function
/// of their own ([`RingHasher::hash_point`], [`with_hashers`](Self::with_hashers)). A key belongs
/// to the node of the first point at or after `hash(key)`, wrapping past the top. Two nodes on one
/// point are ordered by their bytes, so the order in which nodes were added never changes the
/// mapping.
///
/// A node is identified by its bytes (`N: AsRef<[u8]>`, e.g. a `String` URL): two nodes with the
/// same bytes would share their points, so give every node distinct bytes.
#[derive(Clone)]
pub struct HashRing<N, H = Xxh3> {
    hasher: H,
    replicas: usize,
    /// The members in the order they were added.
    nodes: Vec<Member<N>>,
    /// Every virtual node's position, ascending. Kept apart from `owners` so the search within a
    /// bucket touches only these.
    points: Vec<u64>,
    /// `owners[i]` is the index in `nodes` of the member at `points[i]`.
    owners: Vec<u32>,
    /// A radix index over `points`: `index[j]` is the first point at or above `j << shift`, and
    /// the last entry is `points.len()`. With between one and two buckets per point, a lookup
    /// reads two entries here and searches the slice between them, one or two points when the
    /// hash spreads them evenly, instead of the whole ring.
    index: Vec<u32>,
    /// `64 - log2(index.len() - 1)`: a hash's top bits pick its bucket.
    shift: u32,
}

/// What [`HashRing::add`], [`add_weighted`](HashRing::add_weighted) or
/// [`remove`](HashRing::remove) did to the membership.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Change {
    /// The node was not a member and now is.
    Added,
    /// The node was a member and now has another weight, so it gained or lost keys.
    Reweighted,
    /// The node was a member and no longer is (removed, or given weight 0).
    Removed,
    /// Nothing changed: the node was already a member of that weight, or was not a member and
    /// was removed or given weight 0.
    Unchanged,
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

impl<N, K, P> HashRing<N, SplitHasher<K, P>>
where
    N: AsRef<[u8]>,
    K: Fn(&[u8]) -> u64,
    P: Fn(&[u8], u32) -> u64,
{
    /// An empty ring that places keys with `key(bytes)` and point `i` of each node with
    /// `point(node bytes, i)`; `replicas` is clamped to `1..=MAX_REPLICAS`.
    ///
    /// This expresses placements that are not the default's, such as groupcache's, whose point
    /// `i` of a node is `crc32(i in decimal ‖ node)` and a key's position `crc32(key)`:
    /// ```
    /// use alo_hashring::HashRing;
    ///
    /// // Any CRC-32 (IEEE) will do; this one is short.
    /// fn crc32(bytes: &[u8]) -> u32 {
    ///     let mut crc = !0u32;
    ///     for &b in bytes {
    ///         crc ^= u32::from(b);
    ///         for _ in 0..8 {
    ///             crc = (crc >> 1) ^ (0xedb8_8320 & (crc & 1).wrapping_neg());
    ///         }
    ///     }
    ///     !crc
    /// }
    ///
    /// // Shifted into the top bits: the order, so the owners, stay groupcache's, and the ring's
    /// // index keeps lookups O(1).
    /// let key = |bytes: &[u8]| u64::from(crc32(bytes)) << 32;
    /// let point = |node: &[u8], i: u32| {
    ///     let mut input = i.to_string().into_bytes();
    ///     input.extend_from_slice(node);
    ///     u64::from(crc32(&input)) << 32
    /// };
    /// let mut ring = HashRing::with_hashers(50, key, point);
    /// ring.extend(["http://10.0.0.1:8080", "http://10.0.0.2:8080", "http://10.0.0.3:8080"]);
    /// assert_eq!(ring.node_for("user:42"), Some(&"http://10.0.0.1:8080"));
    /// ```
    pub fn with_hashers(replicas: usize, key: K, point: P) -> Self {
        Self::with_hasher(replicas, SplitHasher::new(key, point))
    }
}

impl<N: AsRef<[u8]>, H: RingHasher> HashRing<N, H> {
    /// An empty ring that places keys and points with `hasher` (see [`RingHasher`]);
    /// `replicas` is clamped to `1..=MAX_REPLICAS`.
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

    /// Adds `node` with weight 1: [`Change::Added`] when it is new, [`Change::Reweighted`] when
    /// it was a member of another weight (now 1), [`Change::Unchanged`] when it was a member of
    /// weight 1. O(P) for P points on the ring, plus sorting the new node's points.
    pub fn add(&mut self, node: N) -> Change {
        self.add_weighted(node, 1)
    }

    /// Adds `node` with `weight × replicas` virtual nodes, so that it owns about `weight` times
    /// the keys of a node of weight 1; adding a member again changes its weight. Weight 0 owns
    /// nothing: it removes the node.
    ///
    /// Returns [`Change::Added`] for a new node, [`Change::Reweighted`] for a member whose weight
    /// changed, [`Change::Removed`] for a member given weight 0, and [`Change::Unchanged`] for a
    /// member given its own weight or a non-member given weight 0.
    pub fn add_weighted(&mut self, node: N, weight: u8) -> Change {
        let change = self.place(node, weight);
        if change != Change::Unchanged {
            self.reorder();
        }
        change
    }

    /// Adds a node without restoring the order of the points; see `add_weighted`.
    fn place(&mut self, node: N, weight: u8) -> Change {
        let existing = self.position(node.as_ref());
        if let Some(i) = existing {
            if self.nodes[i].weight == weight {
                return Change::Unchanged;
            }
            self.remove_at(i);
        }
        match (existing.is_some(), weight) {
            (true, 0) => return Change::Removed,
            (false, 0) => return Change::Unchanged,
            _ => {}
        }
        let owner = self.nodes.len() as u32;
        for i in 0..self.replicas as u32 * u32::from(weight) {
            self.points.push(self.hasher.hash_point(node.as_ref(), i));
            self.owners.push(owner);
        }
        self.nodes.push(Member { node, weight });
        if existing.is_some() {
            Change::Reweighted
        } else {
            Change::Added
        }
    }

    /// Removes the node whose bytes are `node`: [`Change::Removed`] when it was a member,
    /// [`Change::Unchanged`] when it was not. O(P).
    pub fn remove(&mut self, node: &[u8]) -> Change {
        match self.position(node) {
            Some(i) => {
                self.remove_at(i);
                self.reindex();
                Change::Removed
            }
            None => Change::Unchanged,
        }
    }

    /// The node that owns `key`, or `None` when the ring is empty.
    ///
    /// One hash of the key, then O(1) expected: the radix index names the one or two points
    /// that can follow the key's position, and a search of those finds the first. When the
    /// points crowd into few buckets (a hash that does not spread over the whole `u64` range,
    /// see [`RingHasher`]) the search is a binary search of the crowded bucket, O(log P) at
    /// worst.
    pub fn node_for<K: AsRef<[u8]> + ?Sized>(&self, key: &K) -> Option<&N> {
        let i = self.first_point(key.as_ref())?;
        Some(&self.nodes[self.owners[i] as usize].node)
    }

    /// Up to `n` distinct nodes for `key`, walking clockwise from its position: the owner first,
    /// then the nodes a replicated or hedged read would try next. Returns `min(n, len())` nodes:
    /// the first `n` of [`preference`](Self::preference).
    pub fn nodes_for<K: AsRef<[u8]> + ?Sized>(&self, key: &K, n: usize) -> Vec<&N> {
        self.preference(key).take(n).collect()
    }

    /// Every node, each once, in the order a walk clockwise from `key`'s position meets them:
    /// the owner first, then the node that would own the key without it, and so on. Lazy: the
    /// walk goes only as far as the nodes taken, so finding the first member of the list that
    /// is up (a failover) costs about `P / len` points per node passed over, whatever the size
    /// of the ring; the whole list costs about `P / len × len ln len` points.
    pub fn preference<K: AsRef<[u8]> + ?Sized>(&self, key: &K) -> Preference<'_, N, H> {
        let start = self.first_point(key.as_ref()).unwrap_or(0);
        Preference {
            ring: self,
            start,
            walked: 0,
            seen: 0,
            seen_many: match self.nodes.len() {
                0..=64 => Vec::new(),
                n => vec![0; n.div_ceil(64)],
            },
            left: self.nodes.len(),
        }
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

/// The nodes of a key's preference list, from [`HashRing::preference`].
#[derive(Clone, Debug)]
pub struct Preference<'a, N, H = Xxh3> {
    ring: &'a HashRing<N, H>,
    /// The key's first point.
    start: usize,
    /// Points walked past `start`.
    walked: usize,
    /// One bit per member, met already: here on a ring of up to 64 members, so that their walks
    /// allocate nothing...
    seen: u64,
    /// ...and here on larger rings (empty on the others).
    seen_many: Vec<u64>,
    /// Members not met yet.
    left: usize,
}

impl<'a, N, H> Iterator for Preference<'a, N, H> {
    type Item = &'a N;

    fn next(&mut self) -> Option<&'a N> {
        let owners = &self.ring.owners;
        while self.left > 0 && self.walked < owners.len() {
            let mut i = self.start + self.walked;
            if i >= owners.len() {
                i -= owners.len();
            }
            self.walked += 1;
            let owner = owners[i] as usize;
            let bit = 1u64 << (owner % 64);
            let word = match self.seen_many.get_mut(owner / 64) {
                Some(word) => word,
                None => &mut self.seen,
            };
            if *word & bit == 0 {
                *word |= bit;
                self.left -= 1;
                return Some(&self.ring.nodes[owner].node);
            }
        }
        None
    }

    /// Every member has at least one point, and the points of those not met yet lie ahead.
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<N, H> ExactSizeIterator for Preference<'_, N, H> {}

impl<N, H> std::iter::FusedIterator for Preference<'_, N, H> {}

impl<N: fmt::Debug, H> fmt::Debug for HashRing<N, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HashRing")
            .field("replicas", &self.replicas)
            .field("nodes", &self.nodes)
            .field("points", &self.points.len())
            .finish_non_exhaustive()
    }
}
