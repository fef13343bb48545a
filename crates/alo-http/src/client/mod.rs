//! The asking side: one member as this node reaches it, over pooled keep-alive connections, with
//! its health kept and its keys batched.

mod batch;
mod conns;

use std::fmt;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use alo_group::{BoxFuture, Found, LoadError, Peer};
use bytes::Bytes;
use http::{Method, Request as HttpRequest, StatusCode, response};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Body as _;

use self::batch::Batcher;
use self::conns::{Conns, SendError};
use crate::health::{self, Health, PeerStats, Probed};
use crate::protocol::{Answer, Request, encode_keys};
use crate::{AUTH_HEADER, PeerSecrets, PoolOptions};

/// Another member over HTTP: the [`Peer`] an [`HttpPool`](crate::HttpPool) names a key's owner
/// with. A cheap handle; every clone shares the member's connections, health and batches.
///
/// What the member's answer means for the group (see the crate README for the protocol):
/// - `200`: the value, with the time the owner has left on it (`x-alo-ttl-ms`) and whether it
///   was served stale (`x-alo-stale`). `404 not-found`, `400 invalid-key`, `502 load-failed` and
///   `504 load-timeout`: the owner's answer, returned to the caller as it is, so the key is
///   not loaded a second time here.
/// - No answer: the connection was refused, did not connect within the connect timeout, was
///   reset before a response, the member was marked down while the request waited, or the
///   deadline passed. That is [`LoadError::Unreachable`], and the group loads the key itself if
///   there is time left. So is an answer outside the protocol (another status, a body over the
///   response limit; a head that announces one is refused at once).
///
/// Connect errors, resets and requests without an answer by their deadline count against the
/// member's health; enough of them in a row mark it down (see [`PoolOptions`]). A request that
/// has waited a probe timeout asks for a probe of the member (one at a time), so a member that
/// hangs with connections open is found out within a few probe timeouts. Writes are not sent to
/// a member marked down: it is reported unreached at once.
#[derive(Clone)]
pub(crate) struct PeerClient {
    remote: Arc<Remote>,
}

/// What every clone of a client shares, and what probes hold on to.
pub(crate) struct Remote {
    /// `http://host:port`, no trailing slash: the member's name on the ring.
    url: String,
    base_path: String,
    conns: Conns,
    max_response_bytes: usize,
    health: Health,
    /// Signs every request when the cluster has secrets.
    secrets: Option<PeerSecrets>,
    batcher: Batcher,
}

/// Why an exchange produced no answer.
struct NoAnswer {
    reason: String,
    /// Whether it says something about the member's health (a reset does, a body over the
    /// limit that was not announced does not).
    peer_fault: bool,
}

impl PeerClient {
    pub(crate) fn new(url: String, options: &PoolOptions) -> Self {
        PeerClient {
            remote: Arc::new(Remote {
                health: Health::new(url.clone(), options.health),
                conns: Conns::new(url.trim_start_matches("http://"), options.connect_timeout),
                url,
                base_path: options.base_path.clone(),
                max_response_bytes: options.max_response_bytes,
                secrets: options.secrets.clone(),
                batcher: Batcher::new(options.max_batch_keys),
            }),
        }
    }

    /// Whether the member is marked down: its keys are loaded locally until a probe answers.
    pub(crate) fn is_down(&self) -> bool {
        self.remote.health.is_down()
    }

    /// The member's health and its counters.
    pub(crate) fn stats(&self) -> PeerStats {
        self.remote.health.stats()
    }

    /// One write, answered `204` when the member applied it, by `deadline`. A member marked
    /// down is not asked: it is reported unreached at once.
    async fn write(
        &self,
        request: Request<'_>,
        body: Bytes,
        deadline: Instant,
    ) -> Result<(), LoadError> {
        let remote = &self.remote;
        if remote.health.is_down() {
            return Err(LoadError::unreachable(format_args!(
                "{} is down",
                remote.url
            )));
        }
        let limit = remote.max_response_bytes;
        let (parts, body) = Remote::ask(remote, &request, body, limit, deadline).await?;
        if parts.status == StatusCode::NO_CONTENT {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
        Err(LoadError::unreachable(format_args!(
            "{} answered {}: {}",
            remote.url,
            parts.status,
            text.trim_end()
        )))
    }
}

impl Remote {
    /// One `GET` for `key`, and what its answer means.
    async fn get_alone(
        remote: &Arc<Remote>,
        group: &str,
        key: &[u8],
        deadline: Instant,
    ) -> Result<Found, LoadError> {
        let request = Request::Get {
            group: group.into(),
            key: key.into(),
        };
        let limit = remote.max_response_bytes;
        let (parts, body) = Remote::ask(remote, &request, Bytes::new(), limit, deadline).await?;
        Answer::of_response(parts.status, &parts.headers, body, &remote.url)
    }

