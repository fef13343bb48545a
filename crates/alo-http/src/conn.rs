//! The accept loop and each connection's limits: a cap on open connections, accept errors that
//! never end the listener, per-connection idle and write timeouts, and a shutdown that drains
//! with a deadline.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;

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
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
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
        let conn = Connection {
            stream,
            http: http.clone(),
            limits: Arc::clone(&limits),
            drain: drain.clone(),
        };
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

/// The limits of [`serve_with`], set through [`ServerOptions`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) max_connections: usize,
    pub(crate) header_read_timeout: Duration,
    pub(crate) max_header_bytes: usize,
    pub(crate) idle_timeout: Duration,
    pub(crate) write_timeout: Duration,
    pub(crate) shutdown_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 16 << 10,
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

/// One accepted connection and what it needs to be served.
struct Connection {
    stream: TcpStream,
    http: http1::Builder,
    limits: Arc<Limits>,
    /// Becomes `true` when the server drains: finish the request in flight, then close.
    drain: watch::Receiver<bool>,
}

impl Connection {
    /// Serves the connection until it closes, the client stalls it, or the server drains.
    async fn run<H, Fut>(mut self, handler: H)
    where
        H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
    {
        let activity = Arc::new(Activity::new());
        let io = Watched {
            inner: self.stream,
            activity: Arc::clone(&activity),
        };
        let counted = Arc::clone(&activity);
        let service = service_fn(move |req| {
            let response = handler(req);
            let in_flight = InFlight::new(&counted);
            async move {
                let response = response.await;
                drop(in_flight);
                Ok::<_, Infallible>(response)
            }
        });
        let conn = self.http.serve_connection(TokioIo::new(io), service);
        let mut conn = pin!(conn);
        let mut closing = false;
        loop {
            let check = activity.next_check(&self.limits);
            tokio::select! {
                // A connection's own I/O errors end that connection only.
                _ = conn.as_mut() => return,
                changed = self.drain.changed(), if !closing => {
                    if changed.is_err() || *self.drain.borrow() {
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                    }
                }
                // A write started waiting: the next check may be sooner.
                () = activity.write_blocked.notified() => {}
                () = tokio::time::sleep_until(check.into()) => {
                    match activity.verdict(&self.limits) {
                        Verdict::Fine => {}
                        Verdict::Idle if !closing => {
                            conn.as_mut().graceful_shutdown();
                            closing = true;
                        }
                        Verdict::Idle => {}
                        Verdict::WriteStalled => {
                            tracing::debug!("closing a connection whose client does not read");
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// What a connection's traffic says at a check.
enum Verdict {
    Fine,
    /// No traffic and no request in flight for the idle timeout.
    Idle,
    /// A write has made no progress for the write timeout.
    WriteStalled,
}

/// A connection's traffic, as its I/O wrapper sees it. Times are nanoseconds since `start`.
struct Activity {
    start: Instant,
    last_progress: AtomicU64,
    /// When a write first found the socket full, plus one; 0 when no write waits.
    write_blocked_since: AtomicU64,
    in_flight: AtomicUsize,
    /// Woken when a write starts waiting, so the watchdog sets its deadline by it.
    write_blocked: Notify,
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: Instant::now(),
            last_progress: AtomicU64::new(0),
            write_blocked_since: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            write_blocked: Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn at(&self, nanos: u64) -> Instant {
        self.start + Duration::from_nanos(nanos)
    }

    fn progressed(&self) {
        self.last_progress.store(self.now(), Ordering::Relaxed);
    }

    /// When the next limit could be reached, if nothing happens until then.
    fn next_check(&self, limits: &Limits) -> Instant {
        let idle = self.at(self.last_progress.load(Ordering::Relaxed)) + limits.idle_timeout;
        match self.write_blocked_since.load(Ordering::Relaxed) {
            0 => idle,
            since => idle.min(self.at(since - 1) + limits.write_timeout),
        }
    }

    fn verdict(&self, limits: &Limits) -> Verdict {
        let now = Instant::now();
        let blocked = self.write_blocked_since.load(Ordering::Relaxed);
        if blocked != 0 && now >= self.at(blocked - 1) + limits.write_timeout {
            return Verdict::WriteStalled;
        }
        let last = self.at(self.last_progress.load(Ordering::Relaxed));
        if self.in_flight.load(Ordering::Relaxed) == 0 && now >= last + limits.idle_timeout {
            return Verdict::Idle;
        }
        Verdict::Fine
    }
}

/// Counts a request in flight for as long as it lives.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn new(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(activity))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.progressed();
    }
}

/// The connection's socket, noting every read and write that moves bytes, and when a write
/// starts waiting for a client that does not read.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl Watched {
    fn wrote<T>(&self, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        let activity = &self.activity;
        match &poll {
            Poll::Pending => {
                let since = activity.now() + 1;
                let started = activity.write_blocked_since.compare_exchange(
                    0,
                    since,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
                if started.is_ok() {
                    activity.write_blocked.notify_one();
                }
            }
            Poll::Ready(_) => {
                activity.write_blocked_since.store(0, Ordering::Relaxed);
                activity.progressed();
            }
        }
        poll
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.progressed();
        }
        poll
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.wrote(poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.wrote(poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_flush(cx);
        this.wrote(poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

fn is_per_connection(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted
    )
}
