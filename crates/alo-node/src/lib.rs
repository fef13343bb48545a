//! The alo cache node as a library, so that tests drive what the binary runs: flags
//! ([`Config`]), origins, the client API, the member sources (`--peers`, `--peers-file`,
//! `--peers-dns`), and [`run`], which wires them to `alo-group` and `alo-http`.
//!
//! The binary parses its flags, binds their addresses ([`Listeners::bind`]), turns SIGHUP into
//! [`Reload::now`] and SIGINT or SIGTERM into the end of `shutdown`. A test binds port 0
//! instead, so it knows every port before a node starts, and runs nodes on its own runtime.
//!
//! # Example
//!
//! ```
//! use alo_node::{Config, Listeners, Reload, run};
//! use clap::Parser as _;
//! use tokio::net::TcpListener;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> anyhow::Result<()> {
//! let config = Config::parse_from(["alo-node", "--demo-delay-ms", "1"]);
//! let listeners = Listeners {
//!     peer: TcpListener::bind("127.0.0.1:0").await?,
//!     api: TcpListener::bind("127.0.0.1:0").await?,
//! };
//! let api = listeners.api.local_addr()?;
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let node = tokio::spawn(run(config, listeners, Reload::new(), stopped));
//! println!("ask http://{api}/api/demo/apple");
//! let _ = stop.send(());
//! node.await??;
//! # Ok(())
//! # }
//! ```

mod api;
mod config;
mod dns;
mod members;
mod node;
pub mod origin;
mod telemetry;

pub use api::Api;
pub use config::{Config, LogFormat};
pub use members::Reload;
pub use node::{Listeners, run};
pub use telemetry::Telemetry;
