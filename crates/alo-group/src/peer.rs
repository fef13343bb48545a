//! The other members: which one owns a key, and how to ask it.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use crate::{Found, LoadError};

/// Names the member that owns a key. `alo-http`'s `HttpPool` implements it over a hash ring.
pub trait PeerPicker: Send + Sync + 'static {
    /// The member to ask for `key`: its owner, or, while the owner is down, the member that takes
    /// its place (the next on the key's preference list that is up; every node picks the same
    /// one, so the key is loaded once, where it will live if the owner stays gone). `None` when
    /// that is this node, or there are no peers: the group loads the key itself.
    ///
    /// A group asks again after a peer gave no answer: a picker that has since marked that peer
    /// down names its successor.
    fn pick_peer(&self, key: &[u8]) -> Option<Arc<dyn Peer>>;

    /// The owner of `key` for a write: like [`pick_peer`](PeerPicker::pick_peer), but whatever
    /// the owner's health, since a write must reach the owner or report that it did not. The
    /// default is `pick_peer`.
    fn pick_owner(&self, key: &[u8]) -> Option<Arc<dyn Peer>> {
        self.pick_peer(key)
    }

    /// Every other member, each once, for writes that every member must apply. The default is
    /// none: a picker without it cannot invalidate other members' copies.
    fn other_members(&self) -> Vec<Arc<dyn Peer>> {
        Vec::new()
    }

    /// How many members there are, this node included: the hot cache's bar for a peer's value
    /// rises with it (see [`GroupBuilder::hot_rate`](crate::GroupBuilder::hot_rate)). The
    /// default counts [`other_members`](PeerPicker::other_members); a picker that can say it
    /// without making that list should.
    fn members(&self) -> usize {
        self.other_members().len() + 1
    }

    /// The member that held `key` before this node owned it, when the members changed recently
    /// (the picker says how recently) and this node owns the key: a node that misses such a key
    /// asks that member with a [peek](Peer::peek) before its getter, so that a change of members
    /// moves keys, not the cache. On a consistent-hash ring that is the key's successor: a node
    /// that joins takes its keys from it, and a node that is away leaves its keys to it. The
    /// default is none.
    fn previous_owner(&self, key: &[u8]) -> Option<Arc<dyn Peer>> {
        let _ = key;
        None
    }

    /// The member that takes `key` when this node leaves: its owner among the other members, or
    /// while that one is down, the member that takes its place. A group
    /// [hands over](crate::Group::hand_over) its values to them, and asks again for the values a
    /// member did not take. The default is none: nothing is handed over.
    fn heir(&self, key: &[u8]) -> Option<Arc<dyn Peer>> {
        let _ = key;
        None
    }
}

