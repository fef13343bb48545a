//! The sources of truth a node can load from: a built-in demo, an HTTP origin, a directory.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use std::os::unix::ffi::OsStrExt as _;

use alo_group::{BoxFuture, Getter, LoadContext, LoadError, Loaded, escape, escape_bytes};
use bytes::Bytes;
use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt as _};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rustix::fs::OFlags;
use rustix::io::Errno;
use tokio::sync::Semaphore;
use tracing::Instrument as _;

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
    fn get(&self, ctx: LoadContext) -> BoxFuture<'_, Result<Loaded, LoadError>> {
        Box::pin(async move {
            let key = ctx.key().clone();
            tracing::info!(key = %escape_bytes(&key), "demo origin load started");
            tokio::time::sleep(self.delay).await;
            let found = DEMO.iter().find(|(k, _)| k.as_bytes() == &key[..]);
            tracing::info!(key = %escape_bytes(&key), found = found.is_some(), "demo origin load");
            found
                .map(|(_, v)| Loaded::new(Bytes::from_static(v.as_bytes())))
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
    /// The most a request may take, whatever its load's deadline leaves.
    timeout: Duration,
    /// The largest body accepted: the node's largest value.
    max_bytes: usize,
}

impl UrlOrigin {
    /// An origin at `base` (`http://host[:port][/path]`), whose requests take what is left of
    /// their load's deadline and at most `timeout`, and whose bodies hold at most `max_bytes`,
    /// over at most `max_connections` idle connections (the group's turns bound those in use).
    ///
    /// # Errors
    /// When `base` is not an `http://` URL, has a port that is not 1-65535, or has a query or
    /// a fragment.
    pub fn new(
        base: &str,
        timeout: Duration,
        max_bytes: usize,
        max_connections: usize,
    ) -> anyhow::Result<Self> {
        let uri: http::Uri = base.parse()?;
        let authority = uri.authority().filter(|_| uri.scheme_str() == Some("http"));
        let Some(authority) = authority else {
            anyhow::bail!("--origin-url must be an http:// URL with a host, not {base:?}");
        };
        // `http::Uri` reads a port it cannot parse as none, which a client takes for 80.
        let host_port = authority.as_str().rsplit('@').next().unwrap_or_default();
        let port = &host_port[authority.host().len().min(host_port.len())..];
        anyhow::ensure!(
            port.is_empty() || authority.port_u16().is_some_and(|p| p != 0),
            "--origin-url has a port that is not 1-65535: {base:?}"
        );
        // Checked on the text: `http::Uri` drops a fragment without a word. A key is appended
        // to the path, which ends where a query or a fragment begins.
        anyhow::ensure!(
            !base.contains(['?', '#']),
            "--origin-url must have no query (`?`) or fragment (`#`), not {base:?}"
        );
        Ok(UrlOrigin {
            base: base.trim_end_matches('/').to_string(),
            client: Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(max_connections)
                .build_http(),
            timeout,
            max_bytes,
        })
    }

    /// `GET {base}/{key}` within `timeout`.
    async fn fetch(&self, key: &[u8], timeout: Duration) -> Result<Bytes, LoadError> {
        let key = std::str::from_utf8(key)
            .map_err(|_| LoadError::InvalidKey("an origin URL key must be UTF-8".into()))?;
        // The origin, or a proxy before it, would resolve `..` against the base and serve what
        // lies outside it (`{base}/../secret`).
        if key
            .split('/')
            .any(|segment| segment == "." || segment == "..")
        {
            return Err(LoadError::InvalidKey(
                "an origin URL key has no `.` or `..` path segment".into(),
            ));
        }
        let url = format!("{}/{}", self.base, utf8_percent_encode(key, KEY_IN_URL));
        let mut request = Request::get(&url)
            .body(Empty::new())
            .map_err(|e| LoadError::failed(format_args!("origin URL {url}: {e}")))?;
        let span =
            tracing::debug_span!("origin request", otel.kind = "client", url = %escape(&url));
        alo_http::trace::inject(&span, request.headers_mut());
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
        let result = tokio::time::timeout(timeout, exchange.instrument(span))
            .await
            .unwrap_or_else(|_| {
                Err(LoadError::failed(format_args!(
                    "origin {url}: no answer within {timeout:?}"
                )))
            });
        tracing::info!(%url, ok = result.is_ok(), elapsed = ?started.elapsed(), "origin load");
        result
    }
}

impl Getter for UrlOrigin {
    fn get(&self, ctx: LoadContext) -> BoxFuture<'_, Result<Loaded, LoadError>> {
        // What is left of the load's deadline, at most `--origin-timeout-ms`: the request gives
        // up with a reason before the group gives up without one.
        let timeout = ctx.remaining().min(self.timeout);
        Box::pin(async move { self.fetch(ctx.key(), timeout).await.map(Loaded::new) })
    }
}

