//! The two servers the benchmark runs beside the nodes, each as a process of its own: the floor
//! (a bare hyper 1.x server answering a fixed 100-byte body, what any Rust HTTP service costs at
//! the least) and the origin the nodes load from.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::load::{VALUE_BYTES, value_of};

/// Which server a process runs.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    /// Every path: the same 100 bytes.
    Floor,
    /// `/{key}`: the key's value.
    Origin,
}

/// The path at which a counting server answers, at once, the most requests it has held at
/// once since the last time it was asked (and starts counting again from those it holds).
pub(crate) const PEAK_PATH: &str = "/_peak";

/// The path at which a server counting keys answers, at once, what it has served so far:
/// `{"requests": N, "keys": M, "most": K}`, every request other than these paths, the distinct
/// keys asked, and the most requests for one key.
pub(crate) const STATS_PATH: &str = "/_stats";

/// The path at which a server counting keys answers every key's count so far, as a JSON object
/// (`{"k00001": 1, ...}`).
pub(crate) const KEYS_PATH: &str = "/_keys";

/// What a server counts besides serving.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Counting {
    /// The requests held at once, and [`PEAK_PATH`].
    pub(crate) held: bool,
    /// The requests for each key, and [`STATS_PATH`] and [`KEYS_PATH`].
    pub(crate) keys: bool,
}

/// Serves `kind` on `listen` until the process is killed, on tokio's multi-threaded runtime
/// (as a node runs), printing `listening on {addr}` once bound; each answer waits `delay`.
/// What `counting` asks for is counted and answered at its paths; what it does not ask for
/// costs nothing.
pub(crate) fn run(
    kind: Kind,
    listen: SocketAddr,
    delay: Duration,
    counting: Counting,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let in_flight = counting.held.then(|| Arc::new(InFlight::default()));
    let per_key = counting.keys.then(|| Arc::new(PerKey::default()));
    runtime.block_on(async move {
        let listener = TcpListener::bind(listen).await?;
        println!("listening on {}", listener.local_addr()?);
        let fixed = Bytes::from(vec![b'.'; VALUE_BYTES]);
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            let fixed = fixed.clone();
            let in_flight = in_flight.clone();
            let per_key = per_key.clone();
            let service = service_fn(move |req: Request<Incoming>| {
                let path = req.uri().path();
                let (body, wait, held) = match (&in_flight, &per_key) {
                    (Some(counts), _) if path == PEAK_PATH => {
                        (Bytes::from(counts.peak().to_string()), Duration::ZERO, None)
                    }
                    (_, Some(keys)) if path == STATS_PATH => (keys.stats(), Duration::ZERO, None),
                    (_, Some(keys)) if path == KEYS_PATH => (keys.all(), Duration::ZERO, None),
                    _ => {
                        if let Some(keys) = &per_key {
                            keys.count(path.trim_start_matches('/'));
                        }
                        let body = match kind {
                            Kind::Floor => fixed.clone(),
                            Kind::Origin => value_of(path.trim_start_matches('/').as_bytes()),
                        };
                        (body, delay, in_flight.as_ref().map(|c| c.hold()))
                    }
                };
                async move {
                    // Counted until answered, or until the client goes and the future drops.
                    let _held = held;
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                    Ok::<_, Infallible>(Response::new(Full::new(body)))
                }
            });
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

/// The requests a server holds, and the most it has held at once.
#[derive(Debug, Default)]
struct InFlight {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl InFlight {
    /// One more request held, until the guard drops.
    fn hold(self: &Arc<Self>) -> Held {
        let now = self.now.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(now, Ordering::Relaxed);
        Held(Arc::clone(self))
    }

    /// The peak since the last call; the next one counts from the requests held now.
    fn peak(&self) -> usize {
        let now = self.now.load(Ordering::Relaxed);
        self.peak.swap(now, Ordering::Relaxed)
    }
}

/// A request counted by [`InFlight`] while it lives.
#[derive(Debug)]
struct Held(Arc<InFlight>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The requests a server has answered, per key.
#[derive(Debug, Default)]
struct PerKey {
    counts: Mutex<HashMap<String, u64>>,
}

impl PerKey {
    fn count(&self, key: &str) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        match counts.get_mut(key) {
            Some(n) => *n += 1,
            None => {
                counts.insert(key.to_string(), 1);
            }
        }
    }

    /// `{"requests": N, "keys": M, "most": K}`.
    fn stats(&self) -> Bytes {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let requests: u64 = counts.values().sum();
        let most = counts.values().max().copied().unwrap_or(0);
        let stats = serde_json::json!({"requests": requests, "keys": counts.len(), "most": most});
        Bytes::from(stats.to_string())
    }

    /// Every key's count, as a JSON object.
    fn all(&self) -> Bytes {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        Bytes::from(serde_json::json!(*counts).to_string())
    }
}
