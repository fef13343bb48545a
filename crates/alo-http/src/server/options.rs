//! How a node serves: the protocol's base path and limits, the proof it asks of peers, and the
//! limits every connection lives within.

use std::time::Duration;

use crate::{DEFAULT_BASE_PATH, DEFAULT_MAX_BATCH_KEYS, Error, PeerSecrets};

/// The longest key a server accepts by default, in bytes (as memcached).
pub const DEFAULT_MAX_KEY_BYTES: usize = 250;

/// How a node serves; made with [`ServerOptions::builder`], or [`ServerOptions::default`].
#[derive(Clone, Debug)]
pub struct ServerOptions {
    pub(crate) base_path: String,
    pub(crate) max_key_bytes: usize,
    pub(crate) max_body_bytes: usize,
    pub(crate) max_batch_keys: usize,
    pub(crate) limits: Limits,
    /// When set, [`serve`](crate::serve) answers only requests that prove one of them, made for
    /// this node's URL (normalized).
    pub(crate) secrets: Option<(PeerSecrets, String)>,
}

/// The limits of [`serve_with`](crate::serve_with)'s connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) max_connections: usize,
    pub(crate) header_read_timeout: Duration,
    pub(crate) max_header_bytes: usize,
    pub(crate) idle_timeout: Duration,
    pub(crate) write_timeout: Duration,
    pub(crate) shutdown_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 16 << 10,
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            base_path: DEFAULT_BASE_PATH.to_string(),
            max_key_bytes: DEFAULT_MAX_KEY_BYTES,
            max_body_bytes: alo_group::DEFAULT_MAX_VALUE_BYTES,
            max_batch_keys: DEFAULT_MAX_BATCH_KEYS,
            limits: Limits::default(),
            secrets: None,
        }
    }
}

impl ServerOptions {
    /// A builder starting from the defaults.
    pub fn builder() -> ServerOptionsBuilder {
        ServerOptionsBuilder {
            options: ServerOptions::default(),
            self_url: None,
        }
    }

    /// The longest key accepted, in bytes after decoding.
    pub fn max_key_bytes(&self) -> usize {
        self.max_key_bytes
    }

    /// The largest request body accepted, in bytes.
    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// The largest body of a batch get: its most keys, each of the longest length encoded
    /// (three bytes a byte) and its line break.
    pub(crate) fn max_batch_body_bytes(&self) -> usize {
        let per_key = self.max_key_bytes.saturating_mul(3).saturating_add(1);
        self.max_batch_keys.saturating_mul(per_key)
    }
}

/// Builds [`ServerOptions`]; every setting is checked in [`build`](ServerOptionsBuilder::build).
#[derive(Clone, Debug)]
pub struct ServerOptionsBuilder {
    options: ServerOptions,
    /// This node's URL as given with the secrets, normalized in `build`.
    self_url: Option<String>,
}

impl ServerOptionsBuilder {
    /// The path under which groups are served (default `/_alo/`); must match the members'
    /// `PoolOptions`.
    pub fn base_path(mut self, base_path: impl Into<String>) -> Self {
        self.options.base_path = base_path.into();
        self
    }

    /// The cluster's secrets, and this node's URL as its peers know it (`http://host:port`, the
    /// pool's `self_url`): [`serve`](crate::serve) then answers a peer's request only when it
    /// carries a valid proof made for this node (see [`PeerSecrets`]), and `401` with
    /// `x-alo-error: unauthorized` otherwise, before any group is asked. The proof is checked
    /// from the request's head: a request without a valid one is answered and its connection
    /// closed before a byte of its body is read. Give the pool the same secrets
    /// (`PoolOptionsBuilder::secrets`).
    pub fn peer_secrets(mut self, secrets: PeerSecrets, self_url: impl Into<String>) -> Self {
        self.self_url = Some(self_url.into());
        self.options.secrets = Some((secrets, String::new()));
        self
    }

    /// The longest key accepted, in bytes after decoding (default 250, at least 1); longer ones
    /// get 414.
    pub fn max_key_bytes(mut self, max_key_bytes: usize) -> Self {
        self.options.max_key_bytes = max_key_bytes;
        self
    }

