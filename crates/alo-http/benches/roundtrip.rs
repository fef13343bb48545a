//! A peer round trip of alo over HTTP on loopback, against a bare hyper server returning the same
//! fixed bytes: the bare server is the floor (the target is alo within 1.3x of it).
//!
//! Groups `roundtrip_100B` and `roundtrip_64KiB` (the value's size), rows:
//! - `alo`: an owner node, `alo_http::serve` on `127.0.0.1:0` with a group `g` whose getter
//!   returns the fixed value, its cache warmed before timing. The timed operation is the peer
//!   request exactly as a non-owner node makes it: the peer client that an `HttpPool` (self URL
//!   `http://127.0.0.1:1`, peers: that and the owner) picks for a key the ring gives the owner,
//!   `getter.get("g", key).await`, through `dyn Peer` as a group calls it. That the owner
//!   called its getter once only (the warm-up) is checked afterwards.
//! - `bare_hyper`: a minimal hyper 1.x http1 server on `127.0.0.1:0` (`service_fn` answering any
//!   request with `Response::new(Full::new(value))`, `set_nodelay(true)` on each accepted
//!   stream as alo's server does), asked for the same path (`/_alo/g/{key}`) by a
//!   `hyper_util` legacy client built as alo's pool builds its own (an `HttpConnector` with
//!   alo's connect timeout and `nodelay`), the body collected through `Limited` (64 MiB) as
//!   alo's client does. No answer timeout, no peer-health watch, no error mapping, no
//!   percent-encoding, no graceful-shutdown watch, no content-type header: that is alo's
//!   overhead.
//!
//! Both clients keep their connection alive across iterations: after the first request each
//! round trip is one request and one response on an open TCP connection.
//!
//! Servers and clients run in one multi-thread tokio runtime with 2 worker threads. Each
//! sample's timed loop (`iter_custom` under criterion's `to_async`) runs in a task spawned onto
//! the runtime, as a node's request handler would ask a peer, and times itself; criterion's
//! thread only waits for it. Timing the loop in `block_on` on criterion's thread instead puts a
//! cross-thread wake-up in every round trip, and on a 2-vCPU machine that made both rows shift
//! together between regimes (about 30, 60 and 105 µs a round trip) over seconds, so that rows
//! measured one after the other could not be compared. Each size's servers are shut down
//! (alo's through its shutdown future, the bare one aborted) before the next size starts.

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alo_group::{Group, Groups, Peer, PeerPicker, getter_fn};
use alo_http::{HttpPool, PoolOptions, ServerOptions, serve};
use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full, Limited};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

/// The largest response either client accepts: alo's default `max_response_bytes`.
const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// The self URL of the asking node: never listened on, never asked (a pool has no getter for
/// itself).
const ASKER_URL: &str = "http://127.0.0.1:1";

/// The group's name on the owner, and in the bare server's path.
const GROUP: &str = "g";

/// The owner node: alo's server for a group `g` whose getter returns `value`.
struct Owner {
    url: String,
    group: Group,
    stop: oneshot::Sender<()>,
    server: JoinHandle<Result<(), alo_http::Error>>,
}

impl Owner {
    async fn start(value: Bytes) -> Owner {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("bound"));
        let pool = HttpPool::new(&url, PoolOptions::default()).expect("valid URL");
        pool.set_members([url.as_str(), ASKER_URL])
            .expect("valid URLs");
        let groups = Groups::with_picker(pool);
        let group = groups
            .create(
                GROUP,
                64 << 20,
                getter_fn(move |_key: Bytes| {
                    let value = value.clone();
                    async move { Ok(value) }
                }),
            )
            .expect("new group");
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, groups, ServerOptions::default(), stopped));
        Owner {
            url,
            group,
            stop,
            server,
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(5), self.server)
            .await
            .expect("alo's server stops within 5 s")
            .expect("server task")
            .expect("server stopped cleanly");
    }
}

/// The asking node's side: the pool and the getter it picks for a key the owner owns.
struct Asker {
    /// Kept so the pool (and its client) outlive the benchmark.
    _pool: Arc<HttpPool>,
    getter: Arc<dyn Peer>,
    key: Vec<u8>,
}

