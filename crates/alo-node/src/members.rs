//! Where the node learns who is in the cluster. A [`MemberSource`] (the `--peers` flag, a
//! peers file, DNS) is read at start, again on its interval and whenever asked (SIGHUP), and a
//! list it gives is applied to the pool only when it is usable and new.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use alo_http::HttpPool;
use anyhow::Context as _;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::Config;
use crate::dns::DnsSource;

/// How often the peers file is read again.
const PEERS_FILE_POLL: Duration = Duration::from_secs(1);

/// A source of member lists. A further one (say, Consul's catalog) is one more implementation
/// and one more flag in [`keep_members`].
pub(crate) trait MemberSource: Send + 'static {
    /// The member URLs now, or why they cannot be had. `fresh` asks a source that caches
    /// (DNS) to look past its cache: it is set when the node starts and when it is asked.
    fn read(&mut self, fresh: bool) -> impl Future<Output = anyhow::Result<Vec<String>>> + Send;

    /// How often to read it again unasked; `None`: only when asked.
    fn interval(&self) -> Option<Duration>;

    /// Whether the node may start before the source names it. DNS does: a new node's record
    /// appears only once the node is up, so the node starts alone and not ready. A flag or a
    /// file does not: one that cannot be used stops the node at start.
    fn may_start_without(&self) -> bool {
        false
    }
}

/// Asks a running node to read its members again now: what SIGHUP does to the binary. Clones
/// ask the same node.
#[derive(Clone, Debug)]
pub struct Reload {
    requests: mpsc::UnboundedSender<oneshot::Sender<()>>,
    /// Taken by the node that runs with this handle.
    receiver: Arc<Mutex<Option<mpsc::UnboundedReceiver<oneshot::Sender<()>>>>>,
}

impl Reload {
    /// A handle for one node, to give to [`run`](crate::run).
    pub fn new() -> Self {
        let (requests, receiver) = mpsc::unbounded_channel();
        Reload {
            requests,
            receiver: Arc::new(Mutex::new(Some(receiver))),
        }
    }

    /// Asks the node to read its member source now, and waits until it has: the list is
    /// applied, or kept because the new one was unusable, the same, or (with
    /// `--peers-dns-confirm`) seen once so far. Asked before the node runs, it waits for the
    /// node's first read after its start; once the node has stopped, it returns at once.
    pub async fn now(&self) {
        let (done, read) = oneshot::channel();
        if self.requests.send(done).is_ok() {
            let _ = read.await;
        }
    }

