//! The source of truth, and the peers: what a group loads through.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use crate::{Found, LoadError, Loaded};

/// Loads a key's value from the source of truth (a database, an object store, an origin
/// server). A group calls it once per key however many callers miss at once.
///
/// Dyn-compatible: groups hold an `Arc<dyn Getter>`. Write one as a closure with [`getter_fn`],
/// or implement the trait:
///
/// ```
/// use std::time::Duration;
/// use alo_group::{BoxFuture, Getter, LoadError, Loaded};
/// use bytes::Bytes;
///
/// struct Upper;
/// impl Getter for Upper {
///     fn get(&self, key: Bytes) -> BoxFuture<'_, Result<Loaded, LoadError>> {
///         Box::pin(async move {
///             let value = Bytes::from(key.to_ascii_uppercase());
///             // Served for a minute at most; `Loaded::new(value)` takes the group's default.
///             Ok(Loaded::new(value).with_ttl(Duration::from_secs(60)))
///         })
///     }
/// }
/// ```
pub trait Getter: Send + Sync + 'static {
    /// The value of `key` and, if it should expire sooner than the group's default, its time to
    /// live; or why there is none ([`LoadError::NotFound`] when the source has no such key).
    fn get(&self, key: Bytes) -> BoxFuture<'_, Result<Loaded, LoadError>>;
}

/// A getter from a closure `|key: Bytes| async move { ... }`; see [`getter_fn`].
#[derive(Clone)]
pub struct GetterFn<F>(F);

/// Makes a closure returning a future into a [`Getter`]. The future's value is anything that
/// converts into [`Loaded`]: plain [`Bytes`] (the group's default time to live), or a
/// [`Loaded`] with a time to live of its own.
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
pub fn getter_fn<F, Fut, T>(f: F) -> GetterFn<F>
where
    F: Fn(Bytes) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, LoadError>> + Send + 'static,
    T: Into<Loaded>,
{
    GetterFn(f)
}

impl<F, Fut, T> Getter for GetterFn<F>
where
    F: Fn(Bytes) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, LoadError>> + Send + 'static,
    T: Into<Loaded>,
{
    fn get(&self, key: Bytes) -> BoxFuture<'_, Result<Loaded, LoadError>> {
        (self.0)(key).map(|r| r.map(Into::into)).boxed()
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

    /// The owner of `key` for a write: like [`pick_peer`](PeerPicker::pick_peer), but whatever
    /// the owner's health, since a write must reach the owner or report that it did not. The
    /// default is `pick_peer`.
    fn pick_owner(&self, key: &[u8]) -> Option<Arc<dyn PeerGetter>> {
        self.pick_peer(key)
    }

    /// Every other member, each once, for writes that every member must apply. The default is
    /// none: a picker without it cannot invalidate other members' copies.
    fn other_members(&self) -> Vec<Arc<dyn PeerGetter>> {
        Vec::new()
    }
}

/// Asks one peer for a key of a group. The peer answers from its caches or loads the key
/// itself, and never forwards the request again.
///
/// The group waits for a peer at most its load timeout plus [`PEER_MARGIN`](crate::PEER_MARGIN)
/// (the owner's own load has that deadline); an implementation should give up a little sooner,
/// to tell the group why.
///
/// The write methods apply a write on the peer itself (it never forwards): `set` stores a value
/// as the key's owner, `remove` and `purge` drop what the peer holds. Their defaults answer
/// [`LoadError::Unreachable`], for a transport that only reads.
pub trait PeerGetter: Send + Sync + 'static {
    /// The peer's name, e.g. its URL: unique among the members, since writes tell the owner
    /// from the other members by it, and reported for a member a write did not reach.
    fn name(&self) -> &str;

    /// The value of `key` in the peer's group `group`, or what the peer answered instead:
    /// [`LoadError::NotFound`], [`LoadError::InvalidKey`], [`LoadError::Failed`] (the owner's
    /// load failed) and [`LoadError::Timeout`] go to the caller as they are, without a second
    /// load here. [`LoadError::Unreachable`] when the peer gave no answer: the group then loads
    /// the key itself.
    ///
    /// The answer carries the time the owner has left on the value, so that a copy here never
    /// outlives the owner's, and whether the owner served it stale.
    fn get<'a>(&'a self, group: &'a str, key: &'a [u8]) -> BoxFuture<'a, Result<Found, LoadError>>;

    /// Stores `key -> value` in the peer's group `group`, as its owner, for `ttl` (`None`: the
    /// group's default).
    fn set<'a>(
        &'a self,
        group: &'a str,
        key: &'a [u8],
        value: Bytes,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), LoadError>> {
        let _ = (group, key, value, ttl);
        Box::pin(async { Err(LoadError::unreachable("this transport cannot write")) })
    }

    /// Drops `keys` from the peer's group `group`, from its main and its hot cache.
    fn remove<'a>(
        &'a self,
        group: &'a str,
        keys: &'a [Bytes],
    ) -> BoxFuture<'a, Result<(), LoadError>> {
        let _ = (group, keys);
        Box::pin(async { Err(LoadError::unreachable("this transport cannot write")) })
    }

    /// Drops every entry of the peer's group `group`.
    fn purge<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<(), LoadError>> {
        let _ = group;
        Box::pin(async { Err(LoadError::unreachable("this transport cannot write")) })
    }
}

impl<G: Getter + ?Sized> Getter for Arc<G> {
    fn get(&self, key: Bytes) -> BoxFuture<'_, Result<Loaded, LoadError>> {
        (**self).get(key)
    }
}

impl<G: Getter + ?Sized> Getter for Box<G> {
    fn get(&self, key: Bytes) -> BoxFuture<'_, Result<Loaded, LoadError>> {
        (**self).get(key)
    }
}
