//! The client side: asks one peer for a key, over a pooled keep-alive connection, and keeps
//! track of whether the peer answers at all.

use std::fmt;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use alo_group::{BoxFuture, Found, LoadError, PeerGetter, Stale};
use bytes::Bytes;
use http::{Method, Request, StatusCode, response};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Body as _;
use tokio::sync::oneshot;

use crate::conns::{Conns, SendError};
use crate::health::{Change, Health, HealthOptions, PeerStats};
use crate::protocol::{
    self, ERROR_HEADER, INVALID_KEY, LOAD_FAILED, LOAD_TIMEOUT, NOT_FOUND, PENDING, STALE_HEADER,
    TTL_HEADER, Token,
};
use crate::{AUTH_HEADER, PeerSecrets, PoolOptions};

/// A [`PeerGetter`] that asks one peer over HTTP.
///
/// What the peer's answer means for the group (see the crate README for the protocol):
/// - `200`: the value, with the time the owner has left on it (`x-alo-ttl-ms`) and whether it
///   was served stale (`x-alo-stale`). `404 not-found`, `400 invalid-key`, `502 load-failed` and
///   `504 load-timeout`: the owner's answer, returned to the caller as it is, so the key is
///   not loaded a second time here.
/// - No answer: the connection was refused, did not connect within the connect timeout, was
///   reset before a response, or the peer was marked down while the request waited. That is
///   [`LoadError::Unreachable`], and the group loads the key itself. So is an answer outside the
///   protocol (another status, a body over the response limit).
/// - No answer within the pool's timeout (the owner's load deadline plus a margin):
///   [`LoadError::Timeout`]. A head that announces a body over the response limit is refused
///   at once, as a failure of the peer: the group loads the key itself.
/// - Writes wait the pool's write timeout, count against the peer's health as gets do, and are
///   not sent to a peer marked down: it is reported unreached at once.
///
/// Keys asked for while others bound for the same peer and group wait to be sent go out
/// together, as one batch get (see the crate README); each key's answer means what it would
/// alone.
///
/// Connect errors, resets and timeouts count against the peer's health; enough of them in a row
/// mark it down (see [`PoolOptions`](crate::PoolOptions)). A request that has waited a probe
/// timeout asks for a probe of the peer (one at a time), so a peer that hangs with connections
/// open is found out within a few probe timeouts, not at the end of the load deadline.
#[derive(Clone)]
pub struct HttpGetter {
    inner: Arc<Peer>,
}

/// What every clone of a getter shares, and what probes hold on to.
struct Peer {
    /// `http://host:port`, no trailing slash.
    url: String,
    base_path: String,
    conns: Conns,
    /// How long a get waits for the owner's answer.
    timeout: Duration,
    /// How long a write waits for the member's answer.
    write_timeout: Duration,
    max_response_bytes: usize,
    health: Health,
    /// Signs every request when the cluster has secrets.
    secrets: Option<PeerSecrets>,
    /// The most keys in one batch get; 1 sends every key alone.
    max_batch_keys: usize,
    /// Keys waiting to be sent, by group.
    queue: Mutex<Vec<Queued>>,
    batches: AtomicU64,
    batched_keys: AtomicU64,
}

/// The keys of one group waiting for their batch to be sent.
struct Queued {
    group: String,
    waiters: Vec<Waiter>,
}

/// A key in a batch, and where its answer goes.
struct Waiter {
    key: Bytes,
    answer: oneshot::Sender<Answer>,
}

/// A batch's answer for one key.
enum Answer {
    Found(Result<Found, LoadError>),
    /// The owner is loading the key: ask for it alone, which joins that load.
    AskAlone,
}

/// Why an exchange produced no answer.
struct NoAnswer {
    reason: String,
    /// Whether it says something about the peer's health (a reset does, a response over the
    /// limit does not).
    peer_fault: bool,
}

impl HttpGetter {
    pub(crate) fn new(url: String, options: &PoolOptions) -> Self {
        let health: HealthOptions = options.health;
        HttpGetter {
            inner: Arc::new(Peer {
                health: Health::new(url.clone(), health),
                conns: Conns::new(url.trim_start_matches("http://"), options.connect_timeout),
                url,
                base_path: options.base_path.clone(),
                timeout: options.timeout,
                write_timeout: options.write_timeout,
                max_response_bytes: options.max_response_bytes,
                secrets: options.secrets.clone(),
                max_batch_keys: options.max_batch_keys,
                queue: Mutex::new(Vec::new()),
                batches: AtomicU64::new(0),
                batched_keys: AtomicU64::new(0),
            }),
        }
    }

