//! `alo-bench membership`: what a change of members costs the origin and the clients, on real
//! `alo-node` processes that read their members from one `--peers-file` (issue 26).
//!
//! Three groups of scenarios, all over the benchmark's origin counting every request per key
//! (`origin --count-keys`, answering `/_stats` and `/_keys`):
//!
//! - `steps` ([`steps`]): the four steps on 600 warm keys, each asking every key and
//!   counting what reached the origin: node 4 joins, node 3 is killed, node 2 leaves with
//!   SIGTERM, node 2 comes back empty.
//! - `load` ([`under_load`]): 32 connections on 10,000 warm keys while the members change:
//!   3 nodes become 4, node 3 leaves with SIGTERM, every node restarts in turn.
//! - `stop`: the load benchmark's scenario "one of three nodes stopped with SIGSTOP"
//!   ([`failures::fault`]), three times.
//!
//! It prints one Markdown table per group and fails when a target is missed. Every process is
//! on 127.0.0.1, killed when its scenario ends, also on error; every wait is bounded; the
//! peers file lives in a temporary directory removed at the end.

mod steps;
mod under_load;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rustix::process::Signal;

use crate::failures::{self, Fault};
use crate::procs::{self, Log, PeersFile, Proc, TempDir};

/// The groups of scenarios `--only` names, in the order they run.
pub(crate) const GROUPS: [&str; 3] = ["steps", "load", "stop"];

/// The longest one group of scenarios may run, whatever hangs (each takes 10 to 40 s).
const GROUP_LIMIT: Duration = Duration::from_secs(150);

/// How long a node may take to start and say where it listens.
const START_LIMIT: Duration = Duration::from_secs(10);

/// How long a node may take to see a new member list after a SIGHUP.
const MEMBERS_LIMIT: Duration = Duration::from_secs(5);

/// How long a node may take to exit after SIGTERM: its handover has half of the default
/// `--shutdown-timeout-ms` (10 s), the requests in flight the other half.
const EXIT_LIMIT: Duration = Duration::from_secs(15);

/// Runs the groups `only` names (all when empty), prints their tables, and fails if a target
/// was missed.
pub(crate) async fn run(only: &[String]) -> anyhow::Result<()> {
    let chosen = |group: &str| only.is_empty() || only.iter().any(|o| o == group);
    let me = std::env::current_exe()?;
    let node = procs::alo_node()?;
    let started = Instant::now();
    let origin_args = ["origin", "127.0.0.1:0", "--count-keys"].map(String::from);
    let origin = Proc::start(&me, &origin_args, "listening on ").await?;
    let mut out = String::new();
    let mut missed = Vec::new();
    for group in GROUPS.into_iter().filter(|g| chosen(g)) {
        eprintln!("membership: {group}");
        let ran = async {
            match group {
                "steps" => steps::run(&node, origin.addr).await,
                "load" => under_load::run(&node, origin.addr).await,
                _ => stops(&node, origin.addr).await,
            }
        };
        let (text, miss) = tokio::time::timeout(GROUP_LIMIT, ran)
            .await
            .with_context(|| format!("{group} still ran after {GROUP_LIMIT:?}"))??;
        out.push_str(&text);
        missed.extend(miss);
    }
    let command = match only {
        [] => String::new(),
        names => format!(" --only {}", names.join(",")),
    };
    println!(
        "`cargo run --release -p alo-bench -- membership{command}` on {} ({} cores), {}, {}, \
         {:.0} s:\n\n{out}",
        crate::markdown::machine(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        crate::markdown::command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        crate::markdown::command_line("rustc", &["--version"]),
        started.elapsed().as_secs_f64(),
    );
    anyhow::ensure!(missed.is_empty(), "targets missed: {}", missed.join("; "));
    Ok(())
}

/// The load benchmark's SIGSTOP scenario, three times: node 1's rate in 250 ms windows, back
/// to 90% of before within 0.5 s of the stop, no request failed.
async fn stops(node: &Path, origin: SocketAddr) -> anyhow::Result<(String, Vec<String>)> {
    let (keys, connections, duration) = (10_000, 32, Duration::from_secs(10));
    let mut out = String::from(
        "**One of three nodes stopped with SIGSTOP** (the load benchmark's scenario: 32 \
         connections on node 1 for 10 s, 10,000 warm keys, node 3 stopped at 3.0 s; node 1's \
         `/stats` read every 50 ms from the stop):\n\n\
         | run | node 1 before | lowest 250 ms window after | back to 90% | failed requests | \
         node 1 counted a stall | node 3 not up at node 1 | successor loads, peer errors | \
         target | met? |\n|---|---:|---:|---:|---:|---:|---:|---:|---|---|\n",
    );
    let mut shapes = String::new();
    let mut missed = Vec::new();
    let after = |d: Option<Duration>| {
        d.map_or("not within the run".to_string(), |d| {
            format!("{:.2} s", d.as_secs_f64())
        })
    };
    for run in 1..=3 {
        let stop = Fault::Stop;
        let finding = failures::fault(stop, node, origin, keys, connections, duration, true)
            .await
            .with_context(|| format!("SIGSTOP run {run}"))?;
        let windows = finding.windows.context("a fault under load has windows")?;
        let watched = finding.watched.unwrap_or_default();
        let back = windows.back_to(0.9);
        let met = finding.failed == 0 && back.is_some_and(|b| b <= Duration::from_millis(500));
        if !met {
            missed.push(format!("SIGSTOP run {run}"));
        }
        let _ = writeln!(
            out,
            "| {run} | {:.0} req/s | {:.0}% | {} | {} | {} ({} stalls) | {} | {}, {} | back to 90% \
             within 0.5 s, 0 failed | {} |",
            windows.per_second(),
            100.0 * windows.lowest(windows.event, usize::MAX),
            after(back),
            finding.failed,
            after(watched.stalled),
            watched.stalls,
            after(watched.down),
            watched.successor_loads,
            watched.peer_errors,
            yes(met),
        );
        let _ = writeln!(shapes, "- run {run}: {}", windows.shape());
    }
    let _ = write!(
        out,
        "\nNode 1 in 250 ms windows, % of before (the stop in window 13):\n\n{shapes}\n"
    );
    Ok((out, missed))
}

fn yes(met: bool) -> &'static str {
    if met { "yes" } else { "**no**" }
}

