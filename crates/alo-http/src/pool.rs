//! The pool: this node's view of the cluster, and the `PeerPicker` over it.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use alo_group::{PeerGetter, PeerPicker};
use alo_hashring::HashRing;

use crate::client::HttpGetter;
use crate::health::{HealthOptions, PeerStats};
use crate::{DEFAULT_BASE_PATH, Error, PeerSecrets};

/// How long a connection to a peer may take to open unless told otherwise: long for a LAN,
/// short against a load deadline.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(250);

/// The most keys one batch get carries unless told otherwise.
pub const DEFAULT_MAX_BATCH_KEYS: usize = 64;

/// How a pool talks to peers, and when it gives up on one.
#[derive(Clone, Debug)]
pub struct PoolOptions {
    pub(crate) base_path: String,
    pub(crate) timeout: Duration,
    pub(crate) write_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) max_response_bytes: usize,
    replicas: usize,
    pub(crate) max_batch_keys: usize,
    pub(crate) health: HealthOptions,
    pub(crate) secrets: Option<PeerSecrets>,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            base_path: DEFAULT_BASE_PATH.to_string(),
            timeout: alo_group::DEFAULT_LOAD_TIMEOUT + alo_group::PEER_MARGIN / 2,
            write_timeout: alo_group::DEFAULT_WRITE_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            max_response_bytes: alo_group::DEFAULT_MAX_VALUE_BYTES,
            replicas: alo_hashring::DEFAULT_REPLICAS,
            max_batch_keys: DEFAULT_MAX_BATCH_KEYS,
            health: HealthOptions {
                failures: 3,
                probe_timeout: Duration::from_millis(500),
                backoff: Duration::from_secs(1),
                max_backoff: Duration::from_secs(30),
            },
            secrets: None,
        }
    }
}

impl PoolOptions {
    /// The path under which peers serve groups; must match their `ServerOptions`.
    ///
    /// # Errors
    /// [`Error::InvalidBasePath`] unless it starts and ends with `/`.
    pub fn base_path(mut self, base_path: impl Into<String>) -> Result<Self, Error> {
        self.base_path = crate::check_base_path(base_path.into())?;
        Ok(self)
    }

    /// How long to wait for an owner's answer (default: the group's default load timeout plus
    /// half its peer margin, 30.5 s). The owner may be loading the key: set it to the groups'
    /// load timeout plus a little, and below the load timeout plus `alo_group::PEER_MARGIN`, at
    /// which the group stops waiting. A hung peer is found out sooner, by probes.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long a write (a set, a remove, a purge) waits for a member's answer (default
    /// `alo_group::DEFAULT_WRITE_TIMEOUT`, 2 s; keep it at most the groups' write timeout). A
    /// member applies a write in memory, so one that does not answer in this time is counted
    /// as failing, as a get without an answer is, and reported unreached; a member marked down
    /// is reported unreached without being asked.
    pub fn write_timeout(mut self, write_timeout: Duration) -> Self {
        self.write_timeout = write_timeout;
        self
    }

    /// How long opening a connection to a peer may take (default 250 ms). A peer that does
    /// not connect in time is unreachable: its key is loaded locally.
    pub fn connect_timeout(mut self, connect_timeout: Duration) -> Self {
        self.connect_timeout = connect_timeout;
        self
    }

    /// The largest response accepted from a peer (default `alo_group::DEFAULT_MAX_VALUE_BYTES`,
    /// 16 MiB). Keep it at least the largest value an owner serves, or a non-owner cannot fetch
    /// that value and loads it itself.
    pub fn max_response_bytes(mut self, max_response_bytes: usize) -> Self {
        self.max_response_bytes = max_response_bytes;
        self
    }

    /// The cluster's secrets: every request to a peer then carries a proof made with the first
    /// (see [`PeerSecrets`]). Give the servers the same secrets (`ServerOptions::peer_secrets`).
    pub fn secrets(mut self, secrets: PeerSecrets) -> Self {
        self.secrets = Some(secrets);
        self
    }

    /// How many failures in a row (connect errors or timeouts, resets, probes without an
    /// answer) mark a peer down (default 3, at least 1). While down, its keys load locally at
    /// once; a probe after a backoff brings it back.
    pub fn down_after(mut self, failures: u32) -> Self {
        self.health.failures = failures.max(1);
        self
    }

    /// How long a probe of a peer may take (default 500 ms). A request that has waited this
    /// long asks for a probe, one at a time per peer.
    pub fn probe_timeout(mut self, probe_timeout: Duration) -> Self {
        self.health.probe_timeout = probe_timeout;
        self
    }

    /// The first wait before probing a down peer (default 1 s), doubled after each probe that
    /// fails, up to `max` (default 30 s).
    pub fn backoff(mut self, first: Duration, max: Duration) -> Self {
        self.health.backoff = first;
        self.health.max_backoff = max.max(first);
        self
    }

