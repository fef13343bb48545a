//! How a shared call can fail.

use std::sync::Arc;

/// Why a call of [`Flight::work`](crate::Flight::work) produced no value. Every caller that
/// shared the call gets a clone of the same error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error<E> {
    /// The work returned this error. It is not remembered: the next call runs the work again.
    #[error(transparent)]
    Failed(E),
    /// The work panicked, with this message. The panic does not reach the callers, and the next
    /// call runs the work again.
    #[error("the shared work panicked: {0}")]
    Panicked(Arc<str>),
}
