//! The four steps: 600 keys warm on nodes 1-3, then node 4 joins, node 3 is killed,
//! node 2 leaves with SIGTERM, node 2 comes back empty; after each, every key is asked again
//! and what reached the origin is counted, in total and per key.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context as _;

use super::{FileCluster, moved, notable, origin_keys, origin_stats, yes};
use crate::load::{self, Target};

/// Keys warmed, then asked after each step.
const KEYS: usize = 600;

/// The most origin requests a step may add, as a share of [`KEYS`].
const TARGET: f64 = 0.02;

/// One row of the table.
#[derive(Debug)]
struct Step {
    name: &'static str,
    added: u64,
    target: String,
    met: bool,
    /// What the nodes' counters did, and what else was seen.
    details: String,
}

/// Runs the four steps: the table, and the steps that missed their target.
pub(super) async fn run(node: &Path, origin: SocketAddr) -> anyhow::Result<(String, Vec<String>)> {
    let (base, _, _) = origin_stats(origin).await?;
    let mut cluster = FileCluster::new(node, origin, 4, &[1, 2, 3])?;
    for n in 1..=3 {
        cluster.start(n).await?;
    }
    for n in 1..=3 {
        crate::procs::wait_members(cluster.api(n)?, 3, super::MEMBERS_LIMIT).await?;
    }
    let mut steps = Vec::new();
    let mut requests = base;

    let counters = cluster.counters().await;
    ask(&cluster, &[1]).await?;
    let warm = since(origin, &mut requests).await?;
    let after = cluster.counters().await;
    steps.push(Step {
        name: "warm: nodes 1-3, every key once through node 1",
        added: warm,
        target: format!("{KEYS}, one per key"),
        met: warm == KEYS as u64,
        details: moved(&counters, &after),
    });

    // 1. Node 4 joins: it starts with the file listing 1-4, and nodes 1-3 read it on SIGHUP.
    let counters = after;
    cluster.file.write(&cluster.peers)?;
    cluster.start(4).await?;
    let took = cluster.change(&[1, 2, 3, 4]).await?;
    ask(&cluster, &[4, 1]).await?;
    let step = since(origin, &mut requests).await?;
    let after = cluster.counters().await;
    steps.push(share_step(
        "1. node 4 joins (file 1-4, SIGHUP); every key through node 4, then node 1",
        step,
        format!(
            "members seen by all in {} ms; {}",
            took.as_millis(),
            moved(&counters, &after)
        ),
    ));

    // 2. Node 3 is killed and stays in the file.
    let counters = after;
    let keys_before = origin_keys(origin).await?;
    cluster.kill(3)?;
    ask(&cluster, &[1, 4]).await?;
    let step = since(origin, &mut requests).await?;
    let keys_after = origin_keys(origin).await?;
    let twice = grown_by_two(&keys_before, &keys_after);
    let (_, _, most) = origin_stats(origin).await?;
    let after = cluster.counters().await;
    steps.push(Step {
        name: "2. node 3 killed (SIGKILL, left in the file); every key through node 1, then node 4",
        added: step,
        target: "no key loaded twice: 0 keys whose count grew by 2 or more".to_string(),
        met: twice.is_empty(),
        details: format!(
            "keys whose count grew by 2 or more: {} {:?}; the most requests for one key over the \
             run: {most}; {}",
            twice.len(),
            twice.iter().take(5).collect::<Vec<_>>(),
            moved(&counters, &after)
        ),
    });

    // 3. Node 2 leaves on purpose: SIGTERM, it hands over and exits; the file drops 2 and 3.
    let counters = after;
    let (exit, log) = cluster.leave(2).await?;
    let took = cluster.change(&[1, 4]).await?;
    ask(&cluster, &[1]).await?;
    let step = since(origin, &mut requests).await?;
    let after = cluster.counters().await;
    steps.push(share_step(
        "3. node 2 leaves (SIGTERM, waited for its exit), the file drops 2 and 3; every key \
         through node 1",
        step,
        format!(
            "node 2 exited {} ms after SIGTERM; its log: {}; members seen in {} ms; {}",
            exit.as_millis(),
            notable(&log).join(" / "),
            took.as_millis(),
            moved(&counters, &after)
        ),
    ));

    // 4. Node 2 comes back, empty; the file lists it again.
    let counters = after;
    cluster
        .file
        .write(&[cluster.peers[0], cluster.peers[1], cluster.peers[3]])?;
    cluster.start(2).await?;
    let took = cluster.change(&[1, 2, 4]).await?;
    ask(&cluster, &[2]).await?;
    let step = since(origin, &mut requests).await?;
    let after = cluster.counters().await;
    steps.push(share_step(
        "4. node 2 starts again, empty (file 1, 2, 4, SIGHUP); every key through node 2",
        step,
        format!(
            "members seen in {} ms; {}",
            took.as_millis(),
            moved(&counters, &after)
        ),
    ));
    let (_, keys, most) = origin_stats(origin).await?;

    let mut out = format!(
        "**The four steps** ({KEYS} keys; nodes with `--peers-file`, one file rewritten by rename \
         and SIGHUP; origin requests counted by the origin, {} in all over {keys} keys, the most \
         for one key {most}):\n\n| step | origin requests | share of {KEYS} | target | met? \
         |\n|---|---:|---:|---|---|\n",
        requests - base,
    );
    let mut missed = Vec::new();
    for step in &steps {
        let _ = writeln!(
            out,
            "| {} | {} | {:.1}% | {} | {} |",
            step.name,
            step.added,
            100.0 * step.added as f64 / KEYS as f64,
            step.target,
            yes(step.met)
        );
        if !step.met {
            missed.push(format!("step {}", step.name));
        }
    }
    out.push_str("\nWhat the nodes' `/stats` counted in each step (group `web`):\n\n");
    for step in &steps {
        let name = step.name.split(';').next().unwrap_or(step.name);
        let _ = writeln!(out, "- {name}: {}", step.details.replace('|', "\\|"));
    }
    out.push('\n');
    Ok((out, missed))
}

