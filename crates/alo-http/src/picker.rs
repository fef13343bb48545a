//! The picker: this node's view of the cluster, and the `PeerPicker` over it.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use alo_group::{FILL_GUARD, Peer, PeerPicker};
use alo_hashring::HashRing;

use crate::client::PeerClient;
use crate::health::{HealthOptions, PeerStats};
use crate::{DEFAULT_BASE_PATH, Error, PeerSecrets};

/// How long a connection to a peer may take to open unless told otherwise: long for a LAN,
/// short against a load deadline.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(250);

/// The most keys one batch get carries unless told otherwise.
pub const DEFAULT_MAX_BATCH_KEYS: usize = 64;

/// The least silence, while requests wait on a member, that makes it suspect of a stall unless
/// told otherwise (see [`PoolOptionsBuilder::stall_after`]).
pub const DEFAULT_STALL_AFTER: Duration = Duration::from_millis(100);

/// How long after the members change a new owner peeks at a key's previous owner unless told
/// otherwise (see [`PoolOptionsBuilder::peek_window`]).
pub const DEFAULT_PEEK_WINDOW: Duration = Duration::from_secs(60);

/// How a pool talks to the other members, and when it gives up on one; made with
/// [`PoolOptions::builder`], or [`PoolOptions::default`].
#[derive(Clone, Debug)]
pub struct PoolOptions {
    pub(crate) base_path: String,
    pub(crate) connect_timeout: Duration,
    pub(crate) max_response_bytes: usize,
    replicas: usize,
    pub(crate) max_batch_keys: usize,
    pub(crate) health: HealthOptions,
    pub(crate) secrets: Option<PeerSecrets>,
    peek_window: Duration,
}

/// Builds [`PoolOptions`]; every setting is checked in [`build`](PoolOptionsBuilder::build).
#[derive(Clone, Debug)]
pub struct PoolOptionsBuilder {
    options: PoolOptions,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            base_path: DEFAULT_BASE_PATH.to_string(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            max_response_bytes: alo_group::DEFAULT_MAX_VALUE_BYTES,
            replicas: alo_hashring::DEFAULT_REPLICAS,
            max_batch_keys: DEFAULT_MAX_BATCH_KEYS,
            health: HealthOptions {
                failures: 3,
                probe_timeout: Duration::from_millis(500),
                backoff: Duration::from_secs(1),
                max_backoff: Duration::from_secs(30),
                stall_after: DEFAULT_STALL_AFTER,
            },
            secrets: None,
            peek_window: DEFAULT_PEEK_WINDOW,
        }
    }
}

impl PoolOptions {
    /// A builder starting from the defaults.
    pub fn builder() -> PoolOptionsBuilder {
        PoolOptionsBuilder {
            options: PoolOptions::default(),
        }
    }
}

impl PoolOptionsBuilder {
    /// The path under which members serve groups (default `/_alo/`); must match their
    /// `ServerOptions`.
    pub fn base_path(mut self, base_path: impl Into<String>) -> Self {
        self.options.base_path = base_path.into();
        self
    }

    /// How long opening a connection to a member may take (default 250 ms). A member that does
    /// not connect in time is unreachable: its key is loaded locally. How long a request may
    /// take is not set here: every request has its load's or its write's deadline.
    pub fn connect_timeout(mut self, connect_timeout: Duration) -> Self {
        self.options.connect_timeout = connect_timeout;
        self
    }

    /// The largest response accepted from a member (default
    /// `alo_group::DEFAULT_MAX_VALUE_BYTES`, 16 MiB). Keep it at least the largest value an owner
    /// serves, or a non-owner cannot fetch that value and loads it itself.
    pub fn max_response_bytes(mut self, max_response_bytes: usize) -> Self {
        self.options.max_response_bytes = max_response_bytes;
        self
    }

    /// The cluster's secrets: every request to a member then carries a proof made with the
    /// first (see [`PeerSecrets`]). Give the servers the same secrets
    /// (`ServerOptionsBuilder::peer_secrets`).
    pub fn secrets(mut self, secrets: PeerSecrets) -> Self {
        self.options.secrets = Some(secrets);
        self
    }

    /// How many failures in a row (connect errors or timeouts, resets, requests and probes
    /// without an answer) mark a member down (default 3, at least 1). While down, its keys load
    /// locally at once and writes skip it; a probe after a backoff brings it back.
    pub fn down_after(mut self, failures: u32) -> Self {
        self.options.health.failures = failures;
        self
    }