    /// The peer's URL.
    pub fn peer(&self) -> &str {
        &self.inner.url
    }

    /// Whether the peer is marked down: its keys are loaded locally until a probe answers.
    pub fn is_down(&self) -> bool {
        self.inner.health.is_down()
    }

    /// The peer's health and its counters.
    pub fn stats(&self) -> PeerStats {
        let peer = &self.inner;
        PeerStats {
            batches: peer.batches.load(Ordering::Relaxed),
            batched_keys: peer.batched_keys.load(Ordering::Relaxed),
            ..peer.health.stats()
        }
    }

    /// Asks for `key`: alone, or in the batch of its group that waits to be sent, which is
    /// started when there is none.
    async fn fetch(&self, group: &str, key: &[u8]) -> Result<Found, LoadError> {
        let peer = &self.inner;
        if peer.health.is_down() {
            return Err(LoadError::unreachable(format_args!("{} is down", peer.url)));
        }
        if peer.max_batch_keys == 1 {
            return Peer::get_alone(peer, group, key).await;
        }
        let (answer, rx) = oneshot::channel();
        let waiter = Waiter {
            key: Bytes::copy_from_slice(key),
            answer,
        };
        if peer.enqueue(group, waiter) {
            tokio::spawn(Peer::send_batch(Arc::clone(peer), group.to_string()));
        }
        match rx.await {
            Ok(Answer::Found(found)) => found,
            Ok(Answer::AskAlone) => Peer::get_alone(peer, group, key).await,
            // The task sending the batch panicked, or the runtime is shutting down.
            Err(_) => Err(LoadError::unreachable(format_args!(
                "{}: the batch was dropped",
                peer.url
            ))),
        }
    }

    /// One write: `method` on `path` with `body`, answered `204` when the peer applied it.
    /// A peer marked down is not asked: it is reported unreached at once. A write that gets no
    /// answer within the write timeout counts against the peer's health as a get does.
    async fn write(&self, method: Method, path: String, body: Bytes) -> Result<(), LoadError> {
        let peer = &self.inner;
        if peer.health.is_down() {
            return Err(LoadError::unreachable(format_args!("{} is down", peer.url)));
        }
        let (timeout, limit) = (peer.write_timeout, peer.max_response_bytes);
        match Peer::ask(peer, method, path, body, limit, timeout).await {
            Ok((parts, _)) if parts.status == StatusCode::NO_CONTENT => Ok(()),
            Ok((parts, body)) => {
                let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
                Err(LoadError::unreachable(format_args!(
                    "{} answered {}: {}",
                    peer.url,
                    parts.status,
                    text.trim_end()
                )))
            }
            Err(LoadError::Timeout) => Err(LoadError::unreachable(format_args!(
                "{}: no answer within {timeout:?}",
                peer.url
            ))),
            Err(e) => Err(e),
        }
    }
}

impl Peer {
    /// One `GET` for `key`, and what its answer means.
    async fn get_alone(peer: &Arc<Peer>, group: &str, key: &[u8]) -> Result<Found, LoadError> {
        let path = protocol::path(&peer.base_path, group, key);
        let limit = peer.max_response_bytes;
        let (parts, body) =
            Peer::ask(peer, Method::GET, path, Bytes::new(), limit, peer.timeout).await?;
        peer.interpret(parts.status, token(&parts), body)
    }

    /// Queues `waiter` in its group's batch; `true` when it is the first, whose batch must be
    /// sent.
    fn enqueue(&self, group: &str, waiter: Waiter) -> bool {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(queued) = queue.iter_mut().find(|q| q.group == group) {
            queued.waiters.push(waiter);
            return false;
        }
        queue.push(Queued {
            group: group.to_string(),
            waiters: vec![waiter],
        });
        true
    }

    /// Takes up to a batch of `group`'s waiting keys, dropping those nobody waits for any
    /// more. The rest stay queued, and `true` says a further batch must be sent for them.
    fn take_batch(&self, group: &str) -> (Vec<Waiter>, bool) {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(at) = queue.iter().position(|q| q.group == group) else {
            return (Vec::new(), false);
        };
        let waiters = &mut queue[at].waiters;
        waiters.retain(|w| !w.answer.is_closed());
        if waiters.len() <= self.max_batch_keys {
            return (queue.swap_remove(at).waiters, false);
        }
        let rest = waiters.split_off(self.max_batch_keys);
        (std::mem::replace(waiters, rest), true)
    }

