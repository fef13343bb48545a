//! Async duplicate-call suppression: while a call for a key is in flight, every further call for
//! that key waits for its outcome instead of running the work again.
//!
//! Use it in front of anything expensive that many tasks may ask for at once: when a thousand
//! requests miss a cache for the same key together, the source of truth is asked once. The
//! guarantee holds where servers break: the caller that started the work may be dropped (a
//! timeout, a closed connection) and the others still get the value; the work may panic, and
//! every caller gets an error instead of a hang. The crate needs no async runtime: by default
//! the work runs on whichever waiting caller is polled and is cancelled when every caller has
//! gone; a [`Flight::detached`] hands it to a spawner you give (say `tokio::spawn`) and it runs
//! to its end whatever the callers do.
//!
//! # Example
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use alo_singleflight::Flight;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), alo_singleflight::Error<String>> {
//! let flight: Flight<String, Arc<str>, String> = Flight::new();
//! let loads = AtomicUsize::new(0);
//! let load = |key: &str| {
//!     loads.fetch_add(1, Ordering::Relaxed);
//!     let key = key.to_string();
//!     async move {
//!         // Stands for a slow read from the source of truth.
//!         tokio::time::sleep(std::time::Duration::from_millis(10)).await;
//!         Ok::<_, String>(Arc::from(format!("value of {key}")))
//!     }
//! };
//!
//! // Two concurrent calls for one key: the work runs once, both get its value.
//! let (a, b) = tokio::join!(
//!     flight.work("k".to_string(), || load("k")),
//!     flight.work("k".to_string(), || load("k")),
//! );
//! assert_eq!(a.result?, b.result?);
//! assert_eq!(loads.load(Ordering::Relaxed), 1);
//! assert!(!a.shared && b.shared); // the first call ran the work, the second shared it
//!
//! // Finished calls are forgotten: the next call runs the work again.
//! assert_eq!(flight.in_flight(), 0);
//! flight.work("k".to_string(), || load("k")).await.result?;
//! assert_eq!(loads.load(Ordering::Relaxed), 2);
//! # Ok(())
//! # }
//! ```
//!
//! # Costs and guarantees
//! An uncontended call locks a `std` mutex twice (insert and remove the key), allocates the
//! shared future once, and polls the work through it. A caller that joins a call clones one
//! `Arc`. Values and errors are cloned to each caller. See [`Flight`] for cancellation, panics
//! and the bounds on the value and error types.

mod error;
mod flight;

pub use error::Error;
pub use flight::{Flight, Outcome, Spawn};

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