    /// The largest request body (a set's value, a batch remove's keys), in bytes (default
    /// `alo_group::DEFAULT_MAX_VALUE_BYTES`, 16 MiB); a larger one gets 413, before it is read
    /// when it announces its length. Keep it at least the groups' largest cacheable value.
    pub fn max_body_bytes(mut self, max_body_bytes: usize) -> Self {
        self.options.max_body_bytes = max_body_bytes;
        self
    }

    /// The most keys of a batch get answered (default 64, the pool's default batch, at least 1).
    /// Keys past it are answered `202`, "ask for it alone", without a lookup; a batch body longer
    /// than this many keys of the longest length could be (`max_batch_keys` × (3 ×
    /// `max_key_bytes` + 1) bytes, 48,064 by default) gets 413 before it is read. So one request
    /// starts at most this many loads.
    pub fn max_batch_keys(mut self, max_batch_keys: usize) -> Self {
        self.options.max_batch_keys = max_batch_keys;
        self
    }

    /// The most connections open at once (default 10,000, at least 1). At the limit, new clients
    /// wait in the listen backlog until a connection closes; the server keeps serving the others.
    pub fn max_connections(mut self, max_connections: usize) -> Self {
        self.options.limits.max_connections = max_connections;
        self
    }

    /// How long a client may take to send a request head (default 10 s), counted from when
    /// the connection starts waiting for one: at its start, and after each response on a
    /// kept-alive connection. A client that sends its head a byte at a time is cut off there.
    /// A request body must arrive within as long.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.options.limits.header_read_timeout = timeout;
        self
    }

    /// The largest request head, in bytes (default 16 KiB, at least 8 KiB, hyper's least read
    /// buffer); a larger one gets 431. It bounds what a client can make a connection hold before
    /// its request is read.
    pub fn max_header_bytes(mut self, max_header_bytes: usize) -> Self {
        self.options.limits.max_header_bytes = max_header_bytes;
        self
    }

    /// How long a connection may go without traffic and without a request in flight before
    /// it is closed (default 60 s). A connection waiting for its next request head is also
    /// bound by the header read timeout, whichever is shorter.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.options.limits.idle_timeout = timeout;
        self
    }

    /// How long a response write may wait for a client that does not read (default 10 s)
    /// before the connection is closed.
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.options.limits.write_timeout = timeout;
        self
    }

    /// How long, once shutdown begins, requests in flight may take to finish (default 10 s);
    /// then the connections left are closed and the server returns.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.options.limits.shutdown_timeout = timeout;
        self
    }

    /// The options.
    ///
    /// # Errors
    /// [`Error::InvalidBasePath`] unless the base path starts and ends with `/`;
    /// [`Error::InvalidUrl`] for a node URL that is not `http://host:port`;
    /// [`Error::InvalidLimit`] for a zero timeout, key length, batch or connection limit, or a
    /// head limit below 8 KiB.
    pub fn build(self) -> Result<ServerOptions, Error> {
        let mut options = self.options;
        crate::check_base_path(&options.base_path)?;
        if let (Some((_, me)), Some(url)) = (&mut options.secrets, self.self_url) {
            *me = crate::picker::normalize(&url)?;
        }
        let limits = &options.limits;
        let zero = [
            limits.header_read_timeout,
            limits.idle_timeout,
            limits.write_timeout,
            limits.shutdown_timeout,
        ]
        .iter()
        .any(Duration::is_zero);
        let checks = [
            (zero, "timeouts must be above zero"),
            (
                limits.max_connections == 0,
                "max_connections must be at least 1",
            ),
            (
                limits.max_header_bytes < 8192,
                "max_header_bytes must be at least 8192",
            ),
            (
                options.max_key_bytes == 0,
                "max_key_bytes must be at least 1",
            ),
            (
                options.max_batch_keys == 0,
                "max_batch_keys must be at least 1",
            ),
        ];
        if let Some((_, why)) = checks.into_iter().find(|(bad, _)| *bad) {
            return Err(Error::InvalidLimit(why));
        }
        options.limits.max_connections = limits
            .max_connections
            .min(tokio::sync::Semaphore::MAX_PERMITS);
        Ok(options)
    }
}
