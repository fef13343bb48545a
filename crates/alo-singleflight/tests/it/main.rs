//! Public behaviour of alo-singleflight, in one test binary.

mod cancel;
mod dedup;
mod detached;
mod failures;