impl Asker {
    fn new(owner_url: &str) -> Asker {
        let pool = HttpPool::new(ASKER_URL, PoolOptions::default()).expect("valid URL");
        pool.set_members([ASKER_URL, owner_url])
            .expect("valid URLs");
        let (key, getter) = (0..1000)
            .map(|n| format!("key-{n}").into_bytes())
            .find_map(|key| pool.pick_peer(&key).map(|getter| (key, getter)))
            .expect("the ring gives the owner some key");
        Asker {
            _pool: pool,
            getter,
            key,
        }
    }

    async fn get(&self) -> Bytes {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        self.getter
            .get(GROUP, &self.key, deadline)
            .await
            .expect("the owner answers")
            .value
    }
}

/// The floor: a bare hyper server answering every request with `value`.
struct BareServer {
    url: String,
    task: JoinHandle<()>,
}

impl BareServer {
    async fn start(value: Bytes) -> BareServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("bound"));
        let task = tokio::spawn(async move {
            // Dropped with this task when it is aborted, which aborts every connection.
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let value = value.clone();
                let service = service_fn(move |_req| {
                    let value = value.clone();
                    async move { Ok::<_, Infallible>(Response::new(Full::new(value))) }
                });
                connections.spawn(async move {
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        BareServer { url, task }
    }

    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// The floor's client: built as alo's pool builds its own.
struct BareClient {
    client: Client<HttpConnector, Empty<Bytes>>,
    uri: String,
}

impl BareClient {
    fn new(server_url: &str, key: &[u8]) -> BareClient {
        let key = std::str::from_utf8(key).expect("an unreserved ASCII key");
        // As alo's pool builds its client: a connect timeout, no Nagle.
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(alo_http::DEFAULT_CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        BareClient {
            client: Client::builder(TokioExecutor::new()).build(connector),
            uri: format!("{server_url}/_alo/{GROUP}/{key}"),
        }
    }

    async fn get(&self) -> Bytes {
        let request = Request::get(self.uri.as_str())
            .body(Empty::new())
            .expect("a valid request");
        let response = self.client.request(request).await.expect("a response");
        assert_eq!(response.status(), StatusCode::OK);
        Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .expect("the body")
            .to_bytes()
    }
}

/// Runs a timed loop in a task on the runtime's workers and returns the time it measured.
async fn on_worker(timed: impl Future<Output = Duration> + Send + 'static) -> Duration {
    tokio::spawn(timed).await.expect("the timed task")
}

fn roundtrip(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    for (name, len) in [("roundtrip_100B", 100), ("roundtrip_64KiB", 64 << 10)] {
        let value = Bytes::from(vec![0xA5; len]);
        let (owner, asker, bare, bare_client) = runtime.block_on(async {
            let owner = Owner::start(value.clone()).await;
            let asker = Asker::new(&owner.url);
            let bare = BareServer::start(value.clone()).await;
            let bare_client = BareClient::new(&bare.url, &asker.key);
            // Warm the owner's cache (the first get loads through its getter) and both clients'
            // connections, and check both rows answer the same bytes.
            assert_eq!(asker.get().await, value);
            assert_eq!(bare_client.get().await, value);
            (owner, Arc::new(asker), bare, Arc::new(bare_client))
        });
        assert_eq!(owner.group.stats().local_loads, 1);

        let mut group = c.benchmark_group(name);
        group
            .sample_size(30)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3));
        group.bench_function("alo", |b| {
            b.to_async(&runtime).iter_custom(|iters| {
                let asker = Arc::clone(&asker);
                on_worker(async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        black_box(asker.get().await);
                    }
                    start.elapsed()
                })
            });
        });
        group.bench_function("bare_hyper", |b| {
            b.to_async(&runtime).iter_custom(|iters| {
                let client = Arc::clone(&bare_client);
                on_worker(async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        black_box(client.get().await);
                    }
                    start.elapsed()
                })
            });
        });
        group.finish();

        // Every timed get was answered from the owner's cache.
        let stats = owner.group.stats();
        assert_eq!(stats.local_loads, 1, "the owner loaded only while warming");
        assert_eq!(stats.gets, stats.server_requests);
        assert_eq!(stats.cache_hits + 1, stats.gets);

        drop((asker, bare_client));
        runtime.block_on(async {
            owner.stop().await;
            bare.stop().await;
        });
    }
}

criterion_group!(benches, roundtrip);
criterion_main!(benches);
