//! Public behaviour of alo-group, in one test binary.

mod fakes;
mod lifetime;
mod local;
mod peers;
mod registry;