    /// One request by `deadline`, given up when the member is marked down meanwhile, and
    /// counted for its health. `Unreachable` when no answer came.
    async fn ask(
        remote: &Arc<Remote>,
        request: &Request<'_>,
        body: Bytes,
        limit: usize,
        deadline: Instant,
    ) -> Result<(response::Parts, Bytes), LoadError> {
        let health = &remote.health;
        let path = request.path(&remote.base_path);
        let exchange = remote.exchange(request.method(), path, body, limit);
        let until = tokio::time::Instant::from_std(deadline);
        let mut exchange = pin!(tokio::time::timeout_at(until, exchange));
        let mut went_down = pin!(health.went_down());
        let answer = loop {
            tokio::select! {
                answer = &mut exchange => break answer,
                () = &mut went_down => {
                    return Err(LoadError::unreachable(format_args!(
                        "{} was marked down while the request waited",
                        remote.url
                    )));
                }
                // Still waiting: a slow load, or a member that hangs? A probe tells.
                () = tokio::time::sleep(health.options().probe_timeout) => {
                    health::probe_soon(remote);
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
                    health::failed(remote, &no_answer.reason);
                }
                Err(LoadError::unreachable(no_answer.reason))
            }
            Err(_) => {
                let why = format!("{}: no answer by the deadline", remote.url);
                health::failed(remote, &why);
                Err(LoadError::unreachable(why))
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
            no_answer(format!("{}: {e}", self.url), fault)
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
                // A body over the limit that was not announced is a mismatch of configuration,
                // not a sick member.
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
    ) -> Result<HttpRequest<Full<Bytes>>, http::Error> {
        let mut request = HttpRequest::builder().method(method.clone()).uri(path);
        if let Some(secrets) = &self.secrets {
            let proof = secrets.proof(&self.url, method.as_str(), path, &body, SystemTime::now());
            request = request.header(AUTH_HEADER, proof);
        }
        request.body(Full::new(body))
    }
}

impl Probed for Remote {
    fn health(&self) -> &Health {
        &self.health
    }

    fn probe(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let path = Request::Probe.path(&self.base_path);
            let make = || self.request(Method::GET, &path, Bytes::new());
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
        })
    }
}

impl Peer for PeerClient {
    fn name(&self) -> &str {
        &self.remote.url
    }

    fn get<'a>(
        &'a self,
        group: &'a str,
        key: &'a [u8],
        deadline: Instant,
    ) -> BoxFuture<'a, Result<Found, LoadError>> {
        Box::pin(batch::get(&self.remote, group, key, deadline))
    }

    fn set<'a>(
        &'a self,
        group: &'a str,
        key: &'a [u8],
        value: Bytes,
        ttl: Option<Duration>,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<(), LoadError>> {
        let request = Request::Set {
            group: group.into(),
            key: key.into(),
            ttl,
        };
        Box::pin(async move { self.write(request, value, deadline).await })
    }

    fn remove<'a>(
        &'a self,
        group: &'a str,
        keys: &'a [Bytes],
        deadline: Instant,
    ) -> BoxFuture<'a, Result<(), LoadError>> {
        let group = group.into();
        let (request, body) = match keys {
            [key] => (
                Request::Remove {
                    group,
                    key: key.as_ref().into(),
                },
                Bytes::new(),
            ),
            keys => (Request::RemoveMany { group }, encode_keys(keys)),
        };
        Box::pin(async move { self.write(request, body, deadline).await })
    }

    fn purge<'a>(
        &'a self,
        group: &'a str,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<(), LoadError>> {
        let request = Request::Purge {
            group: group.into(),
        };
        Box::pin(async move { self.write(request, Bytes::new(), deadline).await })
    }
}

impl fmt::Debug for PeerClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerClient")
            .field("peer", &self.remote.url)
            .field("down", &self.is_down())
            .finish_non_exhaustive()
    }
}
