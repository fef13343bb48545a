//! The server side: answers peers' requests for a node's groups.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

use alo_group::{Error as GroupError, Found, Group, Groups, Written};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header, request};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Body as _;
use hyper::body::Incoming;
use tokio::net::TcpListener;

use crate::auth::{Proven, Refused};
use crate::conn::{Limits, serve_with};
use crate::protocol::{
    self, ERROR_HEADER, INVALID_KEY, LOAD_FAILED, LOAD_TIMEOUT, NOT_FOUND, PENDING, PathError,
    STALE_HEADER, TOO_LARGE, TTL_HEADER, Token, UNAUTHORIZED, UNKNOWN_GROUP,
};
use crate::{AUTH_HEADER, DEFAULT_BASE_PATH, DEFAULT_MAX_BATCH_KEYS, Error, PeerSecrets};

/// The longest key a server accepts by default, in bytes (as memcached).
pub const DEFAULT_MAX_KEY_BYTES: usize = 250;

/// How a node serves: the protocol's base path and key limit, and the limits every connection
/// lives within (see [`serve_with`](crate::serve_with)).
#[derive(Clone, Debug)]
pub struct ServerOptions {
    base_path: String,
    max_key_bytes: usize,
    max_body_bytes: usize,
    max_batch_keys: usize,
    pub(crate) limits: Limits,
    /// When set, [`serve`] answers only requests that prove one of them, made for this node's
    /// URL (normalized).
    secrets: Option<(PeerSecrets, String)>,
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
    /// The path under which groups are served; must match the peers' `PoolOptions`.
    ///
    /// # Errors
    /// [`Error::InvalidBasePath`] unless it starts and ends with `/`.
    pub fn base_path(mut self, base_path: impl Into<String>) -> Result<Self, Error> {
        self.base_path = crate::check_base_path(base_path.into())?;
        Ok(self)
    }

    /// The cluster's secrets, and this node's URL as its peers know it (`http://host:port`, the
    /// pool's `self_url`): [`serve`] then answers a peer's request only when it carries a valid
    /// proof made for this node (see [`PeerSecrets`]), and `401` with `x-alo-error:
    /// unauthorized` otherwise, before any group is asked. The proof is checked from the
    /// request's head: a request without a valid one is answered and its connection closed
    /// before a byte of its body is read. Give the pool the same secrets (`PoolOptions::secrets`).
    ///
    /// # Errors
    /// [`Error::InvalidUrl`] when `self_url` is not `http://host:port`.
    pub fn peer_secrets(mut self, secrets: PeerSecrets, self_url: &str) -> Result<Self, Error> {
        self.secrets = Some((secrets, crate::pool::normalize(self_url)?));
        Ok(self)
    }

    /// The longest key accepted, in bytes after decoding; longer ones get 414.
    pub fn max_key_bytes(mut self, max_key_bytes: usize) -> Self {
        self.max_key_bytes = max_key_bytes;
        self
    }

    /// The largest request body (a set's value, a batch remove's keys), in bytes (default
    /// `alo_group::DEFAULT_MAX_VALUE_BYTES`, 16 MiB); a larger one gets 413. Keep it at least the
    /// groups' largest cacheable value.
    pub fn max_body_bytes(mut self, max_body_bytes: usize) -> Self {
        self.max_body_bytes = max_body_bytes;
        self
    }

    /// The most keys of a batch get answered (default 64, the pool's default batch, at least 1).
    /// Keys past it are answered `202`, "ask for it alone", without a lookup; a batch body longer
    /// than this many keys of the longest length could be (`max_batch_keys` × (3 ×
    /// `max_key_bytes` + 1) bytes, 48,064 by default) gets 413 before it is read. So one request
    /// starts at most this many loads.
    pub fn max_batch_keys(mut self, max_batch_keys: usize) -> Self {
        self.max_batch_keys = max_batch_keys.max(1);
        self
    }