/// Another member of the cluster, as this node reaches it: asked for keys it owns, and told of
/// writes. It answers from its own side of the group ([`Group::local`](crate::Group::local)) and
/// never forwards.
///
/// Every method is given a deadline: the time by which the group wants the answer. A transport
/// derives its own timeouts from it, and when it passes without an answer says
/// [`LoadError::Unreachable`]. The group stops waiting half a [`PEER_MARGIN`](crate::PEER_MARGIN)
/// later whatever the transport does, and takes that for no answer too. A get's deadline is the
/// load's plus half the margin (the owner's own load has as long); a write's is the group's
/// [write timeout](crate::GroupBuilder::write_timeout) from when it is sent. Deadlines are on
/// tokio's clock (`tokio::time::Instant::from_std(deadline)`), so paused time in tests moves
/// them too.
///
/// The write methods apply a write on the peer itself: `set` stores a value as the key's owner,
/// `remove` and `purge` drop what the peer holds. Their defaults answer
/// [`LoadError::Unreachable`], for a transport that only reads.
pub trait Peer: Send + Sync + 'static {
    /// The peer's name, e.g. its URL: unique among the members, since writes tell the owner
    /// from the other members by it, and reported for a member a write did not reach.
    fn name(&self) -> &str;

    /// The value of `key` in the peer's group `group`, or what the peer answered instead:
    /// [`LoadError::NotFound`], [`LoadError::InvalidKey`], [`LoadError::Failed`] (the owner's
    /// load failed) and [`LoadError::Timeout`] (the owner's load passed its deadline) go to the
    /// caller as they are, without a second load here. [`LoadError::Unreachable`] when the peer
    /// gave no answer by `deadline`, or one outside the protocol: the group then loads the key
    /// itself, if there is time left.
    ///
    /// The answer carries the time the owner has left on the value, so that a copy here never
    /// outlives the owner's, and whether the owner served it stale.
    fn get<'a>(
        &'a self,
        group: &'a str,
        key: &'a [u8],
        deadline: Instant,
    ) -> BoxFuture<'a, Result<Found, LoadError>>;

    /// Stores `key -> value` in the peer's group `group`, as its owner, for `ttl` (`None`: the
    /// group's default).
    fn set<'a>(
        &'a self,
        group: &'a str,
        key: &'a [u8],
        value: Bytes,
        ttl: Option<Duration>,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<(), LoadError>> {
        let _ = (group, key, value, ttl, deadline);
        Box::pin(async { Err(LoadError::unreachable("this transport cannot write")) })
    }

    /// Drops `keys` from the peer's group `group`, from its main and its hot cache.
    fn remove<'a>(
        &'a self,
        group: &'a str,
        keys: &'a [Bytes],
        deadline: Instant,
    ) -> BoxFuture<'a, Result<(), LoadError>> {
        let _ = (group, keys, deadline);
        Box::pin(async { Err(LoadError::unreachable("this transport cannot write")) })
    }

    /// `key`'s value in the peer's group `group` if the peer holds it fresh, from its caches
    /// only: it never loads for a peek. `Ok(None)` when it does not hold it. What a new owner
    /// asks the key's previous owner. The default holds nothing.
    fn peek<'a>(
        &'a self,
        group: &'a str,
        key: &'a [u8],
        deadline: Instant,
    ) -> BoxFuture<'a, Result<Option<Found>, LoadError>> {
        let _ = (group, key, deadline);
        Box::pin(async { Ok(None) })
    }

    /// Offers the peer `values` of its group `group` (each a key and its value with the time it
    /// has left), which this node is leaving with: the peer keeps each it does not hold yet, and
    /// a write there during the handover wins. `Ok` when the peer took the offer, whichever
    /// values it kept.
    fn fill<'a>(
        &'a self,
        group: &'a str,
        values: &'a [(Bytes, Found)],
        deadline: Instant,
    ) -> BoxFuture<'a, Result<(), LoadError>> {
        let _ = (group, values, deadline);
        Box::pin(async { Err(LoadError::unreachable("this transport cannot fill")) })
    }

    /// Drops every entry of the peer's group `group`.
    fn purge<'a>(
        &'a self,
        group: &'a str,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<(), LoadError>> {
        let _ = (group, deadline);
        Box::pin(async { Err(LoadError::unreachable("this transport cannot write")) })
    }
}

/// A [`Peer`] from a name and a closure `|group: String, key: Bytes| async move { ... }`; see
/// [`peer_fn`].
#[derive(Clone)]
pub struct PeerFn<F> {
    name: String,
    get: F,
}

/// Makes a closure into a [`Peer`] called `name` (unique among the members): the closure
/// answers a get of `key` in the peer's group `group`, as [`Peer::get`] does; the group keeps
/// the deadline for it. It reads only: its writes answer [`LoadError::Unreachable`] (the trait's
/// defaults), so implement the trait for a transport that writes.
///
/// A peer answering from another node's groups, in one process; `?` turns the owner's
/// [`Error`](crate::Error) into the [`LoadError`] the asking node expects:
/// ```
/// use std::time::Instant;
/// use alo_group::{Groups, LoadError, Peer, getter_fn, peer_fn};
/// use bytes::Bytes;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), alo_group::Error> {
/// let owner = Groups::new();
/// owner.create("echo", 1 << 20, getter_fn(|key: Bytes| async move { Ok(key) }))?;
/// let peer = peer_fn("owner", move |group: String, key: Bytes| {
///     let owner = owner.clone();
///     async move {
///         let group = owner.get(&group).ok_or_else(|| LoadError::failed("no such group"))?;
///         Ok(group.local().lookup(&key).await?)
///     }
/// });
/// let found = peer.get("echo", b"hi", Instant::now()).await;
/// assert_eq!(found.map(|f| f.value), Ok(Bytes::from("hi")));
/// assert_eq!(peer.name(), "owner");
/// # Ok(())
/// # }
/// ```
pub fn peer_fn<F, Fut>(name: impl Into<String>, get: F) -> PeerFn<F>
where
    F: Fn(String, Bytes) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Found, LoadError>> + Send + 'static,
{
    PeerFn {
        name: name.into(),
        get,
    }
}

impl<F, Fut> Peer for PeerFn<F>
where
    F: Fn(String, Bytes) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Found, LoadError>> + Send + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn get<'a>(
        &'a self,
        group: &'a str,
        key: &'a [u8],
        _deadline: Instant,
    ) -> BoxFuture<'a, Result<Found, LoadError>> {
        (self.get)(group.to_string(), Bytes::copy_from_slice(key)).boxed()
    }
}

impl<F> fmt::Debug for PeerFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerFn")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}
