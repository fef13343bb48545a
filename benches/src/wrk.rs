//! The load through `wrk` (`wrk -t1 -cN -dS --latency`), the generator the issues' targets name,
//! beside alo-bench's own: the same systems, the same keys (drawn by alo-bench's own code and
//! handed to wrk's Lua script in a file). wrk checks no body, so a wrk run counts an answer with
//! another status than 200 as an error and cannot see a wrong value; alo-bench's own generator
//! checks every body.
//!
//! wrk reports its latency distribution through the script's `done` callback: the latency at
//! every 0.1% up to 99% and every 0.01% above, which the [`Report`] keeps as a histogram of those
//! points, each weighted by the share of requests it stands for.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use hdrhistogram::Histogram;

use crate::load::{self, Keys, Report, Target};

/// The Lua script: the paths in the file `paths` (one a line, read once), asked in turn, over
/// and over; a `response` that counts every status other than 200 (wrk's own count of status
/// errors has only those of 400 and over); and a `done` that prints the summary, those counts
/// among the errors, and one line per quantile.
fn script(paths: &Path) -> String {
    format!(
        r#"
local paths = {{}}
for path in io.lines("{paths}") do paths[#paths + 1] = path end
local at = 0
request = function()
  at = at % #paths + 1
  return wrk.format("GET", paths[at])
end
-- Each thread's count, a global so that `done` can read it through the thread.
bad = 0
response = function(status, headers, body)
  if status ~= 200 then bad = bad + 1 end
end
local threads = {{}}
setup = function(thread) threads[#threads + 1] = thread end
done = function(summary, latency, requests)
  local e, statuses = summary.errors, 0
  for _, thread in ipairs(threads) do statuses = statuses + thread:get("bad") end
  io.write(string.format("alo-wrk requests %d errors %d duration %d\n", summary.requests,
    e.connect + e.read + e.write + e.timeout + statuses, summary.duration))
  for i = 1, 990 do
    io.write(string.format("alo-wrk q %.4f %d 10\n", i / 1000, latency:percentile(i / 10)))
  end
  for i = 9901, 10000 do
    io.write(string.format("alo-wrk q %.4f %d 1\n", i / 10000, latency:percentile(i / 100)))
  end
end
"#,
        paths = paths.display(),
    )
}

/// Runs `wrk -t1` with `connections` connections on `target` for `duration`, keys drawn from
/// `keys` of `space`.
pub(crate) async fn run(
    dir: &Path,
    target: &Target,
    space: usize,
    keys: Keys,
    connections: usize,
    duration: Duration,
    seed: u64,
) -> anyhow::Result<Report> {
    // The keys alo-bench's own generator would ask, drawn by the same code.
    let mut paths = String::new();
    for k in load::draw(space, &keys, seed) {
        let _ = writeln!(paths, "{}{}", target.prefix, load::key(k));
    }
    let listed = dir.join(format!("paths-{seed}.txt"));
    std::fs::write(&listed, paths)?;
    let path = dir.join(format!("load-{seed}.lua"));
    std::fs::write(&path, script(&listed))?;
    let url = format!("http://{}/", target.addr);
    let out = tokio::process::Command::new("wrk")
        .args(["-t1", "--latency", "--timeout", "5s"])
        .arg(format!("-c{connections}"))
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .arg("-s")
        .arg(&path)
        .arg(&url)
        .kill_on_drop(true)
        .output()
        .await
        .context("running wrk (apt-get install wrk)")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success(),
        "wrk failed: {}{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    parse(&stdout)
}

/// The report of wrk's output: the summary line and the quantile lines.
fn parse(stdout: &str) -> anyhow::Result<Report> {
    let mut latency = Histogram::<u64>::new(3)?;
    let (mut requests, mut errors, mut micros) = (None, 0, 0);
    for line in stdout.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[..] {
            ["alo-wrk", "requests", n, "errors", e, "duration", d] => {
                requests = Some(n.parse::<u64>()?);
                errors = e.parse()?;
                micros = d.parse()?;
            }
            ["alo-wrk", "q", _, value, weight] => {
                latency.record_n(value.parse::<u64>()?.max(1), weight.parse()?)?;
            }
            _ => {}
        }
    }
    let requests = requests.with_context(|| format!("no summary in wrk's output: {stdout}"))?;
    Ok(Report {
        ok: requests.saturating_sub(errors),
        errors,
        wrong: 0,
        elapsed: Duration::from_micros(micros),
        latency,
        timeline: Vec::new(),
    })
}
