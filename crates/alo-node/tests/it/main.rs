//! alo-node's behaviour, driven through the real built binary.

mod cluster;
mod membership;
mod origin_safety;
mod origins;
mod process;
mod resilience;
mod single;
mod writes;
