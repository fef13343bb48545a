//! Public behaviour of alo-group, in one test binary.

mod context;
mod expiry;
mod fakes;
mod hot;
mod lifetime;
mod limits;
mod local;
mod net;
mod peers;
mod race;
mod registry;
mod ring;
mod transport;
mod writes;
