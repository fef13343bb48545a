//! The alo cache node as a library, so that tests drive what the binary runs: flags
//! ([`Config`]), origins, the client API, and [`run`], which wires them to `alo-group` and
//! `alo-http`.

mod api;
mod config;
mod node;
pub mod origin;

pub use api::Api;
pub use config::Config;
pub use node::run;