    /// How long a probe of a member may take (default 500 ms). A request that has waited this
    /// long asks for a probe, one at a time per member.
    pub fn probe_timeout(mut self, probe_timeout: Duration) -> Self {
        self.options.health.probe_timeout = probe_timeout;
        self
    }

    /// The first wait before probing a down member (default 1 s), doubled after each probe that
    /// fails, up to `max` (default 30 s, at least `first`).
    pub fn backoff(mut self, first: Duration, max: Duration) -> Self {
        self.options.health.backoff = first;
        self.options.health.max_backoff = max.max(first);
        self
    }

    /// The most keys one batch get asks a member for (default 64, at least 1); 1 turns batching
    /// off.
    ///
    /// Keys bound for the same member and group while the pool is busy go in one request (see
    /// the crate README, "Batch gets"): a batch costs each side about one request's work,
    /// however many keys it carries. A key asked for alone, with nothing else to send, waits
    /// no longer than the runtime takes to run the other tasks ready at that moment.
    pub fn max_batch_keys(mut self, keys: usize) -> Self {
        self.options.max_batch_keys = keys;
        self
    }

    /// The least time without an answer, while requests wait on a member, after which it is
    /// suspected of a stall (default 100 ms; also at least 20 times its usual latency): new keys
    /// then go to the member that takes its place, and a quick probe decides. A member that
    /// only is slow answers it and is sent keys again, its waiting requests waiting on; when the
    /// quick probe goes unanswered too, the requests waiting on the member go to its successor,
    /// and the usual probes go on until it answers or is marked down.
    pub fn stall_after(mut self, stall_after: Duration) -> Self {
        self.options.health.stall_after = stall_after;
        self
    }

    /// How long after the members change (or this node starts) a node that misses a key it owns
    /// asks the key's successor, which held it before, with a peek (default 60 s): long enough
    /// for a warm cluster's hot keys to be asked for once. After it, a node pays nothing for the
    /// change.
    pub fn peek_window(mut self, peek_window: Duration) -> Self {
        self.options.peek_window = peek_window;
        self
    }

    /// Virtual nodes per member on the ring (default
    /// `alo_hashring::DEFAULT_REPLICAS`, at least 1); every node of a cluster must use the same.
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.options.replicas = replicas;
        self
    }

    /// The options.
    ///
    /// # Errors
    /// [`Error::InvalidBasePath`] unless the base path starts and ends with `/`;
    /// [`Error::InvalidLimit`] for a zero connect or probe timeout, backoff, `down_after`,
    /// `max_batch_keys` or `replicas`.
    pub fn build(self) -> Result<PoolOptions, Error> {
        let options = self.options;
        crate::check_base_path(&options.base_path)?;
        let health = &options.health;
        let checks = [
            (
                options.connect_timeout.is_zero(),
                "connect_timeout must be above zero",
            ),
            (
                health.probe_timeout.is_zero(),
                "probe_timeout must be above zero",
            ),
            (health.backoff.is_zero(), "the backoff must be above zero"),
            (
                health.stall_after.is_zero(),
                "stall_after must be above zero",
            ),
            (health.failures == 0, "down_after must be at least 1"),
            (
                options.max_batch_keys == 0,
                "max_batch_keys must be at least 1",
            ),
            (options.replicas == 0, "replicas must be at least 1"),
        ];
        match checks.into_iter().find(|(bad, _)| *bad) {
            Some((_, why)) => Err(Error::InvalidLimit(why)),
            None => Ok(options),
        }
    }
}

/// This node's view of the cluster: its own URL, the members, the hash ring over them and, for
/// each other member, a client with its own keep-alive connections and health. It is the
/// [`PeerPicker`] of the node's groups: the ring's owner of a key is asked over HTTP, or, when
/// the owner is this node, nobody. (Named for groupcache's `HTTPPool`, which it answers to.)
///
/// [`set_members`](HttpPool::set_members) builds a new ring and swaps it in whole, so gets in
/// flight finish with the members they started with.
pub struct HttpPool {
    self_url: String,
    options: PoolOptions,
    members: RwLock<Arc<Members>>,
    /// Since when the member lists given leave this node out (refused, see
    /// [`set_members`](HttpPool::set_members)); `None` while the last one named it.
    left_out: Mutex<Option<Instant>>,
}

/// One membership: the ring and a client per other member.
struct Members {
    ring: HashRing<String>,
    clients: HashMap<String, Arc<PeerClient>>,
    /// When the members last changed (or this node started): within the peek window after it,
    /// a new owner asks a key's successor, which held it before, before loading it.
    changed: Instant,
}

