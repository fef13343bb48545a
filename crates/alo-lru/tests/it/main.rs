//! Public behaviour of alo-lru, in one test binary.

mod expire;
mod model;
mod sharded;
mod unsync;
mod weigh;
