//! What can go wrong in a group, and what a getter or a peer can say.

use std::fmt;
use std::sync::Arc;

/// What a [`Getter`](crate::Getter) or a [`Peer`](crate::Peer) reports instead of a
/// value. Cloned to every caller that shared the load, so it carries a message, not a source.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The source of truth has no value for the key. Not a failure: a peer's "not found" goes to
    /// the caller as is, without a second load from the same origin.
    #[error("not found")]
    NotFound,
    /// The load failed (the origin is down or answered an error; from a peer: the owner's load
    /// failed), with a message for a person. Returned to the caller as is: a peer's answer that
    /// its origin failed is not loaded again here, which would ask the same origin twice.
    #[error("{0}")]
    Failed(Arc<str>),
    /// From a [`Peer`](crate::Peer): the peer gave no answer (connection refused or timed out,
    /// reset before a response, marked down, no answer by the deadline, an answer outside the
    /// protocol). The group counts it in `peer_errors` and loads the key itself while the load
    /// has time left.
    #[error("peer unreachable: {0}")]
    Unreachable(Arc<str>),
    /// The load did not finish within its deadline (here; from a peer: the owner's own load).
    #[error("the load timed out")]
    Timeout,
    /// The getter refuses the key itself (say, a path that escapes its directory): asking again,
    /// or elsewhere, cannot help. Returned to the caller as is, like `NotFound`.
    #[error("invalid key: {0}")]
    InvalidKey(Arc<str>),
}

impl LoadError {
    /// A failure described by `reason`, e.g. `LoadError::failed(db_error)`.
    pub fn failed(reason: impl fmt::Display) -> Self {
        LoadError::Failed(Arc::from(reason.to_string()))
    }

    /// A peer that could not be asked, for `reason`.
    pub fn unreachable(reason: impl fmt::Display) -> Self {
        LoadError::Unreachable(Arc::from(reason.to_string()))
    }
}

/// Why a group gave no value, or refused to be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Keys are non-empty byte strings.
    #[error("the key is empty")]
    EmptyKey,
    /// The getter (here or on the key's owner) says the key has no value.
    #[error("not found")]
    NotFound,
    /// The getter failed; its message. Nothing was cached: the next get tries again.
    #[error("load failed: {0}")]
    Load(Arc<str>),
    /// The getter panicked; the panic's message. Nothing was cached.
    #[error("the getter panicked: {0}")]
    Panicked(Arc<str>),
    /// The getter (here or on the owner) refuses the key; its reason.
    #[error("invalid key: {0}")]
    InvalidKey(Arc<str>),
    /// The load (here or on the owner) passed its deadline; it was dropped and nothing was
    /// cached.
    #[error("the load timed out")]
    Timeout,
    /// Group names are non-empty.
    #[error("a group needs a name")]
    EmptyName,
    /// A load or write timeout must be longer than zero.
    #[error("a load or write timeout must be longer than zero")]
    ZeroTimeout,
    /// At least one getter call must be allowed at a time.
    #[error("max_concurrent_loads must be at least 1")]
    ZeroConcurrency,
    /// A time to live must be longer than zero.
    #[error("a time to live must be longer than zero")]
    ZeroTtl,
    /// A set's value is larger than the group's largest cacheable value.
    #[error("the value is {bytes} bytes, more than the {max} a value may have")]
    ValueTooLarge {
        /// The value's length.
        bytes: usize,
        /// The group's largest cacheable value.
        max: usize,
    },
    /// A set's owner did not store the value (it could not be reached, or refused); nothing was
    /// written.
    #[error("the key's owner did not store the value: {0}")]
    NotStored(Arc<str>),
    /// A registry already holds a group of this name.
    #[error("a group named {0:?} already exists")]
    DuplicateGroup(String),
}

/// What a caller of a group gets for what a getter or a peer said.
///
/// | `LoadError` | `Error` |
/// |---|---|
/// | `NotFound` | `NotFound` |
/// | `Failed(m)` | `Load(m)` |
/// | `InvalidKey(r)` | `InvalidKey(r)` |
/// | `Timeout` | `Timeout` |
/// | `Unreachable(m)` | `Load(m)` |
///
/// Every row but the last comes back unchanged through [`LoadError::from`]. A group never
/// hands a peer's `Unreachable` to its caller (it loads the key itself instead); a getter that
/// says `Unreachable` has failed.
impl From<LoadError> for Error {
    fn from(e: LoadError) -> Self {
        match e {
            LoadError::NotFound => Error::NotFound,
            LoadError::Failed(message) | LoadError::Unreachable(message) => Error::Load(message),
            LoadError::InvalidKey(reason) => Error::InvalidKey(reason),
            LoadError::Timeout => Error::Timeout,
        }
    }
}

/// What a node answers a peer when its group gave no value: a transport answering a peer writes
/// `group.local().lookup(key).await.map_err(LoadError::from)`, or `?` in a function that returns
/// a [`LoadError`], and the asking node's group treats the answer as the table says.
///
/// | `Error` | `LoadError` | the asking node |
/// |---|---|---|
/// | `NotFound` | `NotFound` | returns `Error::NotFound` |
/// | `InvalidKey(r)` | `InvalidKey(r)` | returns `Error::InvalidKey(r)` |
/// | `EmptyKey` | `InvalidKey("the key is empty")` | returns `Error::InvalidKey` |
/// | `Timeout` | `Timeout` | returns `Error::Timeout` |
/// | `Load(m)` | `Failed(m)` | returns `Error::Load(m)` |
/// | `Panicked(m)` | `Failed("the getter panicked: m")` | returns `Error::Load` |
/// | any other (a write refused, a group misbuilt) | `Failed` with its message | returns `Error::Load` |
///
/// No error becomes [`LoadError::Unreachable`]: a peer that answered was reached, and that
/// variant would make the asking node load the key a second time, from the same origin. The
/// rows `NotFound`, `InvalidKey`, `Timeout` and `Load` come back unchanged through
/// [`Error::from`].
impl From<Error> for LoadError {
    fn from(e: Error) -> Self {
        match e {
            Error::NotFound => LoadError::NotFound,
            Error::InvalidKey(reason) => LoadError::InvalidKey(reason),
            Error::Timeout => LoadError::Timeout,
            Error::Load(message) => LoadError::Failed(message),
            Error::EmptyKey => LoadError::InvalidKey(Arc::from("the key is empty")),
            // The peer did answer: whatever else went wrong there is a failure it reports.
            other => LoadError::failed(other),
        }
    }
}