impl HttpPool {
    /// A pool for the node reachable at `self_url` (e.g. `http://10.0.0.1:8001`), alone until
    /// [`set_members`](HttpPool::set_members). Needs a tokio runtime when it sends requests.
    ///
    /// # Errors
    /// [`Error::InvalidUrl`] when `self_url` is not `http://host:port`, or names a wildcard
    /// address (`0.0.0.0`, `[::]`), which peers cannot reach.
    pub fn new(self_url: &str, options: PoolOptions) -> Result<Arc<Self>, Error> {
        let normalized = normalize(self_url)?;
        let host = normalized
            .trim_start_matches("http://")
            .rsplit_once(':')
            .map_or("", |(host, _)| host);
        if matches!(host, "0.0.0.0" | "[::]" | "[0:0:0:0:0:0:0:0]") {
            return Err(Error::InvalidUrl {
                url: self_url.to_string(),
                reason: "a wildcard address is where a node listens, not where peers reach it",
            });
        }
        let self_url = normalized;
        let pool = HttpPool {
            members: RwLock::new(Arc::new(Members {
                ring: HashRing::with_replicas(options.replicas),
                clients: HashMap::new(),
                changed: now(),
            })),
            self_url,
            options,
            left_out: Mutex::new(None),
        };
        pool.set_members(std::iter::empty::<&str>())?;
        Ok(Arc::new(pool))
    }

    /// This node's URL, as normalized (no trailing slash).
    pub fn self_url(&self) -> &str {
        &self.self_url
    }

    /// Replaces the members with `urls`, which must include this node's own URL (as it
    /// normalizes); an empty list makes this node a cluster of one. URLs are normalized before
    /// they go on the ring (`HTTP://Host` is `http://host:80`), and duplicates count once.
    ///
    /// # Errors
    /// [`Error::InvalidUrl`] for the first URL that is not `http://host:port`;
    /// [`Error::NotAMember`] when the list leaves this node out, which would make it send its
    /// own keys to others (or to itself under another name). The membership is then unchanged.
    pub fn set_members<I, S>(&self, urls: I) -> Result<(), Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut members = Vec::new();
        for url in urls {
            let url = normalize(url.as_ref())?;
            if !members.contains(&url) {
                members.push(url);
            }
        }
        if members.is_empty() {
            members.push(self.self_url.clone());
        }
        let mut left_out = self.left_out.lock().unwrap_or_else(PoisonError::into_inner);
        if !members.contains(&self.self_url) {
            left_out.get_or_insert_with(now);
            return Err(Error::NotAMember {
                self_url: self.self_url.clone(),
                members,
            });
        }
        let mut ring = HashRing::with_replicas(self.options.replicas);
        ring.extend(members.iter().cloned());
        let old = self.current();
        let changed = match old.ring.nodes().eq(ring.nodes()) {
            true => old.changed,
            false => now(),
        };
        // A member that stays keeps its client, and with it its connections and health.
        let clients = members
            .into_iter()
            .filter(|m| *m != self.self_url)
            .map(|member| {
                let client =
                    old.clients.get(&member).cloned().unwrap_or_else(|| {
                        Arc::new(PeerClient::new(member.clone(), &self.options))
                    });
                (member, client)
            })
            .collect();
        let members = Arc::new(Members {
            ring,
            clients,
            changed,
        });
        *self.members.write().unwrap_or_else(PoisonError::into_inner) = members;
        *left_out = None;
        Ok(())
    }

    /// The members, this node included, in the order given.
    pub fn members(&self) -> Vec<String> {
        self.current().ring.nodes().cloned().collect()
    }

    /// The member that owns `key`.
    pub fn owner(&self, key: &[u8]) -> String {
        let members = self.current();
        members
            .ring
            .node_for(key)
            .cloned()
            .unwrap_or_else(|| self.self_url.clone())
    }

    /// Every other member's health, sorted by URL.
    pub fn peer_stats(&self) -> Vec<PeerStats> {
        let members = self.current();
        let mut stats: Vec<PeerStats> = members.clients.values().map(|c| c.stats()).collect();
        stats.sort_by(|a, b| a.url.cmp(&b.url));
        stats
    }

    /// The client of `key`'s owner, unless it is this node.
    fn client_for(&self, key: &[u8]) -> Option<Arc<PeerClient>> {
        let members = self.current();
        let owner = members.ring.node_for(key)?;
        members.clients.get(owner).cloned()
    }

    fn current(&self) -> Arc<Members> {
        Arc::clone(&self.members.read().unwrap_or_else(PoisonError::into_inner))
    }
}

