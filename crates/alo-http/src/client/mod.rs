//! The asking side: one member as this node reaches it, over pooled keep-alive connections, with
//! its health kept and its keys batched.

mod batch;
mod conns;
mod pending;

use std::fmt;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use alo_group::{BoxFuture, Found, LoadError, Peer, escape};
use bytes::Bytes;
use http::{Method, Request as HttpRequest, StatusCode, response};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Body as _;
use tracing::{Instrument as _, Span};

use self::batch::{Batcher, Kind};
use self::conns::{Conns, SendError};
use self::pending::{Missed, Pending};
use crate::health::{self, Health, PeerStats, Probed, RequestKind};
use crate::protocol::{Answer, Request, encode_fill, encode_keys};
use crate::trace;
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
    /// Removes and purges that missed the member, to deliver when it answers again.
    pending: Pending,
}

/// Why an exchange produced no answer.
struct NoAnswer {
    reason: String,
    /// Whether it says something about the member's health (a reset does, a body over the
    /// limit that was not announced does not).
    peer_fault: bool,
    /// Whether it is sure the member is not serving (the connection was refused).
    refused: bool,
}

/// How long a delivery of the writes a member missed may take.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(2);

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
                pending: Pending::default(),
            }),
        }
    }

    /// Whether the member is marked down: its keys are loaded locally until a probe answers.
    pub(crate) fn is_down(&self) -> bool {
        self.remote.health.is_down()
    }

    /// Whether new keys may be sent to the member: it is not marked down, nor suspected of a
    /// stall (requests have waited on it for many times its usual latency without an answer).
    /// A suspicion asks for a probe, whose answer clears it.
    pub(crate) fn is_routable(&self) -> bool {
        let health = &self.remote.health;
        if health.is_down() || health.is_stall_confirmed() {
            return false;
        }
        if health.is_stalled() {
            health::suspect(&self.remote);
            return false;
        }
        true
    }

    /// The member's health and its counters.
    pub(crate) fn stats(&self) -> PeerStats {
        let (pending_writes, late_writes, writes_overflowed) = self.remote.pending.counts();
        PeerStats {
            pending_writes,
            late_writes,
            writes_overflowed,
            ..self.remote.health.stats()
        }
    }

    /// One write, answered `204` when the member applied it, by `deadline`. A member marked
    /// down (or stalled) is not asked: it is reported unreached at once. A remove or purge that does not
    /// reach the member is kept, and delivered when it answers again.
    async fn write(
        &self,
        request: Request<'_>,
        body: Bytes,
        keys: &[Bytes],
        deadline: Instant,
    ) -> Result<(), LoadError> {
        let remote = &self.remote;
        let health = &remote.health;
        let written = match health.is_down() || health.is_stall_confirmed() {
            true => Err(LoadError::unreachable(format_args!(
                "{} is down",
                remote.url
            ))),
            false => Remote::send_write(remote, &request, body, deadline).await,
        };
        let group = request.group().unwrap_or_default();
        match (&written, &request) {
            (Ok(()), Request::Purge { .. }) => remote.pending.purged(group),
            (Ok(()), _) => remote.pending.reached(group, keys),
            (Err(_), Request::Purge { .. }) => remote.pending.purge(group),
            (Err(_), Request::Remove { .. } | Request::RemoveMany { .. }) => {
                remote.pending.removes(group, keys);
            }
            (Err(_), _) => {}
        }
        written
    }
}

impl Remote {
    /// Sends one write, answered `204` when the member applied it, by `deadline`.
    async fn send_write(
        remote: &Arc<Remote>,
        request: &Request<'_>,
        body: Bytes,
        deadline: Instant,
    ) -> Result<(), LoadError> {
        let limit = remote.max_response_bytes;
        let asked = Remote::ask(remote, request, body, limit, deadline);
        let (parts, body) = asked.instrument(remote.request_span(request)).await?;
        remote.applied(&parts, &body)
    }

