//! Public behaviour of alo-group, in one test binary.

mod fakes;
mod local;
mod peers;
mod registry;
