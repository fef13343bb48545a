//! The source of truth, and the peers: what a group loads through.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use crate::{Found, LoadContext, LoadError, Loaded};

/// Loads a key's value from the source of truth (a database, an object store, an origin
/// server). A group calls it once per key however many callers miss at once.
///
/// Dyn-compatible: groups hold an `Arc<dyn Getter>`. Write one as a closure of the key with
/// [`getter_fn`], as a closure of the whole [`LoadContext`] with [`getter_fn_ctx`], or
/// implement the trait:
///
/// ```
/// use std::time::Duration;
/// use alo_group::{BoxFuture, Getter, LoadContext, LoadError, Loaded};
/// use bytes::Bytes;
///
/// struct Upper;
/// impl Getter for Upper {
///     fn get(&self, ctx: LoadContext) -> BoxFuture<'_, Result<Loaded, LoadError>> {
///         Box::pin(async move {
///             let value = Bytes::from(ctx.key().to_ascii_uppercase());
///             // Served for a minute at most; `Loaded::new(value)` takes the group's default.
///             Ok(Loaded::new(value).with_ttl(Duration::from_secs(60)))
///         })
///     }
/// }
/// ```
pub trait Getter: Send + Sync + 'static {
    /// The value of `ctx.key()` and, if it should expire sooner than the group's default, its
    /// time to live; or why there is none ([`LoadError::NotFound`] when the source has no such
    /// key). The future is dropped if it passes `ctx.deadline()`.
    fn get(&self, ctx: LoadContext) -> BoxFuture<'_, Result<Loaded, LoadError>>;
}

/// A getter from a closure `|key: Bytes| async move { ... }`; see [`getter_fn`].
#[derive(Clone)]
pub struct GetterFn<F>(F);

/// A getter from a closure `|ctx: LoadContext| async move { ... }`; see [`getter_fn_ctx`].
#[derive(Clone)]
pub struct GetterFnCtx<F>(F);

/// Makes a closure of the key returning a future into a [`Getter`]. The future's value is
/// anything that converts into [`Loaded`]: plain [`Bytes`] (the group's default time to live),
/// or a [`Loaded`] with a time to live of its own. The future still runs in the load's span and
/// is dropped at the load's deadline; for the deadline itself and the signal that the load was
/// abandoned, use [`getter_fn_ctx`].
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
    fn get(&self, ctx: LoadContext) -> BoxFuture<'_, Result<Loaded, LoadError>> {
        (self.0)(ctx.into_key()).map(|r| r.map(Into::into)).boxed()
    }
}

impl<F> fmt::Debug for GetterFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GetterFn")
    }
}

/// [`getter_fn`] for a getter that wants more than the key: the closure gets the
/// [`LoadContext`], with the load's deadline, a signal that the load was abandoned, and its
/// span.
///
/// ```
/// use alo_group::{LoadContext, LoadError, getter_fn_ctx};
/// use bytes::Bytes;
///
/// let getter = getter_fn_ctx(|ctx: LoadContext| async move {
///     // Give the origin no longer than the group will wait, so a slow origin fails with a
///     // reason of its own.
///     let budget = ctx.remaining();
///     tracing::debug!(?budget, "loading"); // nested in the load's span
///     Ok::<_, LoadError>(Bytes::from(format!("{} within {budget:?}", ctx.key().len())))
/// });
/// # let _ = getter;
/// ```
pub fn getter_fn_ctx<F, Fut, T>(f: F) -> GetterFnCtx<F>
where
    F: Fn(LoadContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, LoadError>> + Send + 'static,
    T: Into<Loaded>,
{
    GetterFnCtx(f)
}

impl<F, Fut, T> Getter for GetterFnCtx<F>
where
    F: Fn(LoadContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, LoadError>> + Send + 'static,
    T: Into<Loaded>,
{
    fn get(&self, ctx: LoadContext) -> BoxFuture<'_, Result<Loaded, LoadError>> {
        (self.0)(ctx).map(|r| r.map(Into::into)).boxed()
    }
}

impl<F> fmt::Debug for GetterFnCtx<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GetterFnCtx")
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

/// A [`PeerGetter`] from a name and a closure `|group: String, key: Bytes| async move { ... }`;
/// see [`peer_getter_fn`].
#[derive(Clone)]
pub struct PeerGetterFn<F> {
    name: String,
    get: F,
}

/// Makes a closure into a [`PeerGetter`] called `name` (unique among the members): the closure
/// answers a get of `key` in the peer's group `group`, as [`PeerGetter::get`] does. It reads
/// only: its writes answer [`LoadError::Unreachable`] (the trait's defaults), so implement the
/// trait for a transport that writes.
///
/// A peer answering from another node's groups, in one process; `?` turns the owner's
/// [`Error`](crate::Error) into the [`LoadError`] the asking node expects:
/// ```
/// use alo_group::{Groups, LoadError, PeerGetter, getter_fn, peer_getter_fn};
/// use bytes::Bytes;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), alo_group::Error> {
/// let owner = Groups::new();
/// owner.create("echo", 1 << 20, getter_fn(|key: Bytes| async move { Ok(key) }))?;
/// let peer = peer_getter_fn("owner", move |group: String, key: Bytes| {
///     let owner = owner.clone();
///     async move {
///         let group = owner.get(&group).ok_or_else(|| LoadError::failed("no such group"))?;
///         Ok(group.lookup_local(&key).await?)
///     }
/// });
/// assert_eq!(peer.get("echo", b"hi").await.map(|f| f.value), Ok(Bytes::from("hi")));
/// assert_eq!(peer.name(), "owner");
/// # Ok(())
/// # }
/// ```
pub fn peer_getter_fn<F, Fut>(name: impl Into<String>, get: F) -> PeerGetterFn<F>
where
    F: Fn(String, Bytes) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Found, LoadError>> + Send + 'static,
{
    PeerGetterFn {
        name: name.into(),
        get,
    }
}

impl<F, Fut> PeerGetter for PeerGetterFn<F>
where
    F: Fn(String, Bytes) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Found, LoadError>> + Send + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn get<'a>(&'a self, group: &'a str, key: &'a [u8]) -> BoxFuture<'a, Result<Found, LoadError>> {
        (self.get)(group.to_string(), Bytes::copy_from_slice(key)).boxed()
    }
}

impl<F> fmt::Debug for PeerGetterFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerGetterFn")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<G: Getter + ?Sized> Getter for Arc<G> {
    fn get(&self, ctx: LoadContext) -> BoxFuture<'_, Result<Loaded, LoadError>> {
        (**self).get(ctx)
    }
}

impl<G: Getter + ?Sized> Getter for Box<G> {
    fn get(&self, ctx: LoadContext) -> BoxFuture<'_, Result<Loaded, LoadError>> {
        (**self).get(ctx)
    }
}
