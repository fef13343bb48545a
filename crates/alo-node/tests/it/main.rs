//! alo-node's behaviour. Most tests run nodes in this process, through the library's `run` on
//! listeners bound to port 0, as the binary runs them; a few start the binary itself, for
//! what only a process has: signals, its open-file limit, a cluster of processes.

mod client;
mod dns;
mod node;
mod process;

mod cluster;
mod dns_members;
mod examples;
mod hostile;
mod logs;
mod membership;
mod observe;
mod origin_safety;
mod origins;
mod resilience;
mod single;
#[cfg(feature = "otlp")]
mod trace;
mod warm;
mod writes;
