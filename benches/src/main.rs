//! alo's end-to-end benchmark: whole nodes, one and three, under a closed-loop HTTP load,
//! against a floor (a bare hyper server answering a fixed 100-byte body), with no tool beyond
//! this binary.
//!
//! `cargo run --release -p alo-bench` runs every scenario three times, the systems interleaved
//! within each repetition, and prints and writes to `BENCHMARKS.md` the medians: requests per
//! second, the ratio to the floor, p50/p99/p99.9 latency, CPU per request (from `/proc`, over
//! the system's processes) and, for three nodes, the share of gets that hopped to a peer.
//! `--quick` runs each scenario for a second, once, and fails on any error or wrong value; it
//! checks that the benchmark works, never how fast anything is. `alo-bench hostile` runs the
//! hostile peers and clients of the peer port instead (see `hostile.rs`).

mod failures;
mod hostile;
mod load;
mod procs;
mod servers;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::load::{Keys, Report, Target};
use crate::procs::Proc;

/// alo's end-to-end benchmark.
#[derive(Parser, Debug)]
#[command(name = "alo-bench", about, long_about = None)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Each scenario once for a second, asserting no errors and no wrong values; writes nothing.
    #[arg(long)]
    quick: bool,
    /// Seconds each measurement runs.
    #[arg(long, default_value_t = 8)]
    seconds: u64,
    /// Repetitions of the whole set of scenarios; the medians are reported.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Connections of the load generator.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Distinct keys, each a 100-byte value.
    #[arg(long, default_value_t = 10_000)]
    keys: usize,
    /// Run only the scenarios whose name contains this (the floor always runs, as the anchor);
    /// nothing is written. For profiling one scenario.
    #[arg(long)]
    only: Option<String>,
    /// Where to write the results (a section between markers, replaced on each run).
    #[arg(long, default_value = "BENCHMARKS.md")]
    write: PathBuf,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Hostile peers and clients against the peer port, each scenario on fresh nodes: prints a
    /// table of what each measured against its target, and fails if one is missed.
    Hostile,
    /// Run the floor server (used by the benchmark itself).
    #[command(hide = true)]
    Floor { listen: SocketAddr },
    /// Run the origin server (used by the benchmark itself).
    #[command(hide = true)]
    Origin {
        listen: SocketAddr,
        /// How long each answer waits.
        #[arg(long, default_value_t = 0)]
        delay_ms: u64,
        /// Count the requests held at once, and answer `/_peak` with the most.
        #[arg(long)]
        count: bool,
    },
}

/// What a scenario runs and asks.
#[derive(Clone, Copy, Debug)]
struct Scenario {
    name: &'static str,
    system: System,
    keys: Keys,
}

#[derive(Clone, Copy, Debug)]
enum System {
    Floor,
    OneNode,
    /// Three nodes, all traffic to node 1, whose budget is this (the others' 64 MiB).
    ThreeNodes {
        node1_budget: &'static str,
    },
}

const SCENARIOS: [Scenario; 5] = [
    Scenario {
        name: "floor: bare hyper, fixed 100-byte body",
        system: System::Floor,
        keys: Keys::Uniform,
    },
    Scenario {
        name: "one node, warm, uniform keys",
        system: System::OneNode,
        keys: Keys::Uniform,
    },
    Scenario {
        name: "one node, warm, Zipf s=1",
        system: System::OneNode,
        keys: Keys::Zipf(1.0),
    },
    Scenario {
        name: "three nodes, 64 MiB each, all traffic to node 1",
        system: System::ThreeNodes {
            node1_budget: "64MiB",
        },
        keys: Keys::Uniform,
    },
    Scenario {
        name: "three nodes, node 1 at 1.5 MiB (hop-bound)",
        system: System::ThreeNodes {
            node1_budget: "1536KiB",
        },
        keys: Keys::Uniform,
    },
];

/// One measurement of one scenario.
#[derive(Debug)]
struct Sample {
    report: Report,
    /// CPU time of the system's processes during the run.
    cpu: Duration,
    /// Share of node 1's gets answered by a peer.
    hops: Option<f64>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.command {
        Some(Command::Floor { listen }) => {
            return servers::run(servers::Kind::Floor, listen, Duration::ZERO, false);
        }
        Some(Command::Origin {
            listen,
            delay_ms,
            count,
        }) => {
            let delay = Duration::from_millis(delay_ms);
            return servers::run(servers::Kind::Origin, listen, delay, count);
        }
        Some(Command::Hostile) | None => {}
    }
    // The load generator on one thread, as `wrk -t1`: the rest of the machine is the servers'.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match args.command {
        Some(Command::Hostile) => runtime.block_on(hostile::run()),
        _ => runtime.block_on(bench(args)),
    }
}

