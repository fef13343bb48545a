//! Each connection's watchdog: closes a connection idle for the idle timeout (no traffic, no
//! request in flight), one that waits for a request head (from its start, or from the end of
//! its last response) longer than the header timeout, or one
//! whose client has not read a response for the write timeout, and finishes the request in
//! flight when the server drains. On tokio's clock, so tests of the limits run on paused time.
//!
//! The I/O path reads no clock and arms no timer: the socket's wrapper and the service only
//! count (bytes moved, requests begun and answered, a write that found the socket full), and
//! the watchdog looks at the counts every quarter of the shortest limit. So a limit is enforced
//! between itself and itself plus two ticks (at most 1.5 times it), never before.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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
use tokio::sync::watch;
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
        let activity = Arc::new(Activity::default());
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
        let tick = tick(&self.limits);
        let mut watch = Watch::new(Instant::now());
        loop {
            tokio::select! {
                biased;
                // A connection's own I/O errors end that connection only.
                _ = conn.as_mut() => return,
                changed = self.drain.changed(), if !closing => {
                    if changed.is_err() || *self.drain.borrow() {
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                    }
                }
                () = tokio::time::sleep_until(watch.seen + tick) => {
                    match watch.check(&activity, &self.limits, Instant::now()) {
                        Verdict::Fine => {}
                        Verdict::Idle if !closing => {
                            conn.as_mut().graceful_shutdown();
                            closing = true;
                        }
                        Verdict::Idle => {}
                        Verdict::SlowHead => {
                            tracing::debug!("closing a connection whose request head is late");
                            return;
                        }
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

/// How often a connection's watchdog looks at its traffic: a quarter of the shortest limit, so
/// that a limit is enforced between itself and a little more than its 1.5 times.
fn tick(limits: &Limits) -> Duration {
    let shortest = limits
        .idle_timeout
        .min(limits.write_timeout)
        .min(limits.header_read_timeout);
    (shortest / 4).max(Duration::from_millis(1))
}

/// What a connection's traffic says at a check.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Fine,
    /// No traffic and no request in flight for the idle timeout.
    Idle,
    /// No complete request head for the header timeout since the connection began waiting for
    /// one.
    SlowHead,
    /// A write has made no progress for the write timeout.
    WriteStalled,
}

/// A connection's traffic, as its I/O wrapper and its service count it. No clock is read on
/// the I/O path: the watchdog reads these at its ticks, and a change it sees dates from its
/// previous tick at the earliest.
#[derive(Default)]
struct Activity {
    /// Reads and writes that moved bytes, and requests answered: any change is progress.
    progress: AtomicU64,
    /// Writes that moved bytes.
    writes: AtomicU64,
    /// Whether the last write found the socket full.
    write_blocked: AtomicBool,
    /// Requests whose head was complete.
    requests: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn progressed(&self) {
        self.progress.fetch_add(1, Ordering::Relaxed);
    }
}

/// What the watchdog saw at its ticks: each counter with the tick at which it last changed.
struct Watch {
    /// The last tick.
    seen: Instant,
    progress: (u64, Instant),
    /// While a write is blocked: the writes done when it was first seen blocked, and when.
    blocked: Option<(u64, Instant)>,
    /// While the connection waits for a request head: the requests begun and the writes done
    /// when it was first seen waiting, and when.
    head: Option<((u64, u64), Instant)>,
}

impl Watch {
    fn new(now: Instant) -> Self {
        Watch {
            seen: now,
            progress: (0, now),
            blocked: None,
            head: None,
        }
    }

    fn check(&mut self, activity: &Activity, limits: &Limits, now: Instant) -> Verdict {
        self.seen = now;
        let progress = activity.progress.load(Ordering::Relaxed);
        if progress != self.progress.0 {
            self.progress = (progress, now);
        }
        if activity.write_blocked.load(Ordering::Relaxed) {
            let writes = activity.writes.load(Ordering::Relaxed);
            match self.blocked {
                Some((w, since)) if w == writes => {
                    if now - since >= limits.write_timeout {
                        return Verdict::WriteStalled;
                    }
                }
                _ => self.blocked = Some((writes, now)),
            }
        } else {
            self.blocked = None;
        }
        let idle = activity.in_flight.load(Ordering::Relaxed) == 0;
        // Waiting for a head: no request in flight and the last response written (a response
        // still going out moves the writes, and restarts the wait).
        if idle && self.blocked.is_none() {
            let seen = (
                activity.requests.load(Ordering::Relaxed),
                activity.writes.load(Ordering::Relaxed),
            );
            match self.head {
                Some((r, since)) if r == seen => {
                    if now - since >= limits.header_read_timeout {
                        return Verdict::SlowHead;
                    }
                }
                _ => self.head = Some((seen, now)),
            }
        } else {
            self.head = None;
        }
        if idle && now - self.progress.1 >= limits.idle_timeout {
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
        activity.requests.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(activity))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.progressed();
    }
}

/// The connection's socket, counting every read and write that moves bytes, and whether a
/// write waits for a client that does not read.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl Watched {
    fn wrote(&self, poll: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        let activity = &self.activity;
        match &poll {
            Poll::Pending => activity.write_blocked.store(true, Ordering::Relaxed),
            Poll::Ready(written) => {
                activity.write_blocked.store(false, Ordering::Relaxed);
                if matches!(written, Ok(n) if *n > 0) {
                    activity.writes.fetch_add(1, Ordering::Relaxed);
                    activity.progressed();
                }
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

    /// A socket's flush moves nothing: it is no progress.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            idle_timeout: Duration::from_secs(60),
            header_read_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            ..Limits::default()
        }
    }

    /// Checks at every tick of `limits` from `start` for `ticks` ticks, `between(tick)` before
    /// each; the verdicts other than fine.
    fn run_with(
        limits: &Limits,
        watch: &mut Watch,
        activity: &Activity,
        start: Instant,
        ticks: u32,
        mut between: impl FnMut(u32),
    ) -> Vec<(Duration, Verdict)> {
        let tick = tick(limits);
        let mut out = Vec::new();
        for i in 1..=ticks {
            between(i);
            let now = start + tick * i;
            let verdict = watch.check(activity, limits, now);
            if verdict != Verdict::Fine {
                out.push((now - start, verdict));
            }
        }
        out
    }

    fn run(
        watch: &mut Watch,
        activity: &Activity,
        start: Instant,
        ticks: u32,
        between: impl FnMut(u32),
    ) -> Vec<(Duration, Verdict)> {
        run_with(&limits(), watch, activity, start, ticks, between)
    }

    #[test]
    fn the_tick_is_a_quarter_of_the_shortest_limit() {
        assert_eq!(tick(&limits()), Duration::from_millis(2500));
    }

    #[test]
    fn a_connection_with_requests_is_never_idle_and_one_without_is_after_the_timeout() {
        let limits = Limits {
            idle_timeout: Duration::from_secs(8),
            header_read_timeout: Duration::from_secs(60),
            ..limits()
        };
        let start = Instant::now();
        let (mut watch, activity) = (Watch::new(start), Arc::new(Activity::default()));
        let busy = run_with(&limits, &mut watch, &activity, start, 100, |_| {
            drop(InFlight::new(&activity));
        });
        assert!(busy.is_empty(), "{busy:?}");
        // Quiet from tick 100 on (a tick is 2 s): idle once 8 s have passed since the tick that
        // saw the last progress, and not before.
        let quiet = run_with(
            &limits,
            &mut watch,
            &activity,
            start + tick(&limits) * 100,
            10,
            |_| {},
        );
        assert_eq!(
            quiet.first(),
            Some(&(Duration::from_secs(8), Verdict::Idle))
        );
    }

    #[test]
    fn a_connection_waiting_for_a_head_is_late_after_the_header_timeout() {
        let start = Instant::now();
        let (mut watch, activity) = (Watch::new(start), Activity::default());
        // Bytes trickle in, without a complete head: progress, but no request. First seen
        // waiting at the first tick (2.5 s), late 10 s after that.
        let verdicts = run(&mut watch, &activity, start, 8, |_| activity.progressed());
        assert_eq!(
            verdicts.first(),
            Some(&(Duration::from_millis(12_500), Verdict::SlowHead))
        );
        // Heads that complete in time are no verdict, each wait with its own clock; so is a
        // long response still being written.
        let activity = Arc::new(Activity::default());
        let mut watch = Watch::new(start);
        let verdicts = run(&mut watch, &activity, start, 24, |i| {
            if i % 3 == 0 {
                drop(InFlight::new(&activity));
            }
            if i > 12 {
                activity.writes.fetch_add(1, Ordering::Relaxed);
            }
        });
        assert!(verdicts.is_empty(), "{verdicts:?}");
    }

    #[test]
    fn a_write_blocked_without_progress_stalls_after_the_write_timeout() {
        let start = Instant::now();
        let (mut watch, activity) = (Watch::new(start), Activity::default());
        activity.in_flight.store(1, Ordering::Relaxed);
        activity.write_blocked.store(true, Ordering::Relaxed);
        // Blocked, but moving now and then: never stalled.
        let moving = run(&mut watch, &activity, start, 20, |i| {
            if i % 3 == 0 {
                activity.writes.fetch_add(1, Ordering::Relaxed);
            }
        });
        assert!(moving.is_empty(), "{moving:?}");
        // The last write moved just before tick 18: stalled 10 s (4 ticks) after that tick.
        let stuck = run(
            &mut watch,
            &activity,
            start + tick(&limits()) * 20,
            8,
            |_| {},
        );
        assert_eq!(
            stuck.first(),
            Some(&(Duration::from_millis(5_000), Verdict::WriteStalled))
        );
    }
}
