//! Writes: set, remove and purge, on this node and across the cluster.
//!
//! # Consistency
//! A write applied on a node ([`Local::set`](crate::Local::set), `remove`, `purge`) is atomic there
//! against loads: every load or peer fetch of the key that began before it still answers the
//! callers that were waiting on it, but its value is not put into a cache (see the ledger), and
//! a get that begins after it does not join such a load.
//!
//! Across the cluster, a write goes to the key's owner first and then to every other member, so
//! that a member that drops its copy and fetches the key again meanwhile gets the new answer
//! from the owner, not the old one:
//! - `set`: the owner stores the value; then every other member drops its copy.
//! - `remove`, `remove_keys`: each key's owner drops it; then every member drops the keys (one
//!   request per member per round).
//! - `purge`: every member drops everything, twice over: a copy fetched from a member not yet
//!   purged in the first round is dropped by the second.
//!
//! When a write returns, every member it reached serves nothing loaded or fetched before the
//! write began. A member it did not reach (listed in [`Written::unreachable`]) may go on
//! serving its copy until the copy expires. Writes are not ordered against each other: two
//! concurrent sets of one key may leave either value.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::{BoxFuture, join_all};

use crate::group::Inner;
use crate::{Error, Group, LoadError, Unreached, Written, escape};

/// A member other than this node.
type Peer = Arc<dyn crate::Peer>;

impl Group {
    /// Stores `key -> value` on the key's owner, to be served for `ttl` (`None`: the group's
    /// default TTL, or for as long as it stays cached), and then has every other member drop its
    /// copy of the key. The source of truth is not written: a value set here is served until it
    /// expires or is evicted, and then loaded through the getter again.
    ///
    /// # Errors
    /// [`Error::EmptyKey`]; [`Error::ZeroTtl`]; [`Error::ValueTooLarge`] above the largest
    /// cacheable value; [`Error::NotStored`] when the owner did not store the value, in which
    /// case no other member was asked.
    pub async fn set(
        &self,
        key: impl AsRef<[u8]>,
        value: impl Into<Bytes>,
        ttl: Option<Duration>,
    ) -> Result<Written, Error> {
        let key = Bytes::copy_from_slice(key.as_ref());
        let value = value.into();
        self.inner.check_set(&key, &value, ttl)?;
        let inner = &self.inner;
        let owner = inner.picker.as_ref().and_then(|p| p.pick_owner(&key));
        match &owner {
            None => self.local().set(&key, value, ttl)?,
            Some(peer) => {
                let stored = inner
                    .send(|deadline| peer.set(&inner.name, &key, value, ttl, deadline))
                    .await;
                if let Err(e) = stored {
                    tracing::warn!(group = %inner.name, owner = peer.name(), error = %escape(&e), "set: the owner did not store the value");
                    return Err(Error::NotStored(e.to_string().into()));
                }
            }
        }
        let keys = [key];
        let others = self.members().into_iter().filter(|m| match (m, &owner) {
            (Member::Local, None) => false,
            (Member::Peer(p), Some(o)) => p.name() != o.name(),
            _ => true,
        });
        let mut written = self.remove_on(others.collect(), &keys).await;
        written.members += 1;
        Ok(written)
    }

    /// Removes `key` from the cluster: its owner drops it, then every member drops its copy.
    /// A load of the key in flight anywhere the removal reached still answers its waiting
    /// callers, but its value is kept nowhere.
    ///
    /// # Errors
    /// [`Error::EmptyKey`].
    pub async fn remove(&self, key: impl AsRef<[u8]>) -> Result<Written, Error> {
        self.remove_keys(&[Bytes::copy_from_slice(key.as_ref())])
            .await
    }

    /// Removes `keys` from the cluster as [`remove`](Group::remove) does, with one request per
    /// member per round: first to each key's owner, then to every member.
    ///
    /// # Errors
    /// [`Error::EmptyKey`] when any key is empty; nothing is removed then.
    pub async fn remove_keys(&self, keys: &[Bytes]) -> Result<Written, Error> {
        if keys.iter().any(Bytes::is_empty) {
            return Err(Error::EmptyKey);
        }
        let inner = &self.inner;
        // Round 1: each owner its own keys.
        let mut mine = Vec::new();
        let mut owners: HashMap<String, (Peer, Vec<Bytes>)> = HashMap::new();
        for key in keys {
            match inner.picker.as_ref().and_then(|p| p.pick_owner(key)) {
                None => mine.push(key.clone()),
                Some(peer) => {
                    let name = peer.name().to_string();
                    let (_, keys) = owners.entry(name).or_insert((peer, Vec::new()));
                    keys.push(key.clone());
                }
            }
        }
        self.local().remove(&mine);
        let sent = owners.values().map(|(peer, keys)| async move {
            let removed = inner.send(|deadline| peer.remove(&inner.name, keys, deadline));
            (peer, removed.await)
        });
        let mut unreachable = Vec::new();
        for (peer, result) in join_all(sent).await {
            if let Err(e) = result {
                note(&mut unreachable, peer, &e);
            }
        }
        // Round 2: every member drops its copies: this node those it does not own, which it
        // dropped already, and the others all the keys.
        let mine: HashSet<&Bytes> = mine.iter().collect();
        let theirs: Vec<Bytes> = keys.iter().filter(|k| !mine.contains(k)).cloned().collect();
        self.local().remove(&theirs);
        let peers = self.peers().into_iter().map(Member::Peer).collect();
        let mut written = self.remove_on(peers, keys).await;
        written.members += 1;
        for u in unreachable {
            add(&mut written.unreachable, u);
        }
        Ok(written)
    }

