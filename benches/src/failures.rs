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
    let nodes = crate::nodes(node, origin.addr, &["64MiB"]).await?;
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
    Ok(Finding { text, held })
}

/// What happens to node 1 of three, under load, when node 3 is stopped (`SIGSTOP`), or killed
/// and started again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    Stop,
    KillAndRestart,
}

pub(crate) async fn fault(
    fault: Fault,
    node: &Path,
    origin: SocketAddr,
    keys: usize,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<Finding> {
    let nodes = crate::nodes(node, origin, &["64MiB", "64MiB", "64MiB"]).await?;
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
    let (report, restarted) = tokio::join!(run, act);
    let (report, _restarted) = (report?, restarted?);
    if fault == Fault::Stop {
        victim.signal(Signal::CONT)?;
    }

    let tick = TICK.as_secs_f64();
    let per_second = |n: u64| n as f64 / tick;
    let event = (at.as_secs_f64() / tick) as usize;
    // Answers still in flight at the deadline land after it: leave that tail out.
    let ticks = (duration.as_secs_f64() / tick) as usize;
    let timeline = &report.timeline[..report.timeline.len().min(ticks)];
    // The first tick is the loop starting up; the baseline is the rest before the fault.
    let before: Vec<u64> = timeline.iter().take(event).skip(1).copied().collect();
    let baseline = before.iter().sum::<u64>() as f64 / before.len().max(1) as f64;
    let after = &timeline[event.min(timeline.len())..];
    let lowest = after.iter().min().copied().unwrap_or(0) as f64;
    let recovered = after
        .iter()
        .position(|&n| n as f64 >= 0.9 * baseline && n > 0)
        .map(|i| format!("{:.2} s", i as f64 * tick));
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
        per_second(baseline as u64),
        TICK.as_millis(),
        100.0 * lowest / baseline.max(1.0),
        recovered.unwrap_or_else(|| "not within the run".to_string()),
    );
    let _ = write!(
        text,
        " Node 1 in {} ms windows, % of before: ",
        TICK.as_millis()
    );
    let shape: Vec<String> = timeline
        .iter()
        .map(|&n| format!("{:.0}", 100.0 * n as f64 / baseline.max(1.0)))
        .collect();
    let _ = write!(text, "{}.", shape.join(" "));
    Ok(Finding {
        text,
        held: report.errors == 0 && report.wrong == 0,
    })
}
