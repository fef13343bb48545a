//! Public behaviour of alo-lru, in one test binary.

mod model;
mod sharded;
mod unsync;
mod weigh;
