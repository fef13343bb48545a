//! Changes of members under a closed loop of 32 connections on 10,000 warm keys: 3 nodes
//! become 4, node 3 leaves with SIGTERM, and every node restarts in turn (SIGTERM, exit, start
//! again, rejoin). For each: the origin requests the change cost per cached key, the clients'
//! rate in 250 ms windows against before, and the requests that failed.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::{FileCluster, moved, notable, origin_stats, yes};
use crate::failures::Windows;
use crate::load::{self, Live, TICK, Target};

/// Keys, all warm before the change.
const KEYS: usize = 10_000;

/// Connections of the load.
const CONNECTIONS: usize = 32;

/// The load's time before the change, and after it.
const BEFORE: Duration = Duration::from_secs(2);
const AFTER: Duration = Duration::from_secs(3);

/// The load before the measured one, unmeasured: every key is cached already, this warms the
/// hot caches.
const WARM_LOAD: Duration = Duration::from_secs(3);

/// The longest a change may take, whatever hangs.
const CHANGE_LIMIT: Duration = Duration::from_secs(60);

/// A change of members.
#[derive(Clone, Copy, Debug)]
enum Change {
    /// Node 4 starts with the file listing 1-4; nodes 1-3 read it on SIGHUP.
    Join,
    /// Node 3 gets SIGTERM and exits; the file then drops it.
    Leave,
    /// Each node in turn: out of the load's nodes, SIGTERM, exit, the file drops it, started
    /// again, the file lists it, back in the load's nodes.
    Rolling,
}

impl Change {
    fn name(self) -> &'static str {
        match self {
            Change::Join => "3 → 4 nodes (node 4 starts, file 1-4, SIGHUP), load on node 1",
            Change::Leave => "node 3 leaves (SIGTERM, exit, file 1-2, SIGHUP), load on node 1",
            Change::Rolling => {
                "rolling restart of nodes 1, 2, 3 (each: SIGTERM, exit, file without it, start, \
                 file with it), load round-robin over the nodes up"
            }
        }
    }
}

/// What one change measured.
#[derive(Debug)]
struct Row {
    change: Change,
    /// Origin requests from the start of the load to its end.
    added: u64,
    windows: Windows,
    /// The window the change ended in.
    end: usize,
    took: Duration,
    failed: u64,
    details: String,
}

/// Runs the three changes: the table, and those that missed their target.
pub(super) async fn run(node: &Path, origin: SocketAddr) -> anyhow::Result<(String, Vec<String>)> {
    let mut rows = Vec::new();
    for (seed, change) in [Change::Join, Change::Leave, Change::Rolling]
        .into_iter()
        .enumerate()
    {
        eprintln!("membership: under load, {}", change.name());
        rows.push(measure(change, node, origin, seed as u64 + 11).await?);
    }
    let mut out = format!(
        "**Under load** ({CONNECTIONS} connections, closed loop, uniform keys of {} warm keys; \
         the change {:.0} s into the load, which goes on {:.0} s after it; rates in {} ms \
         windows as % of the mean before the change):\n\n| change | took | origin requests \
         (per cached key) | before | lowest window | mean during | mean after | failed requests \
         | target | met? |\n|---|---:|---:|---:|---:|---:|---:|---:|---|---|\n",
        crate::markdown::thousands(KEYS as i64),
        BEFORE.as_secs_f64(),
        AFTER.as_secs_f64(),
        TICK.as_millis(),
    );
    let mut missed = Vec::new();
    let mut shapes = String::new();
    for row in &rows {
        let w = &row.windows;
        let met = row.failed == 0;
        if !met {
            missed.push(format!("under load: {}", row.change.name()));
        }
        let _ = writeln!(
            out,
            "| {} | {:.2} s | {} ({:.3}) | {:.0} req/s | {:.0}% | {:.0}% | {:.0}% | {} | 0 failed \
             | {} |",
            row.change.name(),
            row.took.as_secs_f64(),
            row.added,
            row.added as f64 / KEYS as f64,
            w.per_second(),
            100.0 * w.lowest(w.event, usize::MAX),
            100.0 * w.mean(w.event, row.end + 1),
            100.0 * w.mean(row.end + 1, usize::MAX),
            row.failed,
            yes(met),
        );
        let _ = writeln!(
            shapes,
            "- {}: change in windows {} to {}: {}\n  - `/stats`: {}",
            row.change.name(),
            w.event + 1,
            row.end + 1,
            w.shape(),
            row.details.replace('|', "\\|"),
        );
    }
    let _ = write!(out, "\nEvery window, % of before:\n\n{shapes}\n");
    Ok((out, missed))
}

