//! The load through `wrk` (`wrk -t1 -cN -dS --latency`), the generator the issues' targets name,
//! beside alo-bench's own: the same systems, the same keys, drawn by a Lua script that this
//! module writes. wrk checks no body, so a wrk run counts an answer with another status than
//! 200 as an error and cannot see a wrong value; alo-bench's own generator checks every body.
//!
//! wrk reports its latency distribution through the script's `done` callback: the latency at
//! every 0.1% up to 99% and every 0.01% above, which the [`Report`] keeps as a histogram of those
//! points, each weighted by the share of requests it stands for.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use hdrhistogram::Histogram;

use crate::load::{Keys, Report, Target};

/// The Lua script: keys `k00000` to `k{space-1}` after `prefix`, uniform, Zipf (a table of the
/// cumulative weights, searched by bisection) or half one key and half a list, and a `done` that
/// prints one line per quantile.
fn script(target: &Target, space: usize, keys: &Keys, seed: u64) -> String {
    let exponent = match keys {
        Keys::Zipf(s) => *s,
        Keys::Uniform | Keys::HotHalf | Keys::Mix { .. } => 0.0,
    };
    let (hot, rest) = match keys {
        Keys::Mix { hot, rest } => {
            let rest: Vec<String> = rest.iter().map(usize::to_string).collect();
            (hot.to_string(), format!("{{{}}}", rest.join(",")))
        }
        _ => ("nil".to_string(), "nil".to_string()),
    };
    let mut lua = String::new();
    let _ = write!(
        lua,
        r#"
local space, exponent, prefix = {space}, {exponent}, "{prefix}"
local hot, rest = {hot}, {rest}
math.randomseed({seed})
local cdf = nil
if exponent > 0 then
  cdf = {{}}
  local total = 0
  for i = 1, space do total = total + 1 / i ^ exponent; cdf[i] = total end
  for i = 1, space do cdf[i] = cdf[i] / total end
end
local function pick()
  if hot then
    if math.random() < 0.5 then return hot end
    return rest[math.random(1, #rest)]
  end
  if not cdf then return math.random(0, space - 1) end
  local u, lo, hi = math.random(), 1, space
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < u then lo = mid + 1 else hi = mid end
  end
  return lo - 1
end
request = function()
  return wrk.format("GET", prefix .. string.format("k%05d", pick()))
end
local bad = 0
response = function(status, headers, body)
  if status ~= 200 then bad = bad + 1 end
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("alo-wrk requests %d errors %d duration %d\n", summary.requests,
    e.connect + e.read + e.write + e.timeout + e.status, summary.duration))
  for i = 1, 990 do
    io.write(string.format("alo-wrk q %.4f %d 10\n", i / 1000, latency:percentile(i / 10)))
  end
  for i = 9901, 10000 do
    io.write(string.format("alo-wrk q %.4f %d 1\n", i / 10000, latency:percentile(i / 100)))
  end
end
"#,
        prefix = target.prefix,
    );
    lua
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
    let path = dir.join(format!("load-{seed}.lua"));
    std::fs::write(&path, script(target, space, &keys, seed))?;
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