    /// The most keys one batch get asks a peer for (default 64); 1 turns batching off.
    ///
    /// Keys bound for the same peer and group while the pool is busy go in one request (see
    /// the crate README, "Batch gets"): a batch costs each side about one request's work,
    /// however many keys it carries. A key asked for alone, with nothing else to send, waits
    /// no longer than the runtime takes to run the other tasks ready at that moment.
    pub fn max_batch_keys(mut self, keys: usize) -> Self {
        self.max_batch_keys = keys.max(1);
        self
    }

    /// Virtual nodes per member on the ring; every node of a cluster must use the same.
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas;
        self
    }
}

/// This node's view of the cluster: its own URL, the members, the hash ring over them and a
/// pool of keep-alive connections per peer. It is the [`PeerPicker`] of the node's groups: the ring's owner
/// of a key is asked over HTTP, or, when the owner is this node, nobody.
///
/// [`set_peers`](HttpPool::set_peers) builds a new ring and swaps it in whole, so gets in flight
/// finish with the view they started with.
pub struct HttpPool {
    self_url: String,
    options: PoolOptions,
    view: RwLock<Arc<View>>,
}

/// One membership: the ring and a getter per remote member.
struct View {
    ring: HashRing<String>,
    getters: HashMap<String, Arc<HttpGetter>>,
}

impl HttpPool {
    /// A pool for the node reachable at `self_url` (e.g. `http://10.0.0.1:8001`), alone until
    /// [`set_peers`](HttpPool::set_peers). Needs a tokio runtime when it sends requests.
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
            view: RwLock::new(Arc::new(View {
                ring: HashRing::with_replicas(options.replicas),
                getters: HashMap::new(),
            })),
            self_url,
            options,
        };
        pool.set_peers(std::iter::empty::<&str>())?;
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
    pub fn set_peers<I, S>(&self, urls: I) -> Result<(), Error>
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
        if !members.contains(&self.self_url) {
            return Err(Error::NotAMember {
                self_url: self.self_url.clone(),
                members,
            });
        }
        let mut ring = HashRing::with_replicas(self.options.replicas);
        ring.extend(members.iter().cloned());
        // A peer that stays keeps its getter, and with it its health.
        let old = self.view();
        let getters = members
            .into_iter()
            .filter(|m| *m != self.self_url)
            .map(|peer| {
                let getter = old
                    .getters
                    .get(&peer)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(HttpGetter::new(peer.clone(), &self.options)));
                (peer, getter)
            })
            .collect();
        let view = Arc::new(View { ring, getters });
        *self.view.write().unwrap_or_else(PoisonError::into_inner) = view;
        Ok(())
    }

    /// The members, this node included, in the order given.
    pub fn peers(&self) -> Vec<String> {
        self.view().ring.nodes().cloned().collect()
    }

    /// The member that owns `key`.
    pub fn owner(&self, key: &[u8]) -> String {
        let view = self.view();
        view.ring
            .node_for(key)
            .cloned()
            .unwrap_or_else(|| self.self_url.clone())
    }

    /// Every other member's health, sorted by URL.
    pub fn peer_stats(&self) -> Vec<PeerStats> {
        let mut stats: Vec<PeerStats> = self.view().getters.values().map(|g| g.stats()).collect();
        stats.sort_by(|a, b| a.url.cmp(&b.url));
        stats
    }

    fn view(&self) -> Arc<View> {
        Arc::clone(&self.view.read().unwrap_or_else(PoisonError::into_inner))
    }
}

impl PeerPicker for HttpPool {
    fn pick_peer(&self, key: &[u8]) -> Option<Arc<dyn PeerGetter>> {
        let view = self.view();
        let owner = view.ring.node_for(key)?;
        let getter = view.getters.get(owner)?;
        // A down owner's keys are loaded here at once, without waiting on it.
        if getter.is_down() {
            return None;
        }
        Some(Arc::clone(getter) as Arc<dyn PeerGetter>)
    }

    fn pick_owner(&self, key: &[u8]) -> Option<Arc<dyn PeerGetter>> {
        let view = self.view();
        let owner = view.ring.node_for(key)?;
        let getter = view.getters.get(owner)?;
        Some(Arc::clone(getter) as Arc<dyn PeerGetter>)
    }

    fn other_members(&self) -> Vec<Arc<dyn PeerGetter>> {
        let view = self.view();
        let getters = view.getters.values();
        getters
            .map(|g| Arc::clone(g) as Arc<dyn PeerGetter>)
            .collect()
    }
}

impl fmt::Debug for HttpPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpPool")
            .field("self_url", &self.self_url)
            .field("peers", &self.peers())
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
