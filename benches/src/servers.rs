//! The two servers the benchmark runs beside the nodes, each as a process of its own: the floor
//! (a bare hyper 1.x server answering a fixed 100-byte body, what any Rust HTTP service costs at
//! the least) and the origin the nodes load from.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::load::{VALUE_BYTES, value_of};

/// Which server a process runs.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    /// Every path: the same 100 bytes.
    Floor,
    /// `/{key}`: the key's value.
    Origin,
}

/// Serves `kind` on `listen` until the process is killed, on tokio's multi-threaded runtime
/// (as a node runs), printing `listening on {addr}` once bound; each answer waits `delay`.
pub(crate) fn run(kind: Kind, listen: SocketAddr, delay: Duration) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(listen).await?;
        println!("listening on {}", listener.local_addr()?);
        let fixed = Bytes::from(vec![b'.'; VALUE_BYTES]);
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            let fixed = fixed.clone();
            let service = service_fn(move |req: Request<Incoming>| {
                let body = match kind {
                    Kind::Floor => fixed.clone(),
                    Kind::Origin => value_of(req.uri().path().trim_start_matches('/').as_bytes()),
                };
                async move {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    Ok::<_, Infallible>(Response::new(Full::new(body)))
                }
            });
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}