/// The origin's requests since `requests`, which becomes the count now.
async fn since(origin: SocketAddr, requests: &mut u64) -> anyhow::Result<u64> {
    let (now, _, _) = origin_stats(origin).await?;
    let added = now - *requests;
    *requests = now;
    Ok(added)
}

/// A step whose target is at most [`TARGET`] of the keys.
fn share_step(name: &'static str, added: u64, details: String) -> Step {
    Step {
        name,
        added,
        target: format!(
            "at most {:.0}% ({})",
            100.0 * TARGET,
            (TARGET * KEYS as f64) as u64
        ),
        met: added as f64 <= TARGET * KEYS as f64,
        details,
    }
}

/// Asks every key once through each node of `through` in turn, checking every answer.
async fn ask(cluster: &FileCluster, through: &[usize]) -> anyhow::Result<()> {
    for &n in through {
        let target = Target {
            addr: cluster.api(n)?,
            prefix: "/api/web/",
            exact: true,
        };
        let sweep = load::sweep(&target, KEYS, 8);
        let report = tokio::time::timeout(std::time::Duration::from_secs(60), sweep)
            .await
            .with_context(|| format!("every key through node {n}: no end within 60 s"))??;
        anyhow::ensure!(
            report.errors == 0 && report.wrong == 0 && report.ok == KEYS as u64,
            "every key through node {n}: {} ok, {} errors, {} wrong values",
            report.ok,
            report.errors,
            report.wrong
        );
    }
    Ok(())
}

/// The keys whose count grew by 2 or more from `before` to `after`, with the growth.
fn grown_by_two(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> Vec<(String, u64)> {
    after
        .iter()
        .map(|(k, &n)| (k.clone(), n - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, grown)| *grown >= 2)
        .collect()
}