    pub(crate) fn take_requests(&self) -> Option<mpsc::UnboundedReceiver<oneshot::Sender<()>>> {
        self.receiver
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

impl Default for Reload {
    fn default() -> Self {
        Reload::new()
    }
}

/// What `/stats`, `/metrics` and `/readyz` show of the membership.
#[derive(Debug)]
pub(crate) struct Membership {
    /// The source, as logs name it: `--peers`, `the peers file PATH`, `DNS NAME` or `none:
    /// this node alone`.
    pub(crate) source: String,
    /// Set once a member list (which always includes this node) is applied; never cleared,
    /// since a later read that fails keeps that list.
    ready: AtomicBool,
    /// Applied lists that changed the members, after the first.
    changes: AtomicU64,
    /// Reads that failed or gave a list that could not be used.
    failures: AtomicU64,
}

impl Membership {
    pub(crate) fn new(source: String) -> Self {
        Membership {
            source,
            ready: AtomicBool::new(false),
            changes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    pub(crate) fn changes(&self) -> u64 {
        self.changes.load(Ordering::Relaxed)
    }

    pub(crate) fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

/// How the flags name the member source.
pub(crate) fn describe_source(config: &Config) -> String {
    if let Some(name) = &config.peers_dns {
        format!("DNS {name}")
    } else if let Some(file) = &config.peers_file {
        format!("the peers file {}", file.display())
    } else if config.peers.is_empty() {
        "none: this node alone".to_string()
    } else {
        "--peers".to_string()
    }
}

/// Reads the source the flags name (at most one of `--peers-dns`, `--peers-file` and `--peers`;
/// none is a cluster of this node alone) and keeps the pool's members from it, on a task that
/// takes `requests` from a [`Reload`].
///
/// # Errors
/// When the source cannot be set up, or a source that must work at start does not.
pub(crate) async fn keep_members(
    config: &Config,
    pool: &Arc<HttpPool>,
    membership: &Arc<Membership>,
    requests: mpsc::UnboundedReceiver<oneshot::Sender<()>>,
) -> anyhow::Result<JoinHandle<()>> {
    let view = View {
        pool: Arc::clone(pool),
        membership: Arc::clone(membership),
        confirm: config.peers_dns_confirm,
        applied: None,
        pending: None,
        failing: 0,
    };
    if let Some(name) = &config.peers_dns {
        let interval = Duration::from_millis(config.peers_dns_interval_ms);
        let source = DnsSource::new(name, config.peers_dns_server, interval)?;
        Keeper { source, view }.start(requests).await
    } else if let Some(file) = &config.peers_file {
        let source = PeersFile(file.clone());
        Keeper { source, view }.start(requests).await
    } else {
        // `--peers`, or no source: this node alone.
        let mut members = config.peers.clone();
        if members.is_empty() {
            members.push(pool.self_url().to_string());
        }
        let source = Peers(members);
        Keeper { source, view }.start(requests).await
    }
}

/// `--peers`: a list that does not change.
struct Peers(Vec<String>);

impl MemberSource for Peers {
    async fn read(&mut self, _fresh: bool) -> anyhow::Result<Vec<String>> {
        Ok(self.0.clone())
    }

    fn interval(&self) -> Option<Duration> {
        None
    }
}

/// `--peers-file`: one URL a line, `#` comments, read every [`PEERS_FILE_POLL`].
struct PeersFile(PathBuf);

impl MemberSource for PeersFile {
    async fn read(&mut self, _fresh: bool) -> anyhow::Result<Vec<String>> {
        read_peers_file(&self.0).await
    }

    fn interval(&self) -> Option<Duration> {
        Some(PEERS_FILE_POLL)
    }
}

/// Reads a peers file: the member URLs, or why the file cannot be used. A file is used whole
/// or not at all: one being rewritten in place may be read half written, so it must end with
/// a newline, and it must name at least one member.
async fn read_peers_file(file: &Path) -> anyhow::Result<Vec<String>> {
    let text = tokio::fs::read_to_string(file)
        .await
        .with_context(|| format!("reading the peers file {}", file.display()))?;
    anyhow::ensure!(
        text.ends_with('\n'),
        "the peers file {} does not end with a newline: it may be half written (write it to a temporary file, then rename it)",
        file.display()
    );
    let urls: Vec<String> = text
        .lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .filter(|line| !line.is_empty())
        .map(str::to_string)
        .collect();
    anyhow::ensure!(
        !urls.is_empty(),
        "the peers file {} names no member",
        file.display()
    );
    Ok(urls)
}

/// A source, and the view it keeps.
struct Keeper<S> {
    source: S,
    view: View,
}

/// The members applied, and what deciding on a new list needs. A list is applied only when it
/// is not empty, differs from the one applied (and, with `confirm`, was given twice in a row)
/// and includes this node.
struct View {
    pool: Arc<HttpPool>,
    membership: Arc<Membership>,
    /// Apply a new list only when two reads in a row gave it, so that one flapping answer
    /// does not move keys back and forth.
    confirm: bool,
    /// The list applied last, sorted and without duplicates, as the source spelled it.
    applied: Option<Vec<String>>,
    /// A new list read once, waiting for a second read to confirm it.
    pending: Option<Vec<String>>,
    /// Failed reads since the last good one: a streak is logged once, at its start, so that a
    /// name server that is down for an hour is one warning, not one per interval.
    failing: u64,
}

impl<S: MemberSource> Keeper<S> {
    /// Reads the source once (at once if it must work at start), then keeps reading it on a
    /// task: on its interval, and when a [`Reload`] asks.
    async fn start(
        mut self,
        mut requests: mpsc::UnboundedReceiver<oneshot::Sender<()>>,
    ) -> anyhow::Result<JoinHandle<()>> {
        let waits = self.source.may_start_without();
        if !waits {
            let members = self.source.read(true).await?;
            self.view.apply(members)?;
        }
        Ok(tokio::spawn(async move {
            if waits {
                self.step(true).await;
            }
            let every = self.source.interval();
            loop {
                let asked = tokio::select! {
                    Some(done) = requests.recv() => Some(done),
                    () = sleep_or_never(every) => None,
                };
                self.step(asked.is_some()).await;
                if let Some(done) = asked {
                    let _ = done.send(());
                }
            }
        }))
    }

    /// Reads the source (past its cache when `asked`) and applies what it gives.
    async fn step(&mut self, asked: bool) {
        let read = self.source.read(asked).await;
        self.view.settle(read, asked);
    }
}

impl View {
    /// Applies a read's list, counting and logging the outcome: an applied change, always; a
    /// failure, at the start of a streak, or always when `asked` (an operator who sends
    /// SIGHUP wants to know).
    fn settle(&mut self, read: anyhow::Result<Vec<String>>, asked: bool) {
        let applied = read.and_then(|members| self.apply(members));
        let source = &self.membership.source;
        match applied {
            Ok(()) if self.failing > 0 => {
                tracing::info!(%source, failed_reads = self.failing, "the member source answers again");
                self.failing = 0;
            }
            Ok(()) => {}
            Err(e) => {
                self.membership.failures.fetch_add(1, Ordering::Relaxed);
                if self.failing == 0 || asked {
                    tracing::warn!(%source, error = %format!("{e:#}"), "kept the members: the member source gave no usable list");
                }
                self.failing += 1;
            }
        }
    }

    /// Applies `members` if they are new (and confirmed). An error says why they are not
    /// used; the members are then unchanged.
    fn apply(&mut self, mut members: Vec<String>) -> anyhow::Result<()> {
        let membership = Arc::clone(&self.membership);
        let source = &membership.source;
        members.sort();
        members.dedup();
        anyhow::ensure!(!members.is_empty(), "{source} names no member");
        if self.applied.as_ref() == Some(&members) {
            self.pending = None;
            return Ok(());
        }
        // The first list is applied at once: before it this node serves alone, not ready, so
        // there is nothing to protect.
        if self.confirm && self.applied.is_some() && self.pending.as_ref() != Some(&members) {
            tracing::info!(%source, ?members, "a new member list: applied if the next read gives it too");
            self.pending = Some(members);
            return Ok(());
        }
        let before = self.pool.members();
        self.pool.set_members(&members)?;
        let after = self.pool.members();
        let first = self.applied.is_none();
        self.applied = Some(members);
        self.pending = None;
        self.membership.ready.store(true, Ordering::Relaxed);
        let added: Vec<&String> = after.iter().filter(|m| !before.contains(m)).collect();
        let removed: Vec<&String> = before.iter().filter(|m| !after.contains(m)).collect();
        if first {
            tracing::info!(%source, members = ?after, "members set");
        } else if !added.is_empty() || !removed.is_empty() {
            self.membership.changes.fetch_add(1, Ordering::Relaxed);
            tracing::info!(%source, ?added, ?removed, members = after.len(), "members changed");
        }
        Ok(())
    }
}

/// Completes after `every`, or never.
async fn sleep_or_never(every: Option<Duration>) {
    match every {
        Some(every) => tokio::time::sleep(every).await,
        None => std::future::pending().await,
    }
}