    /// Sends the batch of `group`'s waiting keys, once the tasks ready to run now have run (any
    /// of them may add a key), and gives each key its answer.
    fn send_batch(peer: Arc<Peer>, group: String) -> BoxFuture<'static, ()> {
        // Boxed: it spawns itself for a batch's overflow, and the type of an `async fn` that
        // contains itself cannot be shown to be `Send`.
        Box::pin(async move {
            tokio::task::yield_now().await;
            let (waiters, more) = peer.take_batch(&group);
            if more {
                tokio::spawn(Peer::send_batch(Arc::clone(&peer), group.clone()));
            }
            let answers = match waiters.as_slice() {
                [] => return,
                [one] => vec![Answer::Found(
                    Peer::get_alone(&peer, &group, &one.key).await,
                )],
                _ => Peer::get_batch(&peer, &group, &waiters).await,
            };
            for (waiter, answer) in waiters.into_iter().zip(answers) {
                // A waiter that left has nobody to tell.
                let _ = waiter.answer.send(answer);
            }
        })
    }

    /// One batch get for `waiters`' keys, and the answer for each.
    async fn get_batch(peer: &Arc<Peer>, group: &str, waiters: &[Waiter]) -> Vec<Answer> {
        peer.batches.fetch_add(1, Ordering::Relaxed);
        peer.batched_keys
            .fetch_add(waiters.len() as u64, Ordering::Relaxed);
        let keys: Vec<Bytes> = waiters.iter().map(|w| w.key.clone()).collect();
        let path = protocol::batch_path(&peer.base_path, group);
        // Each value within the limit of one, plus its frame's head.
        let limit = (peer.max_response_bytes.saturating_add(64)).saturating_mul(keys.len());
        let body = protocol::encode_keys(&keys);
        let answered = Peer::ask(peer, Method::POST, path, body, limit, peer.timeout).await;
        let every = |e: LoadError| {
            waiters
                .iter()
                .map(|_| Answer::Found(Err(e.clone())))
                .collect()
        };
        let (parts, body) = match answered {
            Ok(answer) => answer,
            Err(e) => return every(e),
        };
        if parts.status != StatusCode::OK {
            return every(
                peer.interpret(parts.status, token(&parts), body)
                    .err()
                    .unwrap_or_else(|| LoadError::unreachable("a batch answered without frames")),
            );
        }
        match protocol::frames(&body) {
            Some(frames) if frames.len() == waiters.len() => frames
                .into_iter()
                .map(|(status, token, value)| match status {
                    PENDING => Answer::AskAlone,
                    // As a single answer over the limit would be.
                    _ if value.len() > peer.max_response_bytes => {
                        Answer::Found(Err(LoadError::unreachable(format_args!(
                            "{}: a value over the response limit",
                            peer.url
                        ))))
                    }
                    status => {
                        let status =
                            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
                        Answer::Found(peer.interpret(status, token, value))
                    }
                })
                .collect(),
            _ => every(LoadError::unreachable(format_args!(
                "{}: a batch answer that does not follow the protocol",
                peer.url
            ))),
        }
    }

    /// One request, within `timeout`, given up when the peer is marked down meanwhile, and
    /// counted for the peer's health. `Unreachable` or `Timeout` when no answer came.
    async fn ask(
        peer: &Arc<Peer>,
        method: Method,
        path: String,
        body: Bytes,
        limit: usize,
        timeout: Duration,
    ) -> Result<(response::Parts, Bytes), LoadError> {
        let health = &peer.health;
        let exchange = peer.exchange(method, path, body, limit);
        let mut exchange = pin!(tokio::time::timeout(timeout, exchange));
        let mut went_down = pin!(health.went_down());
        let answer = loop {
            tokio::select! {
                answer = &mut exchange => break answer,
                () = &mut went_down => {
                    return Err(LoadError::unreachable(format_args!(
                        "{} was marked down while the request waited",
                        peer.url
                    )));
                }
                // Still waiting: a slow load, or a peer that hangs? A probe tells.
                () = tokio::time::sleep(health.options().probe_timeout) => {
                    Peer::probe_soon(peer);
                }
            }
        };
        match answer {
            Ok(Ok(answer)) => {
                health.success();
                Ok(answer)
            }
            Ok(Err(no_answer)) => {
                if no_answer.peer_fault {
                    Peer::failed(peer, &no_answer.reason);
                }
                Err(LoadError::unreachable(no_answer.reason))
            }
            Err(_) => {
                let why = format!("{}: no answer within {timeout:?}", peer.url);
                Peer::failed(peer, &why);
                Err(LoadError::Timeout)
            }
        }
    }

    /// One request for `path` and its whole response body, of at most `limit` bytes.
    async fn exchange(
        &self,
        method: Method,
        path: String,
        body: Bytes,
        limit: usize,
    ) -> Result<(response::Parts, Bytes), NoAnswer> {
        let no_answer = |reason: String, peer_fault| NoAnswer { reason, peer_fault };
        let make = || self.request(method.clone(), &path, body.clone());
        let (response, conn) = self.conns.send(make).await.map_err(|e| {
            let fault = !matches!(e, SendError::Build(_));
            let why = match &e {
                SendError::Request(e) => format!("request failed: {}", chain(e)),
                other => other.to_string(),
            };
            no_answer(format!("{}: {why}", self.url), fault)
        })?;
        let (parts, body) = response.into_parts();
        // A head that announces more than the limit is outside the protocol: refused at once,
        // without waiting for a body that may never come, and the connection dropped.
        let announced = body.size_hint().lower();
        if announced > limit as u64 {
            return Err(no_answer(
                format!(
                    "{}: the answer announces {announced} bytes, over the limit of {limit}",
                    self.url
                ),
                true,
            ));
        }
        let body = Limited::new(body, limit)
            .collect()
            .await
            .map_err(|e| {
                // A body over the limit is a mismatch of configuration, not a sick peer.
                let too_large = e
                    .downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some();
                no_answer(
                    format!("{}: reading the response: {e}", self.url),
                    !too_large,
                )
            })?
            .to_bytes();
        self.conns.give_back(conn);
        Ok((parts, body))
    }

    /// A request for `path` (and query), with its proof when the cluster has secrets.
    fn request(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<Request<Full<Bytes>>, http::Error> {
        let mut request = Request::builder().method(method.clone()).uri(path);
        if let Some(secrets) = &self.secrets {
            let now = std::time::SystemTime::now();
            let proof = secrets.proof(&self.url, method.as_str(), path, &body, now);
            request = request.header(AUTH_HEADER, proof);
        }
        request.body(Full::new(body))
    }

    /// What an answer (a response, or a frame of a batch's) means for the group.
    fn interpret(
        &self,
        status: StatusCode,
        token: Token<'_>,
        body: Bytes,
    ) -> Result<Found, LoadError> {
        let code = match token {
            Token::Code(code) => std::str::from_utf8(code).ok(),
            _ => None,
        };
        let text = || {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
            text.trim_end().to_string()
        };
        match (status, code) {
            (StatusCode::OK, _) => Ok(found(token, body)),
            (StatusCode::NOT_FOUND, Some(NOT_FOUND)) => Err(LoadError::NotFound),
            (StatusCode::BAD_REQUEST, Some(INVALID_KEY)) => {
                let text = text();
                let reason = text.trim_start_matches("invalid key: ");
                Err(LoadError::InvalidKey(reason.into()))
            }
            (_, Some(LOAD_FAILED)) => Err(LoadError::failed(format_args!(
                "the owner's load failed: {}",
                text()
            ))),
            (_, Some(LOAD_TIMEOUT)) => Err(LoadError::Timeout),
            (status, _) => Err(LoadError::unreachable(format_args!(
                "{} answered {status}: {}",
                self.url,
                text()
            ))),
        }
    }

    /// Counts a failure against the peer; the one that marks it down starts bringing it back.
    fn failed(peer: &Arc<Peer>, reason: &dyn fmt::Display) {
        if peer.health.failure(reason) == Change::WentDown {
            tokio::spawn(revive(Arc::downgrade(peer)));
        }
    }

    /// Probes the peer on a task of its own, unless a probe is running already.
    fn probe_soon(peer: &Arc<Peer>) {
        if !peer.health.start_probe() {
            return;
        }
        let peer = Arc::clone(peer);
        tokio::spawn(async move {
            let result = peer.probe().await;
            peer.health.end_probe();
            match result {
                Ok(()) => peer.health.success(),
                Err(reason) => Peer::failed(&peer, &reason),
            }
        });
    }

    /// `GET {base}` within the probe timeout: any HTTP answer means the peer is serving.
    async fn probe(&self) -> Result<(), String> {
        let make = || self.request(Method::GET, &self.base_path, Bytes::new());
        let limit = self.health.options().probe_timeout;
        // The probe's connection is dropped with its answer: probes are rare.
        match tokio::time::timeout(limit, self.conns.send(make)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("{}: probe failed: {e}", self.url)),
            Err(_) => Err(format!(
                "{}: no answer to a probe within {limit:?}",
                self.url
            )),
        }
    }
}

