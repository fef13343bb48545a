//! Nodes run in this process: [`alo_node::run`] on listeners bound to port 0, as the binary
//! runs it on its flags' addresses.

use std::cell::RefCell;
use std::io::Write;
use std::sync::Once;

use alo_node::{Config, Listeners, Reload, run};
use clap::Parser as _;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::client::ClientApi;

/// A node running on this test's runtime: stopped (as by SIGTERM) by [`Node::stop`], ended at
/// once, as by a crash, when dropped.
pub(crate) struct Node {
    /// `http://127.0.0.1:port` of the client API.
    pub(crate) api: String,
    /// `http://127.0.0.1:port` of the peer server: the node's URL.
    pub(crate) url: String,
    /// Reads the node's members again, as SIGHUP does to the binary.
    pub(crate) reload: Reload,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl ClientApi for Node {
    fn api(&self) -> &str {
        &self.api
    }
}

/// A peer and a client listener on 127.0.0.1, each on a port of its own.
pub(crate) async fn bind() -> Listeners {
    let bind = || TcpListener::bind("127.0.0.1:0");
    Listeners {
        peer: bind().await.expect("bind"),
        api: bind().await.expect("bind"),
    }
}

/// `http://` and the peer listener's address: the URL of a node that runs on `listeners`.
pub(crate) fn url_of(listeners: &Listeners) -> String {
    format!("http://{}", listeners.peer.local_addr().expect("bound"))
}

/// The flags `args`, as the binary parses them.
pub(crate) fn config(args: &[&str]) -> Config {
    Config::try_parse_from(std::iter::once("alo-node").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

impl Node {
    /// A node with the flags `args` on listeners of its own.
    pub(crate) async fn start(args: &[&str]) -> Node {
        Node::start_on(bind().await, args)
    }

    /// A node with the flags `args` on `listeners` (`--listen` and `--api` are not used).
    pub(crate) fn start_on(listeners: Listeners, args: &[&str]) -> Node {
        let api = format!("http://{}", listeners.api.local_addr().expect("bound"));
        let url = url_of(&listeners);
        let reload = Reload::new();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run(config(args), listeners, reload.clone(), stopped));
        Node {
            api,
            url,
            reload,
            stop: Some(stop),
            task,
        }
    }

    /// Stops the node as SIGTERM stops the binary, and waits until it has: what it returned.
    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.expect("the node's task")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `n` nodes that know each other through `--peers`, each with the flags `args` besides.
pub(crate) async fn cluster(n: usize, args: &[&str]) -> Vec<Node> {
    let mut listeners = Vec::new();
    for _ in 0..n {
        listeners.push(bind().await);
    }
    let peers: Vec<String> = listeners.iter().map(url_of).collect();
    let peers = peers.join(",");
    let mut all = vec!["--peers", &peers];
    all.extend_from_slice(args);
    listeners
        .into_iter()
        .map(|l| Node::start_on(l, &all))
        .collect()
}

/// Runs a node with `args` on `listeners`, expecting it to refuse to start: its error, with
/// its causes.
pub(crate) async fn refused_on(listeners: Listeners, args: &[&str]) -> String {
    let never = std::future::pending::<()>();
    match run(config(args), listeners, Reload::new(), never).await {
        Ok(()) => panic!("{args:?} must be refused"),
        Err(e) => format!("{e:#}"),
    }
}

/// [`refused_on`] on listeners of its own.
pub(crate) async fn refused(args: &[&str]) -> String {
    refused_on(bind().await, args).await
}

/// What this thread logs from its creation on: a `current_thread` test runs its nodes on its
/// own thread. (One global subscriber writes each thread's lines to that thread's buffer; a
/// subscriber set per thread misses events when tests run in parallel.)
pub(crate) struct Logs(());

thread_local! {
    static LOG: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Writes to this thread's [`LOG`].
struct ThreadLog;

impl Write for ThreadLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        LOG.with_borrow_mut(|log| log.extend_from_slice(bytes));
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    /// Starts capturing.
    pub(crate) fn capture() -> Logs {
        static GLOBAL: Once = Once::new();
        GLOBAL.call_once(|| {
            let subscriber = tracing_subscriber::fmt()
                .with_writer(|| ThreadLog)
                .with_ansi(false)
                .with_max_level(tracing::Level::INFO)
                .finish();
            tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
        });
        LOG.with_borrow_mut(Vec::clear);
        Logs(())
    }

    /// The lines logged so far that contain `needle`.
    pub(crate) fn lines_with(&self, needle: &str) -> Vec<String> {
        LOG.with_borrow(|log| {
            String::from_utf8_lossy(log)
                .lines()
                .filter(|line| line.contains(needle))
                .map(str::to_string)
                .collect()
        })
    }
}
