//! Clients of the client API that hold connections and never finish a request: thousands
//! that send nothing, and thousands that send a head far over the limit and never end it.
//! Both go to a node with the default limits (`--max-connections 10000`,
//! `--header-read-timeout-ms 10000`, `--max-header-bytes 16KiB`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::{LogCounts, Row, lone_node, mib};
use crate::markdown::thousands;
use crate::procs::Proc;

/// Idle connections opened.
const IDLE: usize = 4_000;
/// How long after they are all open the idle connections are watched.
const IDLE_WATCH: Duration = Duration::from_secs(12);
/// Connections sending a big head.
const BIG: usize = 2_000;
/// Bytes of each big head's one header value.
const BIG_BYTES: usize = 389 * 1024;
/// The longest the big heads are sent.
const BIG_LIMIT: Duration = Duration::from_secs(30);
/// The big heads stop when no byte has moved either way for this long.
const BIG_STALLED: Duration = Duration::from_secs(5);

/// Scenario 1, connections that send nothing: the node must close each when its header read
/// timeout runs out.
pub(super) async fn idle(node: &Path) -> anyhow::Result<Vec<Row>> {
    raise_descriptor_limit(IDLE + 200)?;
    let proc = lone_node(node, &[], None).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss0, fds0) = (proc.memory()?.rss, proc.descriptors()?);
    let started = Instant::now();
    let (streams, failed) = open(&proc, IDLE, 100, Duration::from_secs(20), Some(fds0)).await?;
    let opened = Instant::now();
    let open_for = opened - started;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss1, fds1) = (proc.memory()?.rss, proc.descriptors()?);

    // Each watched until `IDLE_WATCH` after all were open: an end of stream or an error is
    // the node closing it. Each comes back, so that all stay open until measured.
    let deadline = tokio::time::Instant::from_std(opened + IDLE_WATCH);
    let mut watched = JoinSet::new();
    for mut stream in streams {
        watched.spawn(async move {
            let (mut closed, mut got_bytes) = (None, false);
            let mut buf = [0; 4096];
            while closed.is_none() {
                match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
                    Ok(Ok(1..)) => got_bytes = true,
                    Ok(_) => closed = Some(opened.elapsed()),
                    Err(_) => break,
                }
            }
            (stream, closed, got_bytes)
        });
    }
    let mut held = Vec::new();
    let (mut closes, mut with_bytes) = (Vec::new(), 0);
    while let Some(joined) = watched.join_next().await {
        let (stream, closed, got_bytes) = joined?;
        held.push(stream);
        closes.extend(closed);
        with_bytes += usize::from(got_bytes);
    }
    let rss2 = proc.memory()?.rss;
    let count = held.len();
    drop(held);
    closes.sort();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = LogCounts::of(&proc.log());
    let per_connection = rss1.saturating_sub(rss0) as f64 / count.max(1) as f64;
    let at = |d: Option<&Duration>| d.map_or("-".to_string(), |d| secs(*d));
    let figure = format!(
        "opened in {} ({failed} failed), {} held by the node; RSS {:.1} → {:.1} MiB 1 s after \
         all were open (+{:.1} KiB each); **{} of {} closed by the node** ({} → {} after they \
         were open); {with_bytes} got bytes; RSS 12 s after: {:.1} MiB; node log lines {log}",
        secs(open_for),
        thousands(fds1 as i64 - fds0 as i64),
        mib(rss0),
        mib(rss1),
        per_connection / 1024.0,
        thousands(closes.len() as i64),
        thousands(count as i64),
        at(closes.first()),
        at(closes.last()),
        mib(rss2),
    );
    Ok(vec![Row {
        scenario: "1. 4,000 idle connections to the API, nothing sent",
        figure,
        target: "every one closed by the node within 12 s of being open",
        met: count == IDLE && closes.len() == IDLE,
    }])
}