/// At most this many files are read at once; further loads wait for a turn. Each read holds a
/// thread of tokio's blocking pool, which the rest of the node shares.
const MAX_READS: usize = 32;

/// Flags added to every open. `NONBLOCK`: opening a FIFO without a writer returns at once instead
/// of waiting for one (the handle is then refused as not a regular file); reads of regular files
/// ignore it. `NOCTTY`: opening a terminal never makes it the node's controlling terminal.
const OPEN_FLAGS: i32 = (OFlags::NONBLOCK.bits() | OFlags::NOCTTY.bits()) as i32;

/// Group `files`: key = a path relative to the directory.
#[derive(Debug)]
pub struct DirOrigin {
    /// The directory as given, for logs and errors only: files are opened through `dir`.
    root: PathBuf,
    /// The directory, opened once. Each file is opened beneath this handle by cap-std (with
    /// `openat2`'s `RESOLVE_BENEATH` where the kernel has it), so no key, link or rename, even one
    /// made between a check and the open, leads out of it.
    dir: Arc<Dir>,
    /// Turns to read, [`MAX_READS`] of them; a read keeps its turn until its thread is done.
    reads: Arc<Semaphore>,
    /// The largest file served: the node's largest value.
    max_bytes: usize,
}

/// What a blocking read found.
enum Read {
    /// The whole file.
    Bytes(Vec<u8>),
    /// A directory, FIFO, socket or device: served as absent.
    NotAFile,
    /// More than the largest value.
    TooLarge,
}

impl DirOrigin {
    /// An origin serving the files under `root` of at most `max_bytes`.
    ///
    /// # Errors
    /// When `root` is not a directory that can be opened.
    pub fn new(root: &Path, max_bytes: usize) -> anyhow::Result<Self> {
        let dir = Dir::open_ambient_dir(root, ambient_authority())
            .map_err(|e| anyhow::anyhow!("--origin-dir {}: {e}", root.display()))?;
        Ok(DirOrigin {
            root: root.to_path_buf(),
            dir: Arc::new(dir),
            reads: Arc::new(Semaphore::new(MAX_READS)),
            max_bytes,
        })
    }

    /// The file `key` names, by `deadline`.
    async fn read(&self, key: &[u8], deadline: std::time::Instant) -> Result<Bytes, LoadError> {
        let relative = relative_path(key)?;
        let path = self.root.join(&relative);
        let started = std::time::Instant::now();
        let result = match self.read_blocking(relative, deadline).await {
            Ok(Ok(Read::Bytes(bytes))) => Ok(Bytes::from(bytes)),
            Ok(Ok(Read::NotAFile)) => Err(LoadError::NotFound),
            Ok(Ok(Read::TooLarge)) => Err(LoadError::failed(format_args!(
                "the file is larger than the largest value, {} bytes",
                self.max_bytes
            ))),
            Ok(Err(e)) => Err(open_error(&e, &path)),
            Err(e) => Err(e),
        };
        let shown = escape_bytes(path.as_os_str().as_bytes());
        tracing::info!(path = %shown, ok = result.is_ok(), elapsed = ?started.elapsed(), "origin load");
        result
    }

    /// Opens, checks and reads the file on the blocking pool, once a turn is free, by
    /// `deadline` (its load's). A read stuck in the kernel (a hung network filesystem) cannot be
    /// cancelled: its thread and its turn stay taken until the filesystem answers, but the load
    /// gives up.
    async fn read_blocking(
        &self,
        relative: PathBuf,
        deadline: std::time::Instant,
    ) -> Result<std::io::Result<Read>, LoadError> {
        let dir = Arc::clone(&self.dir);
        let reads = Arc::clone(&self.reads);
        let max_bytes = self.max_bytes;
        let read = async move {
            let turn = reads
                .acquire_owned()
                .await
                .map_err(|_| LoadError::failed("the directory origin stopped reading"))?;
            tokio::task::spawn_blocking(move || {
                // Held by the thread, not the load: a load that times out does not free a
                // turn its read still occupies.
                let _turn = turn;
                read_beneath(&dir, &relative, max_bytes)
            })
            .await
            .map_err(|e| LoadError::failed(format_args!("reading the file failed: {e}")))
        };
        tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), read)
            .await
            .unwrap_or_else(|_| Err(LoadError::failed("reading the file timed out")))
    }
}

