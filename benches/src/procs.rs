//! The processes a scenario runs: started, found where they listen, measured in CPU time and
//! memory from `/proc`, and killed with the scenario.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustix::process::{Pid, Signal, kill_process};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// A process of the benchmark, killed when dropped.
#[derive(Debug)]
pub(crate) struct Proc {
    child: Child,
    /// Where it said it listens (a node: its client API).
    pub(crate) addr: SocketAddr,
    program: PathBuf,
    args: Vec<String>,
    marker: String,
    log: Log,
    /// What it wrote to stderr, with [`Log::Kept`].
    stderr: Arc<Mutex<Vec<u8>>>,
}

/// What becomes of a process's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Log {
    /// Errors only (`RUST_LOG=error`), on the benchmark's stderr.
    Errors,
    /// Everything from `info` up, kept for [`Proc::log`].
    Kept,
}

impl Proc {
    /// Starts `program` with `args` and waits for the stdout line that starts with `marker` and
    /// goes on with its address (`127.0.0.1:port`, or an `http://` URL of one).
    pub(crate) async fn start(
        program: &Path,
        args: &[String],
        marker: &str,
    ) -> anyhow::Result<Proc> {
        Proc::start_with(program, args, marker, Log::Errors).await
    }

    /// As [`start`](Proc::start), with its log kept or not.
    pub(crate) async fn start_with(
        program: &Path,
        args: &[String],
        marker: &str,
        log: Log,
    ) -> anyhow::Result<Proc> {
        let mut child = command(program, args, log)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let stderr = Arc::new(Mutex::new(Vec::new()));
        if let Some(pipe) = child.stderr.take() {
            tokio::spawn(keep(pipe, Arc::clone(&stderr)));
        }
        let stdout = child.stdout.take().expect("piped");
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let Some(line) = lines.next_line().await? else {
                bail!(
                    "{} {args:?} exited before saying where it listens",
                    program.display()
                );
            };
            if let Some(rest) = line.strip_prefix(marker) {
                let rest = rest.trim().trim_start_matches("http://");
                break rest
                    .parse()
                    .with_context(|| format!("an address in {line:?}"))?;
            }
        };
        // Drain what else it prints, so that it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Proc {
            child,
            addr,
            program: program.to_path_buf(),
            args: args.to_vec(),
            marker: marker.to_string(),
            log,
            stderr,
        })
    }

    /// The same process started again, with the same arguments (a node comes back on its peer
    /// port; its client API may move).
    pub(crate) async fn restart(&self) -> anyhow::Result<Proc> {
        Proc::start_with(&self.program, &self.args, &self.marker, self.log).await
    }

    fn pid(&self) -> anyhow::Result<u32> {
        self.child.id().context("the process has exited")
    }

    /// What it has logged so far, with [`Log::Kept`].
    pub(crate) fn log(&self) -> String {
        let kept = self.stderr.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&kept).into_owned()
    }

    /// Its resident memory now and at its peak (`VmRSS`, `VmHWM`), in bytes.
    pub(crate) fn memory(&self) -> anyhow::Result<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?))?;
        let field = |name: &str| -> anyhow::Result<u64> {
            let line = status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .with_context(|| format!("no {name} in /proc status"))?;
            let kib: u64 = line
                .trim_start_matches(':')
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()?;
            Ok(kib * 1024)
        };
        Ok(Memory {
            rss: field("VmRSS")?,
            peak: field("VmHWM")?,
        })
    }

    /// The CPU time it has used so far, user and system.
    pub(crate) fn cpu(&self) -> anyhow::Result<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()?))?;
        // `pid (comm) state ...`: the command may hold spaces, so count fields after its `)`.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .context("a /proc stat line")?
            .1
            .split_whitespace()
            .collect();
        // Fields 14 and 15 of proc(5), utime and stime, in clock ticks.
        let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
        let per_second = rustix::param::clock_ticks_per_second();
        Ok(Duration::from_secs_f64(ticks as f64 / per_second as f64))
    }

    /// Sends `signal` (`Signal::STOP`, `CONT`, `KILL`, `TERM`).
    pub(crate) fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        let pid = i32::try_from(self.pid()?)?;
        let pid = Pid::from_raw(pid).context("a process id of 0")?;
        kill_process(pid, signal).with_context(|| format!("sending {signal:?}"))?;
        Ok(())
    }

    /// The descriptors it holds open now (entries of `/proc/PID/fd`).
    pub(crate) fn descriptors(&self) -> anyhow::Result<usize> {
        Ok(std::fs::read_dir(format!("/proc/{}/fd", self.pid()?))?.count())
    }

    /// Waits at most `limit` for it to exit: how it exited, or `None` if it still runs.
    pub(crate) async fn wait(&mut self, limit: Duration) -> anyhow::Result<Option<ExitStatus>> {
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => Ok(Some(status?)),
            Err(_) => Ok(None),
        }
    }
}

