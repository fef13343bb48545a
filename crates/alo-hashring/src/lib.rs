//! A consistent-hash ring with virtual nodes that every process computes identically.
//!
//! Use it to decide which of several nodes owns a key, so that every node of a cluster, on any
//! machine and in any process, names the same owner for the same key and the same members; and
//! so that when a node joins or leaves, only the keys it gains or loses move. The crate stands
//! alone: no async runtime, no other alo crate, one dependency (`xxhash-rust`).
//!
//! # Example
//! ```
//! use alo_hashring::HashRing;
//!
//! let mut ring: HashRing<String> = ["http://10.0.0.1:8001", "http://10.0.0.2:8001"]
//!     .into_iter()
//!     .map(String::from)
//!     .collect();
//! let owner = ring.node_for("user:42").expect("ring has nodes").clone();
//!
//! // A third node takes about a third of the keys, and only from the other two.
//! ring.add("http://10.0.0.3:8001".to_string());
//! let now = ring.node_for("user:42").expect("ring has nodes");
//! assert!(*now == owner || now == "http://10.0.0.3:8001");
//!
//! // The owner and then the next distinct nodes clockwise, e.g. for replicas.
//! let two = ring.nodes_for("user:42", 2);
//! assert_eq!(two.len(), 2);
//! assert_eq!(two[0], now);
//! ```
//!
//! # Placement, exactly
//! The ring is the `u64` range. A node of weight `w` (1 unless added with
//! [`HashRing::add_weighted`]) is placed at the `replicas × w` points
//! `xxh3_64(node bytes ‖ i as 4 little-endian bytes, seed = SEED)` for `i` in `0..replicas × w`.
//! A key belongs to the node of the first point at or after `xxh3_64(key bytes, seed = SEED)`,
//! wrapping past `u64::MAX` to the first point. Points that coincide are ordered by their
//! nodes' bytes. Nothing else enters: not the order nodes were added, not the process, not the
//! platform. A program in another language can reproduce the mapping from this paragraph; the
//! golden test pins it against an independent implementation.
//!
//! Another placement can be expressed through the hasher: [`HashRing::with_hasher`] takes any
//! [`RingHasher`] (a closure `Fn(&[u8]) -> u64` hashes keys and, over the node's bytes followed
//! by `i`, points), and [`HashRing::with_hashers`] takes one function for keys and another for
//! points, `point(node bytes, i)`, which is what another implementation's placement needs: its
//! docs show groupcache's, which the tests check against a model of groupcache's
//! `consistenthash` for arbitrary keys.
//!
//! [`add`](HashRing::add), [`add_weighted`](HashRing::add_weighted) and
//! [`remove`](HashRing::remove) say what they did as a [`Change`]: added, reweighted, removed,
//! or unchanged.
//!
//! # Costs
//! With `P` points in all (`replicas × total weight`, 500 per node of weight 1 by default):
//! - [`node_for`](HashRing::node_for): one xxh3 of the key, then O(1) expected: a radix index of
//!   one to two buckets per point, picked by the hash's top bits, narrows the search to the one
//!   or two points of the key's bucket. It is not a binary search of the ring, except when a
//!   hash crowds the points into few buckets (one that does not spread over the whole `u64`
//!   range), where it degrades to one, O(log P).
//! - [`preference`](HashRing::preference)`(key)`: every node once, in ring order from the key,
//!   lazily: each node taken costs about `P / len` points walked when nodes are of equal
//!   weight, a little more as the list grows (about `P / len × len ln len` for all of it).
//!   [`nodes_for`](HashRing::nodes_for)`(key, n)` collects the first `n`.
//! - [`add`](HashRing::add): O(P) plus sorting the new node's points; [`extend`](Extend::extend)
//!   sorts once for many nodes. [`remove`](HashRing::remove): O(P).
//! - Memory: 8 bytes of position and 4 of owner per point, and 4 to 8 bytes of index per point:
//!   about 6 to 10 KiB per node at the default 500 replicas.
//!
//! A ring has no interior mutability: share it behind an `Arc` and swap in a new one to change
//! membership (as `alo-http` does), or put it behind a lock.

mod hasher;
mod ring;

pub use hasher::{RingHasher, SEED, SplitHasher, Xxh3};
pub use ring::{Change, DEFAULT_REPLICAS, HashRing, MAX_REPLICAS, Preference};

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
