//! The server side: answers peers' requests for a node's groups.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use alo_group::{Error as GroupError, Groups};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::net::TcpListener;

use crate::conn::{Limits, serve_with};
use crate::protocol::{
    self, ERROR_HEADER, INVALID_KEY, LOAD_FAILED, LOAD_TIMEOUT, NOT_FOUND, PathError, UNAUTHORIZED,
    UNKNOWN_GROUP,
};
use crate::{AUTH_HEADER, PeerSecrets};
use crate::{DEFAULT_BASE_PATH, Error};

/// The longest key a server accepts by default, in bytes (as memcached).
pub const DEFAULT_MAX_KEY_BYTES: usize = 250;

/// How a node serves: the protocol's base path and key limit, and the limits every connection
/// lives within (see [`serve_with`](crate::serve_with)).
#[derive(Clone, Debug)]
pub struct ServerOptions {
    base_path: String,
    max_key_bytes: usize,
    pub(crate) limits: Limits,
    /// When set, [`serve`] answers only requests that prove one of them.
    secrets: Option<PeerSecrets>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            base_path: DEFAULT_BASE_PATH.to_string(),
            max_key_bytes: DEFAULT_MAX_KEY_BYTES,
            limits: Limits::default(),
            secrets: None,
        }
    }
}

impl ServerOptions {
    /// The path under which groups are served; must match the peers' `PoolOptions`.
    ///
    /// # Errors
    /// [`Error::InvalidBasePath`] unless it starts and ends with `/`.
    pub fn base_path(mut self, base_path: impl Into<String>) -> Result<Self, Error> {
        self.base_path = crate::check_base_path(base_path.into())?;
        Ok(self)
    }

    /// The cluster's secrets: [`serve`] then answers a peer's request only when it carries a
    /// valid proof (see [`PeerSecrets`]), and `401` with `x-alo-error: unauthorized` otherwise,
    /// before any group is asked. Give the pool the same secrets (`PoolOptions::secrets`).
    pub fn peer_secrets(mut self, secrets: PeerSecrets) -> Self {
        self.secrets = Some(secrets);
        self
    }

    /// The longest key accepted, in bytes after decoding; longer ones get 414.
    pub fn max_key_bytes(mut self, max_key_bytes: usize) -> Self {
        self.max_key_bytes = max_key_bytes;
        self
    }

    /// The most connections open at once (default 10,000). At the limit, new clients wait in
    /// the listen backlog until a connection closes; the server keeps serving the others.
    ///
    /// # Errors
    /// [`Error::InvalidLimit`] for 0.
    pub fn max_connections(mut self, max_connections: usize) -> Result<Self, Error> {
        if max_connections == 0 {
            return Err(Error::InvalidLimit("max_connections must be at least 1"));
        }
        self.limits.max_connections = max_connections.min(tokio::sync::Semaphore::MAX_PERMITS);
        Ok(self)
    }

    /// How long a client may take to send a request head (default 10 s), counted from when
    /// the connection starts waiting for one: at its start, and after each response on a
    /// kept-alive connection. A client that sends its head a byte at a time is cut off there.
    ///
    /// # Errors
    /// [`Error::InvalidLimit`] for zero.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Result<Self, Error> {
        self.limits.header_read_timeout = nonzero(timeout, "header_read_timeout")?;
        Ok(self)
    }

    /// The largest request head, in bytes (default 16 KiB, at least 8 KiB); a larger one gets
    /// 431. It bounds what a client can make a connection hold before its request is read.
    ///
    /// # Errors
    /// [`Error::InvalidLimit`] below 8 KiB, hyper's least read buffer.
    pub fn max_header_bytes(mut self, max_header_bytes: usize) -> Result<Self, Error> {
        if max_header_bytes < 8192 {
            return Err(Error::InvalidLimit(
                "max_header_bytes must be at least 8192",
            ));
        }
        self.limits.max_header_bytes = max_header_bytes;
        Ok(self)
    }

    /// How long a connection may go without traffic and without a request in flight before
    /// it is closed (default 60 s). A connection waiting for its next request head is also
    /// bound by the header read timeout, whichever is shorter.
    ///
    /// # Errors
    /// [`Error::InvalidLimit`] for zero.
    pub fn idle_timeout(mut self, timeout: Duration) -> Result<Self, Error> {
        self.limits.idle_timeout = nonzero(timeout, "idle_timeout")?;
        Ok(self)
    }

    /// How long a response write may wait for a client that does not read (default 10 s)
    /// before the connection is closed.
    ///
    /// # Errors
    /// [`Error::InvalidLimit`] for zero.
    pub fn write_timeout(mut self, timeout: Duration) -> Result<Self, Error> {
        self.limits.write_timeout = nonzero(timeout, "write_timeout")?;
        Ok(self)
    }

    /// How long, once shutdown begins, requests in flight may take to finish (default 10 s);
    /// then the connections left are closed and the server returns.
    ///
    /// # Errors
    /// [`Error::InvalidLimit`] for zero.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Result<Self, Error> {
        self.limits.shutdown_timeout = nonzero(timeout, "shutdown_timeout")?;
        Ok(self)
    }
}

fn nonzero(timeout: Duration, what: &'static str) -> Result<Duration, Error> {
    if timeout.is_zero() {
        return Err(Error::InvalidLimit(what));
    }
    Ok(timeout)
}

