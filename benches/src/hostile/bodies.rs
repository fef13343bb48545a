//! Peer requests whose bodies the node must refuse without reading them: unproven ones, and
//! a proven batch get far over the batch limit.

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime};

use alo_http::{AUTH_HEADER, PeerSecrets};
use bytes::Bytes;

use super::raw::{self, Ended};
use super::{MEMORY_TARGET, Row, SECRET, SecretFile, mib, ms};
use crate::procs::{self, Log};

/// a. Clients without a proof that announce a 15 MiB batch body and stream it until the
/// node closes: the node must answer from the head and read none of it.
pub(super) async fn unproven(node: &Path) -> anyhow::Result<Vec<Row>> {
    const CLIENTS: usize = 20;
    const BODY: usize = 15 << 20;
    let secret = SecretFile::new()?;
    let cluster = procs::cluster(node, 1, &[], |_| secret.args(), Log::Kept).await?;
    let (proc, peer) = (&cluster.nodes[0], cluster.peers[0]);
    let before = proc.memory()?;
    let head = Bytes::from(format!(
        "POST /_alo/demo?get HTTP/1.1\r\nhost: bench\r\ncontent-length: {BODY}\r\n\r\n"
    ));
    let body = Bytes::from(vec![b'a'; BODY]);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let limit = Duration::from_secs(10);
            tokio::spawn(raw::exchange(peer, head.clone(), body.clone(), limit))
        })
        .collect();
    let mut answers = Vec::new();
    for client in clients {
        answers.push(client.await??);
    }
    let after = proc.memory()?;
    let refused = answers.iter().filter(|a| a.status == Some(401)).count();
    let closed = answers
        .iter()
        .filter(|a| a.writing == Ended::Closed)
        .count();
    let slowest = answers.iter().filter_map(|a| a.answered_in).max();
    let most_sent = answers.iter().map(|a| a.body_sent).max().unwrap_or(0);
    let figure = format!(
        "peak RSS (VmHWM) {:.1} MiB before, {:.1} MiB after; {refused} of {CLIENTS} got 401 (the \
         last after {}), {closed} of {CLIENTS} had their connection closed mid-body; at most \
         {:.1} MiB of a body left a client (kernel buffers)",
        mib(before.peak),
        mib(after.peak),
        slowest.map_or("-".to_string(), ms),
        mib(most_sent as u64),
    );
    Ok(vec![Row {
        scenario: "a. 20 unproven batch gets announcing 15 MiB each, body streamed until closed",
        figure,
        target: "peak RSS < 64 MiB; 401 for each",
        met: after.peak < MEMORY_TARGET && refused == CLIENTS,
    }])
}

/// b. A batch get of 10 MB (1.25 million keys) with a valid proof: refused from its head.
pub(super) async fn signed_huge_batch(node: &Path) -> anyhow::Result<Vec<Row>> {
    const KEYS: usize = 1_250_000;
    let secret = SecretFile::new()?;
    let cluster = procs::cluster(node, 1, &[], |_| secret.args(), Log::Kept).await?;
    let (proc, peer) = (&cluster.nodes[0], cluster.peers[0]);
    let before = proc.memory()?;
    let mut body = Vec::with_capacity(KEYS * 8);
    for i in 0..KEYS {
        writeln!(body, "{i:07}")?;
    }
    let path = "/_alo/demo?get";
    let to = format!("http://{peer}");
    let proof = PeerSecrets::new([SECRET])?.proof(&to, "POST", path, &body, SystemTime::now());
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: bench\r\n{AUTH_HEADER}: {proof}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let answer = raw::exchange(peer, head.into(), body.into(), Duration::from_secs(10)).await?;
    let after = proc.memory()?;
    let answered_in = answer.answered_in.unwrap_or(Duration::MAX);
    let figure = format!(
        "{} after {}; {:.1} MiB of the body left the client before the close; VmHWM {:.1} → \
         {:.1} MiB",
        answer
            .status
            .map_or("no answer".to_string(), |s| s.to_string()),
        answer.answered_in.map_or("-".to_string(), ms),
        mib(answer.body_sent as u64),
        mib(before.peak),
        mib(after.peak),
    );
    Ok(vec![Row {
        scenario: "b. a signed batch get of 10 MB (1.25 M keys)",
        figure,
        target: "413 at once (< 100 ms)",
        met: answer.status == Some(413) && answered_in < Duration::from_millis(100),
    }])
}
