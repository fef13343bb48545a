//! The sources of truth a node can load from: a built-in demo, an HTTP origin, a directory.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use alo_group::{BoxFuture, Getter, LoadError};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// The demo data set: a few fruit, loaded with a delay so a first and a second get differ.
pub const DEMO: [(&str, &str); 4] = [
    ("apple", "a red or green fruit"),
    ("banana", "a long yellow fruit"),
    ("cherry", "a small round stone fruit"),
    ("hello", "world"),
];

/// The built-in origin of group `demo`.
#[derive(Debug)]
pub struct DemoOrigin {
    /// Simulated origin latency.
    pub delay: Duration,
}

impl Getter for DemoOrigin {
    fn get(&self, key: Bytes) -> BoxFuture<'_, Result<Bytes, LoadError>> {
        Box::pin(async move {
            tracing::info!(key = %String::from_utf8_lossy(&key), "demo origin load started");
            tokio::time::sleep(self.delay).await;
            let found = DEMO.iter().find(|(k, _)| k.as_bytes() == &key[..]);
            tracing::info!(key = %String::from_utf8_lossy(&key), found = found.is_some(), "demo origin load");
            found
                .map(|(_, v)| Bytes::from_static(v.as_bytes()))
                .ok_or(LoadError::NotFound)
        })
    }
}

/// Bytes of a key written as they are in an origin URL: unreserved characters and `/`.
const KEY_IN_URL: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// Group `web`: key `k` is `GET {base}/{k}` with `k` percent-encoded (`/` kept).
#[derive(Debug)]
pub struct UrlOrigin {
    base: String,
    client: Client<HttpConnector, Empty<Bytes>>,
    timeout: Duration,
    /// The largest body accepted: the node's largest value.
    max_bytes: usize,
}

impl UrlOrigin {
    /// An origin at `base` (`http://host[:port][/path]`), whose requests take at most `timeout`
    /// and whose bodies hold at most `max_bytes`.
    ///
    /// # Errors
    /// When `base` is not an `http://` URL.
    pub fn new(base: &str, timeout: Duration, max_bytes: usize) -> anyhow::Result<Self> {
        let uri: http::Uri = base.parse()?;
        anyhow::ensure!(
            uri.scheme_str() == Some("http") && uri.authority().is_some(),
            "--origin-url must be an http:// URL with a host, not {base:?}"
        );
        Ok(UrlOrigin {
            base: base.trim_end_matches('/').to_string(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            timeout,
            max_bytes,
        })
    }

    async fn fetch(&self, key: &[u8]) -> Result<Bytes, LoadError> {
        let key = std::str::from_utf8(key)
            .map_err(|_| LoadError::InvalidKey("an origin URL key must be UTF-8".into()))?;
        let url = format!("{}/{}", self.base, utf8_percent_encode(key, KEY_IN_URL));
        let request = Request::get(&url)
            .body(Empty::new())
            .map_err(|e| LoadError::failed(format_args!("origin URL {url}: {e}")))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| LoadError::failed(format_args!("origin {url}: {e}")))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), self.max_bytes)
                .collect()
                .await
                .map_err(|e| LoadError::failed(format_args!("origin {url}: {e}")))?
                .to_bytes();
            match status {
                StatusCode::OK => Ok(body),
                StatusCode::NOT_FOUND => Err(LoadError::NotFound),
                status => Err(LoadError::failed(format_args!(
                    "origin {url} answered {status}"
                ))),
            }
        };
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(LoadError::failed(format_args!(
                    "origin {url}: no answer within {:?}",
                    self.timeout
                )))
            });
        tracing::info!(%url, ok = result.is_ok(), elapsed = ?started.elapsed(), "origin load");
        result
    }
}

impl Getter for UrlOrigin {
    fn get(&self, key: Bytes) -> BoxFuture<'_, Result<Bytes, LoadError>> {
        Box::pin(async move { self.fetch(&key).await })
    }
}

/// Group `files`: key = a path relative to the directory.
#[derive(Debug)]
pub struct DirOrigin {
    /// Canonical, so that a path can be checked to stay inside it.
    root: PathBuf,
    /// The largest file served: the node's largest value.
    max_bytes: usize,
}

impl DirOrigin {
    /// An origin serving the files under `root` of at most `max_bytes`.
    ///
    /// # Errors
    /// When `root` is not a directory.
    pub fn new(root: &Path, max_bytes: usize) -> anyhow::Result<Self> {
        let root = root
            .canonicalize()
            .map_err(|e| anyhow::anyhow!("--origin-dir {}: {e}", root.display()))?;
        anyhow::ensure!(
            root.is_dir(),
            "--origin-dir {} is not a directory",
            root.display()
        );
        Ok(DirOrigin { root, max_bytes })
    }

    async fn read(&self, key: &[u8]) -> Result<Bytes, LoadError> {
        let path = self.resolve(key)?;
        let started = std::time::Instant::now();
        let result = match self.read_limited(&path).await {
            Ok(Some(bytes)) => Ok(Bytes::from(bytes)),
            Ok(None) => Err(LoadError::failed(format_args!(
                "the file is larger than the largest value, {} bytes",
                self.max_bytes
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(LoadError::NotFound),
            Err(e) => Err(LoadError::failed(format_args!("{}: {e}", path.display()))),
        };
        tracing::info!(path = %path.display(), ok = result.is_ok(), elapsed = ?started.elapsed(), "origin load");
        result
    }

    /// The file's bytes, or `None` when it holds more than `max_bytes` (checked before reading,
    /// and again while reading, in case it grew).
    async fn read_limited(&self, path: &Path) -> std::io::Result<Option<Vec<u8>>> {
        use tokio::io::AsyncReadExt as _;
        let file = tokio::fs::File::open(path).await?;
        let len = file.metadata().await?.len();
        if len > self.max_bytes as u64 {
            return Ok(None);
        }
        let mut bytes = Vec::with_capacity(len as usize);
        file.take(self.max_bytes as u64 + 1)
            .read_to_end(&mut bytes)
            .await?;
        Ok((bytes.len() <= self.max_bytes).then_some(bytes))
    }

    /// The file a key names, refusing any key that would leave the directory.
    fn resolve(&self, key: &[u8]) -> Result<PathBuf, LoadError> {
        let invalid = |why: &str| LoadError::InvalidKey(why.into());
        let key = std::str::from_utf8(key).map_err(|_| invalid("a file key must be UTF-8"))?;
        let relative = Path::new(key);
        let plain = relative
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if !plain || key.contains('\0') {
            return Err(invalid("a file key is a relative path without `..`"));
        }
        let joined = self.root.join(relative);
        match joined.canonicalize() {
            // A link may point anywhere: what counts is where the path really leads.
            Ok(real) if real.starts_with(&self.root) => Ok(real),
            Ok(_) => Err(invalid("the path leads out of the directory")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(LoadError::NotFound),
            Err(e) => Err(LoadError::failed(format_args!("{}: {e}", joined.display()))),
        }
    }
}

impl Getter for DirOrigin {
    fn get(&self, key: Bytes) -> BoxFuture<'_, Result<Bytes, LoadError>> {
        Box::pin(async move { self.read(&key).await })
    }
}