/// Scenario 2, connections that each send a head with a 389 KiB header, never ended, as fast
/// as the node takes it: the node must answer 431 at `--max-header-bytes` and close.
pub(super) async fn big_heads(node: &Path) -> anyhow::Result<Vec<Row>> {
    raise_descriptor_limit(BIG + 200)?;
    let proc = lone_node(node, &[], None).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss0, fds0) = (proc.memory()?.rss, proc.descriptors()?);
    let (streams, failed) = open(&proc, BIG, 100, Duration::from_secs(20), Some(fds0)).await?;
    let accepted = proc.descriptors()? as i64 - fds0 as i64;
    let mut head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    head.resize(head.len() + BIG_BYTES, b'a');
    let head = Bytes::from(head);

    let started = Instant::now();
    let moved = Arc::new(AtomicU64::new(0));
    let (stop, stopped) = watch::channel(false);
    let mut clients = JoinSet::new();
    for stream in streams {
        let client = send_big_head(
            stream,
            head.clone(),
            started,
            moved.clone(),
            stopped.clone(),
        );
        clients.spawn(client);
    }
    // RSS sampled every 50 ms while the clients run, until all have ended, nothing has moved
    // for `BIG_STALLED` or `BIG_LIMIT` is up.
    let mut peak = rss0;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let (mut last_moved, mut moved_at) = (0, Instant::now());
    let mut ended = Vec::new();
    loop {
        tokio::select! {
            joined = clients.join_next() => match joined {
                Some(client) => ended.push(client?),
                None => break,
            },
            _ = tick.tick() => {
                peak = peak.max(proc.memory()?.rss);
                let now = moved.load(Ordering::Relaxed);
                if now != last_moved {
                    (last_moved, moved_at) = (now, Instant::now());
                }
                if started.elapsed() > BIG_LIMIT || moved_at.elapsed() > BIG_STALLED {
                    let _ = stop.send(true);
                }
            }
        }
    }
    let at_end = proc.memory()?;
    peak = peak.max(at_end.rss);
    for client in &mut ended {
        client.conn = None;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after = proc.memory()?.rss;
    let log = LogCounts::of(&proc.log());

    let mut statuses = BTreeMap::<String, usize>::new();
    let mut ends = BTreeMap::<&str, usize>::new();
    for client in &ended {
        *statuses.entry(status_of(&client.received)).or_default() += 1;
        let end = client.end.as_ref().map_or("still open", |(what, _)| what);
        *ends.entry(end).or_default() += 1;
    }
    let last_end = ended
        .iter()
        .filter_map(|c| c.end.as_ref().map(|e| e.1))
        .max();
    let mut sent: Vec<usize> = ended.iter().map(|c| c.sent).collect();
    sent.sort_unstable();
    let sent_figure = match (sent.first(), sent.get(sent.len() / 2), sent.last()) {
        (Some(a), Some(b), Some(c)) => [a, b, c].map(|n| thousands(*n as i64)).join("/"),
        _ => "-".to_string(),
    };
    let answered_431 = statuses.get("431").copied().unwrap_or(0);
    let figure = format!(
        "{} accepted ({failed} failed); RSS {:.1} MiB before; peak sampled {:.1} MiB, **VmHWM \
         {:.1} MiB**; 1 s after the clients left {:.1} MiB; responses {}; connection ends {} \
         (the last {} after the sending began); bytes sent per client min/median/max {sent_figure} \
         of {}; node log lines {log}",
        thousands(accepted),
        mib(rss0),
        mib(peak),
        mib(at_end.peak),
        mib(rss_after),
        counts(&statuses),
        counts(&ends),
        last_end.map_or("-".to_string(), secs),
        thousands(head.len() as i64),
    );
    Ok(vec![Row {
        scenario: "2. 2,000 connections each sending a 389 KiB unfinished head",
        figure,
        target: "peak RSS < 200 MB; 431 for each",
        met: at_end.peak < 200_000_000 && answered_431 == BIG,
    }])
}

/// What one client of [`big_heads`] saw.
#[derive(Debug)]
struct BigHead {
    /// Bytes of the head the socket took.
    sent: usize,
    /// The first bytes of the answer.
    received: Vec<u8>,
    /// How the connection ended (`eof`, `reset` or the error), and when; `None`: still open
    /// when the sending stopped.
    end: Option<(String, Duration)>,
    /// The connection, kept open until the clients' figures are taken.
    conn: Option<(OwnedReadHalf, OwnedWriteHalf)>,
}

/// Sends `head` on `stream` as far as the node takes it while reading what it answers, until
/// the node closes, or `stop` says so.
async fn send_big_head(
    stream: TcpStream,
    head: Bytes,
    started: Instant,
    moved: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) -> BigHead {
    let (mut reader, mut writer) = stream.into_split();
    let sent = AtomicUsize::new(0);
    let mut received = Vec::new();
    let end = {
        let write = async {
            while sent.load(Ordering::Relaxed) < head.len() {
                let n = writer.write(&head[sent.load(Ordering::Relaxed)..]).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::WriteZero.into());
                }
                sent.fetch_add(n, Ordering::Relaxed);
                moved.fetch_add(n as u64, Ordering::Relaxed);
            }
            Ok::<_, std::io::Error>(())
        };
        let read = async {
            let mut buf = [0; 4096];
            loop {
                let n = reader.read(&mut buf).await?;
                if n == 0 {
                    return Ok::<_, std::io::Error>(());
                }
                if received.len() < 64 {
                    received.extend_from_slice(&buf[..n]);
                }
                moved.fetch_add(n as u64, Ordering::Relaxed);
            }
        };
        tokio::pin!(write, read);
        let mut writing = true;
        loop {
            tokio::select! {
                read = &mut read => break Some(ended(read.err(), "eof", started)),
                wrote = &mut write, if writing => match wrote {
                    Ok(()) => writing = false,
                    Err(e) => break Some(ended(Some(e), "", started)),
                },
                _ = stop.wait_for(|stop| *stop) => break None,
            }
        }
    };
    // Whatever was answered before a reset is still readable.
    let mut buf = [0; 4096];
    if let Ok(n @ 1..) = reader.try_read(&mut buf) {
        received.extend_from_slice(&buf[..n]);
    }
    BigHead {
        sent: sent.into_inner(),
        received,
        end,
        conn: Some((reader, writer)),
    }
}