    /// Empties the group on every member, in two rounds (see the module docs).
    pub async fn purge(&self) -> Written {
        let inner = &self.inner;
        let peers = self.peers();
        let mut written = Written {
            members: peers.len() + 1,
            unreachable: Vec::new(),
        };
        // Alone, there is nobody to fetch a copy from between two rounds.
        let rounds = if peers.is_empty() { 1 } else { 2 };
        for _round in 0..rounds {
            self.local().purge();
            let sent = peers.iter().map(|peer| async move {
                (peer, inner.send(|d| peer.purge(&inner.name, d)).await)
            });
            for (peer, result) in join_all(sent).await {
                if let Err(e) = result {
                    note(&mut written.unreachable, peer, &e);
                }
            }
        }
        written.unreachable.iter().for_each(|u| {
            tracing::warn!(group = %inner.name, peer = %u.peer, reason = %escape(&u.reason), "purge did not reach a member");
        });
        written
    }

    /// Has `members` drop `keys`: this node at once, the others in parallel.
    async fn remove_on(&self, members: Vec<Member>, keys: &[Bytes]) -> Written {
        let inner = &self.inner;
        let mut written = Written {
            members: members.len(),
            unreachable: Vec::new(),
        };
        let mut sends = Vec::new();
        for member in &members {
            match member {
                Member::Local => self.local().remove(keys),
                Member::Peer(peer) => sends.push(async move {
                    let removed = inner.send(|deadline| peer.remove(&inner.name, keys, deadline));
                    (peer, removed.await)
                }),
            }
        }
        for (peer, result) in join_all(sends).await {
            if let Err(e) = result {
                note(&mut written.unreachable, peer, &e);
            }
        }
        for u in &written.unreachable {
            tracing::warn!(group = %inner.name, peer = %u.peer, reason = %escape(&u.reason), "remove did not reach a member");
        }
        written
    }

    /// This node and every other member.
    fn members(&self) -> Vec<Member> {
        let mut members = vec![Member::Local];
        members.extend(self.peers().into_iter().map(Member::Peer));
        members
    }

    fn peers(&self) -> Vec<Peer> {
        self.inner
            .picker
            .as_ref()
            .map(|p| p.other_members())
            .unwrap_or_default()
    }
}

impl Inner {
    pub(crate) fn check_set(
        &self,
        key: &[u8],
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), Error> {
        if key.is_empty() {
            return Err(Error::EmptyKey);
        }
        if ttl == Some(Duration::ZERO) {
            return Err(Error::ZeroTtl);
        }
        if value.len() > self.store.max_value_bytes {
            return Err(Error::ValueTooLarge {
                bytes: value.len(),
                max: self.store.max_value_bytes,
            });
        }
        Ok(())
    }

    /// One write to a peer, given the write's deadline; the group stops waiting half a
    /// [`PEER_MARGIN`](crate::PEER_MARGIN) after it, should the transport not keep it.
    async fn send<'a>(
        &self,
        write: impl FnOnce(Instant) -> BoxFuture<'a, Result<(), LoadError>>,
    ) -> Result<(), LoadError> {
        let deadline = self.deadlines.write();
        let backstop = self.deadlines.backstop(deadline);
        tokio::time::timeout_at(backstop, write(deadline))
            .await
            .unwrap_or_else(|_| Err(LoadError::unreachable("no answer by the deadline")))
    }
}

/// Where a write is applied.
enum Member {
    Local,
    Peer(Peer),
}

/// Adds `peer`, which failed with `error`, to `unreachable` unless it is there already.
fn note(unreachable: &mut Vec<Unreached>, peer: &Peer, error: &LoadError) {
    let u = Unreached {
        peer: peer.name().to_string(),
        reason: error.to_string().into(),
    };
    add(unreachable, u);
}

/// Adds `u` to `unreachable` unless its member is there already (with its first reason).
fn add(unreachable: &mut Vec<Unreached>, u: Unreached) {
    if !unreachable.iter().any(|w| w.peer == u.peer) {
        unreachable.push(u);
    }
}
