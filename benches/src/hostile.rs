//! Hostile and broken peers and clients of the peer port (issue 24), each scenario on fresh
//! processes on 127.0.0.1: unproven bodies, huge batches, a flood of cold keys, writes with a
//! member stopped, a replayed write, a member port out of range, a key that forges a log line
//! and a member that announces a body it never sends.
//!
//! `cargo run --release -p alo-bench -- hostile` prints one Markdown row per measurement
//! (scenario, figure, target, met?) and fails when a target is missed. Every process a
//! scenario starts is killed when the scenario ends, also when it fails, and every wait is
//! bounded: a scenario that runs past [`SCENARIO_LIMIT`] is a missed target, not a hang.

mod bodies;
mod log;
mod members;
mod origin;
mod raw;
mod writes;

use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use bytes::Bytes;
use http::{Method, StatusCode};

use crate::procs;

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

/// Runs every scenario, prints the table and fails if a target was missed.
pub(crate) async fn run() -> anyhow::Result<()> {
    let me = std::env::current_exe()?;
    let node = procs::alo_node()?;
    let started = Instant::now();
    let mut rows = Vec::new();
    rows.extend(scenario("a", bodies::unproven(&node)).await);
    rows.extend(scenario("b", origin::cold_batch(&node, &me)).await);
    rows.extend(scenario("b", origin::cold_gets(&node, &me)).await);
    rows.extend(scenario("b", bodies::signed_huge_batch(&node)).await);
    rows.extend(scenario("c", writes::with_a_stopped_member(&node)).await);
    rows.extend(scenario("d", writes::replayed(&node)).await);
    rows.extend(scenario("e", members::port_out_of_range(&node)).await);
    rows.extend(scenario("f", log::forged_line(&node)).await);
    rows.extend(scenario("g", members::announcing_a_huge_body(&node)).await);

    let mut out = format!(
        "`cargo run --release -p alo-bench -- hostile` on {} ({} cores), {}, {}, {:.0} s:\n\n",
        crate::machine(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        crate::command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        crate::command_line("rustc", &["--version"]),
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
