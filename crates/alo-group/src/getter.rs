//! The source of truth, and the peers: what a group loads through.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use crate::LoadError;

/// Loads a key's value from the source of truth (a database, an object store, an origin
/// server). A group calls it once per key however many callers miss at once.
///
/// Dyn-compatible: groups hold an `Arc<dyn Getter>`. Write one as a closure with [`getter_fn`],
/// or implement the trait:
///
/// ```
/// use alo_group::{BoxFuture, Getter, LoadError};
/// use bytes::Bytes;
///
/// struct Upper;
/// impl Getter for Upper {
///     fn get(&self, key: Bytes) -> BoxFuture<'_, Result<Bytes, LoadError>> {
///         Box::pin(async move { Ok(Bytes::from(key.to_ascii_uppercase())) })
///     }
/// }
/// ```
pub trait Getter: Send + Sync + 'static {
    /// The value of `key`, or why there is none ([`LoadError::NotFound`] when the source has no
    /// such key).
    fn get(&self, key: Bytes) -> BoxFuture<'_, Result<Bytes, LoadError>>;
}

/// A getter from a closure `|key: Bytes| async move { ... }`; see [`getter_fn`].
#[derive(Clone)]
pub struct GetterFn<F>(F);

/// Makes a closure returning a future into a [`Getter`].
///
/// ```
/// use alo_group::{LoadError, getter_fn};
/// use bytes::Bytes;
///
/// let getter = getter_fn(|key: Bytes| async move {
///     match &key[..] {
///         b"hello" => Ok(Bytes::from_static(b"world")),
///         _ => Err(LoadError::NotFound),
///     }
/// });
/// # let _ = getter;
/// ```
pub fn getter_fn<F, Fut>(f: F) -> GetterFn<F>
where
    F: Fn(Bytes) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Bytes, LoadError>> + Send + 'static,
{
    GetterFn(f)
}

impl<F, Fut> Getter for GetterFn<F>
where
    F: Fn(Bytes) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Bytes, LoadError>> + Send + 'static,
{
    fn get(&self, key: Bytes) -> BoxFuture<'_, Result<Bytes, LoadError>> {
        (self.0)(key).boxed()
    }
}

impl<F> fmt::Debug for GetterFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GetterFn")
    }
}

/// Names the peer that owns a key. `alo-http`'s `HttpPool` implements it over a hash ring.
pub trait PeerPicker: Send + Sync + 'static {
    /// The owner of `key` when it is another node; `None` when this node owns the key or there
    /// are no peers, and the group loads it itself.
    fn pick_peer(&self, key: &[u8]) -> Option<Arc<dyn PeerGetter>>;
}

/// Asks one peer for a key of a group. The peer answers from its caches or loads the key
/// itself, and never forwards the request again.
///
/// The group waits for a peer at most its load timeout plus [`PEER_MARGIN`](crate::PEER_MARGIN)
/// (the owner's own load has that deadline); an implementation should give up a little sooner,
/// to tell the group why.
pub trait PeerGetter: Send + Sync + 'static {
    /// The value of `key` in the peer's group `group`, or what the peer answered instead:
    /// [`LoadError::NotFound`], [`LoadError::InvalidKey`], [`LoadError::Failed`] (the owner's
    /// load failed) and [`LoadError::Timeout`] go to the caller as they are, without a second
    /// load here. [`LoadError::Unreachable`] when the peer gave no answer: the group then loads
    /// the key itself.
    fn get<'a>(&'a self, group: &'a str, key: &'a [u8]) -> BoxFuture<'a, Result<Bytes, LoadError>>;
}

impl<G: Getter + ?Sized> Getter for Arc<G> {
    fn get(&self, key: Bytes) -> BoxFuture<'_, Result<Bytes, LoadError>> {
        (**self).get(key)
    }
}

impl<G: Getter + ?Sized> Getter for Box<G> {
    fn get(&self, key: Bytes) -> BoxFuture<'_, Result<Bytes, LoadError>> {
        (**self).get(key)
    }
}
