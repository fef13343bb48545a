//! A least-recently-used cache bounded by the bytes its entries hold, not by their count.
//!
//! Use it where entries differ in size and what must be bounded is memory: cached blobs, rendered
//! pages, rows of a slow database. [`Lru`] is the single-threaded cache (`&mut self`, references
//! out); [`ShardedLru`] is the thread-safe one (`&self`, values cloned out, one lock per shard),
//! the form a cache server shares between its tasks. The crate stands alone: no async runtime,
//! no other alo crate.
//!
//! Each entry is charged a weight: by default `key.weigh() + value.weigh()` through the
//! [`Weigh`] trait (string and byte-buffer lengths, integer sizes; `bytes::Bytes` with the
//! default `bytes` feature), or whatever a closure weigher says. Inserting past the budget evicts
//! least recently used entries until the new one fits. An entry that alone exceeds the budget is
//! refused and handed back in a [`TooLarge`] error: storing it would empty the cache and still
//! break the bound.
//!
//! # Example
//! ```
//! use alo_lru::Lru;
//!
//! # fn main() -> Result<(), alo_lru::TooLarge<&'static str, String>> {
//! // 16 bytes of keys and values.
//! let mut cache = Lru::new(16);
//! cache.insert("a", "alpha".to_string())?; // charged 1 + 5
//! cache.insert("b", "beta".to_string())?; // charged 1 + 4
//! assert_eq!(cache.get("a").map(String::as_str), Some("alpha")); // "a" is now most recent
//!
//! cache.insert("c", "gamma".to_string())?; // 17 bytes would be over: "b" is evicted
//! assert!(cache.peek("b").is_none());
//! assert_eq!(cache.bytes(), 12);
//!
//! let keys: Vec<_> = cache.iter().map(|(k, _)| *k).collect();
//! assert_eq!(keys, ["c", "a"]); // most recently used first
//! # Ok(())
//! # }
//! ```
//!
//! The thread-safe form, with a closure weigher:
//! ```
//! use std::sync::Arc;
//! use alo_lru::ShardedLru;
//!
//! # fn main() -> Result<(), alo_lru::TooLarge<u64, Vec<u8>>> {
//! // Charge the value's length plus 48 bytes of bookkeeping per entry.
//! let weigher = |_: &u64, v: &Vec<u8>| v.len() + 48;
//! let cache = Arc::new(ShardedLru::with_weigher(1 << 20, 8, weigher));
//! let writer = {
//!     let cache = Arc::clone(&cache);
//!     std::thread::spawn(move || {
//!         for k in 0..1000u64 {
//!             let _ = cache.insert(k, vec![0; 100]);
//!         }
//!     })
//! };
//! writer.join().expect("writer thread");
//! assert_eq!(cache.get(&999), Some(vec![0; 100]));
//! assert!(cache.bytes() <= 1 << 20);
//! # Ok(())
//! # }
//! ```
//!
//! # Expiry
//! Expiry is opt-in and costs caches that do not use it nothing. Store [`Expiring`] values, each
//! a value with an optional deadline (an [`Instant`](std::time::Instant)), and read them through
//! `get_unexpired`, which serves an entry only before its deadline and removes it from then on
//! (counted in [`Stats::expired`]). The clock is a parameter: it is read only for an entry that
//! has a deadline, and a test passes its own. Entries nobody asks for again stay, and stay
//! charged, until LRU eviction or `remove_expired` takes them out.
//! ```
//! use std::time::{Duration, Instant};
//! use alo_lru::{Expiring, Lru};
//!
//! # fn main() -> Result<(), alo_lru::TooLarge<&'static str, Expiring<String>>> {
//! let mut cache = Lru::new(1024);
//! let start = Instant::now();
//! let session = Expiring::until("s3ss10n".to_string(), start + Duration::from_secs(30));
//! cache.insert("session", session)?; // charged 7 + 7: the deadline is free
//! cache.insert("config", Expiring::never("v1".to_string()))?;
//!
//! // A test clock: `now` is any closure returning an `Instant`.
//! let at = |secs| move || start + Duration::from_secs(secs);
//! assert!(cache.get_unexpired("session", at(29)).is_some());
//! assert!(cache.get_unexpired("session", at(30)).is_none()); // expired: removed
//! assert_eq!(cache.stats().expired, 1);
//! assert_eq!(cache.bytes(), 6 + 2);
//!
//! // No deadline, no clock read: in real use pass `Instant::now`.
//! let config = cache.get_unexpired("config", Instant::now).map(|e| e.value.as_str());
//! assert_eq!(config, Some("v1"));
//!
//! // Sweep what nobody asks for again.
//! cache.insert("token", Expiring::until("t".to_string(), start + Duration::from_secs(5)))?;
//! assert_eq!(cache.remove_expired(start + Duration::from_secs(60)), 1);
//! assert_eq!(cache.len(), 1);
//! # Ok(())
//! # }
//! ```
//!
//! # Costs
//! Every operation of [`Lru`] is O(1): `get` hashes the key, probes a SwissTable (hashbrown) of
//! `u32` slot numbers, compares the key of the entry it names and relinks that entry's links to
//! the front;
//! `insert` adds a weigher call and, per eviction, one table removal. Growth of the table and of
//! the node vector is amortised. `iter` walks the list, O(len). `get_unexpired` is `get` plus one
//! call of the clock when the entry has a deadline (and a removal when it has passed);
//! `remove_expired` looks at every entry, O(len).
//!
//! [`ShardedLru`] adds one uncontended mutex lock/unlock and a clone of the value to each call;
//! `len`, `bytes`, `stats`, `clear` and `remove_expired` lock every shard in turn, one at a time.
//!
//! # Memory
//! Beyond the key and the value, an entry costs about 30 bytes when nothing is spare: its stored
//! hash and charge (16, plus any padding for `K` and `V`'s alignment) beside it, two `u32` links
//! (8) in a parallel vector, and a table slot of about 5.7 bytes (a 4-byte index and a control
//! byte, 5 bytes a bucket, at hashbrown's largest load of 7/8): 16 + 8 + 5.7. The two vectors
//! and the table grow by doubling, so just after a growth each holds up to twice what it needs,
//! about 60 bytes an entry at worst. Counted by an allocator, an `Lru<u64, u64>` of 1,000 to
//! 115,000 entries takes 35 to 43 bytes an entry beyond its 16 of key and value. None of this is
//! counted in [`Lru::bytes`]: add it in a closure weigher when it matters, e.g.
//! `|k, v| k.len() + v.len() + 48`. An [`Expiring`] value adds its `Option<Instant>` (16 bytes on
//! 64-bit Linux), also uncharged.
//!
//! Entries live in one dense vector: removing one moves the last into its place, so there are no
//! holes and no allocation per entry. The crate has no `unsafe` code.
//!
//! # Concurrency
//! [`Lru`] is `Send` and `Sync` when its key, value, weigher and hasher are; its methods take
//! `&mut self` where they change anything (even `get`, which reorders). [`ShardedLru`] takes
//! `&self` everywhere and is shared through an `Arc`; see its docs for how the budget is split.

mod error;
mod expire;
mod shard;
mod stats;
mod sync;
mod unsync;
mod weigh;

pub use error::TooLarge;
pub use expire::Expiring;
pub use shard::Iter;
pub use stats::Stats;
pub use sync::ShardedLru;
pub use unsync::Lru;
pub use weigh::{ByteWeigher, Weigh, Weigher};

/// The hasher both caches use unless told otherwise (hashbrown's default, foldhash).
pub use hashbrown::DefaultHashBuilder;

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