/// Serves `groups` to peers on `listener` until `shutdown` completes, then stops accepting,
/// lets requests in flight finish (within the shutdown timeout), and returns. The connection
/// limits are those of [`serve_with`](crate::serve_with).
///
/// Each request is answered with `Group::get_local`: a node never forwards a peer's request.
/// Bind the listener yourself (port 0 in tests) and pass a shutdown future such as a
/// `oneshot::Receiver` or `tokio::signal::ctrl_c()`.
///
/// # Errors
/// As [`serve_with`](crate::serve_with).
pub async fn serve(
    listener: TcpListener,
    groups: Groups,
    options: ServerOptions,
    shutdown: impl Future,
) -> Result<(), Error> {
    let shared = Arc::new((groups, options.clone()));
    let handler = move |req: Request<Incoming>| {
        let shared = Arc::clone(&shared);
        async move {
            let (groups, options) = &*shared;
            if let Some(secrets) = &options.secrets {
                let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
                let proof = req.headers().get(AUTH_HEADER).map(|v| v.as_bytes());
                // Peer requests carry no body (`GET`, `HEAD`): the digest is of nothing.
                let now = std::time::SystemTime::now();
                if !secrets.verify(req.method().as_str(), path, b"", proof, now) {
                    let mut resp = text(StatusCode::UNAUTHORIZED, "peer authentication failed\n");
                    resp.headers_mut()
                        .insert(ERROR_HEADER, HeaderValue::from_static(UNAUTHORIZED));
                    return resp;
                }
            }
            respond(req, groups, options, Asker::Peer).await
        }
    };
    serve_with(listener, options, handler, shutdown).await
}

/// Who sent a request, which decides how a group answers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Asker {
    /// Another node: answered with `Group::get_local`, never forwarded.
    Peer,
    /// A client of the cache: answered with `Group::get`, which may ask the key's owner.
    Client,
}

/// Answers one request for `{base}{group}/{key}` with the statuses of the wire protocol (see
/// the crate README).
pub async fn respond(
    req: Request<Incoming>,
    groups: &Groups,
    options: &ServerOptions,
    asker: Asker,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut resp = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD are allowed\n",
        );
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    if req.uri().path() == options.base_path {
        // The liveness probe: answered without touching a group.
        return text(StatusCode::OK, "ok\n");
    }
    let (group_name, key) = match protocol::parse(&options.base_path, req.uri().path()) {
        Ok(parts) => parts,
        Err(PathError::Malformed(why)) => {
            return text(StatusCode::BAD_REQUEST, format!("malformed path: {why}\n"));
        }
        Err(PathError::BadEncoding) => {
            return text(
                StatusCode::BAD_REQUEST,
                "bad percent-encoding in the path\n",
            );
        }
    };
    if key.len() > options.max_key_bytes {
        let why = format!("the key is longer than {} bytes\n", options.max_key_bytes);
        return text(StatusCode::URI_TOO_LONG, why);
    }
    let Some(group) = groups.get(&group_name) else {
        let mut resp = text(StatusCode::NOT_FOUND, format!("no group {group_name:?}\n"));
        resp.headers_mut()
            .insert(ERROR_HEADER, HeaderValue::from_static(UNKNOWN_GROUP));
        return resp;
    };
    let got = match asker {
        Asker::Peer => group.get_local(&key).await,
        Asker::Client => group.get(&key).await,
    };
    match got {
        Ok(value) => {
            let mut resp = Response::new(Full::new(value));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            resp
        }
        Err(GroupError::NotFound) => {
            let mut resp = text(StatusCode::NOT_FOUND, "key not found\n");
            resp.headers_mut()
                .insert(ERROR_HEADER, HeaderValue::from_static(NOT_FOUND));
            resp
        }
        Err(GroupError::EmptyKey) => text(StatusCode::BAD_REQUEST, "the key is empty\n"),
        Err(GroupError::InvalidKey(reason)) => {
            let mut resp = text(StatusCode::BAD_REQUEST, format!("invalid key: {reason}\n"));
            resp.headers_mut()
                .insert(ERROR_HEADER, HeaderValue::from_static(INVALID_KEY));
            resp
        }
        // The cause (an origin's URL, a path, a panic's message) is in the log, written where
        // the load failed; a client gets the category.
        Err(GroupError::Load(_)) => {
            coded(StatusCode::BAD_GATEWAY, LOAD_FAILED, "the origin failed")
        }
        Err(GroupError::Timeout) => coded(
            StatusCode::GATEWAY_TIMEOUT,
            LOAD_TIMEOUT,
            "the load timed out",
        ),
        Err(GroupError::Panicked(_)) => coded(
            StatusCode::INTERNAL_SERVER_ERROR,
            LOAD_FAILED,
            "internal error",
        ),
        Err(e) => {
            tracing::error!(error = %e, "unexpected error answering a request");
            text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n")
        }
    }
}

/// A short text answer with its `x-alo-error` code.
fn coded(status: StatusCode, code: &'static str, what: &'static str) -> Response<Full<Bytes>> {
    let mut resp = text(status, format!("{what}\n"));
    resp.headers_mut()
        .insert(ERROR_HEADER, HeaderValue::from_static(code));
    resp
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
