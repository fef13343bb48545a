//! The client side: asks one peer for a key, over a pooled keep-alive connection, and keeps
//! track of whether the peer answers at all.

use std::fmt;
use std::pin::pin;
use std::sync::{Arc, Weak};
use std::time::Duration;

use alo_group::{BoxFuture, Found, LoadError, PeerGetter, Stale};
use bytes::Bytes;
use http::{Method, Request, StatusCode, response};
use http_body_util::{BodyExt, Full, Limited};

use crate::conns::{Conns, SendError};
use crate::health::{Change, Health, HealthOptions, PeerStats};
use crate::protocol::{
    self, ERROR_HEADER, INVALID_KEY, LOAD_FAILED, LOAD_TIMEOUT, NOT_FOUND, STALE_HEADER, TTL_HEADER,
};
use crate::{AUTH_HEADER, PeerSecrets};

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
///   [`LoadError::Timeout`].
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
    timeout: Duration,
    max_response_bytes: usize,
    health: Health,
    /// Signs every request when the cluster has secrets.
    secrets: Option<PeerSecrets>,
}

/// Why an exchange produced no answer.
struct NoAnswer {
    reason: String,
    /// Whether it says something about the peer's health (a reset does, a response over the
    /// limit does not).
    peer_fault: bool,
}

impl HttpGetter {
    pub(crate) fn new(
        url: String,
        base_path: String,
        connect_timeout: Duration,
        timeout: Duration,
        max_response_bytes: usize,
        health: HealthOptions,
        secrets: Option<PeerSecrets>,
    ) -> Self {
        HttpGetter {
            inner: Arc::new(Peer {
                health: Health::new(url.clone(), health),
                conns: Conns::new(url.trim_start_matches("http://"), connect_timeout),
                url,
                base_path,
                timeout,
                max_response_bytes,
                secrets,
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
        self.inner.health.stats()
    }

    async fn fetch(&self, group: &str, key: &[u8]) -> Result<Found, LoadError> {
        let peer = &self.inner;
        let health = &peer.health;
        if health.is_down() {
            return Err(LoadError::unreachable(format_args!("{} is down", peer.url)));
        }
        let path = protocol::path(&peer.base_path, group, key);
        let exchange = peer.exchange(Method::GET, path, Bytes::new());
        let mut exchange = pin!(tokio::time::timeout(peer.timeout, exchange));
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
                    Peer::probe_soon(&self.inner);
                }
            }
        };
        let (parts, body) = match answer {
            Ok(Ok(answer)) => answer,
            Ok(Err(no_answer)) => {
                if no_answer.peer_fault {
                    Peer::failed(&self.inner, &no_answer.reason);
                }
                return Err(LoadError::unreachable(no_answer.reason));
            }
            Err(_) => {
                let why = format!("{}: no answer within {:?}", peer.url, peer.timeout);
                Peer::failed(&self.inner, &why);
                return Err(LoadError::Timeout);
            }
        };
        health.success();
        peer.interpret(&parts, body)
    }

    /// One write: `method` on `path` with `body`, answered `204` when the peer applied it.
    /// Sent whatever the peer's health: a write must reach a member, or report that it did not.
    async fn write(&self, method: Method, path: String, body: Bytes) -> Result<(), LoadError> {
        let peer = &self.inner;
        let answer = tokio::time::timeout(peer.timeout, peer.exchange(method, path, body)).await;
        match answer {
            Ok(Ok((parts, _))) if parts.status == StatusCode::NO_CONTENT => Ok(()),
            Ok(Ok((parts, body))) => {
                let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
                Err(LoadError::unreachable(format_args!(
                    "{} answered {}: {}",
                    peer.url,
                    parts.status,
                    text.trim_end()
                )))
            }
            Ok(Err(no_answer)) => Err(LoadError::unreachable(no_answer.reason)),
            Err(_) => Err(LoadError::unreachable(format_args!(
                "{}: no answer within {:?}",
                peer.url, peer.timeout
            ))),
        }
    }
}

impl Peer {
    /// One request for `path` and its whole response body.
    async fn exchange(
        &self,
        method: Method,
        path: String,
        body: Bytes,
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
        let body = Limited::new(body, self.max_response_bytes)
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
            let proof = secrets.proof(method.as_str(), path, &body, std::time::SystemTime::now());
            request = request.header(AUTH_HEADER, proof);
        }
        request.body(Full::new(body))
    }

    /// What an answer means for the group.
    fn interpret(&self, parts: &response::Parts, body: Bytes) -> Result<Found, LoadError> {
        let code = parts
            .headers
            .get(ERROR_HEADER)
            .and_then(|v| v.to_str().ok());
        let text = || {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
            text.trim_end().to_string()
        };
        match (parts.status, code) {
            (StatusCode::OK, _) => Ok(found(parts, body)),
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

/// A `200`'s value with its freshness. A value marked stale, or whose time to live cannot be
/// read, is served and not kept.
fn found(parts: &response::Parts, body: Bytes) -> Found {
    let stale = match parts.headers.get(STALE_HEADER).map(|v| v.as_bytes()) {
        None => None,
        Some(b"while-revalidate") => Some(Stale::WhileRevalidate),
        Some(_) => Some(Stale::IfError),
    };
    if let Some(why) = stale {
        return Found::stale(body, why);
    }
    let ttl = parts
        .headers
        .get(TTL_HEADER)
        .map(|v| protocol::parse_ttl(v.as_bytes()).unwrap_or(Duration::ZERO));
    Found::new(body, ttl)
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
