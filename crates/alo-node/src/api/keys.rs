//! `/api/{group}/{key}` and `/api/{group}`: a client's gets, and with `--allow-writes` its sets,
//! removes and purges, each for the whole cluster. The paths, statuses and headers are the peer
//! protocol's (`alo_http::protocol`); what differs is who answers: a client's get may ask the
//! key's owner, and a client's write goes to every member.

use std::time::Instant;

use alo_group::{Group, Written};
use alo_http::protocol::{Failure, Request, TTL_HEADER, decode_keys, parse_ttl, put_found, text};
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;

use super::metrics::Outcome;
use super::{Api, not_found};

/// Where the API serves its groups.
pub(super) const BASE: &str = "/api/";

impl Api {
    /// `GET /api/{group}/{key}`: the value from the cluster (the caches, the key's owner, or the
    /// origin), with the protocol's statuses (`502` when the origin failed) and a content type
    /// from the key's extension when it has a known one.
    pub(super) async fn read(&self, req: http::Request<Incoming>) -> Response<Full<Bytes>> {
        let (group, request) = match self.route(&req) {
            Ok(routed) => routed,
            Err(resp) => return resp,
        };
        let Request::Get { key, .. } = request else {
            return not_found();
        };
        let started = Instant::now();
        let looked_up = group.lookup(&key).await;
        let outcome = looked_up.as_ref().map_or(Outcome::Error, Outcome::of);
        self.metrics
            .observe_get(group.name(), outcome, started.elapsed());
        match looked_up {
            Ok(found) => {
                let mut resp = Response::new(Full::new(found.value.clone()));
                put_found(&found, resp.headers_mut());
                if let Some(mime) = extension(req.uri().path())
                    .and_then(|ext| mime_guess::from_ext(ext).first_raw())
                {
                    resp.headers_mut()
                        .insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
                }
                resp
            }
            Err(e) => Failure::of(&e).response(),
        }
    }

    /// `PUT /api/{group}/{key}` (the body the value, the time to live `x-alo-ttl-ms` if given),
    /// `DELETE /api/{group}/{key}`, `POST /api/{group}` (keys to remove, one percent-encoded key
    /// a line) and `DELETE /api/{group}` (purge), each for the whole cluster: `200` with
    /// `{"members": 3, "unreachable": 0}`. The members a write did not reach are in the log.
    pub(super) async fn write(&self, req: http::Request<Incoming>) -> Response<Full<Bytes>> {
        let (group, request) = match self.route(&req) {
            Ok(routed) => routed,
            Err(resp) => return resp,
        };
        let ttl = match req.headers().get(TTL_HEADER) {
            None => None,
            Some(value) => match parse_ttl(value.as_bytes()) {
                Some(ttl) => Some(ttl),
                None => {
                    let why = "x-alo-ttl-ms must be a whole number of milliseconds, at least 1\n";
                    return text(StatusCode::BAD_REQUEST, why);
                }
            },
        };
        let body = req.into_body();
        let body = match alo_http::read_body(body, self.max_body_bytes, self.body_timeout).await {
            Ok(body) => body,
            Err(resp) => return resp,
        };
        let written = match request {
            Request::Set { key, .. } => group.set(&key, body, ttl).await,
            Request::Remove { key, .. } => group.remove(&key).await,
            Request::RemoveMany { .. } => match decode_keys(&body, self.max_key_bytes) {
                Ok(keys) => group.remove_keys(&keys).await,
                Err(refusal) => return refusal.response(),
            },
            Request::Purge { .. } => Ok(group.purge().await),
            _ => return not_found(),
        };
        match written {
            Ok(written) => report(&written),
            Err(e) => Failure::of(&e).response(),
        }
    }

    /// The request a client's `req` is, and its group; or the answer that refuses it.
    #[allow(clippy::result_large_err)]
    fn route(
        &self,
        req: &http::Request<Incoming>,
    ) -> Result<(Group, Request<'static>), Response<Full<Bytes>>> {
        // A client's query is not the protocol's: the time to live of a set is a header here.
        let parsed = Request::parse(
            req.method(),
            req.uri().path(),
            None,
            BASE,
            self.max_key_bytes,
        );
        let request = parsed.map_err(|refusal| refusal.response())?;
        let Some(name) = request.group() else {
            return Err(not_found());
        };
        match self.groups.get(name) {
            Some(group) => Ok((group, request)),
            None => Err(Failure::unknown_group(name).response()),
        }
    }
}

/// A write's report: the members it was for, and how many did not confirm it.
fn report(written: &Written) -> Response<Full<Bytes>> {
    let body = format!(
        "{{\"members\": {}, \"unreachable\": {}}}\n",
        written.members,
        written.unreachable.len()
    );
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The extension of the last segment of `path`, if it has one: what names a content type.
fn extension(path: &str) -> Option<&str> {
    let name = path.rsplit('/').next()?;
    let (stem, ext) = name.rsplit_once('.')?;
    (!stem.is_empty() && !ext.is_empty()).then_some(ext)
}

#[cfg(test)]
mod tests {
    use super::extension;

    #[test]
    fn the_extension_is_that_of_the_last_segment() {
        assert_eq!(extension("/api/files/a/report.pdf"), Some("pdf"));
        assert_eq!(extension("/api/files/a.b/report"), None);
        assert_eq!(extension("/api/files/.hidden"), None);
        assert_eq!(extension("/api/files/trailing."), None);
        assert_eq!(extension("/api/web/k00001"), None);
        assert_eq!(extension("/api/web/archive.tar.gz"), Some("gz"));
    }
}
