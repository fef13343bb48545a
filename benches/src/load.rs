//! The load generator: a closed loop over N keep-alive HTTP/1.1 connections, each sending its
//! next request as soon as the last one is answered, for a fixed time, with every answer's
//! latency in an HDR histogram and every body checked.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Zipf};
use tokio::net::TcpStream;

/// Bytes of every value.
pub(crate) const VALUE_BYTES: usize = 100;

/// The name of key number `i`.
pub(crate) fn key(i: usize) -> String {
    format!("k{i:05}")
}

/// The value the origin gives `key`: the key, padded with dots to [`VALUE_BYTES`].
pub(crate) fn value_of(key: &[u8]) -> Bytes {
    let mut value = key.to_vec();
    value.resize(VALUE_BYTES, b'.');
    Bytes::from(value)
}

/// How keys are drawn.
#[derive(Clone, Debug)]
pub(crate) enum Keys {
    Uniform,
    /// Zipf with this exponent: key 0 the most popular.
    Zipf(f64),
    /// Half the gets for one key its owner is not node 1, half uniform over keys node 1 owns:
    /// what a scenario says, made into [`Keys::Mix`] once the nodes' addresses are known.
    HotHalf,
    /// Half the gets for the key `hot`, half uniform over `rest`.
    Mix {
        hot: usize,
        rest: Arc<[usize]>,
    },
}

/// What a load is sent to and how it is judged.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub(crate) addr: SocketAddr,
    /// Prepended to the key: `/api/web/` for a node.
    pub(crate) prefix: &'static str,
    /// Whether the body must be the key's value (a cache), or only [`VALUE_BYTES`] long (the
    /// floor, which answers every path alike).
    pub(crate) exact: bool,
}

/// What a run measured.
#[derive(Debug)]
pub(crate) struct Report {
    /// Answers with the right status and body.
    pub(crate) ok: u64,
    /// Requests that got no answer, or another status.
    pub(crate) errors: u64,
    /// Answers whose body was not the key's value.
    pub(crate) wrong: u64,
    pub(crate) elapsed: Duration,
    /// Latency of the good answers, in microseconds.
    pub(crate) latency: Histogram<u64>,
    /// Good answers per [`TICK`] since the run began.
    pub(crate) timeline: Vec<u64>,
}

/// The width of a timeline's buckets.
pub(crate) const TICK: Duration = Duration::from_millis(250);

impl Report {
    pub(crate) fn per_second(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    pub(crate) fn percentile_us(&self, q: f64) -> u64 {
        self.latency.value_at_quantile(q)
    }
}

/// Keys each connection draws up front, so that drawing costs nothing while measuring.
const SEQUENCE: usize = 1 << 16;

/// `connections` connections asking `target` for keys drawn from `keys` of `space`, for
/// `duration`.
pub(crate) async fn run(
    target: &Target,
    space: usize,
    keys: Keys,
    connections: usize,
    duration: Duration,
    seed: u64,
) -> anyhow::Result<Report> {
    // Keys are drawn before the clock starts: drawing takes a while.
    let sequences: Vec<Vec<usize>> = (0..connections)
        .map(|c| draw(space, &keys, seed.wrapping_add(c as u64)))
        .collect();
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = Vec::new();
    for sequence in sequences {
        let target = target.clone();
        workers.push(tokio::spawn(async move {
            let done = |_| Instant::now() >= deadline;
            connection(&target, None, sequence, started, done).await
        }));
    }
    gather(workers, started).await
}

/// The nodes a load is sent to, which may change while it runs (a node about to restart is
/// taken out first, so that no client of the benchmark is cut off by its shutdown).
#[derive(Debug)]
pub(crate) struct Live {
    addrs: Mutex<Vec<SocketAddr>>,
    /// Bumped on every change, so that a connection looks at the set only when it changed.
    version: AtomicU64,
}

impl Live {
    pub(crate) fn new(addrs: Vec<SocketAddr>) -> Arc<Live> {
        Arc::new(Live {
            addrs: Mutex::new(addrs),
            version: AtomicU64::new(1),
        })
    }