/// The origin's totals: requests, distinct keys, the most requests for one key.
async fn origin_stats(origin: SocketAddr) -> anyhow::Result<(u64, u64, u64)> {
    let call = procs::json(origin, crate::servers::STATS_PATH);
    let stats = tokio::time::timeout(Duration::from_secs(5), call).await??;
    let field = |name: &str| {
        stats[name]
            .as_u64()
            .with_context(|| format!("no {name} in the origin's stats"))
    };
    Ok((field("requests")?, field("keys")?, field("most")?))
}

/// The origin's requests per key so far.
async fn origin_keys(origin: SocketAddr) -> anyhow::Result<BTreeMap<String, u64>> {
    let call = procs::json(origin, crate::servers::KEYS_PATH);
    let keys = tokio::time::timeout(Duration::from_secs(5), call).await??;
    Ok(serde_json::from_value(keys)?)
}

/// The counters of group `web` that tell where a value came from when members change.
const COUNTERS: [&str; 10] = [
    "local_loads",
    "peer_loads",
    "successor_loads",
    "peeks",
    "peek_hits",
    "peeks_answered",
    "peeks_answered_held",
    "fills",
    "handed_over",
    "peer_errors",
];

/// Nodes that read their members from one peers file, numbered from 1 as the text names them;
/// each node's peer port is chosen up front, so the file can list a node before it starts.
#[derive(Debug)]
struct FileCluster {
    node: PathBuf,
    origin: SocketAddr,
    file: PeersFile,
    peers: Vec<SocketAddr>,
    procs: Vec<Option<Proc>>,
    /// Holds the peers file; removed when the cluster drops.
    _dir: TempDir,
}

impl FileCluster {
    /// Room for `size` nodes, none started; the file lists `listed`.
    fn new(node: &Path, origin: SocketAddr, size: usize, listed: &[usize]) -> anyhow::Result<Self> {
        let peers: Vec<SocketAddr> = (0..size)
            .map(|_| Ok(SocketAddr::from(([127, 0, 0, 1], procs::free_port()?))))
            .collect::<anyhow::Result<_>>()?;
        let dir = TempDir::new("membership")?;
        let members: Vec<SocketAddr> = listed.iter().map(|&n| peers[n - 1]).collect();
        let file = PeersFile::create(dir.path(), &members)?;
        Ok(FileCluster {
            node: node.to_path_buf(),
            origin,
            file,
            peers,
            procs: (0..size).map(|_| None).collect(),
            _dir: dir,
        })
    }

    /// Starts node `n` (or starts it again, empty, on the same peer port).
    async fn start(&mut self, n: usize) -> anyhow::Result<()> {
        let args = [
            "--listen",
            &self.peers[n - 1].to_string(),
            "--api",
            "127.0.0.1:0",
            "--peers-file",
            &self.file.path().display().to_string(),
            "--origin-url",
            &format!("http://{}", self.origin),
        ]
        .map(String::from);
        let start = Proc::start_with(&self.node, &args, "alo-node: client API at ", Log::Kept);
        let proc = tokio::time::timeout(START_LIMIT, start)
            .await
            .with_context(|| format!("node {n} did not start within {START_LIMIT:?}"))?
            .with_context(|| format!("starting node {n}"))?;
        self.procs[n - 1] = Some(proc);
        Ok(())
    }

    fn proc(&self, n: usize) -> anyhow::Result<&Proc> {
        self.procs[n - 1]
            .as_ref()
            .with_context(|| format!("node {n} is not running"))
    }

    /// Node `n`'s client API.
    fn api(&self, n: usize) -> anyhow::Result<SocketAddr> {
        Ok(self.proc(n)?.addr)
    }

    /// The nodes started and not stopped, by number.
    fn running(&self) -> Vec<usize> {
        (1..=self.procs.len())
            .filter(|&n| self.procs[n - 1].is_some())
            .collect()
    }

