//! alo's end-to-end benchmark: whole nodes, one and three, under a closed-loop HTTP load,
//! against a floor (a bare hyper server answering a fixed 100-byte body), with no tool beyond
//! this binary.
//!
//! `cargo run --release -p alo-bench` runs every scenario three times, the systems interleaved
//! within each repetition, and prints and writes to `BENCHMARKS.md` the medians: requests per
//! second, the ratio to the floor, p50/p99/p99.9 latency, CPU per request (from `/proc`, over
//! the system's processes) and, for three nodes, the share of gets that hopped to a peer.
//! `--quick` runs each scenario for a second, once, and fails on any error or wrong value; it
//! checks that the benchmark works, never how fast anything is. `--baseline-node PATH` runs
//! every scenario with nodes a second time, with the alo-node at PATH, interleaved with the
//! others, to compare two builds in one run.
//!
//! `alo-bench hostile` runs hostile clients and peers against fresh nodes instead (see
//! `hostile.rs`), `alo-bench rss` the memory a node holds per cached item (see `rss.rs`), and
//! `alo-bench membership` what changes of members cost (see `membership.rs`).

mod failures;
mod hostile;
mod load;
mod markdown;
mod membership;
mod procs;
mod rss;
mod servers;
mod wrk;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::builder::PossibleValuesParser;
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
    /// Another alo-node binary (an older build, say): every scenario with nodes runs again
    /// with it, as "NAME (baseline)", interleaved with the others in each repetition;
    /// nothing is written.
    #[arg(long, value_name = "PATH")]
    baseline_node: Option<PathBuf>,
    /// Where to write the results (a section between markers, replaced on each run).
    #[arg(long, default_value = "BENCHMARKS.md")]
    write: PathBuf,
    /// The load generator: alo-bench's own (checks every body), or `wrk -t1` (the issues'
    /// targets; `apt-get install wrk`), with which the table is printed, no failure scenario
    /// runs and nothing is written.
    #[arg(long, value_enum, default_value_t = Generator::Alo)]
    generator: Generator,
}

/// Who sends the load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Generator {
    /// alo-bench's own closed loop: one thread, an HDR histogram, every body checked.
    Alo,
    /// `wrk -t1 -cN --latency`, on the keys alo-bench's own generator draws.
    Wrk,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Hostile clients of the client API and hostile peers of the peer port, each scenario on
    /// fresh nodes: prints a table of what each measured against its target, and fails if one
    /// is missed.
    Hostile {
        /// Run only these groups of scenarios (comma-separated): idle, heads, shutdown,
        /// descriptors (the client API); bodies, origin, writes, members, log (the peer port).
        #[arg(long, value_delimiter = ',', value_name = "NAMES", value_parser = PossibleValuesParser::new(hostile::GROUPS))]
        only: Vec<String>,
    },
    /// The resident memory a node grows by while it caches values of 100 bytes from an
    /// origin, against what its cache reports holding: one node, then three.
    Rss {
        /// Keys fetched, each once.
        #[arg(long, default_value_t = 10_000)]
        keys: usize,
    },
    /// Changes of members on nodes sharing a peers file: the four steps of issue 26 (origin
    /// requests per step), joins, leaves and a rolling restart under load, and the SIGSTOP
    /// scenario three times; prints a table per group, and fails if a target is missed.
    Membership {
        /// Run only these groups (comma-separated): steps, load, stop.
        #[arg(long, value_delimiter = ',', value_name = "NAMES", value_parser = PossibleValuesParser::new(membership::GROUPS))]
        only: Vec<String>,
    },
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
        /// Count the requests for each key, and answer `/_stats` with the totals and `/_keys`
        /// with every key's count.
        #[arg(long)]
        count_keys: bool,
    },
}

