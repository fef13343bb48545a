//! `alo-bench rss`: how much resident memory a node grows by while it caches values, against
//! the bytes its cache reports holding, which is what `--cache-bytes` budgets.
//!
//! N keys of exactly 100 bytes, served by the benchmark's origin; alo-node with `--origin-url`
//! and the default `--cache-bytes` (64 MiB: no evictions at these sizes); every key fetched
//! once through `/api/web/<key>` by 8 keep-alive clients. Growth is VmRSS (from
//! `/proc/PID/status`) after the keys less VmRSS after one warm-up request, so that what the
//! first request sets up once (the origin's connection pool, hyper's buffers, the runtime's
//! threads) is not counted per item; the reported growth is the same span of `/stats`'s
//! `main_cache.bytes + hot_cache.bytes`, which charge key + value + a fixed per-entry
//! overhead. One node first, then three that know each other with every key asked of node 1
//! (about two keys in three come from the other nodes). Every process is killed at the end,
//! also on error, and every wait is bounded.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http::{Method, StatusCode};

use crate::load::{self, Target, VALUE_BYTES};
use crate::markdown::thousands;
use crate::procs::{self, Log, Proc};

/// Keep-alive clients fetching the keys.
const CLIENTS: usize = 8;

/// The longest a sweep of every key may take.
const SWEEP_LIMIT: Duration = Duration::from_secs(120);

