//! The node's flags, each also read from an `ALO_...` environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

use crate::dns::DnsName;

/// How the log is written (`--log-format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
#[non_exhaustive]
pub enum LogFormat {
    /// One line an event: time, level, target, message and fields.
    Text,
    /// One JSON object a line: `timestamp`, `level`, `target`, and the event's `fields`
    /// (`message` among them), with the spans it happened in.
    Json,
}

/// An alo cache node: serves groups to peers and to clients, loading from an origin.
#[derive(Parser, Clone, Debug)]
#[command(name = "alo-node", version, about, long_about = None)]
// One source of members at a time; none: this node alone.
#[command(group = clap::ArgGroup::new("members").args(["peers", "peers_file", "peers_dns"]).multiple(false))]
#[non_exhaustive]
pub struct Config {
    /// How the log is written to stderr: `text` (one line an event, for people) or `json` (one
    /// JSON object a line, with the same fields, for log collectors).
    #[arg(long, env = "ALO_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// The OTLP/HTTP endpoint of an OpenTelemetry collector (`http://collector:4318`): the
    /// node's spans go to `{URL}/v1/traces`, and its requests to members and to the origin
    /// carry their trace context (`traceparent`). Off when not given; needs a binary built with
    /// `--features otlp`. The SDK's `OTEL_*` variables apply (`OTEL_TRACES_SAMPLER`,
    /// `OTEL_SERVICE_NAME`, `OTEL_BSP_SCHEDULE_DELAY`, ...).
    #[arg(long, env = "ALO_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// Address of the peer server, which other nodes ask for the keys this node owns.
    #[arg(long, env = "ALO_LISTEN", default_value = "127.0.0.1:8001")]
    pub listen: SocketAddr,
    /// Address of the client API (`/api/{group}/{key}`, `/stats`, `/metrics`, `/healthz`,
    /// `/readyz`).
    #[arg(long, env = "ALO_API", default_value = "127.0.0.1:9999")]
    pub api: SocketAddr,
    /// This node's URL as its peers reach it; by default `http://<listen address>`.
    #[arg(long, env = "ALO_SELF_URL")]
    pub self_url: Option<String>,
    /// The cluster's member URLs, comma-separated, this node's own among them [default: this
    /// node alone]. At most one of `--peers`, `--peers-file` and `--peers-dns`.
    #[arg(long, env = "ALO_PEERS", value_delimiter = ',')]
    pub peers: Vec<String>,
    /// A file of the cluster's shared secret (one line; two while rotating, both accepted, the
    /// first used to sign). Peers then prove every request with it and answer 401 to a
    /// request that does not.
    #[arg(long, env = "ALO_PEER_SECRET_FILE")]
    pub peer_secret_file: Option<PathBuf>,
    /// A file of member URLs, one a line (`#` starts a comment); read again every second and
    /// on SIGHUP, and applied when its list changes.
    #[arg(long, env = "ALO_PEERS_FILE")]
    pub peers_file: Option<PathBuf>,
    /// A DNS name whose records are the members, looked up again every
    /// `--peers-dns-interval-ms` and on SIGHUP: `NAME:PORT` for A (or AAAA) records, every
    /// address a member at PORT, or an SRV name such as `_alo._tcp.NAME`, each target a member
    /// at its record's port. The node serves before its own record appears, not ready.
    #[arg(long, env = "ALO_PEERS_DNS", value_name = "NAME", value_parser = parse_dns_name)]
    pub peers_dns: Option<String>,
    /// The name server `--peers-dns` asks, e.g. `10.96.0.10:53` [default: the system's, from
    /// /etc/resolv.conf].
    #[arg(long, env = "ALO_PEERS_DNS_SERVER", requires = "peers_dns")]
    pub peers_dns_server: Option<SocketAddr>,
    /// How often `--peers-dns` is looked up again, in milliseconds.
    #[arg(long, env = "ALO_PEERS_DNS_INTERVAL_MS", default_value_t = 5_000, value_parser = positive)]
    pub peers_dns_interval_ms: u64,
    /// Apply a new `--peers-dns` answer only when two lookups in a row give it, so that one
    /// flapping answer does not move keys back and forth (the first list is applied at once).
    #[arg(long, env = "ALO_PEERS_DNS_CONFIRM", requires = "peers_dns")]
    pub peers_dns_confirm: bool,
    /// Bytes of keys and values each group may cache, e.g. `64MiB`, `1GB`, `500000`.
    #[arg(long, env = "ALO_CACHE_BYTES", default_value = "64MiB", value_parser = parse_budget)]
    pub cache_bytes: usize,
    /// An HTTP origin: group `web`, key `k` fetched as `URL/k`.
    #[arg(long, env = "ALO_ORIGIN_URL")]
    pub origin_url: Option<String>,
    /// A directory origin: group `files`, key = a path relative to the directory.
    #[arg(long, env = "ALO_ORIGIN_DIR")]
    pub origin_dir: Option<PathBuf>,
    /// How long the built-in `demo` origin takes per load, in milliseconds (used when no other
    /// origin is given).
    #[arg(long, env = "ALO_DEMO_DELAY_MS", default_value_t = 50)]
    pub demo_delay_ms: u64,
    /// The most loads each origin serves at once (each group's getter calls); more wait their
    /// turn within their load deadline. It bounds the connections to an HTTP origin too.
    #[arg(long, env = "ALO_ORIGIN_MAX_CONCURRENCY", default_value_t = 64, value_parser = positive_usize)]
    pub origin_max_concurrency: usize,
    /// How often, in asks a minute for each other member, a key's owner must report peers
    /// asking for it before this node keeps a copy in its hot cache (0: keep every value it
    /// fetches).
    #[arg(long, env = "ALO_HOT_RATE", default_value_t = alo_group::DEFAULT_HOT_RATE)]
    pub hot_rate: u32,
    /// The most one request to an HTTP origin may take, in milliseconds: a request has what is
    /// left of its load's deadline, and at most this.
    #[arg(long, env = "ALO_ORIGIN_TIMEOUT_MS", default_value_t = 10_000, value_parser = positive)]
    pub origin_timeout_ms: u64,
    /// The deadline of a load, in milliseconds: past it the callers get 504, the load is
    /// dropped and nothing is cached. A non-owner waits this plus a margin for the owner.
    #[arg(long, env = "ALO_LOAD_TIMEOUT_MS", default_value_t = 15_000, value_parser = positive)]
    pub load_timeout_ms: u64,
    /// How long opening a connection to a peer may take, in milliseconds; a peer that does not
    /// connect in time is unreachable and the key is loaded locally.
    #[arg(long, env = "ALO_PEER_CONNECT_TIMEOUT_MS", default_value_t = 250, value_parser = positive)]
    pub peer_connect_timeout_ms: u64,
    /// The most keys one request to a peer may ask for: keys bound for the same peer at the
    /// same moment travel together (a batch get). 1 sends every key alone. Also the most keys
    /// of a peer's batch this node looks up; the rest it answers "ask for it alone".
    #[arg(long, env = "ALO_PEER_MAX_BATCH_KEYS", default_value_t = 64, value_parser = positive)]
    pub peer_max_batch_keys: u64,
    /// How long a write (set, remove, purge) waits for each other member, in milliseconds. A
    /// member that does not answer in time is reported unreached and counted against its
    /// health; a member marked down is not asked.
    #[arg(long, env = "ALO_PEER_WRITE_TIMEOUT_MS", default_value_t = 2_000, value_parser = positive)]
    pub peer_write_timeout_ms: u64,
    /// The largest value, e.g. `16MiB`: the most an origin may return and a peer may send, and
    /// the largest value cached (when the cache is that large). Larger origin bodies are 502.
    #[arg(long, env = "ALO_MAX_VALUE_BYTES", default_value = "16MiB", value_parser = parse_bytes)]
    pub max_value_bytes: usize,
    /// The most connections each listener keeps open at once; more clients wait in the backlog.
    #[arg(long, env = "ALO_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = positive_usize)]
    pub max_connections: usize,
    /// How long a client may take to send a request head, in milliseconds (also bounds a
    /// kept-alive connection waiting for its next request).
    #[arg(long, env = "ALO_HEADER_READ_TIMEOUT_MS", default_value_t = 10_000, value_parser = positive)]
    pub header_read_timeout_ms: u64,
    /// The largest request head, e.g. `16KiB` (at least 8KiB); larger ones get 431.
    #[arg(long, env = "ALO_MAX_HEADER_BYTES", default_value = "16KiB", value_parser = parse_bytes)]
    pub max_header_bytes: usize,
    /// How long a connection may sit without traffic and without a request in flight, in
    /// milliseconds.
    #[arg(long, env = "ALO_IDLE_TIMEOUT_MS", default_value_t = 60_000, value_parser = positive)]
    pub idle_timeout_ms: u64,
    /// How long a response may wait for a client that does not read it, in milliseconds.
    #[arg(long, env = "ALO_WRITE_TIMEOUT_MS", default_value_t = 10_000, value_parser = positive)]
    pub write_timeout_ms: u64,
    /// Accept writes at the client API: `PUT /api/{group}/{key}` (body = value, optional
    /// `x-alo-ttl-ms` header), `DELETE /api/{group}/{key}`, `POST /api/{group}` (keys to
    /// remove, one percent-encoded key a line) and `DELETE /api/{group}` (purge). They change
    /// the cache only, never the origin. Without it they are 405.
    #[arg(long, env = "ALO_ALLOW_WRITES")]
    pub allow_writes: bool,
    /// How long a loaded value is served before it is loaded again, in milliseconds [default:
    /// until evicted].
    #[arg(long, env = "ALO_TTL_MS", value_parser = positive)]
    pub ttl_ms: Option<u64>,
    /// How long an origin's "not found" is remembered, in milliseconds (0: not at all).
    #[arg(long, env = "ALO_NOT_FOUND_TTL_MS", default_value_t = 0)]
    pub not_found_ttl_ms: u64,
    /// How long past its TTL a value may still be served when reloading it fails, in
    /// milliseconds (0: not at all). Such answers carry `x-alo-stale: if-error`.
    #[arg(long, env = "ALO_STALE_IF_ERROR_MS", default_value_t = 0)]
    pub stale_if_error_ms: u64,
    /// How long past its TTL a value is served at once while it is reloaded in the background,
    /// in milliseconds (0: not at all). Such answers carry `x-alo-stale: while-revalidate`.
    #[arg(long, env = "ALO_STALE_WHILE_REVALIDATE_MS", default_value_t = 0)]
    pub stale_while_revalidate_ms: u64,
    /// On SIGTERM or SIGINT, the most bytes of values (keys and values) handed over to the
    /// members that own them without this node, most recently used first, e.g. `64MiB`; 0 hands
    /// nothing over. The handover has half of `--shutdown-timeout-ms`.
    #[arg(long, env = "ALO_HANDOVER_MAX_BYTES", default_value = "64MiB", value_parser = parse_bytes)]
    pub handover_max_bytes: usize,
    /// On SIGTERM or SIGINT, how long requests in flight may take to finish before the node
    /// closes what is left and exits, in milliseconds. A second signal exits at once.
    #[arg(long, env = "ALO_SHUTDOWN_TIMEOUT_MS", default_value_t = 10_000, value_parser = positive)]
    pub shutdown_timeout_ms: u64,
}

fn parse_dns_name(text: &str) -> Result<String, String> {
    DnsName::parse(text).map(|_| text.to_string())
}

fn positive_usize(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be more than 0".to_string()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

fn positive(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(0) => Err("must be more than 0".to_string()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// A cache budget: 0 (which the library reads as unbounded) is refused for a node.
fn parse_budget(text: &str) -> Result<usize, String> {
    match parse_bytes(text)? {
        0 => Err("must be more than 0: a node's cache is bounded".to_string()),
        n => Ok(n),
    }
}

fn parse_bytes(text: &str) -> Result<usize, String> {
    let bytes = parse_size::parse_size(text).map_err(|e| format!("{e} (try 64MiB or 1GB)"))?;
    usize::try_from(bytes).map_err(|_| "too large for this machine".to_string())
}
