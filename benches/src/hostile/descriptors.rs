//! Scenario 4, a node out of descriptors: under `ulimit -n 64`, 300 connections to its client
//! API, then all closed. Its listener must survive the failed accepts, and it must serve again
//! by itself once descriptors are free.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::Method;

use super::connections::{open, secs};
use super::{LogCounts, Row, lone_node};
use crate::procs;

/// The node's limit of open descriptors, soft and hard.
const LIMIT: u64 = 64;
/// Connections opened at once, far past the limit.
const CONNECTIONS: usize = 300;
/// How long after the clients close the node must answer `/healthz` again.
const RECOVERY: Duration = Duration::from_secs(1);

pub(super) async fn exhausted(node: &Path) -> anyhow::Result<Vec<Row>> {
    let proc = lone_node(node, &[], Some(LIMIT)).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The node raises its soft limit to the hard one and logs both: both must be the shell's.
    let limit_line = proc
        .log()
        .lines()
        .find(|l| l.contains("open file limit"))
        .map(str::to_string)
        .unwrap_or_default();
    let field = |name: &str| {
        limit_line
            .split_whitespace()
            .find_map(|f| f.strip_prefix(name))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let (soft, hard) = (field("soft="), field("hard="));
    let before = healthz(proc.addr, Duration::from_secs(1)).await;

    // All at once, not waiting for the node: it cannot accept them all.
    let limit = Duration::from_secs(5);
    let (streams, failed) = open(&proc, CONNECTIONS, CONNECTIONS, limit, None).await?;
    let connected = streams.len();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let fds = proc.descriptors()?;
    let during = healthz(proc.addr, Duration::from_secs(1)).await;
    drop(streams);
    let (closed, wall) = (Instant::now(), SystemTime::now());
    let mut recovered = None;
    while closed.elapsed() < Duration::from_secs(20) {
        if healthz(proc.addr, Duration::from_secs(3)).await == Some(200) {
            recovered = Some(closed.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let log = proc.log();
    let lines = |text: &str| log.lines().filter(|l| l.contains(text)).count();
    let wall = wall.duration_since(SystemTime::UNIX_EPOCH)?.as_secs_f64();
    // The node's own view: its last "accepting connections again", by the log's clock.
    let again_after = log
        .lines()
        .filter(|l| l.contains("accepting connections again"))
        .filter_map(log_time)
        .map(|t| t - wall)
        .filter(|&after| after >= -0.05)
        .reduce(f64::max);
    let show = |v: Option<u64>| v.map_or("?".to_string(), |v| v.to_string());
    let figure = format!(
        "the node's open file limit soft={} hard={}; {connected} connected, {failed} not within \
         5 s; node descriptors at exhaustion {fds}; `/healthz` while exhausted: {}; \
         accept-failure WARN lines {}, \"accepting connections again\" {}; **`/healthz` 200 {} \
         after the clients closed** (the node logged \"accepting connections again\" {} after); \
         node log lines {}",
        show(soft),
        show(hard),
        during.map_or("no answer within 1 s".to_string(), |s| s.to_string()),
        lines("accepting a connection failed"),
        lines("accepting connections again"),
        recovered.map_or("NOT within 20 s".to_string(), secs),
        again_after.map_or("-".to_string(), |s| format!("{s:.2} s")),
        LogCounts::of(&log),
    );
    Ok(vec![Row {
        scenario: "4. `ulimit -n 64`, 300 connections to the API, then all closed",
        figure,
        target: "`/healthz` 200 within 1 s of the close",
        met: soft == Some(LIMIT) && before == Some(200) && recovered.is_some_and(|r| r < RECOVERY),
    }])
}

/// The status `/healthz` at `addr` answers within `limit`.
async fn healthz(addr: SocketAddr, limit: Duration) -> Option<u16> {
    let call = procs::call(addr, Method::GET, "/healthz", Bytes::new());
    match tokio::time::timeout(limit, call).await {
        Ok(Ok((status, _))) => Some(status.as_u16()),
        _ => None,
    }
}

/// The time a node's log line starts with (`2026-12-06T04:44:00.123456Z`), in seconds since
/// the Unix epoch.
fn log_time(line: &str) -> Option<f64> {
    let stamp = line.split_whitespace().next()?.strip_suffix('Z')?;
    let (date, time) = stamp.split_once('T')?;
    let numbers = |text: &str, by: char| -> Option<Vec<i64>> {
        text.split(by).map(|n| n.parse().ok()).collect()
    };
    let (whole, fraction) = time.split_once('.').unwrap_or((time, "0"));
    let (Some([y, m, d]), Some([h, min, s])) = (
        numbers(date, '-').and_then(|v| <[i64; 3]>::try_from(v).ok()),
        numbers(whole, ':').and_then(|v| <[i64; 3]>::try_from(v).ok()),
    ) else {
        return None;
    };
    let fraction: f64 = format!("0.{fraction}").parse().ok()?;
    let seconds = days_from_civil(y, m, d) * 86_400 + h * 3_600 + min * 60 + s;
    Some(seconds as f64 + fraction)
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}
