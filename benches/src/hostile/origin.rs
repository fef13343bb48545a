//! Floods of cold keys, by one batch get and by many clients: the origin must see at most
//! `--origin-max-concurrency` loads at once, and the node's memory stay bounded.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http::Method;

use super::{MEMORY_TARGET, Row, mib, ms, strings, timed};
use crate::load::{self, Target};
use crate::procs::{self, Log, Proc};
use crate::servers::PEAK_PATH;

/// A counting origin (see [`PEAK_PATH`]) whose every answer waits `delay`.
async fn counting_origin(me: &Path, delay: Duration) -> anyhow::Result<Proc> {
    let args = vec![
        "origin".to_string(),
        "127.0.0.1:0".to_string(),
        format!("--delay-ms={}", delay.as_millis()),
        "--count".to_string(),
    ];
    Proc::start(me, &args, "listening on ").await
}

/// The most requests `origin` held at once since it was last asked.
async fn origin_peak(origin: &Proc) -> anyhow::Result<u64> {
    let (_, body) = procs::call(origin.addr, Method::GET, PEAK_PATH, Bytes::new()).await?;
    Ok(std::str::from_utf8(&body)?.trim().parse()?)
}

/// One node over `origin`: group `web`.
async fn web_node(node: &Path, origin: &Proc) -> anyhow::Result<procs::Cluster> {
    let url = format!("http://{}", origin.addr);
    procs::cluster(
        node,
        1,
        &[],
        |_| strings(&["--origin-url", &url]),
        Log::Kept,
    )
    .await
}

/// Waits (at most 20 s) until `api`'s group `web` runs and queues no load.
async fn loads_done(api: SocketAddr) -> anyhow::Result<()> {
    let waited = Instant::now();
    while waited.elapsed() < Duration::from_secs(20) {
        let running = procs::counter(api, "loads_running").await?;
        let waiting = procs::counter(api, "loads_waiting").await?;
        if running + waiting == 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("loads still running after 20 s")
}

/// The RSS before and after, and the peak.
fn memory_figure(before: procs::Memory, after: procs::Memory) -> String {
    format!(
        "RSS {:.1} → {:.1} MiB ({:+.1}), VmHWM {:.1} MiB",
        mib(before.rss),
        mib(after.rss),
        mib(after.rss) - mib(before.rss),
        mib(after.peak)
    )
}

/// b. One batch get of 5,000 cold keys: at most `--peer-max-batch-keys` of them may start a
/// load.
pub(super) async fn cold_batch(node: &Path, me: &Path) -> anyhow::Result<Vec<Row>> {
    const KEYS: usize = 5_000;
    let origin = counting_origin(me, Duration::from_millis(500)).await?;
    let cluster = web_node(node, &origin).await?;
    let (proc, peer) = (&cluster.nodes[0], cluster.peers[0]);
    let before = proc.memory()?;
    let body: String = (0..KEYS).map(|i| load::key(i) + "\n").collect();
    let (status, answer, took) = timed(peer, Method::POST, "/_alo/web?get", body.into()).await?;
    let statuses = frame_statuses(&answer);
    loads_done(proc.addr).await?;
    let peak = origin_peak(&origin).await?;
    let loads = procs::counter(proc.addr, "local_loads").await?;
    let after = proc.memory()?;
    let pending = statuses.iter().filter(|&&s| s == 202).count();
    let figure = format!(
        "{} in {}, {} frames, {pending} of them 202 (ask alone); {loads} origin loads, **{peak} \
         at once** on the origin; {}",
        status.as_u16(),
        ms(took),
        statuses.len(),
        memory_figure(before, after),
    );
    Ok(vec![Row {
        scenario: "b. one batch get of 5,000 cold keys, origin answering in 500 ms",
        figure,
        target: "< 256 at once on the origin; RSS growth < 64 MiB",
        met: peak < 256 && after.peak.saturating_sub(before.rss) < MEMORY_TARGET,
    }])
}

/// The statuses of a batch get's frames (`{status} {token} {length}\n{body}` each).
fn frame_statuses(answer: &[u8]) -> Vec<u16> {
    let mut statuses = Vec::new();
    let mut rest = answer;
    while let Some(end) = rest.iter().position(|&b| b == b'\n') {
        let head = String::from_utf8_lossy(&rest[..end]);
        let fields: Vec<&str> = head.split(' ').collect();
        let (Some(status), Some(len)) = (fields.first(), fields.get(2)) else {
            break;
        };
        let (Ok(status), Ok(len)) = (status.parse(), len.parse::<usize>()) else {
            break;
        };
        statuses.push(status);
        rest = rest.get(end + 1 + len..).unwrap_or_default();
    }
    statuses
}

/// b. 5,000 clients' gets of distinct cold keys at once, over 500 connections: at most
/// `--origin-max-concurrency` (64) loads may run at once.
pub(super) async fn cold_gets(node: &Path, me: &Path) -> anyhow::Result<Vec<Row>> {
    const KEYS: usize = 5_000;
    const CONNECTIONS: usize = 500;
    let origin = counting_origin(me, Duration::from_millis(100)).await?;
    let cluster = web_node(node, &origin).await?;
    let proc = &cluster.nodes[0];
    let before = proc.memory()?;
    let target = Target {
        addr: proc.addr,
        prefix: "/api/web/",
        exact: true,
    };
    let started = Instant::now();
    let done = std::cell::Cell::new(false);
    let gets = async {
        let report = tokio::time::timeout(
            Duration::from_secs(30),
            load::sweep(&target, KEYS, CONNECTIONS),
        )
        .await;
        done.set(true);
        report
    };
    let sampled = async {
        let mut most = 0;
        while !done.get() {
            if let Ok(waiting) = procs::counter(proc.addr, "loads_waiting").await {
                most = most.max(waiting);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        most
    };
    let (report, most_waiting) = tokio::join!(gets, sampled);
    let report = report.context("the gets ran past 30 s")??;
    let took = started.elapsed();
    let waiting = procs::counter(proc.addr, "load_waits").await?;
    loads_done(proc.addr).await?;
    let peak = origin_peak(&origin).await?;
    let after = proc.memory()?;
    let figure = format!(
        "{} of {KEYS} answered 200 ({} errors, {} wrong) in {:.1} s; {waiting} loads waited their \
         turn (at most {most_waiting} at once); **{peak} at once** on the origin; {}",
        report.ok,
        report.errors,
        report.wrong,
        took.as_secs_f64(),
        memory_figure(before, after),
    );
    Ok(vec![Row {
        scenario: "b. 5,000 client gets of distinct cold keys over 500 connections, origin answering in 100 ms",
        figure,
        target: "< 256 at once on the origin; RSS growth < 64 MiB; every get 200",
        met: peak < 256
            && after.peak.saturating_sub(before.rss) < MEMORY_TARGET
            && report.ok == KEYS as u64,
    }])
}