/// How a connection ended: `eof` (or `clean`) without an error; `reset` for a reset or a
/// broken pipe; else the error.
fn ended(error: Option<std::io::Error>, clean: &str, started: Instant) -> (String, Duration) {
    use std::io::ErrorKind::{BrokenPipe, ConnectionReset};
    let what = match error {
        None => clean.to_string(),
        Some(e) if matches!(e.kind(), ConnectionReset | BrokenPipe) => "reset".to_string(),
        Some(e) => e.to_string(),
    };
    (what, started.elapsed())
}

/// The status of an answer's first line (`HTTP/1.1 431 ...`), `none` if nothing came, `other`
/// if something else did.
fn status_of(received: &[u8]) -> String {
    if received.is_empty() {
        return "none".to_string();
    }
    let line = received.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut fields = line.split(|&b| b == b' ');
    match (fields.next(), fields.next()) {
        (Some(b"HTTP/1.1" | b"HTTP/1.0"), Some(code)) if code.len() == 3 => {
            String::from_utf8_lossy(code).into_owned()
        }
        _ => "other".to_string(),
    }
}

/// `431: 2,000, none: 3`, the most common first.
fn counts<K: std::fmt::Display>(counts: &BTreeMap<K, usize>) -> String {
    let mut all: Vec<(&K, &usize)> = counts.iter().collect();
    all.sort_by_key(|(_, n)| std::cmp::Reverse(**n));
    let all: Vec<String> = all
        .iter()
        .map(|(k, n)| format!("{k}: {}", thousands(**n as i64)))
        .collect();
    all.join(", ")
}

/// `count` TCP connections to `proc`'s client API, `batch` at a time, all within `limit`:
/// those established, and how many were not. With `fds0` (the node's descriptors before),
/// each batch waits, at most 2 s, until the node holds it: more at once than its listen
/// backlog would have the kernel drop handshakes, and the clients retry them only after 1 s.
pub(super) async fn open(
    proc: &Proc,
    count: usize,
    batch: usize,
    limit: Duration,
    fds0: Option<usize>,
) -> anyhow::Result<(Vec<TcpStream>, usize)> {
    let deadline = tokio::time::Instant::now() + limit;
    let (mut streams, mut failed) = (Vec::new(), 0);
    while streams.len() + failed < count && tokio::time::Instant::now() < deadline {
        let mut connects = JoinSet::new();
        for _ in 0..batch.min(count - streams.len() - failed) {
            connects.spawn(tokio::time::timeout_at(
                deadline,
                TcpStream::connect(proc.addr),
            ));
        }
        while let Some(connected) = connects.join_next().await {
            match connected? {
                Ok(Ok(stream)) => streams.push(stream),
                _ => failed += 1,
            }
        }
        if let Some(fds0) = fds0 {
            let waited = Instant::now();
            while proc.descriptors()?.saturating_sub(fds0) < streams.len()
                && waited.elapsed() < Duration::from_secs(2)
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    let not_established = count - streams.len();
    Ok((streams, not_established))
}

/// Raises this process's soft limit of open descriptors to at least `want`, if its hard limit
/// allows; fails if it cannot reach `want`.
fn raise_descriptor_limit(want: usize) -> anyhow::Result<()> {
    let want = want as u64;
    let limit = getrlimit(Resource::Nofile);
    let (soft, hard) = (limit.current, limit.maximum);
    if soft.is_some_and(|soft| soft < want) {
        let raised = hard.map_or(want, |hard| hard.min(want));
        let current = Some(raised);
        setrlimit(Resource::Nofile, Rlimit { current, ..limit })?;
        anyhow::ensure!(
            raised >= want,
            "the open file limit is {raised} (hard), too low for {want} connections"
        );
    }
    Ok(())
}

/// Seconds, to the hundredth.
pub(super) fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}
