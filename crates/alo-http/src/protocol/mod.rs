//! The wire protocol between members, one codec for both ends: each request's and each
//! answer's encoding beside its decoding, so that a spelling (a path, a header, a token) is
//! written once. The server parses and answers with it, the client encodes and reads with it,
//! and a node's own client API (alo-node) answers its clients with the same pieces.
//!
//! - [`Request`]: the requests a member sends (`GET` a key, a batch get, `PUT`, `DELETE`, a
//!   batch remove, a purge, the liveness probe), to and from a method and a path.
//! - [`Failure`] and [`put_found`]: a group's answer for a key, as a status with an
//!   `x-alo-error` code and a short text, or a value with its freshness headers. A batch get's
//!   frames carry the same fields (see the crate README).
//! - [`encode_keys`], [`decode_keys`], [`parse_ttl`]: the bodies and values they carry.
//!
//! The wire format is in the crate README, so a client in another language can speak it.

mod answer;
mod request;

pub(crate) use answer::{Answer, Frames, push_failure, push_found, push_pending};
pub use answer::{Failure, put_found, text};
pub(crate) use request::changes_state;
pub use request::{
    Refusal, Request, decode_fill, decode_keys, encode_fill, encode_keys, parse_ttl,
};

/// The header that tells a 404 for a key the getter does not have from one for an unknown
/// group, with the values below.
pub const ERROR_HEADER: &str = "x-alo-error";
/// `x-alo-error` of a 404 whose key the owner's getter does not have.
pub const NOT_FOUND: &str = "not-found";
/// `x-alo-error` of a 400 whose key the owner's getter refuses as invalid.
pub const INVALID_KEY: &str = "invalid-key";
/// `x-alo-error` of a 404 for a group the node does not have.
pub const UNKNOWN_GROUP: &str = "unknown-group";
/// `x-alo-error` of a 502 (the getter failed) or 500 (it panicked): the owner asked its origin
/// and got no value. The asking node returns the error and does not ask the origin again.
pub const LOAD_FAILED: &str = "load-failed";
/// `x-alo-error` of a 504: the owner's load passed its deadline and was dropped.
pub const LOAD_TIMEOUT: &str = "load-timeout";
/// `x-alo-error` of a 401: the node has peer secrets and the request proved none of them.
pub const UNAUTHORIZED: &str = "unauthorized";
/// `x-alo-error` of a 413: a body over the node's limit, or a set's value larger than the group
/// caches.
pub const TOO_LARGE: &str = "too-large";

/// How long a value stays fresh, in whole milliseconds: on a `200`, the time the answering node
/// has left on it (absent when the value does not expire); on a `PUT` to a node's client API,
/// the time to live asked for (absent for the group's default). Remaining time, not an instant,
/// so that clock skew between nodes cannot keep a value alive.
pub const TTL_HEADER: &str = "x-alo-ttl-ms";
/// On a `200`: the value has expired and is served under a stale window, `if-error` or
/// `while-revalidate`. It may not be kept.
pub const STALE_HEADER: &str = "x-alo-stale";
/// On a peer's `200`: how often peers ask the owner for the key, in asks per minute (an
/// estimate). The asker keeps a copy when it clears the group's hot rate.
pub const RATE_HEADER: &str = "x-alo-rate";
/// The query parameter of a peer's `PUT` that carries the time to live, in whole milliseconds.
pub const TTL_QUERY: &str = "ttl-ms";
/// The query of a batch get: `POST {base}{group}?get`.
pub(crate) const BATCH_QUERY: &str = "get";
/// The query of a peek, alone (`GET`) or in a batch (`POST`).
pub(crate) const PEEK_QUERY: &str = "peek";
/// The query of a handover's fill: `POST {base}{group}?fill`.
pub(crate) const FILL_QUERY: &str = "fill";
/// `x-alo-error` of a 404 to a peek: the node does not hold the key (it did not load it).
pub const NOT_HELD: &str = "not-held";