/// Runs both measurements of `keys` keys and prints them.
pub(crate) async fn run(keys: usize) -> anyhow::Result<()> {
    anyhow::ensure!(
        keys >= 3,
        "--keys must be at least 3 (one warm-up key per node)"
    );
    let me = std::env::current_exe()?;
    let node = procs::alo_node()?;
    let origin_args = ["origin".to_string(), "127.0.0.1:0".to_string()];
    let origin = Proc::start(&me, &origin_args, "listening on ").await?;

    eprintln!("rss: one node, {keys} keys");
    let one = single(&node, origin.addr, keys).await?;
    eprintln!("rss: three nodes, {keys} keys through node 1");
    let three = cluster(&node, origin.addr, keys).await?;

    let mut out = format!(
        "`cargo run --release -p alo-bench -- rss --keys {keys}` on {} ({} cores), {}, {}:\n\n",
        crate::markdown::machine(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        crate::markdown::command_line("date", &["-u", "+%Y-%m-%d"]),
        crate::markdown::command_line("rustc", &["--version"]),
    );
    let _ = writeln!(
        out,
        "| run | RSS growth | reported bytes growth | growth − reported (fixed) | **growth / \
         reported** | RSS growth per item |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
    let (node1, items) = (&one.nodes[0], one.nodes[0].items - 1);
    let _ = writeln!(
        out,
        "| single node, {} keys | {} B | {} B | {} B | **{:.2}** | {} B |\n",
        thousands(keys as i64),
        thousands(node1.growth()),
        thousands(node1.reported()),
        thousands(node1.growth() - node1.reported()),
        node1.ratio(),
        node1.growth() / items.max(1) as i64,
    );
    let payload: usize = (1..keys).map(|i| load::key(i).len() + VALUE_BYTES).sum();
    let _ = writeln!(
        out,
        "Single node: VmRSS {} KiB after start, {} KiB after the warm-up request, {} KiB after \
         every key (VmHWM {} KiB); {} items; keys and values are {} B of the reported growth; \
         {} origin loads; the keys took {:.2} s.\n",
        thousands(node1.rss_start / 1024),
        thousands(node1.rss_warm / 1024),
        thousands(node1.rss_end / 1024),
        thousands(node1.peak_end / 1024),
        thousands(node1.items as i64),
        thousands(payload as i64),
        thousands(node1.counter("local_loads")),
        one.took.as_secs_f64(),
    );
    let _ = writeln!(
        out,
        "Three nodes, every key asked of node 1 (the keys took {:.2} s):\n",
        three.took.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "| node | VmRSS start / warm / end (KiB) | RSS growth | main items / bytes | hot items / \
         bytes | reported growth | growth − reported | **growth / reported** |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for (i, n) in three.nodes.iter().enumerate() {
        let _ = writeln!(
            out,
            "| {} | {} / {} / {} | {} B | {} / {} | {} / {} | {} B | {} B | **{:.2}** |",
            i + 1,
            thousands(n.rss_start / 1024),
            thousands(n.rss_warm / 1024),
            thousands(n.rss_end / 1024),
            thousands(n.growth()),
            thousands(n.counter("main_cache.items")),
            thousands(n.counter("main_cache.bytes")),
            thousands(n.counter("hot_cache.items")),
            thousands(n.counter("hot_cache.bytes")),
            thousands(n.reported()),
            thousands(n.growth() - n.reported()),
            n.ratio(),
        );
    }
    let _ = writeln!(out);
    for (i, n) in three.nodes.iter().enumerate() {
        let counters: Vec<String> = [
            "gets",
            "local_loads",
            "peer_loads",
            "server_requests",
            "peer_errors",
        ]
        .iter()
        .map(|name| format!("{name} {}", n.counter(name)))
        .collect();
        let _ = writeln!(out, "node {}: {}", i + 1, counters.join(", "));
    }
    println!("{out}");
    Ok(())
}

/// One node's memory over a measurement, and its group `web` at the end.
#[derive(Debug)]
struct NodeMemory {
    /// VmRSS a second after it started.
    rss_start: i64,
    /// VmRSS after one warm-up request.
    rss_warm: i64,
    /// The cache's reported bytes (main + hot) after that request.
    bytes_warm: i64,
    /// VmRSS a second after the last key.
    rss_end: i64,
    /// VmHWM then.
    peak_end: i64,
    /// The cache's reported bytes then.
    bytes_end: i64,
    /// Entries then (main + hot).
    items: u64,
    /// Group `web` of its `/stats` then.
    web: serde_json::Value,
}

impl NodeMemory {
    fn growth(&self) -> i64 {
        self.rss_end - self.rss_warm
    }

    fn reported(&self) -> i64 {
        self.bytes_end - self.bytes_warm
    }

    fn ratio(&self) -> f64 {
        self.growth() as f64 / self.reported().max(1) as f64
    }

    /// A counter of group `web`, by its dotted path (`main_cache.items`); 0 when missing.
    fn counter(&self, path: &str) -> i64 {
        path.split('.')
            .fold(&self.web, |v, name| &v[name])
            .as_i64()
            .unwrap_or(0)
    }
}

/// What one measurement found: each node's memory, and how long the keys took.
#[derive(Debug)]
struct Measured {
    nodes: Vec<NodeMemory>,
    took: Duration,
}

/// One node, alone (no `--peers`), over `origin`.
async fn single(node: &Path, origin: SocketAddr, keys: usize) -> anyhow::Result<Measured> {
    let url = format!("http://{origin}");
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--api",
        "127.0.0.1:0",
        "--origin-url",
        &url,
    ]
    .map(String::from);
    let proc = Proc::start_with(node, &args, "alo-node: client API at ", Log::Errors).await?;
    measure(&[proc], keys).await
}

/// Three nodes that know each other, over `origin`.
async fn cluster(node: &Path, origin: SocketAddr, keys: usize) -> anyhow::Result<Measured> {
    let url = format!("http://{origin}");
    let args = |_| vec!["--origin-url".to_string(), url.clone()];
    let cluster = procs::cluster(node, 3, &[], args, Log::Errors).await?;
    measure(&cluster.nodes, keys).await
}

/// Warms each node of `nodes` with one request of its own, then fetches every key through the
/// first, and reads their memory and caches at each step.
async fn measure(nodes: &[Proc], keys: usize) -> anyhow::Result<Measured> {
    // Whatever the start left to settle (threads parking, the first probes) settles first.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_start: Vec<i64> = nodes
        .iter()
        .map(|n| Ok(n.memory()?.rss as i64))
        .collect::<anyhow::Result<_>>()?;
    for (i, n) in nodes.iter().enumerate() {
        let path = format!("/api/web/{}", load::key(i));
        let call = procs::call(n.addr, Method::GET, &path, Bytes::new());
        let (status, _) = tokio::time::timeout(Duration::from_secs(5), call)
            .await
            .with_context(|| format!("no answer to the warm-up {path} within 5 s"))??;
        anyhow::ensure!(status == StatusCode::OK, "the warm-up {path}: {status}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut warm = Vec::new();
    for n in nodes {
        let (bytes, _, _) = cache(n.addr).await?;
        warm.push((n.memory()?.rss as i64, bytes));
    }

    let target = Target {
        addr: nodes[0].addr,
        prefix: "/api/web/",
        exact: true,
    };
    let started = Instant::now();
    let report = tokio::time::timeout(SWEEP_LIMIT, load::sweep(&target, keys, CLIENTS))
        .await
        .with_context(|| format!("the keys took more than {} s", SWEEP_LIMIT.as_secs()))??;
    let took = started.elapsed();
    anyhow::ensure!(
        report.errors == 0 && report.wrong == 0 && report.ok == keys as u64,
        "fetching the keys: {} ok, {} errors, {} wrong values",
        report.ok,
        report.errors,
        report.wrong
    );
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mut measured = Vec::new();
    for ((n, rss_start), (rss_warm, bytes_warm)) in nodes.iter().zip(rss_start).zip(warm) {
        let memory = n.memory()?;
        let (bytes_end, items, web) = cache(n.addr).await?;
        measured.push(NodeMemory {
            rss_start,
            rss_warm,
            bytes_warm,
            rss_end: memory.rss as i64,
            peak_end: memory.peak as i64,
            bytes_end,
            items,
            web,
        });
    }
    Ok(Measured {
        nodes: measured,
        took,
    })
}

/// The bytes and entries group `web` of the node at `api` reports (main + hot cache), and the
/// whole group.
async fn cache(api: SocketAddr) -> anyhow::Result<(i64, u64, serde_json::Value)> {
    let stats = procs::json(api, "/stats").await?;
    let web = stats["groups"]["web"].clone();
    let field = |cache: &str, name: &str| {
        web[cache][name]
            .as_u64()
            .with_context(|| format!("no web.{cache}.{name} in /stats"))
    };
    let bytes = field("main_cache", "bytes")? + field("hot_cache", "bytes")?;
    let items = field("main_cache", "items")? + field("hot_cache", "items")?;
    Ok((bytes as i64, items, web))
}
