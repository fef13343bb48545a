//! The client side: asks one peer for a key, over a pooled keep-alive connection.

use std::fmt;
use std::time::Duration;

use alo_group::{BoxFuture, LoadError, PeerGetter};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;

use crate::protocol::{self, ERROR_HEADER, INVALID_KEY, NOT_FOUND};

/// The pooled client every peer getter of a pool shares: one connection pool per process.
pub(crate) type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// A [`PeerGetter`] that asks one peer over HTTP.
///
/// A request that times out, fails to connect, answers a status other than 200 or 404
/// `not-found`, or sends more than the response limit is a [`LoadError::Failed`] whose message
/// names the peer and what happened; the group then loads the key itself.
#[derive(Clone)]
pub struct HttpGetter {
    /// `http://host:port`, no trailing slash.
    peer: String,
    base_path: String,
    client: HttpClient,
    timeout: Duration,
    max_response_bytes: usize,
}

impl HttpGetter {
    pub(crate) fn new(
        peer: String,
        base_path: String,
        client: HttpClient,
        timeout: Duration,
        max_response_bytes: usize,
    ) -> Self {
        HttpGetter {
            peer,
            base_path,
            client,
            timeout,
            max_response_bytes,
        }
    }

    /// The peer's URL.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    async fn fetch(&self, group: &str, key: &[u8]) -> Result<Bytes, LoadError> {
        let uri = format!(
            "{}{}",
            self.peer,
            protocol::path(&self.base_path, group, key)
        );
        let request = Request::get(uri)
            .body(Empty::new())
            .map_err(|e| self.failed(format_args!("bad request: {e}")))?;
        let exchange = async {
            let response =
                self.client.request(request).await.map_err(|e| {
                    self.failed(format_args!("request failed: {}", error_chain(&e)))
                })?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, self.max_response_bytes)
                .collect()
                .await
                .map_err(|e| self.failed(format_args!("reading the response failed: {e}")))?
                .to_bytes();
            Ok((parts, body))
        };
        let (parts, body) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| self.failed(format_args!("no answer within {:?}", self.timeout)))??;
        match parts.status {
            StatusCode::OK => Ok(body),
            StatusCode::NOT_FOUND if says(&parts.headers, NOT_FOUND) => Err(LoadError::NotFound),
            StatusCode::BAD_REQUEST if says(&parts.headers, INVALID_KEY) => {
                let text = String::from_utf8_lossy(&body);
                let reason = text.trim_end().trim_start_matches("invalid key: ");
                Err(LoadError::InvalidKey(reason.into()))
            }
            status => {
                let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
                Err(self.failed(format_args!("status {status}: {}", text.trim_end())))
            }
        }
    }

    fn failed(&self, what: fmt::Arguments<'_>) -> LoadError {
        LoadError::failed(format_args!("peer {}: {what}", self.peer))
    }
}

impl PeerGetter for HttpGetter {
    fn get<'a>(&'a self, group: &'a str, key: &'a [u8]) -> BoxFuture<'a, Result<Bytes, LoadError>> {
        Box::pin(self.fetch(group, key))
    }
}

impl fmt::Debug for HttpGetter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpGetter")
            .field("peer", &self.peer)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Whether the response's `x-alo-error` header is `value`.
fn says(headers: &http::HeaderMap, value: &str) -> bool {
    headers.get(ERROR_HEADER).is_some_and(|v| v == value)
}

/// An error and its sources, `: `-separated: hyper's own messages are terse.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