    /// Sends no new request to `addr`: each connection on it moves once its request in flight
    /// is answered.
    pub(crate) fn remove(&self, addr: SocketAddr) {
        self.change(|addrs| addrs.retain(|a| *a != addr));
    }

    /// Sends requests to `addr` too: the connections are spread again.
    pub(crate) fn add(&self, addr: SocketAddr) {
        self.change(|addrs| addrs.push(addr));
    }

    fn change(&self, f: impl FnOnce(&mut Vec<SocketAddr>)) {
        f(&mut self.addrs.lock().unwrap_or_else(PoisonError::into_inner));
        self.version.fetch_add(1, Ordering::Release);
    }

    /// The node connection `index` is to use, round-robin.
    fn pick(&self, index: usize) -> Option<SocketAddr> {
        let addrs = self.addrs.lock().unwrap_or_else(PoisonError::into_inner);
        (!addrs.is_empty()).then(|| addrs[index % addrs.len()])
    }
}

/// `connections` connections over the nodes of `live`, each keeping to one until the set
/// changes, asking for uniform keys of `space` (`prefix` and every body as in [`Target`])
/// until `stop` is set.
pub(crate) async fn run_live(
    live: &Arc<Live>,
    space: usize,
    connections: usize,
    stop: &Arc<AtomicBool>,
    seed: u64,
) -> anyhow::Result<Report> {
    let sequences: Vec<Vec<usize>> = (0..connections)
        .map(|c| draw(space, &Keys::Uniform, seed.wrapping_add(c as u64)))
        .collect();
    let first = live.pick(0).context("no node to send the load to")?;
    let target = Target {
        addr: first,
        prefix: "/api/web/",
        exact: true,
    };
    let started = Instant::now();
    let mut workers = Vec::new();
    for (index, sequence) in sequences.into_iter().enumerate() {
        let (target, live, stop) = (target.clone(), Arc::clone(live), Arc::clone(stop));
        workers.push(tokio::spawn(async move {
            let done = |_| stop.load(Ordering::Relaxed);
            connection(&target, Some((&live, index)), sequence, started, done).await
        }));
    }
    gather(workers, started).await
}

/// Asks `target` for every key of `space` once, over `connections` connections: the warm-up.
pub(crate) async fn sweep(
    target: &Target,
    space: usize,
    connections: usize,
) -> anyhow::Result<Report> {
    let mut workers = Vec::new();
    for c in 0..connections {
        let sequence: Vec<usize> = (c..space).step_by(connections).collect();
        let n = sequence.len();
        let target = target.clone();
        let started = Instant::now();
        workers.push(tokio::spawn(async move {
            connection(&target, None, sequence, started, move |i| i >= n).await
        }));
    }
    gather(workers, Instant::now()).await
}

/// The connections' reports added up, timed from `started` to the last one's end.
async fn gather(
    workers: Vec<tokio::task::JoinHandle<anyhow::Result<Report>>>,
    started: Instant,
) -> anyhow::Result<Report> {
    let mut report = empty_report()?;
    for worker in workers {
        merge(&mut report, worker.await.context("a connection panicked")??)?;
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// The keys one connection asks, in order: [`SEQUENCE`] of them, drawn from `keys` of `space`
/// with `seed`.
pub(crate) fn draw(space: usize, keys: &Keys, seed: u64) -> Vec<usize> {
    let mut rng = StdRng::seed_from_u64(seed);
    match keys {
        Keys::Uniform | Keys::HotHalf => {
            (0..SEQUENCE).map(|_| rng.random_range(0..space)).collect()
        }
        Keys::Zipf(s) => {
            let zipf = Zipf::new(space as f64, *s).expect("valid Zipf parameters");
            (0..SEQUENCE)
                .map(|_| zipf.sample(&mut rng) as usize - 1)
                .collect()
        }
        Keys::Mix { hot, rest } => (0..SEQUENCE)
            .map(|_| match rng.random_bool(0.5) {
                true => *hot,
                false => rest[rng.random_range(0..rest.len())],
            })
            .collect(),
    }
}

/// One connection's loop: request after request of the keys of `sequence` (cycled) until
/// `done(requests sent)`. A connection that fails is counted and opened again. With `live`
/// (the set and this connection's number), it goes to the node the set gives it, and moves
/// between two requests when the set changes.
async fn connection(
    target: &Target,
    live: Option<(&Live, usize)>,
    sequence: Vec<usize>,
    started: Instant,
    done: impl Fn(usize) -> bool,
) -> anyhow::Result<Report> {
    let mut report = empty_report()?;
    let mut sender: Option<SendRequest<Empty<Bytes>>> = None;
    let (mut addr, mut seen) = (target.addr, 0);
    let mut i = 0;
    while !done(i) {
        if let Some((live, index)) = live {
            let version = live.version.load(Ordering::Acquire);
            if version != seen {
                seen = version;
                if let Some(next) = live.pick(index).filter(|next| *next != addr) {
                    (addr, sender) = (next, None);
                }
            }
        }
        let key = key(sequence[i % sequence.len()]);
        i += 1;
        let send = match &mut sender {
            Some(send) => send,
            None => match connect(addr).await {
                Ok(send) => sender.insert(send),
                Err(_) => {
                    report.errors += 1;
                    // Nobody listens: try again a little later rather than spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let request = Request::get(format!("{}{key}", target.prefix))
            .header(http::header::HOST, "bench")
            .body(Empty::new())
            .expect("a valid request");
        let sent = Instant::now();
        let answer = async {
            let response = send.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, body))
        };
        match answer.await {
            Ok((StatusCode::OK, body)) => {
                let right = if target.exact {
                    body == value_of(key.as_bytes())
                } else {
                    body.len() == VALUE_BYTES
                };
                if right {
                    report.ok += 1;
                    let micros = sent.elapsed().as_micros() as u64;
                    report.latency.saturating_record(micros.max(1));
                    let tick = (started.elapsed().as_nanos() / TICK.as_nanos()) as usize;
                    if report.timeline.len() <= tick {
                        report.timeline.resize(tick + 1, 0);
                    }
                    report.timeline[tick] += 1;
                } else {
                    report.wrong += 1;
                }
            }
            Ok(_) => report.errors += 1,
            Err(_) => {
                report.errors += 1;
                sender = None;
            }
        }
    }
    Ok(report)
}

async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Empty<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (send, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(send)
}

fn empty_report() -> anyhow::Result<Report> {
    Ok(Report {
        ok: 0,
        errors: 0,
        wrong: 0,
        elapsed: Duration::ZERO,
        // 1 us to 60 s, three significant figures.
        latency: Histogram::new_with_bounds(1, 60_000_000, 3)?,
        timeline: Vec::new(),
    })
}

fn merge(into: &mut Report, from: Report) -> anyhow::Result<()> {
    into.ok += from.ok;
    into.errors += from.errors;
    into.wrong += from.wrong;
    into.latency.add(&from.latency)?;
    if into.timeline.len() < from.timeline.len() {
        into.timeline.resize(from.timeline.len(), 0);
    }
    for (a, b) in into.timeline.iter_mut().zip(&from.timeline) {
        *a += b;
    }
    Ok(())
}

/// Opens `clients` connections per key of `keys`, sends each a get, and hangs up each after
/// `after`, before any answer: clients that gave up while the key was loading.
pub(crate) async fn hang_up(
    target: &Target,
    keys: &[String],
    clients: usize,
    after: Duration,
) -> anyhow::Result<()> {
    let mut calls = Vec::new();
    for key in keys {
        for _ in 0..clients {
            let (target, key) = (target.clone(), key.clone());
            calls.push(tokio::spawn(async move {
                let mut send = connect(target.addr).await?;
                let request = Request::get(format!("{}{key}", target.prefix))
                    .header(http::header::HOST, "bench")
                    .body(Empty::new())?;
                let answered = tokio::time::timeout(after, send.send_request(request)).await;
                anyhow::ensure!(answered.is_err(), "{key} was answered before the hang-up");
                // Dropping the sender closes the connection.
                Ok::<_, anyhow::Error>(())
            }));
        }
    }
    for call in calls {
        call.await??;
    }
    Ok(())
}
