//! alo-node's behaviour, driven through the real built binary.

mod cluster;
mod origin_safety;
mod origins;
mod process;
mod resilience;
mod single;