async fn bench(mut args: Args) -> anyhow::Result<()> {
    if args.quick {
        (args.seconds, args.reps) = (1, 1);
    }
    let me = std::env::current_exe()?;
    let node = procs::alo_node()?;
    let origin = Proc::start(&me, &serve_args("origin"), "listening on ").await?;
    let duration = Duration::from_secs(args.seconds);
    let mut samples: Vec<Vec<Sample>> = SCENARIOS.iter().map(|_| Vec::new()).collect();
    for rep in 0..args.reps {
        for (i, scenario) in SCENARIOS.iter().enumerate() {
            let chosen = args
                .only
                .as_ref()
                .is_none_or(|o| scenario.name.contains(o.as_str()));
            if i != 0 && !chosen {
                continue;
            }
            let seed = (rep * SCENARIOS.len() + i) as u64;
            let sample = measure(scenario, &args, &node, &me, origin.addr, duration, seed)
                .await
                .with_context(|| format!("scenario {:?}", scenario.name))?;
            eprintln!(
                "rep {} {:<50} {:>9.0} req/s  errors {} wrong {}",
                rep + 1,
                scenario.name,
                sample.report.per_second(),
                sample.report.errors,
                sample.report.wrong
            );
            samples[i].push(sample);
        }
    }
    if args.only.is_some() {
        println!("{}", table(&samples, &args));
        return Ok(());
    }
    let failures: Vec<String> = SCENARIOS
        .iter()
        .zip(&samples)
        .flat_map(|(s, runs)| runs.iter().map(move |r| (s, r)))
        .filter(|(_, r)| r.report.errors != 0 || r.report.wrong != 0 || r.report.ok == 0)
        .map(|(s, r)| {
            let (ok, errors, wrong) = (r.report.ok, r.report.errors, r.report.wrong);
            format!("{}: {ok} ok, {errors} errors, {wrong} wrong values", s.name)
        })
        .collect();
    if !failures.is_empty() {
        anyhow::bail!("the benchmark saw failures:\n{}", failures.join("\n"));
    }
    let mut table = table(&samples, &args);
    let fault_time = Duration::from_secs(if args.quick { 3 } else { 10 });
    let mut findings = vec![failures::hang_ups(&node, &me).await?];
    for fault in [failures::Fault::Stop, failures::Fault::KillAndRestart] {
        let (keys, connections) = (args.keys, args.connections);
        let finding =
            failures::fault(fault, &node, origin.addr, keys, connections, fault_time).await?;
        findings.push(finding);
    }
    for finding in &findings {
        let _ = write!(table, "\n{}\n", finding.text);
    }
    println!("{table}");
    let broken: Vec<&str> = findings
        .iter()
        .filter(|f| !f.held)
        .map(|f| f.text.as_str())
        .collect();
    anyhow::ensure!(
        broken.is_empty(),
        "a failure scenario broke:\n{}",
        broken.join("\n")
    );
    if args.quick {
        println!("quick run: every scenario answered, no errors, no wrong values");
    } else {
        write_section(&args.write, &table)?;
        println!("written to {}", args.write.display());
    }
    Ok(())
}

fn serve_args(kind: &str) -> Vec<String> {
    vec![kind.to_string(), "127.0.0.1:0".to_string()]
}

/// Starts the scenario's system, warms it, runs the load and reads what it cost.
async fn measure(
    scenario: &Scenario,
    args: &Args,
    node: &std::path::Path,
    me: &std::path::Path,
    origin: SocketAddr,
    duration: Duration,
    seed: u64,
) -> anyhow::Result<Sample> {
    let procs = match scenario.system {
        System::Floor => vec![Proc::start(me, &serve_args("floor"), "listening on ").await?],
        System::OneNode => nodes(node, origin, &["64MiB"]).await?,
        System::ThreeNodes { node1_budget } => {
            nodes(node, origin, &[node1_budget, "64MiB", "64MiB"]).await?
        }
    };
    let entry = &procs[0];
    let target = match scenario.system {
        System::Floor => Target {
            addr: entry.addr,
            prefix: "/",
            exact: false,
        },
        _ => Target {
            addr: entry.addr,
            prefix: "/api/web/",
            exact: true,
        },
    };
    let warm = load::sweep(&target, args.keys, args.connections).await?;
    anyhow::ensure!(
        warm.errors == 0 && warm.wrong == 0,
        "warm-up: {} errors, {} wrong values",
        warm.errors,
        warm.wrong
    );
    let three = matches!(scenario.system, System::ThreeNodes { .. });
    let counts = |api| async move {
        Ok::<_, anyhow::Error>((
            procs::counter(api, "gets").await?,
            procs::counter(api, "peer_loads").await?,
        ))
    };
    let before = if three {
        Some(counts(entry.addr).await?)
    } else {
        None
    };
    let all: Vec<&Proc> = procs.iter().collect();
    let cpu_before = procs::cpu(&all)?;
    let report = load::run(
        &target,
        args.keys,
        scenario.keys,
        args.connections,
        duration,
        seed,
    )
    .await?;
    let cpu = procs::cpu(&all)? - cpu_before;
    let hops = match before {
        Some((gets, peer_loads)) => {
            let (gets2, peer_loads2) = counts(entry.addr).await?;
            Some((peer_loads2 - peer_loads) as f64 / (gets2 - gets).max(1) as f64)
        }
        None => None,
    };
    Ok(Sample { report, cpu, hops })
}

