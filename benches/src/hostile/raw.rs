//! HTTP/1.1 written by hand over TCP, as no well-behaved client or server would: a request
//! whose body is streamed whatever the server answers, and a member whose every answer
//! announces a body it never sends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// The most bytes of an answer's head read before giving up on it.
const MAX_HEAD: usize = 64 * 1024;

/// Bytes written at once while streaming a body.
const CHUNK: usize = 64 * 1024;

/// What a request written byte for byte got back.
#[derive(Debug)]
pub(crate) struct Answer {
    /// The status of the answer's head, if a whole head came back.
    pub(crate) status: Option<u16>,
    /// When that head was complete, from the connection's start.
    pub(crate) answered_in: Option<Duration>,
    /// Bytes of the body the socket took before the writing stopped (the kernel's buffers on
    /// both sides take some without the server reading a byte).
    pub(crate) body_sent: usize,
    /// Why the writing stopped.
    pub(crate) writing: Ended,
}

/// Why a side of an exchange stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ended {
    /// It did all it had to.
    Done,
    /// The other end closed the connection, or reset it.
    Closed,
    /// It was still going at the exchange's limit.
    TimedOut,
}

/// Connects to `addr`, writes `head` and then `body` while reading the answer's head, both
/// until done, until the server closes, or until `limit` has passed.
pub(crate) async fn exchange(
    addr: SocketAddr,
    head: Bytes,
    body: Bytes,
    limit: Duration,
) -> anyhow::Result<Answer> {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + limit;
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut reader, mut writer) = stream.into_split();
    let write = async {
        let mut sent = 0;
        let wrote = tokio::time::timeout_at(deadline, async {
            writer.write_all(&head).await?;
            for chunk in body.chunks(CHUNK) {
                writer.write_all(chunk).await?;
                sent += chunk.len();
            }
            Ok::<_, std::io::Error>(())
        })
        .await;
        let ended = match wrote {
            Ok(Ok(())) => Ended::Done,
            Ok(Err(_)) => Ended::Closed,
            Err(_) => Ended::TimedOut,
        };
        (sent, ended)
    };
    let read = async {
        let mut got = Vec::new();
        let mut buf = vec![0; 4096];
        let read = tokio::time::timeout_at(deadline, async {
            while got.len() < MAX_HEAD {
                if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                    return Some((status_of(&got[..end]), started.elapsed()));
                }
                match reader.read(&mut buf).await {
                    Ok(n @ 1..) => got.extend_from_slice(&buf[..n]),
                    _ => return None,
                }
            }
            None
        })
        .await;
        read.ok().flatten()
    };
    let ((body_sent, writing), answered) = tokio::join!(write, read);
    Ok(Answer {
        status: answered.and_then(|(status, _)| status),
        answered_in: answered.map(|(_, at)| at),
        body_sent,
        writing,
    })
}

/// The status code of an answer's head.
fn status_of(head: &[u8]) -> Option<u16> {
    let line = head.split(|&b| b == b'\r').next()?;
    let code = line.split(|&b| b == b' ').nth(1)?;
    std::str::from_utf8(code).ok()?.parse().ok()
}

/// A member that answers every request head with `200` and a `content-length` of 10^12, then
/// sends nothing more and holds the connection until the asker closes it. Stopped, with every
/// connection it holds, when dropped.
#[derive(Debug)]
pub(crate) struct HoldingMember {
    pub(crate) addr: SocketAddr,
    /// The requests for a key of a group it was sent (probes of its health left out).
    asked: Arc<AtomicUsize>,
    /// The accept loop, which owns the connections' tasks.
    server: tokio::task::JoinHandle<()>,
}

/// The head it answers with.
const HUGE_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 1000000000000\r\n\r\n";

impl HoldingMember {
    /// Listening on 127.0.0.1, on a free port.
    pub(crate) async fn start() -> anyhow::Result<HoldingMember> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let asked = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&asked);
        let server = tokio::spawn(async move {
            // Dropped with the loop when the member is: every connection goes with it.
            let mut held = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.spawn(hold(stream, Arc::clone(&counted)));
                while held.try_join_next().is_some() {}
            }
        });
        Ok(HoldingMember {
            addr,
            asked,
            server,
        })
    }

    /// How many requests for a key (or a batch of keys) it has been sent.
    pub(crate) fn asked(&self) -> usize {
        self.asked.load(Ordering::Relaxed)
    }
}

impl Drop for HoldingMember {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// One connection of a [`HoldingMember`]: the first head answered, then everything read and
/// dropped until the other end closes.
async fn hold(mut stream: TcpStream, asked: Arc<AtomicUsize>) {
    let mut got = Vec::new();
    let mut buf = vec![0; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") && got.len() < MAX_HEAD {
        match stream.read(&mut buf).await {
            Ok(n @ 1..) => got.extend_from_slice(&buf[..n]),
            _ => return,
        }
    }
    let line = got.split(|&b| b == b'\r').next().unwrap_or_default();
    // A probe asks for the base path alone; a get names a group.
    let probe = line.windows(7).any(|w| w == b"/_alo/ ");
    if !probe {
        asked.fetch_add(1, Ordering::Relaxed);
    }
    if stream.write_all(HUGE_HEAD).await.is_err() {
        return;
    }
    while let Ok(1..) = stream.read(&mut buf).await {}
}
