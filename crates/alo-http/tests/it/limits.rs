//! What a connection may hold: a head's time and size, idle time, a stalled write, a slot among
//! the open connections, and the time it may delay a shutdown. On paused time: every limit is
//! reached as soon as the runtime has nothing else to do. The sockets are real, and the kernel
//! may hand a loopback read over after the clock has moved on, so a limit is checked never to
//! strike early, and to strike within a bound.

use std::time::Duration;

use alo_http::{ServerOptions, serve_with};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// A server answering every request with `body`, within `options`.
struct Server {
    addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), alo_http::Error>>,
}

impl Server {
    async fn start(options: ServerOptions, body: Bytes) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("bound");
        let (stop, stopped) = oneshot::channel::<()>();
        let handler = move |_req: Request<Incoming>| {
            let body = body.clone();
            async move { Response::new(Full::new(body)) }
        };
        let task = tokio::spawn(serve_with(listener, options, handler, stopped));
        Server {
            addr,
            stop: Some(stop),
            task,
        }
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.expect("connect")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Reads until the server closes the connection (what it sent before, if anything), failing
/// the test after `within`.
async fn closed_within(conn: &mut TcpStream, within: Duration) -> Vec<u8> {
    let mut seen = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(within, read)
        .await
        .expect("the server closed the connection in time");
    seen
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test(start_paused = true)]
async fn a_half_sent_head_is_closed_at_the_header_timeout() {
    let options = ServerOptions::builder()
        .header_read_timeout(ms(200))
        .build()
        .expect("valid options");
    let server = Server::start(options, Bytes::from_static(b"ok")).await;
    let mut conn = server.connect().await;
    conn.write_all(b"GET /x HTTP/1.1\r\nhost: a\r\nx-slow: ")
        .await
        .expect("send");
    let started = Instant::now();
    let answer = closed_within(&mut conn, Duration::from_secs(5)).await;
    let waited = started.elapsed();
    assert!(waited >= ms(200) && waited < ms(1000), "{waited:?}");
    assert!(
        !answer.starts_with(b"HTTP/1.1 200"),
        "no request was served"
    );
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_is_closed_at_the_idle_timeout() {
    let options = ServerOptions::builder()
        .idle_timeout(ms(200))
        .build()
        .expect("valid options");
    let server = Server::start(options, Bytes::from_static(b"ok")).await;
    let mut conn = server.connect().await;
    conn.write_all(b"GET /x HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .expect("send");
    // The response comes, then nothing more is asked: the connection is closed.
    let started = Instant::now();
    let answer = closed_within(&mut conn, Duration::from_secs(5)).await;
    assert!(answer.starts_with(b"HTTP/1.1 200"));
    assert!(answer.ends_with(b"ok"));
    let waited = started.elapsed();
    assert!(waited >= ms(200) && waited < ms(1000), "{waited:?}");
}

#[tokio::test(start_paused = true)]
async fn a_head_over_the_limit_is_431() {
    let options = ServerOptions::builder()
        .max_header_bytes(8192)
        .build()
        .expect("valid options");
    let server = Server::start(options, Bytes::from_static(b"ok")).await;
    let mut conn = server.connect().await;
    let big = "a".repeat(20_000);
    let head = format!("GET /x HTTP/1.1\r\nhost: a\r\nx-big: {big}\r\n\r\n");
    // The server may close before reading it all.
    let _ = conn.write_all(head.as_bytes()).await;
    let answer = closed_within(&mut conn, Duration::from_secs(5)).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 431"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    assert!(
        ServerOptions::builder()
            .max_header_bytes(4096)
            .build()
            .is_err()
    );
}

#[tokio::test(start_paused = true)]
async fn at_the_connection_limit_new_clients_wait_and_are_served_when_one_closes() {
    let options = ServerOptions::builder()
        .max_connections(1)
        .build()
        .expect("valid options");
    let server = Server::start(options, Bytes::from_static(b"ok")).await;
    let first = server.connect().await;
    // Accepted: a request on it is answered.
    let mut first = first;
    first
        .write_all(b"GET /x HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .expect("send");
    let mut buf = [0u8; 512];
    let n = first.read(&mut buf).await.expect("answer");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));

    let mut second = server.connect().await;
    second
        .write_all(b"GET /x HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n")
        .await
        .expect("send");
    let waited = tokio::time::timeout(ms(300), second.read(&mut buf)).await;
    assert!(
        waited.is_err(),
        "the second client waits while the first holds the slot"
    );
    drop(first);
    let answer = closed_within(&mut second, Duration::from_secs(5)).await;
    assert!(answer.starts_with(b"HTTP/1.1 200"));
    assert!(ServerOptions::builder().max_connections(0).build().is_err());
}

#[tokio::test(start_paused = true)]
async fn a_client_that_does_not_read_loses_its_connection_at_the_write_timeout() {
    let options = ServerOptions::builder()
        .max_connections(1)
        .write_timeout(ms(200))
        .build()
        .expect("valid options");
    // Far more than the socket buffers hold.
    let server = Server::start(options, Bytes::from(vec![7u8; 64 << 20])).await;
    let mut stuck = server.connect().await;
    stuck
        .write_all(b"GET /x HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .expect("send");
    // The stuck client holds the only slot until the write timeout frees it; then the next
    // client is served.
    let mut next = server.connect().await;
    next.write_all(b"HEAD /x HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n")
        .await
        .expect("send");
    let answer = closed_within(&mut next, Duration::from_secs(10)).await;
    assert!(answer.starts_with(b"HTTP/1.1 200"));
    drop(stuck);
}

#[tokio::test(start_paused = true)]
async fn a_shutdown_closes_what_is_left_at_its_deadline() {
    let options = ServerOptions::builder()
        .write_timeout(Duration::from_secs(60))
        .shutdown_timeout(ms(300))
        .build()
        .expect("valid options");
    let mut server = Server::start(options, Bytes::from(vec![7u8; 64 << 20])).await;
    // A client that never reads its (large) response keeps its request in flight.
    let mut stuck = server.connect().await;
    stuck
        .write_all(b"GET /x HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .expect("send");
    let mut buf = [0u8; 16];
    let _ = stuck.read(&mut buf).await.expect("the response has begun");
    let started = Instant::now();
    let _ = server.stop.take().expect("running").send(());
    let task = &mut server.task;
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the server returned by its deadline")
        .expect("server task")
        .expect("serve ended cleanly");
    let waited = started.elapsed();
    assert!(
        waited >= ms(300) && waited < ms(1000),
        "it waited for the request until the shutdown timeout: {waited:?}"
    );
}
