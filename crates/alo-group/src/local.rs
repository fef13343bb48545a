//! The owner's side of a group: what a node answers a peer with. It never asks another member.

use std::time::Duration;

use bytes::Bytes;

use crate::group::{Lookup, Route};
use crate::stats::bump;
use crate::{Error, Found, Group};

/// A group as its peers reach it: reads answered from this node's caches or getter, never
/// forwarded; writes applied on this node alone. A transport's server answers peers' requests
/// with it. Get one with [`Group::local`]; it is a borrow, free to make.
#[derive(Clone, Copy, Debug)]
pub struct Local<'a> {
    group: &'a Group,
}

impl Group {
    /// This group's owner side: gets that never ask another member, and writes applied here
    /// alone (see [`Local`]).
    pub fn local(&self) -> Local<'_> {
        Local { group: self }
    }
}

impl Local<'_> {
    /// The value of `key` from the caches or the getter, never from a peer: what a request
    /// from a peer is answered with. Counts a server request.
    ///
    /// # Errors
    /// As [`Group::get`].
    pub async fn get(self, key: impl AsRef<[u8]>) -> Result<Bytes, Error> {
        self.lookup(key).await.map(|f| f.value)
    }

    /// [`get`](Local::get) with how long the value stays fresh, whether it was served stale,
    /// and, in a group with peers, how often peers ask for the key (this ask counted): the
    /// answer to a peer.
    ///
    /// # Errors
    /// As [`Group::get`].
    pub async fn lookup(self, key: impl AsRef<[u8]>) -> Result<Found, Error> {
        let group = self.group;
        let inner = &group.inner;
        bump(&inner.counters.server_requests);
        let key = key.as_ref();
        let mut found = match group.begin(key, Route::Local)? {
            Lookup::Hit(found) => found,
            Lookup::Miss { key, stale } => {
                let deadline = inner.deadlines.load();
                let outcome = Box::pin(group.load_local(key, deadline)).await;
                group.finish(outcome, stale)?
            }
        };
        inner.store.rate(key, &mut found);
        Ok(found)
    }

    /// `key`'s value if this node holds it fresh, from its caches only, never loading: what a
    /// peer's peek is answered with. Counts a peek answered (and a hit when it holds the key).
    pub fn peek(self, key: impl AsRef<[u8]>) -> Option<Found> {
        let inner = &self.group.inner;
        bump(&inner.counters.peeks_answered);
        let found = match inner.store.peek_fresh(key.as_ref()) {
            Some(Ok(found)) if found.stale.is_none() => found,
            _ => return None,
        };
        bump(&inner.counters.peeks_answered_held);
        Some(found)
    }

    /// Keeps `found`, a value a leaving member hands over, unless this node holds `key` already
    /// (a fill never overwrites a value), the value is stale, expired or too large, or this node
    /// took a write of the key (or a purge) in the last [`FILL_GUARD`](crate::FILL_GUARD), which
    /// the value may predate: what a peer's fill is answered with. Says whether it was kept, and
    /// counts it in `fills`.
    pub fn fill(self, key: impl AsRef<[u8]>, found: &Found) -> bool {
        let inner = &self.group.inner;
        let key = Bytes::copy_from_slice(key.as_ref());
        if key.is_empty() {
            return false;
        }
        let kept = inner.store.fill_absent(key, found);
        if kept {
            bump(&inner.counters.fills);
        }
        kept
    }

    /// Stores `key -> value` here, as the key's owner, for `ttl` (`None`: the group's default):
    /// what a peer's set is answered with. Loads of the key in flight here keep their value
    /// out of the caches; the hot copy, if any, is dropped.
    ///
    /// # Errors
    /// [`Error::EmptyKey`]; [`Error::ZeroTtl`]; [`Error::ValueTooLarge`] above the largest
    /// cacheable value.
    pub fn set(
        self,
        key: impl AsRef<[u8]>,
        value: impl Into<Bytes>,
        ttl: Option<Duration>,
    ) -> Result<(), Error> {
        let inner = &self.group.inner;
        let key = Bytes::copy_from_slice(key.as_ref());
        let value = value.into();
        inner.check_set(&key, &value, ttl)?;
        if !inner.store.set(key, &value, ttl) {
            return Err(Error::ValueTooLarge {
                bytes: value.len(),
                max: inner.store.max_value_bytes,
            });
        }
        bump(&inner.counters.sets);
        Ok(())
    }

    /// Drops `keys` from both caches here: what a peer's remove is answered with. Loads of them
    /// in flight here keep their value out of the caches, and gets that begin after this
    /// returns start new loads.
    pub fn remove(self, keys: &[Bytes]) {
        if keys.is_empty() {
            return;
        }
        let inner = &self.group.inner;
        inner.store.invalidate(keys);
        inner
            .counters
            .removes
            .fetch_add(keys.len() as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// Drops every entry here: what a peer's purge is answered with. Loads in flight here keep
    /// their values out of the caches, and gets that begin after this returns start new loads.
    pub fn purge(self) {
        let inner = &self.group.inner;
        inner.store.clear();
        bump(&inner.counters.purges);
    }
}