    /// Whether a write's answer says the member applied it (`204`).
    fn applied(&self, parts: &response::Parts, body: &[u8]) -> Result<(), LoadError> {
        if parts.status == StatusCode::NO_CONTENT {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
        Err(LoadError::unreachable(format_args!(
            "{} answered {}: {}",
            self.url,
            parts.status,
            text.trim_end()
        )))
    }

    /// Delivers the removes and purges the member missed, group by group; `Err` at the first
    /// that does not reach it (the rest wait for the next time). Sent outside the member's
    /// health, which the probe that found it answering decides: a member marked down is
    /// delivered to before it is marked up.
    async fn deliver(&self) -> Result<(), String> {
        for (group, missed) in self.pending.snapshot() {
            let group = group.as_str();
            let (request, keys, body) = match missed {
                Missed::Purge => (
                    Request::Purge {
                        group: group.into(),
                    },
                    Vec::new(),
                    Bytes::new(),
                ),
                Missed::Keys(keys) => {
                    let keys: Vec<Bytes> = keys.into_iter().collect();
                    let body = encode_keys(&keys);
                    (
                        Request::RemoveMany {
                            group: group.into(),
                        },
                        keys,
                        body,
                    )
                }
            };
            let path = request.path(&self.base_path);
            let exchange = self.exchange(request.method(), path, body, self.max_response_bytes);
            let (parts, body) = match tokio::time::timeout(DELIVERY_TIMEOUT, exchange).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(no_answer)) => return Err(no_answer.reason),
                Err(_) => {
                    return Err(format!(
                        "{}: no answer within {DELIVERY_TIMEOUT:?}",
                        self.url
                    ));
                }
            };
            self.applied(&parts, &body).map_err(|e| e.to_string())?;
            match request {
                Request::Purge { .. } => {
                    self.pending.purged(group);
                    self.pending.delivered(1);
                }
                _ => {
                    self.pending.reached(group, &keys);
                    self.pending.delivered(keys.len());
                }
            }
        }
        Ok(())
    }

    /// Delivers what the member missed on a task of its own, unless a delivery runs already:
    /// after an answer from a member that was not marked down.
    fn deliver_soon(remote: &Arc<Remote>) {
        if remote.pending.is_empty() || !remote.pending.start_delivery() {
            return;
        }
        let remote = Arc::clone(remote);
        tokio::spawn(async move {
            if let Err(reason) = remote.deliver().await {
                tracing::debug!(peer = %remote.url, reason = %escape(&reason), "missed writes not delivered yet");
            }
            remote.pending.end_delivery();
        });
    }

    /// One `GET` for one key (its value, or a peek), and what its answer means.
    async fn ask_one(
        remote: &Arc<Remote>,
        request: &Request<'_>,
        deadline: Instant,
    ) -> Result<Found, LoadError> {
        let limit = remote.max_response_bytes;
        let asked = Remote::ask(remote, request, Bytes::new(), limit, deadline);
        let (parts, body) = asked.instrument(remote.request_span(request)).await?;
        Answer::of_response(parts.status, &parts.headers, body, &remote.url)
    }

    /// One request by `deadline`, given up when the member is marked down meanwhile, and
    /// counted for its health. `Unreachable` when no answer came. Made in its
    /// [`request_span`](Remote::request_span), its request carries the span's trace context.
    async fn ask(
        remote: &Arc<Remote>,
        request: &Request<'_>,
        body: Bytes,
        limit: usize,
        deadline: Instant,
    ) -> Result<(response::Parts, Bytes), LoadError> {
        let health = &remote.health;
        let path = request.path(&remote.base_path);
        let kind = RequestKind::of(request);
        let began = std::time::Instant::now();
        let outstanding = health.begin();
        let exchange = remote.exchange(request.method(), path, body, limit);
        let until = tokio::time::Instant::from_std(deadline);
        let mut exchange = pin!(tokio::time::timeout_at(until, exchange));
        let mut went_down = pin!(health.went_down());
        let mut stalled = pin!(health.stall_confirmed());
        let options = health.options();
        let mut probe_at = tokio::time::Instant::now() + options.probe_timeout;
        let answer = loop {
            tokio::select! {
                answer = &mut exchange => break answer,
                () = &mut went_down => {
                    return Err(LoadError::unreachable(format_args!(
                        "{} was marked down while the request waited",
                        remote.url
                    )));
                }
                () = &mut stalled => {
                    return Err(LoadError::unreachable(format_args!(
                        "{} stalled while the request waited: no answer to a quick probe",
                        remote.url
                    )));
                }
                // Still waiting: a slow load, or a member that hangs? Its silence, then a
                // quick probe, tell; the usual probe, after a probe timeout, marks it down.
                () = tokio::time::sleep(options.stall_after) => {
                    if health.is_stalled() {
                        health::suspect(remote);
                    }
                    if tokio::time::Instant::now() >= probe_at {
                        let _ = health::probe_soon(remote);
                        probe_at += options.probe_timeout;
                    }
                }
            }
        };
        match answer {
            Ok(Ok(answer)) => {
                outstanding.answered();
                if let Some(kind) = kind {
                    health.answered_in(kind, began.elapsed());
                }
                health.success();
                Remote::deliver_soon(remote);
                Ok(answer)
            }
            Ok(Err(no_answer)) => {
                if no_answer.refused {
                    health::refused(remote, &no_answer.reason);
                } else if no_answer.peer_fault {
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
        let no_answer = |reason: String, peer_fault| NoAnswer {
            reason,
            peer_fault,
            refused: false,
        };
        let make = || self.request(method.clone(), &path, body.clone());
        let (response, conn) = self.conns.send(make).await.map_err(|e| NoAnswer {
            reason: format!("{}: {e}", self.url),
            peer_fault: !matches!(e, SendError::Build(_)),
            refused: matches!(e, SendError::Refused(_)),
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

    /// A request for `path` (and query), with its proof when the cluster has secrets, and the
    /// trace context of the current span.
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
        let mut request = request.body(Full::new(body))?;
        trace::inject(&Span::current(), request.headers_mut());
        Ok(request)
    }

    /// The span of one request to the member (see [`trace`]).
    fn request_span(&self, request: &Request<'_>) -> Span {
        let kind = RequestKind::of(request).map_or("probe", RequestKind::as_str);
        tracing::debug_span!("peer request", otel.kind = "client", peer = %self.url, kind)
    }
}

impl Probed for Remote {
    fn health(&self) -> &Health {
        &self.health
    }

    fn before_up(this: &Arc<Self>) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            if this.pending.is_empty() || !this.pending.start_delivery() {
                return Ok(());
            }
            let delivered = this.deliver().await;
            this.pending.end_delivery();
            delivered
        })
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
        Box::pin(batch::ask(&self.remote, Kind::Get, group, key, deadline))
    }

    fn peek<'a>(
        &'a self,
        group: &'a str,
        key: &'a [u8],
        deadline: Instant,
    ) -> BoxFuture<'a, Result<Option<Found>, LoadError>> {
        Box::pin(async move {
            match batch::ask(&self.remote, Kind::Peek, group, key, deadline).await {
                Ok(found) => Ok(Some(found)),
                // "Not held": the peek's "not found".
                Err(LoadError::NotFound) => Ok(None),
                Err(e) => Err(e),
            }
        })
    }

    fn fill<'a>(
        &'a self,
        group: &'a str,
        values: &'a [(Bytes, Found)],
        deadline: Instant,
    ) -> BoxFuture<'a, Result<(), LoadError>> {
        let request = Request::Fill {
            group: group.into(),
        };
        let body = encode_fill(values);
        Box::pin(async move { self.write(request, body, &[], deadline).await })
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
        let keys = [Bytes::copy_from_slice(key)];
        Box::pin(async move { self.write(request, value, &keys, deadline).await })
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
        Box::pin(async move { self.write(request, body, keys, deadline).await })
    }

    fn purge<'a>(
        &'a self,
        group: &'a str,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<(), LoadError>> {
        let request = Request::Purge {
            group: group.into(),
        };
        Box::pin(async move { self.write(request, Bytes::new(), &[], deadline).await })
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