/// Nodes over `origin`, one per budget, that know each other; node 1 first.
async fn nodes(
    node: &std::path::Path,
    origin: SocketAddr,
    budgets: &[&str],
) -> anyhow::Result<Vec<Proc>> {
    let args = |i: usize| {
        let origin = format!("http://{origin}");
        ["--origin-url", &origin, "--cache-bytes", budgets[i]]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let cluster = procs::cluster(node, budgets.len(), &[], args, procs::Log::Errors).await?;
    Ok(cluster.nodes)
}

/// The median of `values`.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The results as a Markdown table, with how they were made.
fn table(samples: &[Vec<Sample>], args: &Args) -> String {
    let floor = &samples[0];
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| scenario | req/s | / floor | p50 us | p99 us | p99.9 us | p99 / floor | CPU us/req | CPU / floor | hops |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let cpu_per = |s: &Sample| s.cpu.as_secs_f64() * 1e6 / s.report.ok.max(1) as f64;
    for (scenario, runs) in SCENARIOS.iter().zip(samples) {
        if runs.is_empty() {
            continue; // left out by `--only`
        }
        let per_rep = |f: &dyn Fn(&Sample, &Sample) -> f64| {
            median(runs.iter().zip(floor).map(|(s, f0)| f(s, f0)).collect())
        };
        let rate = per_rep(&|s, _| s.report.per_second());
        let ratio = per_rep(&|s, f0| s.report.per_second() / f0.report.per_second());
        let p = |q: f64| per_rep(&|s, _| s.report.percentile_us(q) as f64);
        let p99_ratio = per_rep(&|s, f0| {
            s.report.percentile_us(0.99) as f64 / f0.report.percentile_us(0.99) as f64
        });
        let cpu = per_rep(&|s, _| cpu_per(s));
        let cpu_ratio = per_rep(&|s, f0| cpu_per(s) / cpu_per(f0));
        let hops = match runs[0].hops {
            Some(_) => format!("{:.0}%", 100.0 * per_rep(&|s, _| s.hops.unwrap_or(0.0))),
            None => "-".to_string(),
        };
        let _ = writeln!(
            out,
            "| {} | {rate:.0} | {ratio:.2} | {:.0} | {:.0} | {:.0} | {p99_ratio:.2} | {cpu:.1} | {cpu_ratio:.2} | {hops} |",
            scenario.name,
            p(0.5),
            p(0.99),
            p(0.999),
        );
    }
    let _ = writeln!(
        out,
        "\n{} connections, closed loop, {} s per measurement, {} keys of 100 bytes, medians of {} \
         repetitions with the systems interleaved; ratios are taken per repetition against the \
         floor of that repetition. CPU is user + system time of the system's processes (three for \
         three nodes), not of the load generator or the origin.",
        args.connections, args.seconds, args.keys, args.reps
    );
    out
}

const START: &str = "<!-- alo-bench: start -->";
const END: &str = "<!-- alo-bench: end -->";

/// Replaces the section between the markers of `path` (appending one if there is none) with the
/// table, the machine and the date.
fn write_section(path: &std::path::Path, table: &str) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let section = format!(
        "{START}\n`cargo run --release -p alo-bench` on {} ({} cores), {}, {}:\n\n{table}{END}",
        machine(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        command_line("date", &["-u", "+%Y-%m-%d"]),
        command_line("rustc", &["--version"]),
    );
    let text = match (text.find(START), text.find(END)) {
        (Some(a), Some(b)) if a < b => format!("{}{section}{}", &text[..a], &text[b + END.len()..]),
        _ => format!("{text}\n## End to end: `alo-bench`\n\n{section}\n"),
    };
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// The CPU's model name.
fn machine() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "an unknown CPU".to_string())
}

/// What `program args` prints, trimmed, or `?`.
fn command_line(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "?".to_string())
}
