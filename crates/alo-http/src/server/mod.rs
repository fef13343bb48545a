//! The answering side: a node's groups served to its peers, each request answered from the
//! group's own side ([`Group::local`]), never forwarded.

mod accept;
mod options;
mod watchdog;

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

use alo_group::{Group, Groups};
use bytes::Bytes;
use http::{HeaderValue, Request as HttpRequest, Response, StatusCode, header, request};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body as _, Incoming};
use tokio::net::TcpListener;
use tracing::field::Empty;
use tracing::{Instrument as _, Span};

pub use self::accept::serve_with;
pub use self::options::{DEFAULT_MAX_KEY_BYTES, ServerOptions, ServerOptionsBuilder};
use crate::auth::{Proven, Refused};
use crate::health::RequestKind;
use crate::protocol::{
    self, Failure, Request, TOO_LARGE, UNAUTHORIZED, push_failure, push_found, push_pending,
    put_found, text,
};
use crate::{AUTH_HEADER, Error, trace};

/// Serves `groups` to peers on `listener` until `shutdown` completes, then stops accepting,
/// lets requests in flight finish (within the shutdown timeout), and returns. The connection
/// limits are those of [`serve_with`].
///
/// Each request is answered from the group's own side, [`Group::local`]: a node never forwards
/// a peer's request. Bind the listener yourself (port 0 in tests) and pass a shutdown future
/// such as a `oneshot::Receiver` or `tokio::signal::ctrl_c()`.
///
/// # Errors
/// As [`serve_with`].
pub async fn serve(
    listener: TcpListener,
    groups: Groups,
    options: ServerOptions,
    shutdown: impl Future,
) -> Result<(), Error> {
    let shared = Arc::new(Shared {
        groups,
        options: options.clone(),
        refusals: Refusals::default(),
    });
    let handler = move |req: HttpRequest<Incoming>| {
        let shared = Arc::clone(&shared);
        let span = tracing::debug_span!("peer serve", otel.kind = "server", kind = Empty);
        trace::continue_from(&span, req.headers());
        async move { shared.answer(req).await }.instrument(span)
    };
    serve_with(listener, options, handler, shutdown).await
}

/// What every request of a server needs.
struct Shared {
    groups: Groups,
    options: ServerOptions,
    refusals: Refusals,
}

impl Shared {
    /// Answers one peer request.
    async fn answer(&self, req: HttpRequest<Incoming>) -> Response<Full<Bytes>> {
        let options = &self.options;
        // From the head alone: nothing unproven is read, let alone buffered.
        let proven = match self.prove_head(&req) {
            Ok(proven) => proven,
            Err(refused) => return self.refusals.unauthorized(refused),
        };
        let (parts, body) = req.into_parts();
        let uri = &parts.uri;
        let base = &options.base_path;
        let parsed = Request::parse(
            &parts.method,
            uri.path(),
            uri.query(),
            base,
            options.max_key_bytes,
        );
        let request = match parsed {
            Ok(request) => request,
            Err(refusal) => return refusal.response(),
        };
        if let Some(kind) = RequestKind::of(&request) {
            Span::current().record("kind", kind.as_str());
        }
        let group = match request.group() {
            None => return text(StatusCode::OK, "ok\n"),
            Some(name) => match self.groups.get(name) {
                Some(group) => group,
                None => return Failure::unknown_group(name).response(),
            },
        };
        match &request {
            Request::Get { key, .. } => {
                return match group.local().lookup(key).await {
                    Ok(found) => value(&found),
                    Err(e) => Failure::of(&e).response(),
                };
            }
            Request::Peek { key, .. } => {
                return match group.local().peek(key) {
                    Some(found) => value(&found),
                    None => Failure::not_held().response(),
                };
            }
            _ => {}
        }
        let limit = match request {
            Request::GetMany { .. } | Request::PeekMany { .. } => options.max_batch_body_bytes(),
            _ => options.max_body_bytes,
        };
        let body = match read_body(body, limit, options.limits.header_read_timeout).await {
            Ok(body) => body,
            Err(resp) => return resp,
        };
        if let (Some((secrets, _)), Some(proven)) = (&options.secrets, proven)
            && let Err(refused) = secrets.check_body(&proven, &body, SystemTime::now())
        {
            return self.refusals.unauthorized(refused);
        }
        self.apply(&group, request, body, &parts)
    }

