//! What goes in and out of a group besides bare bytes: a value with its time to live, a value
//! with how it was found, and how far a write reached.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

/// A value and how long it may be served: what a [`Getter`](crate::Getter) or a
/// [`Peer`](crate::Peer) returns. Made from [`Bytes`] (no expiry of its own: the
/// group's default TTL applies) or with [`Loaded::with_ttl`].
///
/// The time to live is a duration, not an instant, so that it means the same on every node
/// whatever their clocks say.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Loaded {
    /// The value.
    pub value: Bytes,
    /// How long it may be served from now; `None` for the group's default. `Some(ZERO)`: serve
    /// it to the callers waiting now, and keep it nowhere.
    pub ttl: Option<Duration>,
}

impl Loaded {
    /// A value with the group's default time to live.
    pub fn new(value: impl Into<Bytes>) -> Self {
        Loaded {
            value: value.into(),
            ttl: None,
        }
    }

    /// This value, to be served for at most `ttl` from now.
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }
}

impl From<Bytes> for Loaded {
    fn from(value: Bytes) -> Self {
        Loaded::new(value)
    }
}

/// A value a group served, with how fresh it is: what [`Group::lookup`](crate::Group::lookup)
/// returns, what a server turns into response headers, and what a
/// [`Peer`](crate::Peer) makes of them again.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Found {
    /// The value.
    pub value: Bytes,
    /// How long it stays fresh from now; `None` when it does not expire. `Some(ZERO)` for a
    /// stale value, and for one that may not be kept.
    pub ttl: Option<Duration>,
    /// `Some` when the value has expired and is served under one of the group's stale windows.
    pub stale: Option<Stale>,
    /// How often peers ask the owner for the key, in asks per minute (an estimate that fades
    /// with a ten-second half-life), as the owner reports it with its answer to a peer; `None`
    /// elsewhere. An asker keeps a copy in its hot cache when the rate clears the group's
    /// [`hot_rate`](crate::GroupBuilder::hot_rate) for each member that may ask.
    pub rate: Option<u32>,
    /// Where this node found the value: what a server's metrics tell gets apart by.
    pub via: Via,
}

/// Where a node found a value it served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Via {
    /// In one of its caches (main or hot).
    #[default]
    Cache,
    /// From another member: the key's owner, or the member that held it before.
    Peer,
    /// From the group's getter, here.
    Origin,
}

impl Via {
    /// A short name for a label or a log: `cache`, `peer`, `origin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Cache => "cache",
            Via::Peer => "peer",
            Via::Origin => "origin",
        }
    }
}

impl Found {
    /// A fresh value with `ttl` left (`None`: it does not expire).
    pub fn new(value: Bytes, ttl: Option<Duration>) -> Self {
        Found {
            value,
            ttl,
            stale: None,
            rate: None,
            via: Via::Cache,
        }
    }

    /// This value, found `via` there.
    #[must_use]
    pub fn via(mut self, via: Via) -> Self {
        self.via = via;
        self
    }

    /// This value, with the owner's rate of asks for its key.
    #[must_use]
    pub fn with_rate(mut self, rate: u32) -> Self {
        self.rate = Some(rate);
        self
    }

    /// An expired value served for the reason `why`: it may not be kept.
    pub fn stale(value: Bytes, why: Stale) -> Self {
        Found {
            value,
            ttl: Some(Duration::ZERO),
            stale: Some(why),
            rate: None,
            via: Via::Cache,
        }
    }
}

/// Why an expired value was served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stale {
    /// Its reload failed, and the group's `stale_if_error` window still covers it.
    IfError,
    /// It is being reloaded in the background, within the group's `stale_while_revalidate`
    /// window.
    WhileRevalidate,
}

impl Stale {
    /// A short name for a header or a log: `if-error`, `while-revalidate`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stale::IfError => "if-error",
            Stale::WhileRevalidate => "while-revalidate",
        }
    }

    /// The reason [`as_str`](Stale::as_str) names, read back; a name it does not know is
    /// [`IfError`](Stale::IfError), the stricter of the two (neither may be kept).
    pub fn parse(name: &[u8]) -> Stale {
        match name {
            b"while-revalidate" => Stale::WhileRevalidate,
            _ => Stale::IfError,
        }
    }
}

/// How far a write ([`Group::set`](crate::Group::set), [`remove`](crate::Group::remove),
/// [`purge`](crate::Group::purge)) reached: the members it was sent to, and those that did not
/// take it. Every member not listed in `unreachable` (this node included) has applied it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Written {
    /// Members the write was for, this node included.
    pub members: usize,
    /// Members that did not confirm it, each once, with the first reason.
    pub unreachable: Vec<Unreached>,
}

impl Written {
    /// Whether every member applied the write.
    pub fn is_complete(&self) -> bool {
        self.unreachable.is_empty()
    }
}

/// A member a write did not reach, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Unreached {
    /// The member's name (its [`Peer::name`](crate::Peer::name)).
    pub peer: String,
    /// Why: the transport's message.
    pub reason: Arc<str>,
}
