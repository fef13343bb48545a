//! Hostile clients and broken peers, each scenario on fresh processes on 127.0.0.1.
//!
//! Of the client API (numbered 1 to 4): thousands of idle connections, thousands of heads far
//! over the limit and never finished, SIGTERM with a request stuck in flight, and a node out of
//! descriptors. Of the peer port (issue 24, lettered a to g): unproven bodies, huge batches, a
//! flood of cold keys, writes with a member stopped, a replayed write, a member port out of
//! range, a key that forges a log line and a member that announces a body it never sends.
//!
//! `cargo run --release -p alo-bench -- hostile` prints one Markdown row per measurement
//! (scenario, figure, target, met?) and fails when a target is missed; `--only NAMES` runs
//! some groups of them (see [`GROUPS`]). Every process a scenario starts is killed when the
//! scenario ends, also when it fails, and every wait is bounded: a scenario that runs past
//! [`SCENARIO_LIMIT`] is a missed target, not a hang.

mod bodies;
mod connections;
mod descriptors;
mod log;
mod members;
mod origin;
mod raw;
mod shutdown;
mod writes;

use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use bytes::Bytes;
use http::{Method, StatusCode};

use crate::procs::{self, Log, Proc};

/// The longest any one scenario may run, whatever hangs.
const SCENARIO_LIMIT: Duration = Duration::from_secs(60);

/// One row of the table: what a scenario measured, against its target.
#[derive(Debug)]
struct Row {
    scenario: &'static str,
    figure: String,
    target: &'static str,
    met: bool,
}

/// The groups of scenarios `--only` names, in the order they run: the client API's, then the
/// peer port's.
pub(crate) const GROUPS: [&str; 9] = [
    "idle",
    "heads",
    "shutdown",
    "descriptors",
    "bodies",
    "origin",
    "writes",
    "members",
    "log",
];

/// Runs the scenarios of the groups `only` names (all when it is empty), prints the table and
/// fails if a target was missed.
pub(crate) async fn run(only: &[String]) -> anyhow::Result<()> {
    let chosen = |group: &str| only.is_empty() || only.iter().any(|o| o == group);
    let me = std::env::current_exe()?;
    let node = procs::alo_node()?;
    let started = Instant::now();
    let mut rows = Vec::new();
    if chosen("idle") {
        rows.extend(scenario("1", connections::idle(&node)).await);
    }
    if chosen("heads") {
        rows.extend(scenario("2", connections::big_heads(&node)).await);
    }
    if chosen("shutdown") {
        for (case, name) in shutdown::CASES.iter().zip(["3a", "3b", "3c", "3d"]) {
            rows.extend(scenario(name, shutdown::sigterm(&node, case)).await);
        }
    }
    if chosen("descriptors") {
        rows.extend(scenario("4", descriptors::exhausted(&node)).await);
    }
    if chosen("bodies") {
        rows.extend(scenario("a", bodies::unproven(&node)).await);
    }
    if chosen("origin") {
        rows.extend(scenario("b", origin::cold_batch(&node, &me)).await);
        rows.extend(scenario("b", origin::cold_gets(&node, &me)).await);
    }
    if chosen("bodies") {
        rows.extend(scenario("b", bodies::signed_huge_batch(&node)).await);
    }
    if chosen("writes") {
        rows.extend(scenario("c", writes::with_a_stopped_member(&node)).await);
        rows.extend(scenario("d", writes::replayed(&node)).await);
    }
    if chosen("members") {
        rows.extend(scenario("e", members::port_out_of_range(&node)).await);
    }
    if chosen("log") {
        rows.extend(scenario("f", log::forged_line(&node)).await);
    }
    if chosen("members") {
        rows.extend(scenario("g", members::announcing_a_huge_body(&node)).await);
    }

    let command = match only {
        [] => String::new(),
        names => format!(" --only {}", names.join(",")),
    };
    let mut out = format!(
        "`cargo run --release -p alo-bench -- hostile{command}` on {} ({} cores), {}, {}, {:.0} \
         s:\n\n",
        crate::markdown::machine(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        crate::markdown::command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        crate::markdown::command_line("rustc", &["--version"]),
        started.elapsed().as_secs_f64(),
    );
    let _ = writeln!(out, "| scenario | figure | target | met? |");
    let _ = writeln!(out, "|---|---|---|---|");
    for row in &rows {
        let met = if row.met { "yes" } else { "**no**" };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {met} |",
            row.scenario,
            cell(&row.figure),
            row.target
        );
    }
    println!("{out}");
    let missed: Vec<&str> = rows.iter().filter(|r| !r.met).map(|r| r.scenario).collect();
    anyhow::ensure!(missed.is_empty(), "targets missed: {}", missed.join("; "));
    Ok(())
}