/// What a scenario runs and asks.
#[derive(Clone, Debug)]
struct Scenario {
    name: &'static str,
    system: System,
    keys: Keys,
    /// Distinct keys, when not `--keys`.
    space: Option<usize>,
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

const SCENARIOS: [Scenario; 9] = [
    Scenario {
        name: "floor: bare hyper, fixed 100-byte body",
        system: System::Floor,
        keys: Keys::Uniform,
        space: None,
    },
    Scenario {
        name: "one node, warm, uniform keys",
        system: System::OneNode,
        keys: Keys::Uniform,
        space: None,
    },
    Scenario {
        name: "one node, warm, Zipf s=1",
        system: System::OneNode,
        keys: Keys::Zipf(1.0),
        space: None,
    },
    Scenario {
        name: "three nodes, 64 MiB each, all traffic to node 1",
        system: System::ThreeNodes {
            node1_budget: "64MiB",
        },
        keys: Keys::Uniform,
        space: None,
    },
    Scenario {
        name: "three nodes, 64 MiB each, all traffic to node 1, Zipf s=1",
        system: System::ThreeNodes {
            node1_budget: "64MiB",
        },
        keys: Keys::Zipf(1.0),
        space: None,
    },
    Scenario {
        name: "three nodes, node 1 at 1.5 MiB (hop-bound)",
        system: System::ThreeNodes {
            node1_budget: "1536KiB",
        },
        keys: Keys::Uniform,
        space: None,
    },
    Scenario {
        name: "three nodes, 64 MiB each, Zipf s=1 over 100,000 keys",
        system: System::ThreeNodes {
            node1_budget: "64MiB",
        },
        keys: Keys::Zipf(1.0),
        space: Some(100_000),
    },
    Scenario {
        name: "three nodes, 64 MiB each, Zipf s=1.2 over 100,000 keys",
        system: System::ThreeNodes {
            node1_budget: "64MiB",
        },
        keys: Keys::Zipf(1.2),
        space: Some(100_000),
    },
    Scenario {
        name: "three nodes, one key owned by node 2 takes half the gets",
        system: System::ThreeNodes {
            node1_budget: "64MiB",
        },
        keys: Keys::HotHalf,
        space: None,
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
    /// Share of node 1's gets answered from its caches.
    hit_ratio: Option<f64>,
    /// With one hot key: the share of its gets that its owner served.
    owner_share: Option<f64>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.command {
        Some(Command::Floor { listen }) => {
            let counting = servers::Counting::default();
            return servers::run(servers::Kind::Floor, listen, Duration::ZERO, counting);
        }
        Some(Command::Origin {
            listen,
            delay_ms,
            count,
            count_keys,
        }) => {
            let delay = Duration::from_millis(delay_ms);
            let counting = servers::Counting {
                held: count,
                keys: count_keys,
            };
            return servers::run(servers::Kind::Origin, listen, delay, counting);
        }
        Some(Command::Hostile { .. } | Command::Rss { .. } | Command::Membership { .. }) | None => {
        }
    }
    // The load generator on one thread, as `wrk -t1`: the rest of the machine is the servers'.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match args.command {
        Some(Command::Hostile { only }) => runtime.block_on(hostile::run(&only)),
        Some(Command::Rss { keys }) => runtime.block_on(rss::run(keys)),
        Some(Command::Membership { only }) => runtime.block_on(membership::run(&only)),
        _ => runtime.block_on(bench(args)),
    }
}

/// One system the benchmark measures: a scenario, with the alo-node it runs.
#[derive(Debug)]
struct Run {
    scenario: Scenario,
    /// The binary its nodes run (unused by the floor).
    node: PathBuf,
    /// Whether `node` is the `--baseline-node`.
    baseline: bool,
}

impl Run {
    fn name(&self) -> String {
        if self.baseline {
            format!("{} (baseline)", self.scenario.name)
        } else {
            self.scenario.name.to_string()
        }
    }
}

/// The systems of a run, in the order each repetition measures them: the floor first, then
/// each scenario `only` leaves in, each followed by its run on `baseline` when there is one
/// and the scenario runs nodes.
fn runs(node: &Path, baseline: Option<&Path>, only: Option<&str>) -> Vec<Run> {
    let mut runs = Vec::new();
    for (i, scenario) in SCENARIOS.iter().enumerate() {
        if i != 0 && only.is_some_and(|o| !scenario.name.contains(o)) {
            continue;
        }
        runs.push(Run {
            scenario: scenario.clone(),
            node: node.to_path_buf(),
            baseline: false,
        });
        if let (Some(baseline), false) = (baseline, matches!(scenario.system, System::Floor)) {
            runs.push(Run {
                scenario: scenario.clone(),
                node: baseline.to_path_buf(),
                baseline: true,
            });
        }
    }
    runs
}

async fn bench(mut args: Args) -> anyhow::Result<()> {
    if args.quick {
        (args.seconds, args.reps) = (1, 1);
    }
    let me = std::env::current_exe()?;
    let node = procs::alo_node()?;
    let baseline = match &args.baseline_node {
        Some(path) => {
            let found = std::fs::canonicalize(path)
                .with_context(|| format!("--baseline-node {}", path.display()))?;
            Some(found)
        }
        None => None,
    };
    let runs = runs(&node, baseline.as_deref(), args.only.as_deref());
    let origin = Proc::start(&me, &serve_args("origin"), "listening on ").await?;
    let duration = Duration::from_secs(args.seconds);
    let mut samples: Vec<Vec<Sample>> = runs.iter().map(|_| Vec::new()).collect();
    let dir = procs::TempDir::new("bench")?;
    for rep in 0..args.reps {
        // The order rotates from one repetition to the next, so that no system always runs
        // right after the same other one (the floor stays first: it is each row's anchor).
        let order = (1..runs.len()).map(|j| 1 + (j - 1 + rep) % (runs.len() - 1).max(1));
        for i in std::iter::once(0).chain(order) {
            let run = &runs[i];
            let seed = (rep * runs.len() + i) as u64;
            let sample = measure(run, &args, &me, origin.addr, duration, seed, dir.path())
                .await
                .with_context(|| format!("scenario {:?}", run.name()))?;
            eprintln!(
                "rep {} {:<61} {:>9.0} req/s  errors {} wrong {}",
                rep + 1,
                run.name(),
                sample.report.per_second(),
                sample.report.errors,
                sample.report.wrong
            );
            samples[i].push(sample);
        }
    }
    let failures: Vec<String> = runs
        .iter()
        .zip(&samples)
        .flat_map(|(run, samples)| samples.iter().map(move |s| (run, s)))
        .filter(|(_, s)| s.report.errors != 0 || s.report.wrong != 0 || s.report.ok == 0)
        .map(|(run, s)| {
            let (ok, errors, wrong) = (s.report.ok, s.report.errors, s.report.wrong);
            format!(
                "{}: {ok} ok, {errors} errors, {wrong} wrong values",
                run.name()
            )
        })
        .collect();
    if args.only.is_some() || args.generator == Generator::Wrk {
        println!("{}", markdown::table(&runs, &samples, &args));
    }
    if !failures.is_empty() {
        anyhow::bail!("the benchmark saw failures:\n{}", failures.join("\n"));
    }
    if args.only.is_some() || args.generator == Generator::Wrk {
        return Ok(());
    }
    let mut table = markdown::table(&runs, &samples, &args);
    let fault_time = Duration::from_secs(if args.quick { 3 } else { 10 });
    let mut findings = Vec::new();
    for (binary, label) in [
        (Some(node.as_path()), ""),
        (baseline.as_deref(), "Baseline: "),
    ] {
        let Some(binary) = binary else { continue };
        let mut found = vec![failures::hang_ups(binary, &me).await?];
        for fault in [failures::Fault::Stop, failures::Fault::KillAndRestart] {
            let (keys, connections) = (args.keys, args.connections);
            let finding = failures::fault(
                fault,
                binary,
                origin.addr,
                keys,
                connections,
                fault_time,
                false,
            )
            .await?;
            found.push(finding);
        }
        for finding in &mut found {
            finding.text.insert_str(0, label);
        }
        findings.extend(found);
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
    } else if baseline.is_some() {
        println!("a run beside a baseline: nothing written");
    } else {
        markdown::write_section(&args.write, &table)?;
        println!("written to {}", args.write.display());
    }
    Ok(())
}

fn serve_args(kind: &str) -> Vec<String> {
    vec![kind.to_string(), "127.0.0.1:0".to_string()]
}

/// Starts the scenario's system, warms it, runs the load and reads what it cost.
async fn measure(
    run: &Run,
    args: &Args,
    me: &Path,
    origin: SocketAddr,
    duration: Duration,
    seed: u64,
    dir: &Path,
) -> anyhow::Result<Sample> {
    let (scenario, node) = (&run.scenario, run.node.as_path());
    let (procs, peers) = match scenario.system {
        System::Floor => {
            let floor = Proc::start(me, &serve_args("floor"), "listening on ").await?;
            (vec![floor], Vec::new())
        }
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
    let space = scenario.space.unwrap_or(args.keys);
    let warm = load::sweep(&target, space, args.connections).await?;
    anyhow::ensure!(
        warm.errors == 0 && warm.wrong == 0,
        "warm-up: {} errors, {} wrong values",
        warm.errors,
        warm.wrong
    );
    let keys = match &scenario.keys {
        Keys::HotHalf => hot_half(&peers, space)?,
        keys => keys.clone(),
    };
    // The hot key's owner is node 2: it serves node 1 nothing else.
    let owner = matches!(keys, Keys::Mix { .. }).then(|| procs[1].addr);
    let three = matches!(scenario.system, System::ThreeNodes { .. });
    let counts = |api| async move {
        let served = match owner {
            Some(owner) => procs::counter(owner, "server_requests").await?,
            None => 0,
        };
        let [gets, peer_loads, loads] =
            procs::counters(api, ["gets", "peer_loads", "loads"]).await?;
        Ok::<_, anyhow::Error>([gets, peer_loads, loads, served])
    };
    let before = if three {
        Some(counts(entry.addr).await?)
    } else {
        None
    };
    let all: Vec<&Proc> = procs.iter().collect();
    let cpu_before = procs::cpu(&all)?;
    let connections = args.connections;
    let report = match args.generator {
        Generator::Alo => load::run(&target, space, keys, connections, duration, seed).await?,
        Generator::Wrk => wrk::run(dir, &target, space, keys, connections, duration, seed).await?,
    };
    let cpu = procs::cpu(&all)? - cpu_before;
    let (mut hops, mut hit_ratio, mut owner_share) = (None, None, None);
    if let Some(before) = before {
        let after = counts(entry.addr).await?;
        let [gets, peer_loads, loads, served] = std::array::from_fn(|i| after[i] - before[i]);
        let gets = gets.max(1) as f64;
        hops = Some(peer_loads as f64 / gets);
        hit_ratio = Some(1.0 - loads as f64 / gets);
        if owner.is_some() {
            owner_share = Some(served as f64 / (report.ok.max(2) as f64 / 2.0));
        }
    }
    Ok(Sample {
        report,
        cpu,
        hops,
        hit_ratio,
        owner_share,
    })
}

/// Half the gets for the first key node 2 owns, half for the keys node 1 owns, of `space`
/// keys on the ring of `peers` (node 1 first).
fn hot_half(peers: &[SocketAddr], space: usize) -> anyhow::Result<Keys> {
    let urls: Vec<String> = peers.iter().map(|p| format!("http://{p}")).collect();
    let pool = alo_http::HttpPool::new(&urls[0], alo_http::PoolOptions::default())?;
    pool.set_members(&urls)?;
    let owner = |i: usize| pool.owner(load::key(i).as_bytes());
    let hot = (0..space)
        .find(|&i| owner(i) == urls[1])
        .context("no key of node 2")?;
    let rest: Vec<usize> = (0..space).filter(|&i| owner(i) == urls[0]).collect();
    anyhow::ensure!(!rest.is_empty(), "no key of node 1");
    Ok(Keys::Mix {
        hot,
        rest: rest.into(),
    })
}

/// Nodes over `origin`, one per budget, that know each other, and their peer addresses; node
/// 1 first.
async fn nodes(
    node: &Path,
    origin: SocketAddr,
    budgets: &[&str],
) -> anyhow::Result<(Vec<Proc>, Vec<SocketAddr>)> {
    let args = |i: usize| {
        let origin = format!("http://{origin}");
        ["--origin-url", &origin, "--cache-bytes", budgets[i]]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let cluster = procs::cluster(node, budgets.len(), &[], args, procs::Log::Errors).await?;
    Ok((cluster.nodes, cluster.peers))
}
