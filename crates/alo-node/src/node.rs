//! Wiring: listeners, the pool, the groups, both servers, and the peers file.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use alo_group::{Getter, Group, Groups, PEER_MARGIN};
use alo_http::{HttpPool, PeerSecrets, PoolOptions, ServerOptions, serve, serve_with};
use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::Config;
use crate::api::Api;
use crate::origin::{DEMO, DemoOrigin, DirOrigin, UrlOrigin};

/// How often the peers file is checked for changes.
const PEERS_FILE_POLL: Duration = Duration::from_secs(1);

/// Runs a node until `shutdown` completes: binds both addresses, builds the groups and serves
/// peers and clients; then stops accepting, lets requests in flight finish, and returns.
///
/// # Errors
/// When an address cannot be bound, a flag is invalid, or a server fails.
pub async fn run(config: Config, shutdown: impl Future) -> anyhow::Result<()> {
    let peer_listener = listen(config.listen)
        .with_context(|| format!("binding the peer server to {}", config.listen))?;
    let api_listener =
        listen(config.api).with_context(|| format!("binding the client API to {}", config.api))?;
    let peer_addr = peer_listener.local_addr()?;
    let api_addr = api_listener.local_addr()?;
    let self_url = match &config.self_url {
        Some(url) => url.clone(),
        None if peer_addr.ip().is_unspecified() => anyhow::bail!(
            "--listen {peer_addr} is a wildcard address, which peers cannot reach: give this node's URL with --self-url"
        ),
        None => format!("http://{peer_addr}"),
    };

    let load_timeout = Duration::from_millis(config.load_timeout_ms);
    let origin_timeout = Duration::from_millis(config.origin_timeout_ms);
    if load_timeout < origin_timeout {
        tracing::warn!(
            ?load_timeout,
            ?origin_timeout,
            "the load timeout is shorter than the origin timeout: slow origin requests will be cut at the load timeout"
        );
    }
    // The owner has the load timeout; its answer gets half the group's margin to arrive, so
    // the pool gives up (and tells why) just before the group stops waiting.
    let mut pool_options = PoolOptions::default()
        .timeout(load_timeout + PEER_MARGIN / 2)
        .connect_timeout(Duration::from_millis(config.peer_connect_timeout_ms))
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
    let pool = HttpPool::new(&self_url, pool_options)?;
    pool.set_peers(&config.peers)?;
    let peers_file = match &config.peers_file {
        Some(file) => Some((file.clone(), apply_peers_file(&pool, file).await?)),
        None => None,
    };
    let groups = Groups::new();
    let add = |name: &'static str, getter: Box<dyn Getter>| -> anyhow::Result<&'static str> {
        let ms = Duration::from_millis;
        let mut builder = Group::builder(name, getter)
            .max_bytes(config.cache_bytes)
            .max_value_bytes(config.max_value_bytes)
            .load_timeout(load_timeout)
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
        let origin = UrlOrigin::new(url, origin_timeout, config.max_value_bytes)?;
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

    // Registered before the node says it is ready, so a SIGHUP is never missed.
    let hangups = signal(SignalKind::hangup()).context("listening for SIGHUP")?;
    if let Some((file, applied)) = peers_file {
        tokio::spawn(watch_peers_file(pool.clone(), file, applied, hangups));
    }

    println!("alo-node: peers reach this node at {self_url} (listening on {peer_addr})");
    println!("alo-node: client API at http://{api_addr}");
    println!(
        "alo-node: groups: {}; members: {}",
        names.join(", "),
        pool.peers().join(", ")
    );
    if names == ["demo"] {
        println!("try:");
        for (key, _) in DEMO.iter().take(2) {
            println!("  curl http://{api_addr}/api/demo/{key}");
        }
        println!("  curl http://{api_addr}/stats");
    }

    let (stop, stopped) = watch::channel(false);
    let until_stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let limits = server_options(&config)?;
    let api_options = limits.clone().base_path("/api/")?;
    let api = Api {
        groups: groups.clone(),
        pool: Arc::clone(&pool),
        options: api_options.clone(),
        allow_writes: config.allow_writes,
    };
    let peer_options = match secrets {
        Some(secrets) => limits.peer_secrets(secrets),
        None => limits,
    };
    let peers = serve(
        peer_listener,
        groups,
        peer_options,
        until_stopped(stopped.clone()),
    );
    let clients = serve_with(
        api_listener,
        api_options,
        move |req| api.clone().handle(req),
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
    tracing::info!(timeout = ?Duration::from_millis(config.shutdown_timeout_ms), "shutting down: finishing requests in flight");
    let _ = stop.send(true);
    let (peers, clients) = tokio::join!(peers, clients);
    peers.context("peer server")?;
    clients.context("client API")?;
    tracing::info!("stopped");
    Ok(())
}

/// Connections the kernel holds for a listener while the node is at its connection limit (or
/// out of descriptors); it caps this at `net.core.somaxconn`.
const BACKLOG: u32 = 1024;

/// A listener on `addr` with a backlog of [`BACKLOG`] (the standard library's is 128).
fn listen(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
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
fn server_options(config: &Config) -> anyhow::Result<ServerOptions> {
    let ms = Duration::from_millis;
    Ok(ServerOptions::default()
        .max_body_bytes(config.max_value_bytes)
        .max_connections(config.max_connections)?
        .header_read_timeout(ms(config.header_read_timeout_ms))?
        .max_header_bytes(config.max_header_bytes)?
        .idle_timeout(ms(config.idle_timeout_ms))?
        .write_timeout(ms(config.write_timeout_ms))?
        .shutdown_timeout(ms(config.shutdown_timeout_ms))?)
}

/// Reads a peers file (one URL a line, `#` comments): the member URLs, or why the file cannot
/// be used. A file is used whole or not at all: one being rewritten in place may be read half
/// written, so it must end with a newline, and it must name at least one member.
async fn read_peers_file(file: &Path) -> anyhow::Result<(String, Vec<String>)> {
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
    Ok((text, urls))
}

/// Reads the peers file and applies it; returns the text applied.
async fn apply_peers_file(pool: &HttpPool, file: &Path) -> anyhow::Result<String> {
    let (text, urls) = read_peers_file(file).await?;
    pool.set_peers(&urls)?;
    tracing::info!(members = ?pool.peers(), "applied the peers file");
    Ok(text)
}

/// Re-reads the peers file when its modification time changes and on every SIGHUP, and applies
/// it when its content changed. A file that cannot be read, is empty, is not whole, holds a bad
/// URL or leaves this node out is logged and the membership kept.
async fn watch_peers_file(
    pool: Arc<HttpPool>,
    file: PathBuf,
    mut applied: String,
    mut hangups: tokio::signal::unix::Signal,
) {
    let modified = |file: &Path| -> Option<SystemTime> {
        std::fs::metadata(file).and_then(|m| m.modified()).ok()
    };
    let mut seen = modified(&file);
    let mut poll = tokio::time::interval(PEERS_FILE_POLL);
    loop {
        let reread = tokio::select! {
            _ = hangups.recv() => true,
            _ = poll.tick() => {
                let now = modified(&file);
                let changed = now != seen;
                seen = now;
                changed
            }
        };
        if !reread {
            continue;
        }
        let applying = async {
            let (text, urls) = read_peers_file(&file).await?;
            if text != applied {
                pool.set_peers(&urls)?;
                tracing::info!(members = ?pool.peers(), "reloaded the peers file");
            }
            anyhow::Ok(text)
        };
        match applying.await {
            Ok(text) => applied = text,
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "kept the membership"),
        }
    }
}
