//! The processes a scenario runs: started, found where they listen, measured in CPU time from
//! `/proc`, and killed with the scenario.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, BufReader};
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
}

impl Proc {
    /// Starts `program` with `args` and waits for the stdout line that starts with `marker` and
    /// goes on with its address (`127.0.0.1:port`, or an `http://` URL of one).
    pub(crate) async fn start(
        program: &Path,
        args: &[String],
        marker: &str,
    ) -> anyhow::Result<Proc> {
        let mut child = Command::new(program)
            .args(args)
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
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
        })
    }

    /// The same process started again, with the same arguments (a node comes back on its peer
    /// port; its client API may move).
    pub(crate) async fn restart(&self) -> anyhow::Result<Proc> {
        Proc::start(&self.program, &self.args, &self.marker).await
    }

    fn pid(&self) -> anyhow::Result<u32> {
        self.child.id().context("the process has exited")
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

    /// Sends `signal` (`-STOP`, `-CONT`, `-KILL`).
    pub(crate) fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let status = std::process::Command::new("kill")
            .args([signal, &self.pid()?.to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill {signal} failed");
        Ok(())
    }
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

/// `GET path` from `addr`, parsed as JSON.
pub(crate) async fn json(addr: SocketAddr, path: &str) -> anyhow::Result<serde_json::Value> {
    let stream = TcpStream::connect(addr).await?;
    let (mut send, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let request = Request::get(path)
        .header(http::header::HOST, "bench")
        .body(Empty::<Bytes>::new())?;
    let body = send
        .send_request(request)
        .await?
        .into_body()
        .collect()
        .await?;
    Ok(serde_json::from_slice(&body.to_bytes())?)
}

/// A group's counter from a node's `/stats`.
pub(crate) async fn counter(api: SocketAddr, name: &str) -> anyhow::Result<u64> {
    let stats = json(api, "/stats").await?;
    stats["groups"]["web"][name]
        .as_u64()
        .with_context(|| format!("no counter {name} in /stats"))
}