/// Brings a down peer back: waits its backoff, probes, and again with a doubled backoff until a
/// probe answers. Ends when the peer is up, or gone from the membership.
async fn revive(peer: Weak<Peer>) {
    loop {
        let Some(wait) = peer.upgrade().map(|p| p.health.next_backoff()) else {
            return;
        };
        tokio::time::sleep(wait).await;
        let Some(peer) = peer.upgrade() else { return };
        if !peer.health.is_down() {
            return;
        }
        if !peer.health.start_probe() {
            continue;
        }
        let result = peer.probe().await;
        peer.health.end_probe();
        match result {
            Ok(()) => return peer.health.success(),
            Err(reason) => {
                peer.health.failure(&reason);
            }
        }
    }
}

/// What a response's headers say besides its status, as a batch's frame says it.
fn token(parts: &response::Parts) -> Token<'_> {
    let header = |name| {
        parts
            .headers
            .get(name)
            .map(|v: &http::HeaderValue| v.as_bytes())
    };
    if parts.status != StatusCode::OK {
        return header(ERROR_HEADER).map_or(Token::None, Token::Code);
    }
    if let Some(why) = header(STALE_HEADER) {
        return Token::Stale(why);
    }
    header(TTL_HEADER).map_or(Token::None, Token::Ttl)
}

