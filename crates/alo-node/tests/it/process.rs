//! The real binary: started with ephemeral ports, its output drained into memory so that a
//! node that logs a lot never blocks on a full pipe, and its log kept for assertions.

use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

use crate::client::ClientApi;

/// A running `alo-node`, killed when dropped.
pub(crate) struct Process {
    pub(crate) child: Child,
    /// `http://127.0.0.1:port` of the client API.
    pub(crate) api: String,
    /// `127.0.0.1:port` of the peer server.
    pub(crate) peer: String,
    /// Every line of its stderr (the log) so far.
    log: Arc<Mutex<Vec<String>>>,
    /// The number of log lines, sent on each new one; closed when stderr ends.
    logged: watch::Receiver<usize>,
    /// Log lines before this one were read by [`Process::wait_for_log`].
    read: usize,
}

impl ClientApi for Process {
    fn api(&self) -> &str {
        &self.api
    }
}

impl Process {
    /// Starts the binary with `args` and waits until it says where it listens.
    pub(crate) async fn start(args: &[&str]) -> Process {
        Process::spawn(Command::new(env!("CARGO_BIN_EXE_alo-node")), args).await
    }

    /// As [`start`](Process::start), with the environment variables `env` besides.
    #[cfg_attr(not(feature = "otlp"), allow(dead_code))]
    pub(crate) async fn start_with_env(env: &[(&str, &str)], args: &[&str]) -> Process {
        let mut command = Command::new(env!("CARGO_BIN_EXE_alo-node"));
        command.envs(env.iter().copied());
        Process::spawn(command, args).await
    }

    /// As [`start`](Process::start), with the process's open-file limit, soft and hard, at
    /// `files`.
    pub(crate) async fn start_with_file_limit(files: u32, args: &[&str]) -> Process {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("ulimit -n {files} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_alo-node"));
        Process::spawn(command, args).await
    }

    /// Starts `command` with `args`; a listener `args` do not name is bound on an ephemeral
    /// port of 127.0.0.1, never on its fixed default.
    async fn spawn(mut command: Command, args: &[&str]) -> Process {
        for flag in ["--listen", "--api"] {
            if !args.contains(&flag) {
                command.args([flag, "127.0.0.1:0"]);
            }
        }
        command
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (name, _) in std::env::vars() {
            if name.starts_with("ALO_") {
                command.env_remove(name);
            }
        }
        let mut child = command.spawn().expect("the binary starts");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (lines, logged) = watch::channel(0);
        let stderr = child.stderr.take().expect("piped");
        let kept = Arc::clone(&log);
        drain(stderr, move |line| {
            let mut log = kept.lock().unwrap_or_else(PoisonError::into_inner);
            log.push(line);
            lines.send_replace(log.len());
        });
        // stdout says where the node listens, then is drained like stderr.
        let (said, mut heard) = watch::channel(Vec::<String>::new());
        drain(child.stdout.take().expect("piped"), move |line| {
            said.send_modify(|lines| lines.push(line));
        });
        let listening = async {
            let addresses = heard
                .wait_for(|lines| lines.iter().any(|l| l.contains("client API at")))
                .await
                .expect("the node says where it listens before it exits");
            let after = |prefix: &str| {
                addresses
                    .iter()
                    .find_map(|line| line.strip_prefix(prefix))
                    .map(str::to_string)
                    .expect("printed")
            };
            (
                after("alo-node: client API at "),
                after("alo-node: peer server on "),
            )
        };
        let (api, peer) = tokio::time::timeout(Duration::from_secs(30), listening)
            .await
            .expect("the node listens within 30 s");
        Process {
            child,
            api,
            peer,
            log,
            logged,
            read: 0,
        }
    }

    /// Waits for a log line containing `needle` after those read by the last wait (30 s at
    /// most, so that a node that never logs it fails the test instead of hanging it).
    pub(crate) async fn wait_for_log(&mut self, needle: &str) {
        let wait = async {
            loop {
                self.logged.borrow_and_update();
                {
                    let log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
                    if let Some(i) = log[self.read..].iter().position(|l| l.contains(needle)) {
                        self.read += i + 1;
                        return;
                    }
                }
                if self.logged.changed().await.is_err() {
                    let log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
                    if !log[self.read..].iter().any(|l| l.contains(needle)) {
                        panic!("the node exited before logging {needle:?}: {log:#?}");
                    }
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(30), wait)
            .await
            .unwrap_or_else(|_| panic!("the node did not log {needle:?} within 30 s"));
    }

    /// Every line of its log so far.
    pub(crate) fn log(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
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
}

/// Reads `pipe` line by line on a task of its own until it ends, giving each line to `keep`.
fn drain(
    pipe: impl AsyncRead + Unpin + Send + 'static,
    mut keep: impl FnMut(String) + Send + 'static,
) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(pipe).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            keep(line);
        }
    });
}
