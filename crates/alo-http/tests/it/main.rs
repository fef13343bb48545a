//! Public behaviour of alo-http: real servers on 127.0.0.1, ephemeral ports, in one process.

mod auth;
mod batch;
mod cluster;
mod failures;
mod hostile;
mod limits;
mod membership;
mod node;
mod protocol;
mod writes;