/// The relative path a key names, refusing up front any key that is absolute, has a `..` or a
/// NUL. The reasons are shown to clients: they never name a filesystem path.
fn relative_path(key: &[u8]) -> Result<PathBuf, LoadError> {
    let invalid = |why: &str| LoadError::InvalidKey(why.into());
    let key = std::str::from_utf8(key).map_err(|_| invalid("a file key must be UTF-8"))?;
    let relative = Path::new(key);
    let plain = relative
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !plain || key.contains('\0') {
        return Err(invalid("a file key is a relative path without `..`"));
    }
    Ok(relative.to_path_buf())
}

/// Opens `relative` beneath `dir` without blocking on special files and reads it if it is a
/// regular file of at most `max_bytes`. The type and size are those of the opened handle, not of
/// the path, which may have changed since.
fn read_beneath(dir: &Dir, relative: &Path, max_bytes: usize) -> std::io::Result<Read> {
    use std::io::Read as _;
    let mut options = OpenOptions::new();
    options.read(true).custom_flags(OPEN_FLAGS);
    let file = dir.open_with(relative, &options)?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Ok(Read::NotAFile);
    }
    let len = metadata.len();
    if len > max_bytes as u64 {
        return Ok(Read::TooLarge);
    }
    // `len` fits: it is at most `max_bytes`.
    let mut bytes = Vec::with_capacity(len as usize);
    // One byte more than allowed tells a file that grew since from one that did not.
    file.take((max_bytes as u64).saturating_add(1))
        .read_to_end(&mut bytes)?;
    Ok(if bytes.len() <= max_bytes {
        Read::Bytes(bytes)
    } else {
        Read::TooLarge
    })
}

/// The load error for an error opening or reading `path`.
fn open_error(e: &std::io::Error, path: &Path) -> LoadError {
    use std::io::ErrorKind;
    let errno = e.raw_os_error();
    let is = |code: Errno| errno == Some(code.raw_os_error());
    match e.kind() {
        // Absent, or a path through a file (`file/x`), or a link loop: nothing to serve.
        ErrorKind::NotFound | ErrorKind::NotADirectory | ErrorKind::IsADirectory => {
            LoadError::NotFound
        }
        _ if is(Errno::LOOP) => LoadError::NotFound,
        // `open` of a socket, or of a device without a driver: not a file either.
        _ if is(Errno::NXIO) || is(Errno::NODEV) => LoadError::NotFound,
        // cap-std refuses a path that leads out of the directory (a link to `/etc/passwd`) with
        // `PermissionDenied` and no OS error code; a file the node may not read has `EACCES`.
        ErrorKind::PermissionDenied if errno.is_none() => {
            LoadError::InvalidKey("the key leads out of the directory".into())
        }
        _ if is(Errno::NAMETOOLONG) => {
            LoadError::InvalidKey("a name in the key is too long for the filesystem".into())
        }
        _ => LoadError::failed(format_args!("{}: {e}", path.display())),
    }
}

impl Getter for DirOrigin {
    fn get(&self, ctx: LoadContext) -> BoxFuture<'_, Result<Loaded, LoadError>> {
        Box::pin(async move { self.read(ctx.key(), ctx.deadline()).await.map(Loaded::new) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_keys_are_relative_paths_without_parent_segments() {
        for key in ["..", "../secret", "a/../../b", "/etc/passwd", "a\0b"] {
            assert!(
                matches!(relative_path(key.as_bytes()), Err(LoadError::InvalidKey(_))),
                "{key:?}"
            );
        }
        for key in ["a", "a/./b", "./a", "a..b/.c"] {
            assert!(relative_path(key.as_bytes()).is_ok(), "{key:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_load_waiting_for_a_turn_gives_up_at_its_deadline() {
        let root = tempfile::tempdir().expect("temp dir");
        std::fs::write(root.path().join("f"), "x").expect("write");
        let origin = DirOrigin::new(root.path(), 10).expect("a directory");
        // Every turn taken, as by reads stuck on a hung filesystem.
        let turns = Arc::clone(&origin.reads)
            .acquire_many_owned(MAX_READS as u32)
            .await
            .expect("open");
        let started = tokio::time::Instant::now();
        let deadline = Duration::from_secs(7);
        let got = origin.get(LoadContext::new("f", deadline)).await;
        assert_eq!(got, Err(LoadError::failed("reading the file timed out")));
        assert_eq!(started.elapsed(), deadline);
        drop(turns);
        let load = LoadContext::new("f", Duration::from_secs(60));
        assert_eq!(origin.get(load).await, Ok(Loaded::new("x")));
    }
}
