//! The read-through cache group of alo: a named cache of byte values that answers each get from
//! its local caches, else from the key's owner among its peers, else from the user's getter,
//! calling the getter once per key however many callers wait.
//!
//! This crate is the flow of groupcache without a transport: peers come in through the
//! [`PeerPicker`] and [`Peer`] traits (`alo-http` implements them over HTTP and a hash
//! ring), so a group can be tested, or embedded, with no network at all. Values are
//! [`bytes::Bytes`]: immutable and cheap to clone, so nothing a caller does can change a cached
//! value.
//!
//! # Example
//! ```
//! use alo_group::{Group, LoadError, getter_fn};
//! use bytes::Bytes;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), alo_group::Error> {
//! // The source of truth: here a match, in life a database or an object store.
//! let getter = getter_fn(|key: Bytes| async move {
//!     match &key[..] {
//!         b"alice" => Ok(Bytes::from_static(b"admin")),
//!         b"bob" => Ok(Bytes::from_static(b"viewer")),
//!         _ => Err(LoadError::NotFound),
//!     }
//! });
//! let roles = Group::builder("roles", getter).max_bytes(1 << 20).build()?;
//!
//! assert_eq!(roles.get("alice").await?, "admin"); // loaded through the getter
//! assert_eq!(roles.get("alice").await?, "admin"); // from the cache
//! assert_eq!(roles.get("carol").await, Err(alo_group::Error::NotFound));
//!
//! let stats = roles.stats();
//! assert_eq!((stats.gets, stats.cache_hits, stats.local_loads), (3, 1, 1));
//! assert_eq!(stats.local_load_errs, 1); // "not found" is not cached either
//! # Ok(())
//! # }
//! ```
//!
//! # Getters and transports
//! A getter gets a [`LoadContext`]: the key, the load's deadline, a signal that the group
//! abandoned the load, and the load's tracing span ([`getter_fn`] hides it, [`getter_fn_ctx`]
//! hands it over). A transport implements [`PeerPicker`] and [`Peer`] (or makes a peer of a
//! closure with [`peer_fn`]) and answers its peers with [`Group::local`]; the answering node's
//! [`Error`] converts into the [`LoadError`] the asking node expects; a [`LatePicker`] is a
//! picker set once the transport exists, or swapped later. With the feature `testing`, `testing::Cluster` is a cluster of
//! `n` nodes in one process over an in-memory transport.
//!
//! # Costs
//! A cache hit costs one lookup in a sharded LRU (a mutex per shard, the value's reference count
//! incremented; the shard counts the lookup under its lock), and a miss in the main cache one
//! more in the hot cache: no shared atomic is touched. A miss adds a relaxed atomic increment or
//! two, a singleflight (a map insert and remove under a mutex) and whatever
//! the peer or the getter costs. Each load runs on a tokio task of its own, so it finishes and
//! fills the cache even when every caller has gone: a group needs a tokio runtime.

mod buckets;
mod builder;
mod context;
mod error;
mod escape;
mod freshness;
mod getter;
mod group;
mod groups;
mod handover;
mod ledger;
mod local;
mod peer;
mod picker;
mod rate;
mod stats;
mod store;
#[cfg(feature = "testing")]
pub mod testing;
mod value;
mod write;

pub use buckets::{BucketCounts, Buckets, DURATION_BUCKETS_NS};
pub use builder::{
    DEFAULT_HOT_RATE, DEFAULT_LOAD_TIMEOUT, DEFAULT_MAX_BYTES, DEFAULT_MAX_CONCURRENT_LOADS,
    DEFAULT_MAX_VALUE_BYTES, DEFAULT_WRITE_TIMEOUT, GroupBuilder,
};
pub use context::LoadContext;
pub use error::{Error, LoadError};
pub use escape::{escape, escape_bytes};
pub use freshness::PEER_MARGIN;
pub use futures_util::future::BoxFuture;
pub use getter::{Getter, GetterFn, GetterFnCtx, getter_fn, getter_fn_ctx};
pub use group::{Group, PEEK_TIMEOUT};
pub use groups::Groups;
pub use handover::Handover;
pub use ledger::FILL_GUARD;
pub use local::Local;
pub use peer::{Peer, PeerFn, PeerPicker, peer_fn};
pub use picker::LatePicker;
pub use stats::{CacheStats, GroupStats};
pub use store::ENTRY_OVERHEAD;
pub use value::{Found, Loaded, Stale, Unreached, Via, Written};

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
