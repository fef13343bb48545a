//! A node for tests: a pool, a group `g` with a counting getter, and a server that stops when
//! told.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use alo_group::{Group, Groups, LoadError, getter_fn};
use alo_http::{HttpPool, PeerSecrets, PoolOptions, ServerOptions, ServerOptionsBuilder, serve};
use bytes::Bytes;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

pub(crate) struct Node {
    pub(crate) url: String,
    pub(crate) pool: Arc<HttpPool>,
    pub(crate) group: Group,
    /// Keys this node's getter was asked for.
    pub(crate) loaded: Arc<Mutex<Vec<Bytes>>>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<Result<(), alo_http::Error>>>,
}

/// What a test node's getter does.
#[derive(Clone, Default)]
pub(crate) struct Behaviour {
    /// When set, every load waits for one notification first.
    pub(crate) gate: Option<Arc<Notify>>,
    pub(crate) calls: Arc<AtomicUsize>,
    /// Notified as each load starts.
    pub(crate) started: Arc<Notify>,
    /// The pool's options (default when `None`).
    pub(crate) options: Option<PoolOptions>,
    /// The server's options (default when `None`).
    pub(crate) server: Option<ServerOptionsBuilder>,
    /// The secrets the server asks a proof of, for the node's own URL.
    pub(crate) server_secrets: Option<PeerSecrets>,
    /// The group's write timeout (its default when `None`).
    pub(crate) write_timeout: Option<Duration>,
}

/// The value every node's getter gives `key`: the same on every node, so any node may load it.
pub(crate) fn value_of(key: &[u8]) -> Bytes {
    match key {
        b"big" => Bytes::from(vec![0xA5; 8 << 20]),
        _ => Bytes::from([&b"value-of:"[..], key].concat()),
    }
}

impl Node {
    pub(crate) async fn bind() -> (TcpListener, String) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("bound"));
        (listener, url)
    }

    pub(crate) fn start(listener: TcpListener, url: &str, peers: &[String], b: Behaviour) -> Node {
        let options = b.options.clone().unwrap_or_default();
        let pool = HttpPool::new(url, options).expect("valid URL");
        pool.set_members(peers).expect("valid URLs");
        let groups = Groups::with_picker(pool.clone());
        let loaded = Arc::new(Mutex::new(Vec::new()));
        let log = loaded.clone();
        let mut server_options = b.server.clone().unwrap_or_else(ServerOptions::builder);
        if let Some(secrets) = b.server_secrets.clone() {
            server_options = server_options.peer_secrets(secrets, url);
        }
        let server_options = server_options.build().expect("valid options");
        let getter = getter_fn(move |key: Bytes| {
            b.calls.fetch_add(1, Ordering::SeqCst);
            b.started.notify_one();
            log.lock().expect("not poisoned").push(key.clone());
            let gate = b.gate.clone();
            async move {
                if let Some(gate) = gate {
                    gate.notified().await;
                }
                match &key[..] {
                    b"missing" => Err(LoadError::NotFound),
                    b"broken" => Err(LoadError::failed("the origin is down")),
                    b"invalid" => Err(LoadError::InvalidKey("no key looks like that".into())),
                    key => Ok(value_of(key)),
                }
            }
        });
        let mut builder = Group::builder("g", getter)
            .max_bytes(64 << 20)
            .picker(pool.clone());
        if let Some(timeout) = b.write_timeout {
            builder = builder.write_timeout(timeout);
        }
        let group = builder.build().expect("a valid group");
        groups.insert(group.clone()).expect("new group");
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, groups, server_options, stopped));
        Node {
            url: url.to_string(),
            pool,
            group,
            loaded,
            stop: Some(stop),
            server: Some(server),
        }
    }

    /// A cluster of `n` nodes that know each other.
    pub(crate) async fn cluster(n: usize, behaviour: Behaviour) -> Vec<Node> {
        let mut bound = Vec::new();
        for _ in 0..n {
            bound.push(Node::bind().await);
        }
        let urls: Vec<String> = bound.iter().map(|(_, url)| url.clone()).collect();
        bound
            .into_iter()
            .map(|(listener, url)| Node::start(listener, &url, &urls, behaviour.clone()))
            .collect()
    }

    /// Stops the server and waits until it has finished.
    pub(crate) async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server stopped cleanly");
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
