//! What the benchmark prints and writes: the load benchmark's Markdown table, the section of
//! `BENCHMARKS.md` it replaces, and what every table says of where it was measured.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;

use crate::{Args, Generator, Run, Sample};

/// The median of `values`.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The results as a Markdown table, with how they were made.
pub(crate) fn table(runs: &[Run], samples: &[Vec<Sample>], args: &Args) -> String {
    let floor = &samples[0];
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| scenario | req/s | / floor | p50 us | p99 us | p99.9 us | p99 / floor | CPU us/req | CPU / floor | hops | hit ratio |"
    );
    let _ = writeln!(
        out,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let cpu_per = |s: &Sample| s.cpu.as_secs_f64() * 1e6 / s.report.ok.max(1) as f64;
    for (run, samples) in runs.iter().zip(samples) {
        let per_rep = |f: &dyn Fn(&Sample, &Sample) -> f64| {
            median(samples.iter().zip(floor).map(|(s, f0)| f(s, f0)).collect())
        };
        let rate = per_rep(&|s, _| s.report.per_second());
        let ratio = per_rep(&|s, f0| s.report.per_second() / f0.report.per_second());
        let p = |q: f64| per_rep(&|s, _| s.report.percentile_us(q) as f64);
        let p99_ratio = per_rep(&|s, f0| {
            s.report.percentile_us(0.99) as f64 / f0.report.percentile_us(0.99) as f64
        });
        let cpu = per_rep(&|s, _| cpu_per(s));
        let cpu_ratio = per_rep(&|s, f0| cpu_per(s) / cpu_per(f0));
        let share = |get: fn(&Sample) -> Option<f64>, digits: usize| match get(&samples[0]) {
            Some(_) => format!(
                "{:.digits$}%",
                100.0 * per_rep(&|s, _| get(s).unwrap_or(0.0))
            ),
            None => "-".to_string(),
        };
        let mut hops = share(|s| s.hops, 0);
        if samples[0].owner_share.is_some() {
            let owner = share(|s| s.owner_share, 1);
            let _ = write!(hops, " (owner served {owner} of the hot key's gets)");
        }
        let hit_ratio = share(|s| s.hit_ratio, 1);
        let _ = writeln!(
            out,
            "| {} | {rate:.0} | {ratio:.2} | {:.0} | {:.0} | {:.0} | {p99_ratio:.2} | {cpu:.1} | {cpu_ratio:.2} | {hops} | {hit_ratio} |",
            run.name(),
            p(0.5),
            p(0.99),
            p(0.999),
        );
    }
    let _ = writeln!(
        out,
        "\n{} connections, closed loop ({}), {} s per measurement, {} keys of 100 bytes (100,000 where a scenario says so), medians of {} \
         repetitions with the systems interleaved, the floor first and the others in an order \
         rotated from one repetition to the next; ratios are taken per repetition against the \
         floor of that repetition. CPU is user + system time of the system's processes (three for \
         three nodes), not of the load generator or the origin. Hops: node 1's gets answered by a \
         peer; hit ratio: node 1's gets answered from its own caches (both from its `/stats`).",
        args.connections,
        match args.generator {
            Generator::Alo => "alo-bench's generator, one thread, every body checked",
            Generator::Wrk => "`wrk -t1 --latency` on the same keys, statuses checked",
        },
        args.seconds,
        args.keys,
        args.reps
    );
    out
}

const START: &str = "<!-- alo-bench: start -->";
const END: &str = "<!-- alo-bench: end -->";

/// Replaces the section between the markers of `path` (appending one if there is none) with the
/// table, the machine and the date.
pub(crate) fn write_section(path: &Path, table: &str) -> anyhow::Result<()> {
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
pub(crate) fn machine() -> String {
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
pub(crate) fn command_line(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "?".to_string())
}

/// `n` with a comma between thousands, and a minus sign (U+2212) when negative: `−1,234,567`.
pub(crate) fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    if n < 0 {
        out.push('−');
    }
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}