/// Three nodes, warm (every key once, then [`WARM_LOAD`] of load); then the load, with `change` [`BEFORE`] into it.
async fn measure(
    change: Change,
    node: &Path,
    origin: SocketAddr,
    seed: u64,
) -> anyhow::Result<Row> {
    let mut cluster = FileCluster::new(node, origin, 4, &[1, 2, 3])?;
    for n in 1..=3 {
        cluster.start(n).await?;
    }
    for n in 1..=3 {
        crate::procs::wait_members(cluster.api(n)?, 3, super::MEMBERS_LIMIT).await?;
    }
    let target = Target {
        addr: cluster.api(1)?,
        prefix: "/api/web/",
        exact: true,
    };
    let warm = tokio::time::timeout(
        Duration::from_secs(60),
        load::sweep(&target, KEYS, CONNECTIONS),
    )
    .await
    .context("the warm-up took over 60 s")??;
    anyhow::ensure!(
        warm.errors == 0 && warm.wrong == 0,
        "warm-up: {} errors, {} wrong values",
        warm.errors,
        warm.wrong
    );
    let live = match change {
        Change::Rolling => Live::new(vec![cluster.api(1)?, cluster.api(2)?, cluster.api(3)?]),
        _ => Live::new(vec![cluster.api(1)?]),
    };
    // Each node's hot cache fills with the copies of other nodes' keys it is asked for, one
    // fetch in ten: without this, the rate would still climb when the change comes.
    let warming = Arc::new(AtomicBool::new(false));
    let warm = load::run_live(&live, KEYS, CONNECTIONS, &warming, seed + 100);
    let (warm, ()) = tokio::join!(warm, async {
        tokio::time::sleep(WARM_LOAD).await;
        warming.store(true, Ordering::Relaxed);
    });
    let warm = warm?;
    anyhow::ensure!(
        warm.errors == 0 && warm.wrong == 0,
        "warm load: {} errors, {} wrong values",
        warm.errors,
        warm.wrong
    );
    let (before, _, _) = origin_stats(origin).await?;
    let counters = match change {
        // Every node restarts: its counters start again from 0.
        Change::Rolling => Default::default(),
        _ => cluster.counters().await,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let run = load::run_live(&live, KEYS, CONNECTIONS, &stop, seed);
    let act = async {
        let started = Instant::now();
        tokio::time::sleep(BEFORE).await;
        let at = started.elapsed();
        let done = tokio::time::timeout(CHANGE_LIMIT, apply(change, &mut cluster, &live)).await;
        let took = started.elapsed() - at;
        if done.is_ok() {
            tokio::time::sleep(AFTER).await;
        }
        let ended = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        (at, took, ended, done)
    };
    let (report, (at, took, ended, done)) = tokio::join!(run, act);
    let report = report?;
    let log = done.with_context(|| format!("the change still ran after {CHANGE_LIMIT:?}"))??;
    let (after, _, _) = origin_stats(origin).await?;
    let tick = TICK.as_secs_f64();
    let event = (at.as_secs_f64() / tick) as usize;
    let end = ((at + took).as_secs_f64() / tick) as usize;
    let windows = Windows::new(
        &report.timeline,
        event,
        (ended.as_secs_f64() / tick) as usize,
    );
    let mut details = moved(&counters, &cluster.counters().await);
    if !log.is_empty() {
        let _ = write!(details, "; {log}");
    }
    Ok(Row {
        change,
        added: after - before,
        windows,
        end,
        took,
        failed: report.errors + report.wrong,
        details,
    })
}

/// Makes `change` to the running cluster: what the nodes that left logged of it.
async fn apply(change: Change, cluster: &mut FileCluster, live: &Live) -> anyhow::Result<String> {
    let mut said = Vec::new();
    match change {
        Change::Join => {
            cluster.file.write(&cluster.peers)?;
            cluster.start(4).await?;
            cluster.change(&[1, 2, 3, 4]).await?;
        }
        Change::Leave => {
            let (exit, log) = cluster.leave(3).await?;
            said.push(format!(
                "node 3 exited {} ms after SIGTERM; its log: {}",
                exit.as_millis(),
                notable(&log).join(" / ")
            ));
            cluster.change(&[1, 2]).await?;
        }
        Change::Rolling => {
            let all = &cluster.peers[..3].to_vec();
            for n in 1..=3 {
                // No client of the benchmark is on the node when it stops: each connection
                // moves once its request in flight is answered.
                live.remove(cluster.api(n)?);
                tokio::time::sleep(Duration::from_millis(200)).await;
                let (exit, log) = cluster.leave(n).await?;
                said.push(format!(
                    "node {n} exited {} ms after SIGTERM; its log: {}",
                    exit.as_millis(),
                    notable(&log).join(" / ")
                ));
                let others: Vec<usize> = (1..=3).filter(|&m| m != n).collect();
                cluster.change(&others).await?;
                cluster.file.write(all)?;
                cluster.start(n).await?;
                cluster.change(&[1, 2, 3]).await?;
                live.add(cluster.api(n)?);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    Ok(said.join("; "))
}
