//! The failure scenarios, under the same load generator: clients that hang up while their key
//! loads, one of three nodes stopped with SIGSTOP, and one killed and started again.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::load::{self, Keys, TICK, Target};
use crate::procs::{self, Proc};

/// What a failure scenario found: a Markdown paragraph, and whether it held what it must.
#[derive(Debug)]
pub(crate) struct Finding {
    pub(crate) text: String,
    pub(crate) held: bool,
    /// Node 1's rate around the fault, for a fault under load.
    pub(crate) windows: Option<Windows>,
    /// Requests that failed (no answer or another status) and answers with a wrong value.
    pub(crate) failed: u64,
    /// What node 1's `/stats` said from the fault on, when asked to watch.
    pub(crate) watched: Option<Watched>,
}

/// Node 1's view of its peers from a fault on, from its `/stats` every [`WATCH_EVERY`].
#[derive(Clone, Debug, Default)]
pub(crate) struct Watched {
    /// When node 1 first counted a stall of a peer, after the fault.
    pub(crate) stalled: Option<Duration>,
    /// When node 1 first had a peer not up.
    pub(crate) down: Option<Duration>,
    /// Stalls counted over node 1's peers at the end of the run.
    pub(crate) stalls: u64,
    /// Node 1's `successor_loads` and `peer_errors` (group `web`) gained from the fault to the
    /// end of the run.
    pub(crate) successor_loads: u64,
    pub(crate) peer_errors: u64,
}

/// How often node 1's `/stats` is read while watching.
const WATCH_EVERY: Duration = Duration::from_millis(50);

/// Reads node 1's `/stats` at `api` every [`WATCH_EVERY`] from `at` to `until` after `started`.
async fn watch(api: SocketAddr, started: Instant, at: Duration, until: Duration) -> Watched {
    let read = || async {
        let stats = tokio::time::timeout(Duration::from_secs(1), procs::json(api, "/stats"))
            .await
            .ok()?
            .ok()?;
        let peers = stats["peer_health"].as_array()?.clone();
        let stalls: u64 = peers.iter().filter_map(|p| p["stalls"].as_u64()).sum();
        let down = peers.iter().any(|p| p["state"].as_str() != Some("up"));
        let web = &stats["groups"]["web"];
        let counter = |name: &str| web[name].as_u64().unwrap_or(0);
        Some((
            stalls,
            down,
            counter("successor_loads"),
            counter("peer_errors"),
        ))
    };
    tokio::time::sleep_until((started + at).into()).await;
    let first = read().await.unwrap_or_default();
    let mut watched = Watched::default();
    while started.elapsed() < until {
        tokio::time::sleep(WATCH_EVERY).await;
        let Some((stalls, down, successor_loads, peer_errors)) = read().await else {
            continue;
        };
        let since = started.elapsed().saturating_sub(at);
        if stalls > first.0 && watched.stalled.is_none() {
            watched.stalled = Some(since);
        }
        if down && watched.down.is_none() {
            watched.down = Some(since);
        }
        watched.stalls = stalls;
        watched.successor_loads = successor_loads.saturating_sub(first.2);
        watched.peer_errors = peer_errors.saturating_sub(first.3);
    }
    watched
}

/// A load's rate in [`TICK`] windows around a change that began at window `event`.
#[derive(Clone, Debug)]
pub(crate) struct Windows {
    /// Mean good answers per window before the change, the first window left out (the loop
    /// starting up).
    pub(crate) before: f64,
    /// Every window, as a share of `before`.
    pub(crate) shares: Vec<f64>,
    /// The window the change began in.
    pub(crate) event: usize,
}

impl Windows {
    /// The windows of `timeline` before `ticks` (answers still in flight at the end land after
    /// it), around a change at window `event`.
    pub(crate) fn new(timeline: &[u64], event: usize, ticks: usize) -> Windows {
        let timeline = &timeline[..timeline.len().min(ticks)];
        let before: Vec<u64> = timeline.iter().take(event).skip(1).copied().collect();
        let before = before.iter().sum::<u64>() as f64 / before.len().max(1) as f64;
        let shares = timeline
            .iter()
            .map(|&n| n as f64 / before.max(1.0))
            .collect();
        Windows {
            before,
            shares,
            event,
        }
    }

    /// The rate before the change, per second.
    pub(crate) fn per_second(&self) -> f64 {
        self.before / TICK.as_secs_f64()
    }

    /// The lowest share from window `from` to window `to` (excluded; past the end: to the end).
    pub(crate) fn lowest(&self, from: usize, to: usize) -> f64 {
        let to = to.min(self.shares.len());
        let from = from.min(to);
        let lowest = self.shares[from..to]
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min);
        if lowest.is_finite() { lowest } else { 0.0 }
    }

    /// The mean share from window `from` to window `to` (excluded).
    pub(crate) fn mean(&self, from: usize, to: usize) -> f64 {
        let to = to.min(self.shares.len());
        let from = from.min(to);
        let span = &self.shares[from..to];
        span.iter().sum::<f64>() / span.len().max(1) as f64
    }

    /// How long after the change the rate was first back to `share` of before.
    pub(crate) fn back_to(&self, share: f64) -> Option<Duration> {
        let after = &self.shares[self.event.min(self.shares.len())..];
        after
            .iter()
            .position(|&s| s >= share && s > 0.0)
            .map(|i| TICK * i as u32)
    }

    /// Every window, in % of before: `70 75 81 ...`.
    pub(crate) fn shape(&self) -> String {
        let shares: Vec<String> = self
            .shares
            .iter()
            .map(|s| format!("{:.0}", 100.0 * s))
            .collect();
        shares.join(" ")
    }
}

fn api(addr: SocketAddr) -> Target {
    Target {
        addr,
        prefix: "/api/web/",
        exact: true,
    }
}