    /// The largest body of a batch get: its most keys, each of the longest length encoded
    /// (three bytes a byte) and its line break.
    fn max_batch_body_bytes(&self) -> usize {
        let per_key = self.max_key_bytes.saturating_mul(3).saturating_add(1);
        self.max_batch_keys.saturating_mul(per_key)
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
    let shared = Arc::new((groups, options.clone(), Refusals::default()));
    let handler = move |req: Request<Incoming>| {
        let shared = Arc::clone(&shared);
        async move {
            let (groups, options, refusals) = &*shared;
            if !is_write(req.method()) && !is_read(req.method()) {
                return not_allowed();
            }
            // From the head alone: nothing unproven is read, let alone buffered.
            let proven = match prove_head(options, req.method(), req.uri(), req.headers()) {
                Ok(proven) => proven,
                Err(refused) => return refusals.unauthorized(refused),
            };
            if is_read(req.method()) {
                return respond(req, groups, options, Asker::Peer).await;
            }
            let (parts, body) = req.into_parts();
            let batch_get = protocol::is_batch_get(parts.method.as_str(), parts.uri.query());
            let limit = match batch_get {
                true => options.max_batch_body_bytes(),
                false => options.max_body_bytes,
            };
            let body = match read_body(body, limit, options).await {
                Ok(body) => body,
                Err(resp) => return resp,
            };
            if let (Some((secrets, _)), Some(proven)) = (&options.secrets, proven)
                && let Err(refused) = secrets.check_body(&proven, &body, SystemTime::now())
            {
                return refusals.unauthorized(refused);
            }
            if batch_get {
                return batch(&parts, &body, groups, options);
            }
            write(&parts, body, groups, options, Asker::Peer).await
        }
    };
    serve_with(listener, options, handler, shutdown).await
}

/// The proof of a request, checked from its head: `Ok(None)` when the node has no secrets.
fn prove_head(
    options: &ServerOptions,
    method: &Method,
    uri: &http::Uri,
    headers: &HeaderMap,
) -> Result<Option<Proven>, Refused> {
    let Some((secrets, me)) = &options.secrets else {
        return Ok(None);
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let proof = headers.get(AUTH_HEADER).map(|v| v.as_bytes());
    secrets
        .check_head(me, method.as_str(), path, proof, SystemTime::now())
        .map(Some)
}

/// How often at most a server logs the requests it refused for their proof: a flood of forged
/// requests must not flood the log, and one line a while says that someone without the secret
/// (or a member with another) is knocking.
const REFUSALS_LOG_EVERY: Duration = Duration::from_secs(10);

/// The requests refused for their proof since the last line about them.
#[derive(Default)]
struct Refusals {
    unlogged: AtomicU64,
    /// When the last line was written.
    logged: Mutex<Option<tokio::time::Instant>>,
}

impl Refusals {
    /// `401`, and the connection closed: its body, if any, is never read. Logged once per
    /// [`REFUSALS_LOG_EVERY`], with the count and the last reason.
    fn unauthorized(&self, refused: Refused) -> Response<Full<Bytes>> {
        self.unlogged.fetch_add(1, Ordering::Relaxed);
        let mut logged = self.logged.lock().unwrap_or_else(PoisonError::into_inner);
        let now = tokio::time::Instant::now();
        if logged.is_none_or(|at| now.duration_since(at) >= REFUSALS_LOG_EVERY) {
            *logged = Some(now);
            let refused_requests = self.unlogged.swap(0, Ordering::Relaxed);
            tracing::warn!(refused_requests, last_reason = %refused, "refused peer requests without a valid proof");
        }
        drop(logged);
        closing(coded(
            StatusCode::UNAUTHORIZED,
            UNAUTHORIZED,
            "peer authentication failed",
        ))
    }
}

/// `resp` with `connection: close`: hyper closes the connection once it is written, without
/// reading what the client still sends.
fn closing(mut resp: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

fn is_read(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD)
}

fn is_write(method: &Method) -> bool {
    matches!(*method, Method::PUT | Method::DELETE | Method::POST)
}

/// A request's whole body, of at most `limit` bytes, within the header read timeout (a body
/// sent a byte at a time must not hold the connection longer than a head may). A body that
/// announces more than the limit is refused before a byte of it is read.
async fn read_body(
    body: Incoming,
    limit: usize,
    options: &ServerOptions,
) -> Result<Bytes, Response<Full<Bytes>>> {
    let too_large = || {
        closing(coded(
            StatusCode::PAYLOAD_TOO_LARGE,
            TOO_LARGE,
            "the body is larger than the node accepts",
        ))
    };
    if body.size_hint().lower() > limit as u64 {
        return Err(too_large());
    }
    let read = Limited::new(body, limit).collect();
    match tokio::time::timeout(options.limits.header_read_timeout, read).await {
        Ok(Ok(body)) => Ok(body.to_bytes()),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(too_large())
        }
        Ok(Err(_)) => Err(text(
            StatusCode::BAD_REQUEST,
            "the body could not be read\n",
        )),
        Err(_) => Err(text(
            StatusCode::REQUEST_TIMEOUT,
            "the body took too long\n",
        )),
    }
}

/// Answers a write with the statuses of the wire protocol (see the crate README):
/// `PUT {base}{group}/{key}` sets the key, `DELETE {base}{group}/{key}` removes it,
/// `POST {base}{group}` removes the keys of its body (one percent-encoded key per line) and
/// `DELETE {base}{group}` purges the group. A [`Asker::Peer`]'s write is applied on this node
/// alone (`Group::set_local` and the like) and answered `204`. A [`Asker::Client`]'s goes to the
/// whole cluster (`Group::set` and the like) and is answered `200` with a JSON report,
/// `{"members": 3, "unreachable": 0}`; the members it did not reach are logged, not shown. The
/// time to live of a set is `x-alo-ttl-ms` for a client, the `ttl-ms` query for a peer.
pub async fn respond_write(
    req: Request<Incoming>,
    groups: &Groups,
    options: &ServerOptions,
    asker: Asker,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    match read_body(body, options.max_body_bytes, options).await {
        Ok(body) => write(&parts, body, groups, options, asker).await,
        Err(resp) => resp,
    }
}

async fn write(
    parts: &request::Parts,
    body: Bytes,
    groups: &Groups,
    options: &ServerOptions,
    asker: Asker,
) -> Response<Full<Bytes>> {
    let path = parts.uri.path();
    let method = &parts.method;
    let target = match *method {
        Method::PUT => protocol::parse(&options.base_path, path).map(|(g, k)| (g, Some(k))),
        Method::DELETE => match protocol::parse_group(&options.base_path, path) {
            Ok(group) => Ok((group, None)),
            Err(_) => protocol::parse(&options.base_path, path).map(|(g, k)| (g, Some(k))),
        },
        Method::POST => protocol::parse_group(&options.base_path, path).map(|g| (g, None)),
        _ => return not_allowed(),
    };
    let (group_name, key) = match target {
        Ok(target) => target,
        Err(e) => return bad_path(e),
    };
    if key
        .as_ref()
        .is_some_and(|k| k.len() > options.max_key_bytes)
    {
        let why = format!("the key is longer than {} bytes\n", options.max_key_bytes);
        return text(StatusCode::URI_TOO_LONG, why);
    }
    let Some(group) = groups.get(&group_name) else {
        return unknown_group(&group_name);
    };
    match (method.clone(), key) {
        (Method::PUT, Some(key)) => {
            let ttl = match asker {
                Asker::Peer => protocol::ttl_from_query(parts.uri.query()),
                Asker::Client => match parts.headers.get(TTL_HEADER) {
                    None => Ok(None),
                    Some(v) => protocol::parse_ttl(v.as_bytes())
                        .map(Some)
                        .ok_or("x-alo-ttl-ms must be a whole number of milliseconds, at least 1"),
                },
            };
            let ttl = match ttl {
                Ok(ttl) => ttl,
                Err(why) => return text(StatusCode::BAD_REQUEST, format!("{why}\n")),
            };
            match asker {
                Asker::Peer => written(group.set_local(&key, body, ttl).map(|()| None)),
                Asker::Client => written(group.set(&key, body, ttl).await.map(Some)),
            }
        }
        (Method::DELETE, Some(key)) => {
            let keys = [Bytes::from(key)];
            remove(&group, &keys, asker).await
        }
        (Method::POST, None) => match protocol::decode_keys(&body) {
            Ok(keys) if keys.is_empty() => text(StatusCode::BAD_REQUEST, "no keys to remove\n"),
            Ok(keys) if keys.iter().any(|k| k.len() > options.max_key_bytes) => {
                let why = format!("a key is longer than {} bytes\n", options.max_key_bytes);
                text(StatusCode::URI_TOO_LONG, why)
            }
            Ok(keys) => remove(&group, &keys, asker).await,
            Err(e) => bad_path(e),
        },
        (_, _) => match asker {
            Asker::Peer => {
                group.purge_local();
                written(Ok(None))
            }
            Asker::Client => written(Ok(Some(group.purge().await))),
        },
    }
}

async fn remove(group: &Group, keys: &[Bytes], asker: Asker) -> Response<Full<Bytes>> {
    match asker {
        Asker::Peer => {
            group.remove_local(keys);
            written(Ok(None))
        }
        Asker::Client => written(group.remove_keys(keys).await.map(Some)),
    }
}

/// The answer to a write: `204` for a peer's, `200` with the report for a client's.
fn written(result: Result<Option<Written>, GroupError>) -> Response<Full<Bytes>> {
    match result {
        Ok(None) => {
            let mut resp = Response::new(Full::new(Bytes::new()));
            *resp.status_mut() = StatusCode::NO_CONTENT;
            resp
        }
        Ok(Some(report)) => {
            let body = format!(
                "{{\"members\": {}, \"unreachable\": {}}}\n",
                report.members,
                report.unreachable.len()
            );
            let mut resp = Response::new(Full::new(Bytes::from(body)));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp
        }
        Err(GroupError::ValueTooLarge { max, .. }) => {
            let why = format!("the value is larger than the {max} bytes a value may have");
            let mut resp = text(StatusCode::PAYLOAD_TOO_LARGE, format!("{why}\n"));
            resp.headers_mut()
                .insert(ERROR_HEADER, HeaderValue::from_static(TOO_LARGE));
            resp
        }
        Err(GroupError::EmptyKey) => text(StatusCode::BAD_REQUEST, "the key is empty\n"),
        Err(GroupError::ZeroTtl) => text(StatusCode::BAD_REQUEST, "the TTL must be above zero\n"),
        // The owner's URL and the transport's message are in the log.
        Err(GroupError::Unreachable(_)) => text(
            StatusCode::BAD_GATEWAY,
            "the key's owner did not store the value\n",
        ),
        Err(e) => {
            tracing::error!(error = %e, "unexpected error answering a write");
            text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n")
        }
    }
}

fn not_allowed() -> Response<Full<Bytes>> {
    let mut resp = text(
        StatusCode::METHOD_NOT_ALLOWED,
        "allowed: GET, HEAD, PUT, DELETE, POST\n",
    );
    resp.headers_mut().insert(
        header::ALLOW,
        HeaderValue::from_static("GET, HEAD, PUT, DELETE, POST"),
    );
    resp
}

fn bad_path(e: PathError) -> Response<Full<Bytes>> {
    match e {
        PathError::Malformed(why) => {
            text(StatusCode::BAD_REQUEST, format!("malformed path: {why}\n"))
        }
        PathError::BadEncoding => text(
            StatusCode::BAD_REQUEST,
            "bad percent-encoding in the path\n",
        ),
    }
}

fn unknown_group(name: &str) -> Response<Full<Bytes>> {
    let mut resp = text(StatusCode::NOT_FOUND, format!("no group {name:?}\n"));
    resp.headers_mut()
        .insert(ERROR_HEADER, HeaderValue::from_static(UNKNOWN_GROUP));
    resp
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
        Err(e) => return bad_path(e),
    };
    if key.len() > options.max_key_bytes {
        let why = format!("the key is longer than {} bytes\n", options.max_key_bytes);
        return text(StatusCode::URI_TOO_LONG, why);
    }
    let Some(group) = groups.get(&group_name) else {
        return unknown_group(&group_name);
    };
    let got = match asker {
        Asker::Peer => group.lookup_local(&key).await,
        Asker::Client => group.lookup(&key).await,
    };
    match got {
        Ok(found) => value(found),
        Err(e) => {
            let Failure {
                status,
                code,
                text: why,
            } = failure(e);
            let mut resp = text(status, why);
            if let Some(code) = code {
                resp.headers_mut()
                    .insert(ERROR_HEADER, HeaderValue::from_static(code));
            }
            resp
        }
    }
}