/// A process's resident memory, in bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Memory {
    /// Now (`VmRSS`).
    pub(crate) rss: u64,
    /// The most it has held since it started (`VmHWM`).
    pub(crate) peak: u64,
}

/// `program args`, stdin closed, logging as `log` says.
fn command(program: &Path, args: &[String], log: Log) -> Command {
    let mut command = Command::new(program);
    let (level, stderr) = match log {
        Log::Errors => ("error", Stdio::inherit()),
        Log::Kept => ("info", Stdio::piped()),
    };
    command
        .args(args)
        .env("RUST_LOG", level)
        .stdin(Stdio::null())
        .stderr(stderr);
    command
}

/// Appends what `pipe` gives to `kept` until it ends.
async fn keep(mut pipe: impl AsyncRead + Unpin, kept: Arc<Mutex<Vec<u8>>>) {
    let mut buf = vec![0; 16 * 1024];
    while let Ok(n @ 1..) = pipe.read(&mut buf).await {
        let mut kept = kept.lock().unwrap_or_else(PoisonError::into_inner);
        kept.extend_from_slice(&buf[..n]);
    }
}

/// Runs `program args` to its end, within `limit` (killed past it), its log kept: how it
/// exited and what it wrote to stderr.
pub(crate) async fn run_to_exit(
    program: &Path,
    args: &[String],
    limit: Duration,
) -> anyhow::Result<(ExitStatus, String)> {
    let child = command(program, args, Log::Kept)
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    let output = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .with_context(|| format!("{} {args:?} still ran after {limit:?}", program.display()))??;
    Ok((
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

/// The CPU time of `procs` together.
pub(crate) fn cpu(procs: &[&Proc]) -> anyhow::Result<Duration> {
    procs.iter().map(|p| p.cpu()).sum()
}

/// `alo-node`, next to this binary: built first when run through cargo, with the same profile.
pub(crate) fn alo_node() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let dir = me.parent().context("the binary's directory")?;
    let node = dir.join("alo-node");
    if let Ok(cargo) = std::env::var("CARGO") {
        let profile = match dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => "dev",
            Some(other) => other,
            None => "release",
        };
        let status = std::process::Command::new(cargo)
            .args(["build", "--quiet", "-p", "alo-node", "--profile", profile])
            .status()?;
        anyhow::ensure!(status.success(), "building alo-node failed");
    }
    anyhow::ensure!(
        node.exists(),
        "{} is missing: build it with `cargo build --release -p alo-node`",
        node.display()
    );
    Ok(node)
}

/// A port free on 127.0.0.1 now (bound, then released), for a node's peer address, which its
/// peers must know before it starts.
pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `method path` with `body` to `addr`, on a connection of its own: the status and the body.
pub(crate) async fn call(
    addr: SocketAddr,
    method: http::Method,
    path: &str,
    body: Bytes,
) -> anyhow::Result<(http::StatusCode, Bytes)> {
    let stream = TcpStream::connect(addr).await?;
    let (mut send, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, "bench")
        .body(Full::new(body))?;
    let response = send.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// `GET path` from `addr`, parsed as JSON.
pub(crate) async fn json(addr: SocketAddr, path: &str) -> anyhow::Result<serde_json::Value> {
    let (_, body) = call(addr, http::Method::GET, path, Bytes::new()).await?;
    Ok(serde_json::from_slice(&body)?)
}

/// A counter of group `web` from a node's `/stats`.
pub(crate) async fn counter(api: SocketAddr, name: &str) -> anyhow::Result<u64> {
    group_counter(api, "web", name).await
}

/// A counter of `group` from a node's `/stats`.
pub(crate) async fn group_counter(api: SocketAddr, group: &str, name: &str) -> anyhow::Result<u64> {
    let [value] = group_counters(api, group, [name]).await?;
    Ok(value)
}

/// Counters of group `web` from one read of a node's `/stats`, so that they agree.
pub(crate) async fn counters<const N: usize>(
    api: SocketAddr,
    names: [&str; N],
) -> anyhow::Result<[u64; N]> {
    group_counters(api, "web", names).await
}

/// Counters of `group` from one read of a node's `/stats`.
async fn group_counters<const N: usize>(
    api: SocketAddr,
    group: &str,
    names: [&str; N],
) -> anyhow::Result<[u64; N]> {
    let stats = json(api, "/stats").await?;
    let mut values = [0; N];
    for (value, name) in values.iter_mut().zip(names) {
        *value = stats["groups"][group][name]
            .as_u64()
            .with_context(|| format!("no counter {group}.{name} in /stats"))?;
    }
    Ok(values)
}

/// Nodes that know each other, node 1 first.
#[derive(Debug)]
pub(crate) struct Cluster {
    /// The processes; each one's `addr` is its client API.
    pub(crate) nodes: Vec<Proc>,
    /// Each node's peer server, in the same order.
    pub(crate) peers: Vec<SocketAddr>,
}

/// `count` nodes, each on a peer port chosen here (its peers must know it before it starts)
/// and a client API on any free port; `--peers` lists them all, then `others` (member URLs
/// that are no node of this cluster), and node `i` gets `args(i)` besides.
pub(crate) async fn cluster(
    node: &Path,
    count: usize,
    others: &[String],
    args: impl Fn(usize) -> Vec<String>,
    log: Log,
) -> anyhow::Result<Cluster> {
    let peers: Vec<SocketAddr> = (0..count)
        .map(|_| Ok(SocketAddr::from(([127, 0, 0, 1], free_port()?))))
        .collect::<anyhow::Result<_>>()?;
    let members: Vec<String> = peers
        .iter()
        .map(|p| format!("http://{p}"))
        .chain(others.iter().cloned())
        .collect();
    let mut nodes = Vec::new();
    for (i, peer) in peers.iter().enumerate() {
        let mut node_args: Vec<String> = [
            "--listen",
            &peer.to_string(),
            "--api",
            "127.0.0.1:0",
            "--peers",
            &members.join(","),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        node_args.extend(args(i));
        nodes.push(Proc::start_with(node, &node_args, "alo-node: client API at ", log).await?);
    }
    Ok(Cluster { nodes, peers })
}

/// A directory of its own under the system's temporary directory, removed with what it holds
/// when dropped.
#[derive(Debug)]
pub(crate) struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// `alo-bench-{name}-{pid}-{nanos}`.
    pub(crate) fn new(name: &str) -> anyhow::Result<TempDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::SystemTime::UNIX_EPOCH)?
            .subsec_nanos();
        let dir = format!("alo-bench-{name}-{}-{nanos}", std::process::id());
        let path = std::env::temp_dir().join(dir);
        std::fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(TempDir { path })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A `--peers-file`, always written whole: to a file beside it, then renamed over it, each
/// member on a line of its own ending with a newline, so that a node never reads half a list.
#[derive(Debug)]
pub(crate) struct PeersFile {
    path: PathBuf,
}

impl PeersFile {
    /// `peers` in `dir`, listing `members` (peer addresses).
    pub(crate) fn create(dir: &Path, members: &[SocketAddr]) -> anyhow::Result<PeersFile> {
        let file = PeersFile {
            path: dir.join("peers"),
        };
        file.write(members)?;
        Ok(file)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Lists `members` from now on.
    pub(crate) fn write(&self, members: &[SocketAddr]) -> anyhow::Result<()> {
        let text: String = members.iter().map(|m| format!("http://{m}\n")).collect();
        let next = self.path.with_extension("next");
        std::fs::write(&next, text).with_context(|| format!("writing {}", next.display()))?;
        std::fs::rename(&next, &self.path)
            .with_context(|| format!("renaming {} over {}", next.display(), self.path.display()))
    }
}

/// Waits at most `limit` until the node at `api` has `count` members (`peers` in its `/stats`,
/// itself included): how long it took.
pub(crate) async fn wait_members(
    api: SocketAddr,
    count: usize,
    limit: Duration,
) -> anyhow::Result<Duration> {
    let started = std::time::Instant::now();
    loop {
        let stats = tokio::time::timeout(Duration::from_secs(2), json(api, "/stats")).await;
        let members = match stats {
            Ok(Ok(stats)) => stats["peers"].as_array().map_or(0, |p| p.len()),
            _ => 0,
        };
        if members == count {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(
            started.elapsed() < limit,
            "the node at {api} had {members} members, not {count}, after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
