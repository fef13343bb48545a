//! Starting the binary, reading where it listens, and asking it over HTTP.

use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, Command};

/// A running `alo-node`, killed when dropped.
pub(crate) struct Node {
    pub(crate) child: Child,
    /// `http://127.0.0.1:port` of the client API.
    pub(crate) api: String,
    pub(crate) stderr: Lines<BufReader<ChildStderr>>,
}

impl Node {
    /// Starts the binary with `args` and waits until it says where its client API is.
    pub(crate) async fn start(args: &[&str]) -> Node {
        Node::spawn(Command::new(env!("CARGO_BIN_EXE_alo-node")), args).await
    }

    /// As [`start`](Node::start), with the process's open-file limit, soft and hard, at
    /// `files`.
    pub(crate) async fn start_with_file_limit(files: u32, args: &[&str]) -> Node {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("ulimit -n {files} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_alo-node"));
        Node::spawn(command, args).await
    }

    async fn spawn(mut command: Command, args: &[&str]) -> Node {
        command
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (name, _) in std::env::vars() {
            if name.starts_with("ALO_") {
                command.env_remove(name);
            }
        }
        let mut child = command.spawn().expect("the binary starts");
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let mut lines = BufReader::new(stdout).lines();
        let api = loop {
            let line = lines
                .next_line()
                .await
                .expect("stdout readable")
                .expect("the node says where its API is before it exits");
            if let Some(url) = line.strip_prefix("alo-node: client API at ") {
                break url.to_string();
            }
        };
        // Keep draining stdout so the node never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Node {
            child,
            api,
            stderr: BufReader::new(stderr).lines(),
        }
    }

    /// GET `path` from the client API.
    pub(crate) async fn get(&self, path: &str) -> (StatusCode, HeaderMap, Bytes) {
        get(&format!("{}{path}", self.api)).await
    }

    /// `method path` with `headers` and `body` on the client API.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (StatusCode, HeaderMap, Bytes) {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.api));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
            .expect("valid request");
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        exchange(client.request(request)).await
    }

    /// Reads the log until a line containing `needle` (30 s at most, so that a node that never
    /// logs it fails the test instead of hanging it).
    pub(crate) async fn wait_for_log(&mut self, needle: &str) {
        let read = async {
            while let Some(line) = self.stderr.next_line().await.expect("stderr readable") {
                if line.contains(needle) {
                    return;
                }
            }
            panic!("the node exited before logging {needle:?}");
        };
        tokio::time::timeout(Duration::from_secs(30), read)
            .await
            .unwrap_or_else(|_| panic!("the node did not log {needle:?} within 30 s"));
    }

    /// Sends SIGTERM.
    pub(crate) fn terminate(&self) {
        self.signal("-TERM");
    }

    /// Sends SIGHUP.
    pub(crate) fn hangup(&self) {
        self.signal("-HUP");
    }

    fn signal(&self, which: &str) {
        let pid = self.child.id().expect("running");
        let status = std::process::Command::new("kill")
            .args([which, &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Asks the client API for `path` on a task of its own, for a request left in flight.
    pub(crate) fn get_in_background(&self, path: &str) -> tokio::task::JoinHandle<()> {
        let url = format!("{}{path}", self.api);
        tokio::spawn(async move {
            let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
            let _ = client.get(url.parse().expect("a URI")).await;
        })
    }
}

/// Runs the binary with `args`, expecting it to refuse to start: it must exit, non-zero, within
/// 30 s. Its log.
pub(crate) async fn refused(args: &[&str]) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_alo-node"));
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (name, _) in std::env::vars() {
        if name.starts_with("ALO_") {
            command.env_remove(name);
        }
    }
    let output = tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .expect("it stops at once instead of serving")
        .expect("the binary runs");
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "it must refuse: {log}");
    log
}

/// GET `url`.
pub(crate) async fn get(url: &str) -> (StatusCode, HeaderMap, Bytes) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let request = Request::get(url).body(Empty::new()).expect("valid request");
    exchange(client.request(request)).await
}

/// A request's answer, with a generous bound so that a broken node fails the test instead of
/// hanging it.
async fn exchange(
    request: hyper_util::client::legacy::ResponseFuture,
) -> (StatusCode, HeaderMap, Bytes) {
    let exchange = async {
        let response = request.await.expect("the node answers");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        (parts.status, parts.headers, body)
    };
    tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .expect("answered within 30 s")
}

/// A port free on 127.0.0.1 right now (bound, then released).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("bound")
        .port()
}

/// `n` node processes that know each other, each started with `args` besides its addresses and
/// the members: their peer ports, and the nodes.
pub(crate) async fn cluster(n: usize, args: &[&str]) -> (Vec<u16>, Vec<Node>) {
    let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
    let peers: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    let peers = peers.join(",");
    let mut nodes = Vec::new();
    for port in &ports {
        let listen = format!("127.0.0.1:{port}");
        let mut all = vec![
            "--listen",
            &listen,
            "--api",
            "127.0.0.1:0",
            "--peers",
            &peers,
        ];
        all.extend_from_slice(args);
        nodes.push(Node::start(&all).await);
    }
    (ports, nodes)
}

/// One group's stats from `/stats`.
pub(crate) async fn stats(node: &Node, group: &str) -> serde_json::Value {
    let (status, _, body) = node.get("/stats").await;
    assert_eq!(status, StatusCode::OK);
    let all: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    all["groups"][group].clone()
}
