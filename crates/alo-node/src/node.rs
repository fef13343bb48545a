//! Wiring: listeners, the pool, the members, the groups, and both servers.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use alo_group::{Getter, Group, Groups};
use alo_http::{
    HttpPool, PeerSecrets, PoolOptions, ServerOptions, ServerOptionsBuilder, serve, serve_with,
};
use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::Config;
use crate::api::{Api, Metrics};
use crate::members::{Membership, Reload, describe_source, keep_members};
use crate::origin::{DemoOrigin, DirOrigin, UrlOrigin};

/// The node's two listeners, bound by the caller: the binary binds the flags' addresses
/// ([`Listeners::bind`]); a test binds port 0 and so knows every port before a node starts.
#[derive(Debug)]
pub struct Listeners {
    /// The peer server's: other nodes ask it for the keys this node owns.
    pub peer: TcpListener,
    /// The client API's.
    pub api: TcpListener,
}

impl Listeners {
    /// Binds `--listen` and `--api`, each with a backlog of 1,024 connections.
    ///
    /// # Errors
    /// When an address cannot be bound.
    pub fn bind(config: &Config) -> anyhow::Result<Self> {
        let peer = listen(config.listen)
            .with_context(|| format!("binding the peer server to {}", config.listen))?;
        let api = listen(config.api)
            .with_context(|| format!("binding the client API to {}", config.api))?;
        Ok(Listeners { peer, api })
    }
}

/// Runs a node on `listeners` until `shutdown` completes: reads its members, builds the groups
/// and serves peers and clients; then stops accepting, lets requests in flight finish, and
/// returns. `reload` asks it to read its members again (the binary does on SIGHUP).
///
/// # Errors
/// When a flag is invalid, the first member list cannot be used (from `--peers` or
/// `--peers-file`; DNS may come later), or a server fails.
pub async fn run(
    config: Config,
    listeners: Listeners,
    reload: Reload,
    shutdown: impl Future,
) -> anyhow::Result<()> {
    let Listeners {
        peer: peer_listener,
        api: api_listener,
    } = listeners;
    let peer_addr = peer_listener.local_addr()?;
    let api_addr = api_listener.local_addr()?;
    let self_url = self_url(&config, peer_addr)?;

    let load_timeout = Duration::from_millis(config.load_timeout_ms);
    let write_timeout = Duration::from_millis(config.peer_write_timeout_ms);
    let max_batch_keys = usize::try_from(config.peer_max_batch_keys).unwrap_or(usize::MAX);
    // How long a request to a member may take is not set here: each has its load's or its
    // write's deadline, which the groups give.
    let mut pool_options = PoolOptions::builder()
        .connect_timeout(Duration::from_millis(config.peer_connect_timeout_ms))
        .max_batch_keys(max_batch_keys)
        .max_response_bytes(config.max_value_bytes);
    let secrets = match &config.peer_secret_file {
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading the peer secret file {}", file.display()))?;
            let secrets = PeerSecrets::from_lines(&text)
                .with_context(|| format!("the peer secret file {}", file.display()))?;
            pool_options = pool_options.secrets(secrets.clone());
            Some(secrets)
        }
        None if !peer_addr.ip().is_loopback() => {
            tracing::warn!(%peer_addr, "the peer port listens beyond loopback without --peer-secret-file: anyone who reaches it can read every key and make this node load from its origins");
            None
        }
        None => None,
    };
    let pool = HttpPool::new(&self_url, pool_options.build()?)?;
    let requests = reload
        .take_requests()
        .context("this Reload already serves another node")?;
    let membership = Arc::new(Membership::new(describe_source(&config)));
    let keeping = keep_members(&config, &pool, &membership, requests).await?;
    // The members are kept only as long as the node runs, here or in a test.
    let _keeping = AbortOnDrop(keeping);
    let groups = Groups::new();
    let add = |name: &'static str, getter: Box<dyn Getter>| -> anyhow::Result<&'static str> {
        let ms = Duration::from_millis;
        let mut builder = Group::builder(name, getter)
            .max_bytes(config.cache_bytes)
            .max_value_bytes(config.max_value_bytes)
            .load_timeout(load_timeout)
            .write_timeout(write_timeout)
            .max_concurrent_loads(config.origin_max_concurrency)
            .hot_rate(config.hot_rate)
            .not_found_ttl(ms(config.not_found_ttl_ms))
            .stale_if_error(ms(config.stale_if_error_ms))
            .stale_while_revalidate(ms(config.stale_while_revalidate_ms))
            .picker(pool.clone());
        if let Some(ttl) = config.ttl_ms {
            builder = builder.ttl(ms(ttl));
        }
        let group = builder.build()?;
        groups.insert(group)?;
        Ok(name)
    };
    let mut names = Vec::new();
    if let Some(url) = &config.origin_url {
        // A request to the origin has what is left of its load's deadline, at most this.
        let origin_timeout = Duration::from_millis(config.origin_timeout_ms);
        let max_bytes = config.max_value_bytes;
        let origin = UrlOrigin::new(
            url,
            origin_timeout,
            max_bytes,
            config.origin_max_concurrency,
        )?;
        names.push(add("web", Box::new(origin))?);
    }
    if let Some(dir) = &config.origin_dir {
        let origin = DirOrigin::new(dir, config.max_value_bytes)?;
        names.push(add("files", Box::new(origin))?);
    }
    if names.is_empty() {
        let delay = Duration::from_millis(config.demo_delay_ms);
        names.push(add("demo", Box::new(DemoOrigin { delay }))?);
    }

    tracing::info!(
        %self_url,
        %peer_addr,
        %api_addr,
        groups = %names.join(", "),
        membership = %membership.source,
        "serving"
    );

    let (stop, stopped) = watch::channel(false);
    let until_stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let metrics = Metrics::new(&groups, Arc::clone(&pool), Arc::clone(&membership))?;
    let api = Arc::new(Api {
        groups: groups.clone(),
        pool: Arc::clone(&pool),
        membership,
        metrics: Arc::new(metrics),
        max_key_bytes: alo_http::DEFAULT_MAX_KEY_BYTES,
        max_body_bytes: config.max_value_bytes,
        body_timeout: Duration::from_millis(config.header_read_timeout_ms),
        allow_writes: config.allow_writes,
    });
    let api_options = server_options(&config).build()?;
    let mut peer_options = server_options(&config).max_batch_keys(max_batch_keys);
    if let Some(secrets) = secrets {
        peer_options = peer_options.peer_secrets(secrets, pool.self_url());
    }
    let peer_options = peer_options.build()?;
    let leaving = groups.clone();
    let peers = serve(
        peer_listener,
        groups,
        peer_options,
        until_stopped(stopped.clone()),
    );
    let clients = serve_with(
        api_listener,
        api_options,
        move |req| Arc::clone(&api).handle(req),
        until_stopped(stopped),
    );
    let (mut peers, mut clients) = (std::pin::pin!(peers), std::pin::pin!(clients));
    // A server returns before shutdown only if its listener failed for good: the node stops
    // at once, non-zero, rather than half-serve.
    tokio::select! {
        ended = &mut peers => anyhow::bail!("the peer server stopped: {:?}", ended.err()),
        ended = &mut clients => anyhow::bail!("the client API stopped: {:?}", ended.err()),
        _ = shutdown => {}
    }
    // Leaving on purpose: the values go to the members that own them without this node, while
    // both servers go on serving.
    tokio::select! {
        () = hand_over(&leaving, &config) => {}
        ended = &mut peers => anyhow::bail!("the peer server stopped: {:?}", ended.err()),
        ended = &mut clients => anyhow::bail!("the client API stopped: {:?}", ended.err()),
    }
    tracing::info!(timeout = ?Duration::from_millis(config.shutdown_timeout_ms), "shutting down: finishing requests in flight");
    let _ = stop.send(true);
    let (peers, clients) = tokio::join!(peers, clients);
    peers.context("peer server")?;
    clients.context("client API")?;
    tracing::info!("stopped");
    Ok(())
}