/// The rows of scenario `name`, or one row saying how it failed.
async fn scenario(
    name: &'static str,
    run: impl Future<Output = anyhow::Result<Vec<Row>>>,
) -> Vec<Row> {
    eprintln!("hostile: scenario {name}");
    let failed = |figure: String| {
        vec![Row {
            scenario: name,
            figure,
            target: "-",
            met: false,
        }]
    };
    match tokio::time::timeout(SCENARIO_LIMIT, run).await {
        Ok(Ok(rows)) => rows,
        Ok(Err(e)) => failed(format!("failed: {e:#}")),
        Err(_) => failed(format!(
            "still running after {} s",
            SCENARIO_LIMIT.as_secs()
        )),
    }
}

/// Text fit for a table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn ms(elapsed: Duration) -> String {
    format!("{:.0} ms", elapsed.as_secs_f64() * 1e3)
}

/// 64 MiB: the most a node's memory may grow under any one of these attacks.
const MEMORY_TARGET: u64 = 64 << 20;

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// A node alone (no `--peers`) on ephemeral ports, with `args` besides and its log kept. With
/// `open_files`, under that limit of open descriptors, soft and hard, which a shell sets and
/// then becomes the node (`exec` keeps the process id, so the node's memory and descriptors
/// are read and it is killed as any other).
async fn lone_node(node: &Path, args: &[&str], open_files: Option<u64>) -> anyhow::Result<Proc> {
    let mut node_args = strings(&["--listen", "127.0.0.1:0", "--api", "127.0.0.1:0"]);
    node_args.extend(strings(args));
    let (program, all) = match open_files {
        None => (node.to_path_buf(), node_args),
        Some(limit) => {
            let script = format!("ulimit -n {limit} && exec \"$0\" \"$@\"");
            let mut all = vec!["-c".to_string(), script, node.display().to_string()];
            all.extend(node_args);
            (PathBuf::from("sh"), all)
        }
    };
    Proc::start_with(&program, &all, "alo-node: client API at ", Log::Kept).await
}

/// The lines of a node's log, by level.
#[derive(Debug, Default)]
struct LogCounts {
    lines: usize,
    info: usize,
    warn: usize,
    error: usize,
}

impl LogCounts {
    /// The non-empty lines of `log`, each counted by the level after its timestamp.
    fn of(log: &str) -> LogCounts {
        let mut counts = LogCounts::default();
        for line in log.lines().filter(|l| !l.trim().is_empty()) {
            counts.lines += 1;
            match line.split_whitespace().nth(1) {
                Some("INFO") => counts.info += 1,
                Some("WARN") => counts.warn += 1,
                Some("ERROR") => counts.error += 1,
                _ => {}
            }
        }
        counts
    }
}

impl std::fmt::Display for LogCounts {
    /// `5 (4 INFO, 1 WARN, 0 ERROR)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let LogCounts {
            lines,
            info,
            warn,
            error,
        } = self;
        write!(f, "{lines} ({info} INFO, {warn} WARN, {error} ERROR)")
    }
}

/// The shared secret of a scenario's cluster, in a file of its own, removed when dropped.
#[derive(Debug)]
struct SecretFile {
    path: PathBuf,
}

/// The secret every secret file holds.
const SECRET: &str = "alo-bench hostile: the cluster's shared secret";

impl SecretFile {
    fn new() -> anyhow::Result<SecretFile> {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)?
            .subsec_nanos();
        let name = format!("alo-bench-secret-{}-{nanos}", std::process::id());
        let path = std::env::temp_dir().join(name);
        std::fs::write(&path, format!("{SECRET}\n"))?;
        Ok(SecretFile { path })
    }

    /// The node's flag that names it.
    fn args(&self) -> Vec<String> {
        vec![
            "--peer-secret-file".to_string(),
            self.path.display().to_string(),
        ]
    }
}

impl Drop for SecretFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A bounded `call`, timed.
async fn timed(
    addr: SocketAddr,
    method: Method,
    path: &str,
    body: Bytes,
) -> anyhow::Result<(StatusCode, Bytes, Duration)> {
    let sent = Instant::now();
    let call = procs::call(addr, method, path, body);
    let (status, body) = tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .with_context(|| format!("no answer to {path} within 20 s"))??;
    Ok((status, body, sent.elapsed()))
}
