//! alo's peers over HTTP: a hyper 1.x server that answers peers' requests for a node's groups, a
//! pooled keep-alive client, and [`HttpPool`], the `PeerPicker` that names each key's owner with
//! a consistent-hash ring. It is the peer transport only: a node answers its own clients
//! with the pieces of [`protocol`] (alo-node does).
//!
//! A node builds one [`HttpPool`] with its own URL, gives it to its [`alo_group::Groups`] as the
//! picker, and serves the groups with [`serve`] on a listener it binds. The wire protocol is in
//! the crate README, so a client in another language can speak it.
//!
//! # Example
//! Two nodes in one process, each owning about half of the keys:
//! ```
//! use alo_group::{Groups, getter_fn};
//! use alo_http::{HttpPool, PoolOptions, ServerOptions, serve};
//! use bytes::Bytes;
//! use tokio::net::TcpListener;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (a, b) = (TcpListener::bind("127.0.0.1:0").await?, TcpListener::bind("127.0.0.1:0").await?);
//! let urls = [format!("http://{}", a.local_addr()?), format!("http://{}", b.local_addr()?)];
//! let mut nodes = Vec::new();
//! for (listener, url) in [(a, &urls[0]), (b, &urls[1])] {
//!     let pool = HttpPool::new(url, PoolOptions::default())?;
//!     pool.set_members(&urls)?;
//!     let groups = Groups::with_picker(pool);
//!     let me = url.clone();
//!     groups.create("greetings", 1 << 20, getter_fn(move |key: Bytes| {
//!         let me = me.clone();
//!         async move { Ok(Bytes::from(format!("hello {} from {me}", String::from_utf8_lossy(&key)))) }
//!     }))?;
//!     let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//!     let server = tokio::spawn(serve(listener, groups.clone(), ServerOptions::default(), stopped));
//!     nodes.push((groups, stop, server));
//! }
//! // Whichever node is asked, the owner's getter answers.
//! let from_a = nodes[0].0.get("greetings").expect("group").get("alice").await?;
//! let from_b = nodes[1].0.get("greetings").expect("group").get("alice").await?;
//! assert_eq!(from_a, from_b);
//! for (_, stop, server) in nodes {
//!     let _ = stop.send(());
//!     server.await??;
//! }
//! # Ok(())
//! # }
//! ```

mod auth;
mod client;
mod error;
mod health;
mod picker;
pub mod protocol;
mod server;
pub mod trace;

pub use auth::{AUTH_HEADER, PeerSecrets, REPLAY_WINDOW, WRITES_REMEMBERED};
pub use error::Error;
pub use health::{BATCH_KEYS_BUCKETS, PeerStats};
pub use picker::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_BATCH_KEYS, DEFAULT_PEEK_WINDOW, DEFAULT_STALL_AFTER,
    HttpPool, PoolOptions, PoolOptionsBuilder,
};
pub use server::{
    DEFAULT_MAX_KEY_BYTES, ServerOptions, ServerOptionsBuilder, read_body, serve, serve_with,
};

/// The path under which groups are served unless configured otherwise.
pub const DEFAULT_BASE_PATH: &str = "/_alo/";

fn check_base_path(base_path: &str) -> Result<(), Error> {
    if base_path.starts_with('/') && base_path.ends_with('/') {
        Ok(())
    } else {
        Err(Error::InvalidBasePath(base_path.to_string()))
    }
}

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
