//! The accept loop: a cap on open connections, accept errors that never end the listener, and a
//! shutdown that drains with a deadline. Each connection is served under its watchdog.

use std::future::Future;
use std::io;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::watchdog::Connection;
use crate::{Error, ServerOptions};

/// How long the accept loop waits after an error that is not one connection's (out of file
/// descriptors, out of memory) before it tries again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves HTTP/1.1 on `listener` with `handler` until `shutdown` completes, within the limits
/// of `options`: the loop under [`serve`](crate::serve), for a server of one's own (`alo-node`
/// serves its client API with it).
///
/// - At most `max_connections` are open at once; further clients wait in the listen backlog
///   until one closes.
/// - A request head must arrive within `header_read_timeout`, and be at most `max_header_bytes`
///   (else 431); a connection with no traffic and no request in flight for `idle_timeout` is
///   closed; a response that cannot be written for `write_timeout` (a client that does not read)
///   closes its connection.
/// - An accept error that is one client's is skipped; any other (out of file descriptors, of
///   memory) is logged once, backed off briefly, and accepting goes on: serving resumes by itself
///   when descriptors free up.
/// - When `shutdown` completes: stop accepting, let requests in flight finish for at most
///   `shutdown_timeout`, then close the connections left and return.
///
/// # Errors
/// None today: accept errors are never fatal. The `Result` leaves room for setup failures.
pub async fn serve_with<H, Fut>(
    listener: TcpListener,
    options: ServerOptions,
    handler: H,
    shutdown: impl Future,
) -> Result<(), Error>
where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let limits = Arc::new(options.limits);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (draining, drain) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut accept_errors = AcceptErrors::default();
    let mut shutdown = pin!(shutdown);
    // The header timeout is the connection's watchdog's: hyper's would arm a timer for every
    // request.
    let mut http = http1::Builder::new();
    http.header_read_timeout(None)
        .max_buf_size(limits.max_header_bytes);
    loop {
        // Finished connections are reaped as we go, so the set holds only live ones.
        while connections.try_join_next().is_some() {}
        // A slot first: at the limit, new clients wait in the backlog, not in memory.
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    accept_errors.recovered();
                    stream
                }
                // A connection that failed before we took it is that client's problem.
                Err(e) if is_per_connection(&e) => continue,
                Err(e) => {
                    accept_errors.failed(&e);
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let conn = Connection::new(stream, http.clone(), Arc::clone(&limits), drain.clone());
        let handler = handler.clone();
        connections.spawn(async move {
            conn.run(handler).await;
            drop(slot);
        });
    }
    drop(listener);
    let _ = draining.send(true);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(limits.shutdown_timeout, drained)
        .await
        .is_err()
    {
        tracing::warn!(
            left = connections.len(),
            timeout = ?limits.shutdown_timeout,
            "closing the connections still open at the shutdown deadline"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// How often at most the accept loop logs that it is failing: running out of descriptors tends
/// to come and go in bursts while clients leave, and one line says it.
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(10);

/// The accept loop's failures, logged once per [`ACCEPT_LOG_EVERY`], with how many there were.
#[derive(Default)]
struct AcceptErrors {
    /// Failures since the last line.
    unlogged: u64,
    /// When the last warning was written.
    warned: Option<Instant>,
    /// Whether accepting is failing now.
    failing: bool,
    /// Whether this run of failures was warned about.
    said: bool,
}

impl AcceptErrors {
    fn failed(&mut self, e: &io::Error) {
        self.failing = true;
        self.unlogged += 1;
        if self
            .warned
            .is_none_or(|at| at.elapsed() >= ACCEPT_LOG_EVERY)
        {
            tracing::warn!(error = %e, errors = self.unlogged, "accepting a connection failed; backing off and retrying");
            self.warned = Some(Instant::now());
            self.unlogged = 0;
            self.said = true;
        }
    }

    fn recovered(&mut self) {
        if !std::mem::take(&mut self.failing) {
            return;
        }
        // Only after a run of failures that was warned about: the lines come in pairs.
        if std::mem::take(&mut self.said) {
            tracing::info!("accepting connections again");
        }
    }
}

fn is_per_connection(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted
    )
}