impl PeerPicker for HttpPool {
    /// The key's owner; while it is down or suspected of a stall, the next member of the key's
    /// preference list (the ring's order from the key) that is not: every node that sees the
    /// owner down picks the same one. `None` when that is this node.
    fn pick_peer(&self, key: &[u8]) -> Option<Arc<dyn Peer>> {
        let members = self.current();
        let owner = members.ring.node_for(key)?;
        let client = members.clients.get(owner)?;
        if client.is_routable() {
            return Some(Arc::clone(client) as Arc<dyn Peer>);
        }
        for member in members.ring.preference(key).skip(1) {
            let client = members.clients.get(member)?;
            if client.is_routable() {
                return Some(Arc::clone(client) as Arc<dyn Peer>);
            }
        }
        None
    }

    fn pick_owner(&self, key: &[u8]) -> Option<Arc<dyn Peer>> {
        self.client_for(key).map(|client| client as Arc<dyn Peer>)
    }

    fn other_members(&self) -> Vec<Arc<dyn Peer>> {
        let members = self.current();
        let clients = members.clients.values();
        clients.map(|c| Arc::clone(c) as Arc<dyn Peer>).collect()
    }

    fn members(&self) -> usize {
        self.current().ring.len().max(1)
    }

    /// Within the peek window after the members changed (or this node started), for a key
    /// this node owns: the key's successor, the next member of its preference list, if it is up.
    /// It held the key before: when this node joined, the keys it took were its successor's;
    /// while this node was away (down, or leaving and handing over), its keys went there.
    fn previous_owner(&self, key: &[u8]) -> Option<Arc<dyn Peer>> {
        let members = self.current();
        if now().saturating_duration_since(members.changed) > self.options.peek_window {
            return None;
        }
        let [owner, successor] = members.ring.nodes_for(key, 2)[..] else {
            return None;
        };
        if *owner != self.self_url {
            return None;
        }
        let client = members.clients.get(successor)?;
        (!client.is_down()).then(|| Arc::clone(client) as Arc<dyn Peer>)
    }

    /// The key's owner on the ring without this node, or, while that member is down, the next
    /// of the key's preference list that is up: where its keys go once this node is gone.
    ///
    /// `None` for every key once the member lists have left this node out for half of
    /// [`FILL_GUARD`]: the other members stopped sending it writes about when it was left
    /// out, and a member takes a value handed over only if it took no write of the key in the
    /// last `FILL_GUARD`, so values this node holds then may be older than a write it missed.
    fn heir(&self, key: &[u8]) -> Option<Arc<dyn Peer>> {
        let left_out = *self.left_out.lock().unwrap_or_else(PoisonError::into_inner);
        if left_out.is_some_and(|since| now().saturating_duration_since(since) > FILL_GUARD / 2) {
            return None;
        }
        let members = self.current();
        let client = (members.ring.preference(key))
            .filter(|member| **member != self.self_url)
            .filter_map(|member| members.clients.get(member))
            .find(|client| client.is_routable())?;
        Some(Arc::clone(client) as Arc<dyn Peer>)
    }
}

/// The pool's clock: tokio's, so that tests with paused time move the peek window too.
fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

impl fmt::Debug for HttpPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpPool")
            .field("self_url", &self.self_url)
            .field("members", &self.members())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// `http://host:port` with a lowercase host, an explicit port and no trailing slash, or why
/// not: two spellings of one member must put one node on the ring.
pub(crate) fn normalize(url: &str) -> Result<String, Error> {
    let invalid = |reason| Error::InvalidUrl {
        url: url.to_string(),
        reason,
    };
    let uri: http::Uri = url.parse().map_err(|_| invalid("not a URL"))?;
    if uri.scheme_str() != Some("http") {
        return Err(invalid("the scheme must be http"));
    }
    let authority = uri.authority().ok_or_else(|| invalid("no host"))?;
    if authority.host().is_empty() {
        return Err(invalid("no host"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(invalid("a node URL has no path or query"));
    }
    if authority.as_str().contains('@') {
        return Err(invalid("a node URL has no user information"));
    }
    let host = authority.host().to_ascii_lowercase();
    // After the host, nothing or `:` and a port of 1-65535: never a default in place of a
    // port that does not parse.
    let port = match &authority.as_str()[authority.host().len()..] {
        "" => 80,
        given => given
            .strip_prefix(':')
            .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|digits| digits.parse::<u16>().ok())
            .filter(|&port| port != 0)
            .ok_or_else(|| invalid("the port must be a number from 1 to 65535"))?,
    };
    Ok(format!("http://{host}:{port}"))
}