    /// Rewrites the file to list `members`, sends SIGHUP to every running node, and waits until
    /// each has that many members: how long it took.
    async fn change(&self, members: &[usize]) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let addrs: Vec<SocketAddr> = members.iter().map(|&n| self.peers[n - 1]).collect();
        self.file.write(&addrs)?;
        for n in self.running() {
            self.proc(n)?.signal(Signal::HUP)?;
        }
        for n in self.running() {
            procs::wait_members(self.api(n)?, members.len(), MEMBERS_LIMIT)
                .await
                .with_context(|| format!("node {n} after the file listed {members:?}"))?;
        }
        Ok(started.elapsed())
    }

    /// Sends `signal` to node `n` and forgets it (it is killed if it still runs): SIGKILL.
    fn kill(&mut self, n: usize) -> anyhow::Result<()> {
        self.proc(n)?.signal(Signal::KILL)?;
        self.procs[n - 1] = None;
        Ok(())
    }

    /// Sends SIGTERM to node `n` and waits for it to exit: how long it took, and its log.
    async fn leave(&mut self, n: usize) -> anyhow::Result<(Duration, String)> {
        let started = Instant::now();
        let mut proc = self.procs[n - 1]
            .take()
            .with_context(|| format!("node {n} is not running"))?;
        proc.signal(Signal::TERM)?;
        let status = proc.wait(EXIT_LIMIT).await?;
        let status =
            status.with_context(|| format!("node {n} still ran {EXIT_LIMIT:?} after SIGTERM"))?;
        anyhow::ensure!(status.success(), "node {n} exited with {status}");
        Ok((started.elapsed(), proc.log()))
    }

    /// The counters of [`COUNTERS`] on every running node, and each node's peers that are not
    /// up (by number), or `-` for a node that does not answer.
    async fn counters(&self) -> BTreeMap<usize, Option<Counters>> {
        let mut all = BTreeMap::new();
        for n in self.running() {
            let counters = match self.api(n) {
                Ok(api) => self.read_counters(api).await.ok(),
                Err(_) => None,
            };
            all.insert(n, counters);
        }
        all
    }

    async fn read_counters(&self, api: SocketAddr) -> anyhow::Result<Counters> {
        let call = procs::json(api, "/stats");
        let stats = tokio::time::timeout(Duration::from_secs(2), call).await??;
        let web = &stats["groups"]["web"];
        let values = COUNTERS.map(|name| web[name].as_u64().unwrap_or(0));
        let mut not_up = Vec::new();
        let mut stalls = 0;
        for peer in stats["peer_health"].as_array().into_iter().flatten() {
            let url = peer["url"].as_str().unwrap_or("");
            let n = self
                .peers
                .iter()
                .position(|p| url == format!("http://{p}"))
                .map_or(0, |i| i + 1);
            if peer["state"].as_str() != Some("up") {
                not_up.push(format!("{n} {}", peer["state"].as_str().unwrap_or("?")));
            }
            stalls += peer["stalls"].as_u64().unwrap_or(0);
        }
        Ok(Counters {
            values,
            not_up,
            stalls,
        })
    }
}

/// What a node's `/stats` says of where its values came from.
#[derive(Clone, Debug)]
struct Counters {
    /// [`COUNTERS`], in order.
    values: [u64; COUNTERS.len()],
    /// Its peers that are not up, as `3 down`.
    not_up: Vec<String>,
    /// Stalls suspected, over its peers.
    stalls: u64,
}

/// Each node's counters that moved between `before` and `after`: `node 1: local_loads +150
/// (150), peeks +12 (12); peers not up: 3 down`.
fn moved(
    before: &BTreeMap<usize, Option<Counters>>,
    after: &BTreeMap<usize, Option<Counters>>,
) -> String {
    let mut lines = Vec::new();
    for (n, now) in after {
        let Some(now) = now else {
            lines.push(format!("node {n}: no /stats"));
            continue;
        };
        let was = before.get(n).cloned().flatten();
        let mut parts = Vec::new();
        for (i, name) in COUNTERS.iter().enumerate() {
            let start = was.as_ref().map_or(0, |w| w.values[i]);
            let delta = now.values[i].saturating_sub(start);
            if delta > 0 {
                parts.push(format!("{name} +{delta}"));
            }
        }
        if parts.is_empty() {
            parts.push("nothing moved".to_string());
        }
        let mut line = format!("node {n}: {}", parts.join(", "));
        if !now.not_up.is_empty() {
            let _ = write!(line, "; peers not up: {}", now.not_up.join(", "));
        }
        if now.stalls > 0 {
            let _ = write!(line, "; stalls {}", now.stalls);
        }
        lines.push(line);
    }
    lines.join("; ")
}

/// The lines of `log` about a handover, a peer up again, or a warning or error.
fn notable(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| {
            let wanted = ["handed over", "up again", " WARN ", " ERROR "];
            wanted.iter().any(|w| l.contains(w))
        })
        .map(|l| {
            // Drop the timestamp: the level and the message say it.
            let l = l.split_once(' ').map_or(l, |(_, rest)| rest).trim();
            l.chars().take(300).collect()
        })
        .collect()
}