/// Clients that ask for cold keys of a slow origin and hang up before the answer: the loads
/// must go on, once per key, and fill the cache.
pub(crate) async fn hang_ups(node: &Path, me: &Path) -> anyhow::Result<Finding> {
    const KEYS: usize = 20;
    const CLIENTS: usize = 5;
    let (delay, after) = (Duration::from_millis(300), Duration::from_millis(50));
    let origin_args = vec![
        "origin".to_string(),
        "127.0.0.1:0".to_string(),
        format!("--delay-ms={}", delay.as_millis()),
    ];
    let origin = Proc::start(me, &origin_args, "listening on ").await?;
    let (nodes, _) = crate::nodes(node, origin.addr, &["64MiB"]).await?;
    let target = api(nodes[0].addr);
    let keys: Vec<String> = (0..KEYS).map(load::key).collect();
    load::hang_up(&target, &keys, CLIENTS, after).await?;
    // The loads finish on their own, after every client has gone.
    let waited = Instant::now();
    let mut loads = 0;
    while waited.elapsed() < Duration::from_secs(10) {
        loads = procs::counter(nodes[0].addr, "local_loads").await?;
        if loads >= KEYS as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let hits_before = procs::counter(nodes[0].addr, "cache_hits").await?;
    let again = load::sweep(&target, KEYS, 4).await?;
    let hits = procs::counter(nodes[0].addr, "cache_hits").await? - hits_before;
    let loads_after = procs::counter(nodes[0].addr, "local_loads").await?;
    let held = loads == KEYS as u64 && loads_after == loads && hits == KEYS as u64;
    let text = format!(
        "**Clients that hang up mid-load.** {KEYS} cold keys, {CLIENTS} clients each, every client \
         gone {} ms into a {} ms origin load: **{loads} origin loads** (want {KEYS}, one per key). \
         Gets of the same keys afterwards: {hits} cache hits of {KEYS}, {} new loads, {} errors.",
        after.as_millis(),
        delay.as_millis(),
        loads_after - loads,
        again.errors + again.wrong,
    );
    Ok(Finding {
        text,
        held,
        windows: None,
        failed: again.errors + again.wrong,
        watched: None,
    })
}

/// What happens to node 1 of three, under load, when node 3 is stopped (`SIGSTOP`), or killed
/// and started again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    Stop,
    KillAndRestart,
}

/// With `watched`, node 1's `/stats` is read every [`WATCH_EVERY`] from the fault on (see
/// [`Watched`]); the main benchmark does not, to ask nothing of node 1 besides the load.
pub(crate) async fn fault(
    fault: Fault,
    node: &Path,
    origin: SocketAddr,
    keys: usize,
    connections: usize,
    duration: Duration,
    watched: bool,
) -> anyhow::Result<Finding> {
    let (nodes, _) = crate::nodes(node, origin, &["64MiB", "64MiB", "64MiB"]).await?;
    let target = api(nodes[0].addr);
    load::sweep(&target, keys, connections).await?;
    let at = duration.mul_f64(0.3);
    let back_at = duration.mul_f64(0.6);
    let victim = &nodes[2];
    let act = async {
        tokio::time::sleep(at).await;
        match fault {
            Fault::Stop => victim.signal(Signal::STOP).map(|()| None),
            Fault::KillAndRestart => {
                victim.signal(Signal::KILL)?;
                tokio::time::sleep(back_at - at).await;
                victim.restart().await.map(Some)
            }
        }
    };
    let run = load::run(&target, keys, Keys::Uniform, connections, duration, 7);
    let watching = async {
        match watched {
            true => Some(watch(nodes[0].addr, Instant::now(), at, duration).await),
            false => None,
        }
    };
    let (report, restarted, watched) = tokio::join!(run, act, watching);
    let (report, _restarted) = (report?, restarted?);
    if fault == Fault::Stop {
        victim.signal(Signal::CONT)?;
    }

    let tick = TICK.as_secs_f64();
    let event = (at.as_secs_f64() / tick) as usize;
    let windows = Windows::new(
        &report.timeline,
        event,
        (duration.as_secs_f64() / tick) as usize,
    );
    let lowest = windows.lowest(event, usize::MAX);
    let recovered = windows
        .back_to(0.9)
        .map(|after| format!("{:.2} s", after.as_secs_f64()));
    let name = match fault {
        Fault::Stop => "**One of three nodes stopped with SIGSTOP.**",
        Fault::KillAndRestart => "**One of three nodes killed and started again.**",
    };
    let what = match fault {
        Fault::Stop => format!("node 3 stopped at {:.1} s", at.as_secs_f64()),
        Fault::KillAndRestart => format!(
            "node 3 killed (SIGKILL) at {:.1} s and started again at {:.1} s",
            at.as_secs_f64(),
            back_at.as_secs_f64()
        ),
    };
    let mut text = format!(
        "{name} {connections} connections on node 1 for {:.0} s, {what}: \
         **{} failed requests**, {} wrong values; node 1 ran at {:.0} req/s before, its lowest \
         {} ms window after was {:.0}% of that, and it was back to 90% {} after the fault.",
        duration.as_secs_f64(),
        report.errors,
        report.wrong,
        windows.per_second().trunc(),
        TICK.as_millis(),
        100.0 * lowest,
        recovered.unwrap_or_else(|| "not within the run".to_string()),
    );
    let _ = write!(
        text,
        " Node 1 in {} ms windows, % of before: {}.",
        TICK.as_millis(),
        windows.shape()
    );
    Ok(Finding {
        text,
        held: report.errors == 0 && report.wrong == 0,
        windows: Some(windows),
        failed: report.errors + report.wrong,
        watched,
    })
}
