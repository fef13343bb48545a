//! Scenario 3, a node told to stop (SIGTERM) while a request is stuck in it (a demo load of
//! 60 s) and a client has sent half a head: it must drain for `--shutdown-timeout-ms`, no
//! longer, close what is left and exit 0; a second signal must end it at once, with 130.

use std::ops::Range;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rustix::process::Signal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::connections::secs;
use super::{LogCounts, Row, lone_node};

/// One way of stopping a node.
#[derive(Debug)]
pub(super) struct Case {
    scenario: &'static str,
    /// `--shutdown-timeout-ms`, if not the default (10 s).
    timeout_ms: Option<u64>,
    /// Whether a second SIGTERM follows the first after 0.5 s.
    second_signal: bool,
    /// Whether the stuck clients are there.
    clients: bool,
    target: &'static str,
    /// The exit status wanted.
    code: i32,
    /// When it must exit, from the last signal.
    within: Range<Duration>,
}

/// Every case, in the order they run.
pub(super) const CASES: [Case; 4] = [
    Case {
        scenario: "3a. SIGTERM, no clients (reference)",
        timeout_ms: None,
        second_signal: false,
        clients: false,
        target: "exit 0 within 1 s",
        code: 0,
        within: Duration::ZERO..Duration::from_secs(1),
    },
    Case {
        scenario: "3b. SIGTERM with one request in flight (`--demo-delay-ms 60000`) and one \
                   client that sent half a head, default `--shutdown-timeout-ms` (10 s)",
        timeout_ms: None,
        second_signal: false,
        clients: true,
        target: "exit 0 at the 10 s deadline (10–11 s)",
        code: 0,
        within: Duration::from_secs(10)..Duration::from_secs(11),
    },
    Case {
        scenario: "3c. the same with `--shutdown-timeout-ms 1000`",
        timeout_ms: Some(1_000),
        second_signal: false,
        clients: true,
        target: "exit 0 at the 1 s deadline (1–2 s)",
        code: 0,
        within: Duration::from_secs(1)..Duration::from_secs(2),
    },
    Case {
        scenario: "3d. the same as 3b, a second SIGTERM 0.5 s after the first",
        timeout_ms: None,
        second_signal: true,
        clients: true,
        target: "exit 130 within 0.5 s of the second",
        code: 130,
        within: Duration::ZERO..Duration::from_millis(500),
    },
];

/// How long the node may take to exit before the case is a miss.
const EXIT_LIMIT: Duration = Duration::from_secs(30);

/// Runs `case` on a fresh node.
pub(super) async fn sigterm(node: &Path, case: &Case) -> anyhow::Result<Vec<Row>> {
    let timeout = case.timeout_ms.map(|ms| ms.to_string());
    let mut args = vec!["--demo-delay-ms", "60000"];
    if let Some(timeout) = &timeout {
        args.extend(["--shutdown-timeout-ms", timeout]);
    }
    let mut proc = lone_node(node, &args, None).await?;
    let mut clients = Vec::new();
    if case.clients {
        for head in [
            &b"GET /api/demo/apple HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"GET /api/demo/banana HTTP/1.1\r\nHost: x\r\n",
        ] {
            let connect = TcpStream::connect(proc.addr);
            let mut stream = tokio::time::timeout(Duration::from_secs(2), connect)
                .await
                .context("no connection within 2 s")??;
            stream.write_all(head).await?;
            clients.push(stream);
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let first = Instant::now();
    proc.signal(Signal::TERM)?;
    let mut second = None;
    if case.second_signal {
        tokio::time::sleep(Duration::from_millis(500)).await;
        second = Some(Instant::now());
        proc.signal(Signal::TERM)?;
    }
    let status = proc.wait(EXIT_LIMIT).await?;
    let (after_first, after_second) = (first.elapsed(), second.map(|s| s.elapsed()));
    let mut outcomes = Vec::new();
    for stream in &mut clients {
        outcomes.push(outcome(stream).await);
    }
    // The log pipe ends with the process; what it held is read by now or in a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = LogCounts::of(&proc.log());

    let code = status.and_then(|s| s.code());
    let mut figure = match (status, after_second) {
        (None, _) => format!("did not exit within {} s", EXIT_LIMIT.as_secs()),
        (Some(_), second) => {
            let when = match second {
                Some(second) => format!(
                    "**exit {} after the second signal** ({} after the first)",
                    secs(second),
                    secs(after_first)
                ),
                None => format!("**exit after {}**", secs(after_first)),
            };
            let code = code.map_or("(a signal)".to_string(), |c| c.to_string());
            format!("{when}, code {code}")
        }
    };
    if let [in_flight, half] = &outcomes[..] {
        figure += &format!("; in-flight client: {in_flight}; half-head client: {half}");
    }
    figure += &format!("; node log lines {log}");
    let took = after_second.unwrap_or(after_first);
    Ok(vec![Row {
        scenario: case.scenario,
        figure,
        target: case.target,
        met: code == Some(case.code) && case.within.contains(&took),
    }])
}

/// What a client holds now: `got NNN`, `closed, nothing received`, `reset` or `open, nothing
/// received` (within 0.2 s).
async fn outcome(stream: &mut TcpStream) -> String {
    let mut buf = [0; 4096];
    match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await {
        Err(_) => "open, nothing received".to_string(),
        Ok(Ok(0)) => "closed, nothing received".to_string(),
        Ok(Ok(n)) => {
            let got = &buf[..n];
            match got
                .strip_prefix(b"HTTP/1.1 ")
                .and_then(|rest| rest.get(..3))
            {
                Some(code) => format!("got {}", String::from_utf8_lossy(code)),
                None => format!("got {:?}", String::from_utf8_lossy(&got[..n.min(20)])),
            }
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => "reset".to_string(),
        Ok(Err(e)) => e.to_string(),
    }
}
