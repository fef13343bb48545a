//! Each connection's watchdog: closes a connection idle for the idle timeout (no traffic, no
//! request in flight), or one whose client has not read a response for the write timeout, and
//! finishes the request in flight when the server drains. On tokio's clock, so tests of the
//! limits run on paused time.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::options::Limits;

/// One accepted connection and what it needs to be served.
pub(super) struct Connection {
    stream: TcpStream,
    http: http1::Builder,
    limits: Arc<Limits>,
    /// Becomes `true` when the server drains: finish the request in flight, then close.
    drain: watch::Receiver<bool>,
}

impl Connection {
    pub(super) fn new(
        stream: TcpStream,
        http: http1::Builder,
        limits: Arc<Limits>,
        drain: watch::Receiver<bool>,
    ) -> Self {
        Connection {
            stream,
            http,
            limits,
            drain,
        }
    }

    /// Serves the connection until it closes, the client stalls it, or the server drains.
    pub(super) async fn run<H, Fut>(mut self, handler: H)
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
                () = tokio::time::sleep_until(check) => {
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
