//! The client API: `/api/{group}/{key}` (and, with `--allow-writes`, writes to it and to
//! `/api/{group}`), `/stats`, `/metrics`, `/healthz`, `/readyz`.

mod keys;
mod metrics;
mod stats;

pub(crate) use metrics::Metrics;

use std::sync::Arc;
use std::time::Duration;

use alo_group::{Groups, escape};
use alo_http::HttpPool;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use tracing::Instrument as _;

use crate::members::Membership;

/// What the API needs to answer.
#[derive(Clone, Debug)]
pub struct Api {
    pub(crate) groups: Groups,
    pub(crate) pool: Arc<HttpPool>,
    pub(crate) membership: Arc<Membership>,
    /// The longest key, in bytes after decoding; longer ones get 414.
    pub(crate) max_key_bytes: usize,
    /// The largest body of a write; a larger one gets 413.
    pub(crate) max_body_bytes: usize,
    /// How long a write's body may take to arrive.
    pub(crate) body_timeout: Duration,
    /// Whether `PUT`, `DELETE` and `POST` change the cache.
    pub(crate) allow_writes: bool,
    /// What `/metrics` answers, and where gets are timed.
    pub(crate) metrics: Arc<Metrics>,
}

impl Api {
    /// Answers one client request.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path();
        let is_read = req.method() == Method::GET || req.method() == Method::HEAD;
        match path {
            "/healthz" if is_read => text(StatusCode::OK, "text/plain; charset=utf-8", "ok\n"),
            // Both listeners are up (this one answers; the peer server was bound before
            // either served); ready once a member list that includes this node is applied.
            "/readyz" if is_read && self.membership.is_ready() => {
                text(StatusCode::OK, "text/plain; charset=utf-8", "ready\n")
            }
            "/readyz" if is_read => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain; charset=utf-8",
                "not ready: no member list that includes this node yet\n",
            ),
            "/stats" if is_read => {
                let body = serde_json::to_vec_pretty(&self.stats()).unwrap_or_default();
                text(StatusCode::OK, "application/json", body)
            }
            "/metrics" if is_read => text(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                self.metrics.encode(),
            ),
            _ if path.starts_with(keys::BASE) => {
                let span = tracing::debug_span!("client request", otel.kind = "server", method = %req.method(), path = %escape(path));
                alo_http::trace::continue_from(&span, req.headers());
                match (is_read, self.allow_writes) {
                    (true, _) => self.read(req).instrument(span).await,
                    (false, true) => self.write(req).instrument(span).await,
                    (false, false) => only_reads(),
                }
            }
            "/healthz" | "/readyz" | "/stats" | "/metrics" => only_reads(),
            _ => not_found(),
        }
    }
}

/// `405` for a method other than `GET` or `HEAD`.
fn only_reads() -> Response<Full<Bytes>> {
    let mut resp = text(
        StatusCode::METHOD_NOT_ALLOWED,
        "text/plain; charset=utf-8",
        "only GET and HEAD are allowed\n",
    );
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    resp
}

/// `404` for a path the API does not have.
fn not_found() -> Response<Full<Bytes>> {
    text(
        StatusCode::NOT_FOUND,
        "text/plain; charset=utf-8",
        "not found: try /api/{group}/{key}, /stats, /metrics, /healthz or /readyz\n",
    )
}

fn text(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}