/// How a lookup that produced no value is answered, alone or in a batch.
struct Failure {
    status: StatusCode,
    /// The `x-alo-error` code.
    code: Option<&'static str>,
    text: Bytes,
}

fn failure(e: GroupError) -> Failure {
    let fail = |status, code, text: &'static str| Failure {
        status,
        code,
        text: Bytes::from_static(text.as_bytes()),
    };
    match e {
        GroupError::NotFound => fail(StatusCode::NOT_FOUND, Some(NOT_FOUND), "key not found\n"),
        GroupError::EmptyKey => fail(StatusCode::BAD_REQUEST, None, "the key is empty\n"),
        GroupError::InvalidKey(reason) => Failure {
            status: StatusCode::BAD_REQUEST,
            code: Some(INVALID_KEY),
            text: Bytes::from(format!("invalid key: {reason}\n")),
        },
        // The cause (an origin's URL, a path, a panic's message) is in the log, written where
        // the load failed; a client gets the category.
        GroupError::Load(_) => fail(
            StatusCode::BAD_GATEWAY,
            Some(LOAD_FAILED),
            "the origin failed\n",
        ),
        GroupError::Timeout => fail(
            StatusCode::GATEWAY_TIMEOUT,
            Some(LOAD_TIMEOUT),
            "the load timed out\n",
        ),
        GroupError::Panicked(_) => fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            Some(LOAD_FAILED),
            "internal error\n",
        ),
        e => {
            tracing::error!(error = %e, "unexpected error answering a request");
            fail(StatusCode::INTERNAL_SERVER_ERROR, None, "internal error\n")
        }
    }
}