    /// Answers a request with a body, or one that writes: applied on this node alone.
    fn apply(
        &self,
        group: &Group,
        request: Request<'_>,
        body: Bytes,
        parts: &request::Parts,
    ) -> Response<Full<Bytes>> {
        let local = group.local();
        let max_key_bytes = self.options.max_key_bytes;
        let keys = || protocol::decode_keys(&body, max_key_bytes);
        let applied = match request {
            Request::GetMany { .. } => {
                return match keys() {
                    Ok(keys) => self.get_many(group, &keys),
                    Err(refusal) => refusal.response(),
                };
            }
            Request::PeekMany { .. } => {
                return match keys() {
                    Ok(keys) => self.peek_many(group, &keys),
                    Err(refusal) => refusal.response(),
                };
            }
            Request::Fill { .. } => match protocol::decode_fill(&body, max_key_bytes) {
                Ok(values) => {
                    for (key, found) in &values {
                        local.fill(key, found);
                    }
                    Ok(())
                }
                Err(refusal) => return refusal.response(),
            },
            Request::Set { key, ttl, .. } => local.set(key, body.clone(), ttl),
            Request::Remove { key, .. } => {
                local.remove(&[Bytes::copy_from_slice(&key)]);
                Ok(())
            }
            Request::RemoveMany { .. } => match keys() {
                Ok(keys) => {
                    local.remove(&keys);
                    Ok(())
                }
                Err(refusal) => return refusal.response(),
            },
            Request::Purge { .. } => {
                local.purge();
                Ok(())
            }
            Request::Probe | Request::Get { .. } | Request::Peek { .. } => {
                unreachable!("answered before the body: {} {}", parts.method, parts.uri)
            }
        };
        match applied {
            Ok(()) => {
                let mut resp = Response::new(Full::new(Bytes::new()));
                *resp.status_mut() = StatusCode::NO_CONTENT;
                resp
            }
            Err(e) => Failure::of(&e).response(),
        }
    }

    /// Answers a batch get: `200` with one frame per key, in the order asked (see the crate
    /// README). A key this node must load is answered `202` and starts loading: the asker then
    /// asks for it alone and joins that load. So a slow key holds up no other. The keys past the
    /// first `max_batch_keys` are answered `202` without a lookup: one batch starts at most that
    /// many loads.
    fn get_many(&self, group: &Group, keys: &[Bytes]) -> Response<Full<Bytes>> {
        let mut frames = Vec::new();
        let mut now = Context::from_waker(Waker::noop());
        let (answered, excess) = keys.split_at(keys.len().min(self.options.max_batch_keys));
        for key in answered {
            // Polled once: a hit is answered at once; a miss starts its load, which belongs to
            // the group and goes on when this lookup is dropped.
            match pin!(group.local().lookup(key)).poll(&mut now) {
                Poll::Ready(Ok(found)) => push_found(&mut frames, &found),
                Poll::Ready(Err(e)) => push_failure(&mut frames, &Failure::of(&e)),
                Poll::Pending => push_pending(&mut frames),
            }
        }
        for _ in excess {
            push_pending(&mut frames);
        }
        frames_response(frames)
    }

    /// Answers a batch peek: one frame per key, in the order asked, each the value this node
    /// holds or `404 not-held`; past the first `max_batch_keys`, `202` (ask alone).
    fn peek_many(&self, group: &Group, keys: &[Bytes]) -> Response<Full<Bytes>> {
        let mut frames = Vec::new();
        let (answered, excess) = keys.split_at(keys.len().min(self.options.max_batch_keys));
        for key in answered {
            match group.local().peek(key) {
                Some(found) => push_found(&mut frames, &found),
                None => push_failure(&mut frames, &Failure::not_held()),
            }
        }
        for _ in excess {
            push_pending(&mut frames);
        }
        frames_response(frames)
    }

    /// The proof of a request, checked from its head: `Ok(None)` when the node has no secrets.
    fn prove_head(&self, req: &HttpRequest<Incoming>) -> Result<Option<Proven>, Refused> {
        let Some((secrets, me)) = &self.options.secrets else {
            return Ok(None);
        };
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let proof = req.headers().get(AUTH_HEADER).map(HeaderValue::as_bytes);
        let method = req.method().as_str();
        secrets
            .check_head(me, method, path, proof, SystemTime::now())
            .map(Some)
    }
}

/// A request's whole body, of at most `limit` bytes, within `timeout` (a body sent a byte at a
/// time must not hold the connection longer than a head may). A body that announces more than
/// the limit is refused before a byte of it is read, and its connection closed.
///
/// # Errors
/// The response to send instead: `413`, `400` or `408`.
pub async fn read_body(
    body: Incoming,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, Response<Full<Bytes>>> {
    let too_large = || {
        let failure = Failure {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: Some(TOO_LARGE),
            text: "the body is larger than the node accepts\n".into(),
        };
        closing(failure.response())
    };
    if body.size_hint().lower() > limit as u64 {
        return Err(too_large());
    }
    let read = Limited::new(body, limit).collect();
    match tokio::time::timeout(timeout, read).await {
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
        let failure = Failure {
            status: StatusCode::UNAUTHORIZED,
            code: Some(UNAUTHORIZED),
            text: "peer authentication failed\n".into(),
        };
        closing(failure.response())
    }
}

/// A batch's `200`, its frames the body.
fn frames_response(frames: Vec<u8>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(frames)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    resp
}

/// `resp` with `connection: close`: hyper closes the connection once it is written, without
/// reading what the client still sends.
fn closing(mut resp: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// A `200` with the value, how long it stays fresh and whether it is stale.
fn value(found: &alo_group::Found) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(found.value.clone()));
    put_found(found, resp.headers_mut());
    resp
}
