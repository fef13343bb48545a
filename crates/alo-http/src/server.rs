//! The server side: answers peers' requests for a node's groups.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use alo_group::{Error as GroupError, Groups};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::protocol::{
    self, ERROR_HEADER, INVALID_KEY, LOAD_FAILED, LOAD_TIMEOUT, NOT_FOUND, PathError, UNKNOWN_GROUP,
};
use crate::{DEFAULT_BASE_PATH, Error};

/// The longest key a server accepts by default, in bytes (as memcached).
pub const DEFAULT_MAX_KEY_BYTES: usize = 250;

/// How a node serves its groups to peers.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    base_path: String,
    max_key_bytes: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            base_path: DEFAULT_BASE_PATH.to_string(),
            max_key_bytes: DEFAULT_MAX_KEY_BYTES,
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

    /// The longest key accepted, in bytes after decoding; longer ones get 414.
    pub fn max_key_bytes(mut self, max_key_bytes: usize) -> Self {
        self.max_key_bytes = max_key_bytes;
        self
    }
}

/// Serves `groups` to peers on `listener` until `shutdown` completes, then stops accepting,
/// lets requests in flight finish, and returns.
///
/// Each request is answered with `Group::get_local`: a node never forwards a peer's request.
/// Bind the listener yourself (port 0 in tests) and pass a shutdown future such as a
/// `oneshot::Receiver` or `tokio::signal::ctrl_c()`.
///
/// # Errors
/// [`Error::Io`] when accepting a connection fails for a reason other than the peer's.
pub async fn serve(
    listener: TcpListener,
    groups: Groups,
    options: ServerOptions,
    shutdown: impl Future,
) -> Result<(), Error> {
    let shared = Arc::new((groups, options));
    let handler = move |req| {
        let shared = Arc::clone(&shared);
        async move { respond(req, &shared.0, &shared.1, Asker::Peer).await }
    };
    serve_with(listener, handler, shutdown).await
}

/// Serves HTTP/1.1 on `listener` with `handler` until `shutdown` completes, then stops
/// accepting, lets requests in flight finish, and returns: the loop under [`serve`], for a
/// server of one's own (`alo-node` serves its client API with it).
///
/// # Errors
/// [`Error::Io`] when accepting a connection fails for a reason other than the peer's.
pub async fn serve_with<H, Fut>(
    listener: TcpListener,
    handler: H,
    shutdown: impl Future,
) -> Result<(), Error>
where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // A connection that failed before we took it is that client's problem.
                Err(e) if is_per_connection(&e) => continue,
                Err(e) => return Err(e.into()),
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let service = service_fn(move |req| {
            let response = handler(req);
            async move { Ok::<_, Infallible>(response.await) }
        });
        let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // A connection's own I/O errors end that connection only.
            let _ = conn.await;
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
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

fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted
    )
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
        Err(e @ GroupError::Load(_)) => coded(StatusCode::BAD_GATEWAY, LOAD_FAILED, e),
        Err(e @ GroupError::Timeout) => coded(StatusCode::GATEWAY_TIMEOUT, LOAD_TIMEOUT, e),
        Err(e @ GroupError::Panicked(_)) => {
            coded(StatusCode::INTERNAL_SERVER_ERROR, LOAD_FAILED, e)
        }
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

/// A text answer with its `x-alo-error` code.
fn coded(status: StatusCode, code: &'static str, e: GroupError) -> Response<Full<Bytes>> {
    let mut resp = text(status, format!("{e}\n"));
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