/// Answers a peer's batch get, `POST {base}{group}?get` with one percent-encoded key per line:
/// `200` with one frame per key, in the order asked (see the crate README). A key that is not
/// answered at once, because this node must load it, is answered `202` and starts loading:
/// the asker then asks for it alone and joins that load. So a slow key holds up no other. The
/// keys past the first `max_batch_keys` are answered `202` without a lookup: one batch starts
/// at most that many loads.
fn batch(
    parts: &request::Parts,
    body: &[u8],
    groups: &Groups,
    options: &ServerOptions,
) -> Response<Full<Bytes>> {
    let group_name = match protocol::parse_group(&options.base_path, parts.uri.path()) {
        Ok(group) => group,
        Err(e) => return bad_path(e),
    };
    let keys = match protocol::decode_keys(body) {
        Ok(keys) if keys.is_empty() => return text(StatusCode::BAD_REQUEST, "no keys to get\n"),
        Ok(keys) => keys,
        Err(e) => return bad_path(e),
    };
    if keys.iter().any(|k| k.len() > options.max_key_bytes) {
        let why = format!("a key is longer than {} bytes\n", options.max_key_bytes);
        return text(StatusCode::URI_TOO_LONG, why);
    }
    let Some(group) = groups.get(&group_name) else {
        return unknown_group(&group_name);
    };
    let mut frames = Vec::new();
    let mut now = Context::from_waker(Waker::noop());
    let (answered, excess) = keys.split_at(keys.len().min(options.max_batch_keys));
    for key in answered {
        // Polled once: a hit is answered at once; a miss starts its load, which belongs to the
        // group and goes on when this lookup is dropped.
        match pin!(group.lookup_local(key)).poll(&mut now) {
            Poll::Ready(Ok(found)) => {
                let ms = found.ttl.map(|ttl| ttl.as_millis().to_string());
                let token = match (found.stale, &ms) {
                    (Some(why), _) => Token::Stale(why.as_str().as_bytes()),
                    (None, Some(ms)) => Token::Ttl(ms.as_bytes()),
                    (None, None) => Token::None,
                };
                protocol::push_frame(&mut frames, 200, token, &found.value);
            }
            Poll::Ready(Err(e)) => {
                let Failure { status, code, text } = failure(e);
                let token = code.map_or(Token::None, |c| Token::Code(c.as_bytes()));
                protocol::push_frame(&mut frames, status.as_u16(), token, &text);
            }
            Poll::Pending => protocol::push_frame(&mut frames, PENDING, Token::None, b""),
        }
    }
    for _ in excess {
        protocol::push_frame(&mut frames, PENDING, Token::None, b"");
    }
    let mut resp = Response::new(Full::new(Bytes::from(frames)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    resp
}

/// A `200` with the value, how long it stays fresh and whether it is stale.
fn value(found: Found) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(found.value));
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Some(why) = found.stale {
        headers.insert(STALE_HEADER, HeaderValue::from_static(why.as_str()));
    } else if let Some(ttl) = found.ttl {
        headers.insert(TTL_HEADER, HeaderValue::from(ttl.as_millis() as u64));
    }
    resp
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
