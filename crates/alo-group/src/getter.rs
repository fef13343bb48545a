//! The source of truth: what a group loads through when no member holds a key.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use crate::{LoadContext, LoadError, Loaded};

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