/// Hands every group's values over to the members that own them without this node, most
/// recently used first, at most `--handover-max-bytes` in all, within half of
/// `--shutdown-timeout-ms` (the other half is for the requests in flight).
async fn hand_over(groups: &Groups, config: &Config) {
    let mut budget = config.handover_max_bytes;
    if budget == 0 {
        return;
    }
    let half = Duration::from_millis(config.shutdown_timeout_ms) / 2;
    let deadline = tokio::time::Instant::now().into_std() + half;
    for group in groups.all() {
        let handover = group.hand_over(budget, deadline).await;
        budget = budget.saturating_sub(handover.bytes);
        if handover.values > 0 || handover.left > 0 {
            tracing::info!(
                group = group.name(),
                values = handover.values,
                bytes = handover.bytes,
                left = handover.left,
                "handed over to the members that own them now"
            );
        }
    }
}

/// Connections the kernel holds for a listener while the node is at its connection limit (or
/// out of descriptors); it caps this at `net.core.somaxconn`.
const BACKLOG: u32 = 1024;

/// A listener on `addr` with a backlog of [`BACKLOG`] (the standard library's is 128).
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// The connection limits of both listeners, from the flags.
fn server_options(config: &Config) -> ServerOptionsBuilder {
    let ms = Duration::from_millis;
    ServerOptions::builder()
        .max_body_bytes(config.max_value_bytes)
        .max_connections(config.max_connections)
        .header_read_timeout(ms(config.header_read_timeout_ms))
        .max_header_bytes(config.max_header_bytes)
        .idle_timeout(ms(config.idle_timeout_ms))
        .write_timeout(ms(config.write_timeout_ms))
        .shutdown_timeout(ms(config.shutdown_timeout_ms))
}

/// This node's URL: `--self-url`, or `http://` and the peer listener's address, which must not be
/// a wildcard (peers cannot reach `0.0.0.0`).
fn self_url(config: &Config, peer_addr: SocketAddr) -> anyhow::Result<String> {
    match &config.self_url {
        Some(url) => Ok(url.clone()),
        None if peer_addr.ip().is_unspecified() => anyhow::bail!(
            "--listen {peer_addr} is a wildcard address, which peers cannot reach: give this node's URL with --self-url"
        ),
        None => Ok(format!("http://{peer_addr}")),
    }
}

/// Aborts a task when dropped: a node's background work ends with the node.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[test]
    fn a_wildcard_listen_address_is_no_self_url() {
        let config = |args: &[&str]| {
            Config::parse_from(std::iter::once("alo-node").chain(args.iter().copied()))
        };
        let wildcard: SocketAddr = "0.0.0.0:8001".parse().expect("an address");
        let error = self_url(&config(&[]), wildcard).expect_err("a wildcard");
        assert!(error.to_string().contains("--self-url"), "{error}");
        let given = config(&["--self-url", "http://10.0.0.1:8001"]);
        assert_eq!(
            self_url(&given, wildcard).expect("given"),
            "http://10.0.0.1:8001"
        );
        let loopback: SocketAddr = "127.0.0.1:8001".parse().expect("an address");
        assert_eq!(
            self_url(&config(&[]), loopback).expect("derived"),
            "http://127.0.0.1:8001"
        );
    }
}
