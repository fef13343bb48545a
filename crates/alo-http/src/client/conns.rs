//! The connections to one member: a lean pool of HTTP/1 keep-alive connections, each a hyper
//! `client::conn` sender whose connection runs on a task of its own.
//!
//! It does what a peer needs and no more: one known address, requests already in origin form,
//! an idle connection taken from a stack (the most recently used, the likeliest still open) or
//! a new one opened within the connect timeout, and given back once its answer has been read.
//! hyper-util's general client does more per request (pool keys, URI rewriting, a dispatch per
//! checkout), which the profile of the hop put at the top of the asking node's costs.

use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Idle connections kept per peer; more are closed when given back.
const MAX_IDLE: usize = 256;

pub(crate) struct Conns {
    /// `host:port`.
    authority: String,
    host: HeaderValue,
    connect_timeout: Duration,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

/// Why a request got no response.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The connection was refused: nobody listens there.
    Refused(String),
    /// No connection could be opened (unreachable, or not within the timeout).
    Connect(String),
    /// The connection failed before a response came.
    Request(hyper::Error),
    /// The request could not be made (not a valid URI).
    Build(String),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Refused(why) | SendError::Connect(why) => write!(f, "connect failed: {why}"),
            SendError::Request(e) => write!(f, "request failed: {}", chain(e)),
            SendError::Build(why) => write!(f, "bad request: {why}"),
        }
    }
}

/// A connection lent for one request; given back with [`Conns::give_back`] once its response
/// has been read, or dropped (and closed) otherwise.
pub(crate) struct Lent(SendRequest<Full<Bytes>>);

impl Conns {
    /// The connections to `authority` (`host:port`).
    pub(crate) fn new(authority: &str, connect_timeout: Duration) -> Self {
        Conns {
            authority: authority.to_string(),
            host: HeaderValue::from_str(authority).unwrap_or(HeaderValue::from_static("peer")),
            connect_timeout,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Sends the request `make` builds (origin form: a path and query) and returns its response
    /// head, with the connection to give back when the body has been read. A request that fails
    /// on a reused connection (the peer closed it while idle) is made and sent once more on a
    /// new one.
    pub(crate) async fn send(
        &self,
        make: impl Fn() -> Result<Request<Full<Bytes>>, http::Error>,
    ) -> Result<(Response<Incoming>, Lent), SendError> {
        let request = || {
            let mut request = make().map_err(|e| SendError::Build(e.to_string()))?;
            request
                .headers_mut()
                .insert(header::HOST, self.host.clone());
            Ok::<_, SendError>(request)
        };
        if let Some(mut sender) = self.take_idle() {
            match sender.send_request(request()?).await {
                Ok(response) => return Ok((response, Lent(sender))),
                Err(e) if !e.is_canceled() && !e.is_closed() && !e.is_incomplete_message() => {
                    return Err(SendError::Request(e));
                }
                Err(_) => {}
            }
        }
        let mut sender = self.connect().await?;
        let response = sender
            .send_request(request()?)
            .await
            .map_err(SendError::Request)?;
        Ok((response, Lent(sender)))
    }

    /// Keeps a connection whose response has been read for the next request.
    pub(crate) fn give_back(&self, lent: Lent) {
        let Lent(sender) = lent;
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE {
            idle.push(sender);
        }
    }

    fn take_idle(&self) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(sender) = idle.pop() {
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, SendError> {
        let connect = TcpStream::connect(&self.authority);
        let stream = match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Err(SendError::Refused(e.to_string()));
            }
            Ok(Err(e)) => return Err(SendError::Connect(e.to_string())),
            Err(_) => {
                let why = format!("no connection within {:?}", self.connect_timeout);
                return Err(SendError::Connect(why));
            }
        };
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(SendError::Request)?;
        tokio::spawn(async move {
            // Ends when the peer closes, or when the last sender for it is dropped.
            let _ = connection.await;
        });
        Ok(sender)
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

impl fmt::Debug for Conns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let idle = self.idle.lock().map_or(0, |idle| idle.len());
        f.debug_struct("Conns")
            .field("authority", &self.authority)
            .field("idle", &idle)
            .finish_non_exhaustive()
    }
}