/// A `200`'s value with its freshness. A value marked stale, or whose time to live cannot be
/// read, is served and not kept.
fn found(token: Token<'_>, body: Bytes) -> Found {
    match token {
        Token::Stale(b"while-revalidate") => Found::stale(body, Stale::WhileRevalidate),
        Token::Stale(_) => Found::stale(body, Stale::IfError),
        Token::Ttl(ms) => {
            let ttl = protocol::parse_ttl(ms).unwrap_or(Duration::ZERO);
            Found::new(body, Some(ttl))
        }
        Token::None | Token::Code(_) => Found::new(body, None),
    }
}

impl PeerGetter for HttpGetter {
    fn name(&self) -> &str {
        &self.inner.url
    }

    fn get<'a>(&'a self, group: &'a str, key: &'a [u8]) -> BoxFuture<'a, Result<Found, LoadError>> {
        Box::pin(self.fetch(group, key))
    }

    fn set<'a>(
        &'a self,
        group: &'a str,
        key: &'a [u8],
        value: Bytes,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), LoadError>> {
        Box::pin(async move {
            let mut path = protocol::path(&self.inner.base_path, group, key);
            // In the query, so that a proof, which covers the path and query, covers it too.
            if let Some(ttl) = ttl {
                let ms = ttl.as_millis().max(1);
                path.push_str(&format!("?{}={ms}", protocol::TTL_QUERY));
            }
            self.write(Method::PUT, path, value).await
        })
    }

    fn remove<'a>(
        &'a self,
        group: &'a str,
        keys: &'a [Bytes],
    ) -> BoxFuture<'a, Result<(), LoadError>> {
        Box::pin(async move {
            let base = &self.inner.base_path;
            match keys {
                [key] => {
                    let path = protocol::path(base, group, key);
                    self.write(Method::DELETE, path, Bytes::new()).await
                }
                keys => {
                    let path = protocol::group_path(base, group);
                    self.write(Method::POST, path, protocol::encode_keys(keys))
                        .await
                }
            }
        })
    }

    fn purge<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<(), LoadError>> {
        Box::pin(async move {
            let path = protocol::group_path(&self.inner.base_path, group);
            self.write(Method::DELETE, path, Bytes::new()).await
        })
    }
}

impl fmt::Debug for HttpGetter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpGetter")
            .field("peer", &self.inner.url)
            .field("timeout", &self.inner.timeout)
            .field("down", &self.is_down())
            .finish_non_exhaustive()
    }
}

/// An error and its sources, `: `-separated: hyper's own messages are terse.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
