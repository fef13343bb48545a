//! A node of an in-process cluster as a peer: each request is a direct call of the node's
//! group's owner side, [`Group::local`], as a real transport's server would make it.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::{BoxFuture, Found, Group, LoadError, Peer};

/// How a [`Direct`] peer finds the node it calls.
pub(super) trait Reach: Send + Sync {
    /// The node's name.
    fn name(&self) -> &str;

    /// The node's group `group`, or why it cannot be reached (down, or without that group).
    fn group(&self, group: &str) -> Result<Group, LoadError>;
}

/// A node as a peer, reached through `R`.
pub(super) struct Direct<R>(pub(super) R);

impl<R: Reach + 'static> Peer for Direct<R> {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn get<'a>(
        &'a self,
        group: &'a str,
        key: &'a [u8],
        _deadline: Instant,
    ) -> BoxFuture<'a, Result<Found, LoadError>> {
        Box::pin(async move { Ok(self.0.group(group)?.local().lookup(key).await?) })
    }

    fn set<'a>(
        &'a self,
        group: &'a str,
        key: &'a [u8],
        value: Bytes,
        ttl: Option<Duration>,
        _deadline: Instant,
    ) -> BoxFuture<'a, Result<(), LoadError>> {
        Box::pin(async move { Ok(self.0.group(group)?.local().set(key, value, ttl)?) })
    }

    fn remove<'a>(
        &'a self,
        group: &'a str,
        keys: &'a [Bytes],
        _deadline: Instant,
    ) -> BoxFuture<'a, Result<(), LoadError>> {
        Box::pin(async move {
            self.0.group(group)?.local().remove(keys);
            Ok(())
        })
    }

    fn peek<'a>(
        &'a self,
        group: &'a str,
        key: &'a [u8],
        _deadline: Instant,
    ) -> BoxFuture<'a, Result<Option<Found>, LoadError>> {
        Box::pin(async move { Ok(self.0.group(group)?.local().peek(key)) })
    }

    fn fill<'a>(
        &'a self,
        group: &'a str,
        values: &'a [(Bytes, Found)],
        _deadline: Instant,
    ) -> BoxFuture<'a, Result<(), LoadError>> {
        Box::pin(async move {
            let group = self.0.group(group)?;
            for (key, found) in values {
                group.local().fill(key, found);
            }
            Ok(())
        })
    }

    fn purge<'a>(
        &'a self,
        group: &'a str,
        _deadline: Instant,
    ) -> BoxFuture<'a, Result<(), LoadError>> {
        Box::pin(async move {
            self.0.group(group)?.local().purge();
            Ok(())
        })
    }
}
