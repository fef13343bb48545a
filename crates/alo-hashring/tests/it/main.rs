//! Public behaviour of alo-hashring, in one test binary.

mod golden;
mod props;
mod ring;
