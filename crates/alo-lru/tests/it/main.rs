//! Public behaviour of alo-lru, in one test binary.

mod expire;
mod model;
mod panics;
mod sharded;
mod unsync;
mod weigh;
