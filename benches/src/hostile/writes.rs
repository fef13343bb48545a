//! Writes through a cluster under attack or failure: removes and purges with a member stopped,
//! and a captured signed write sent again.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use alo_http::{AUTH_HEADER, PeerSecrets};
use anyhow::Context as _;
use bytes::Bytes;
use http::{Method, StatusCode};
use rustix::process::Signal;

use super::raw;
use super::{Row, SECRET, SecretFile, ms, strings, timed};
use crate::procs::{self, Log};

/// `peer`'s state in the `peer_health` of `api`'s `/stats`.
async fn health_of(api: SocketAddr, peer: SocketAddr) -> anyhow::Result<String> {
    let stats = procs::json(api, "/stats").await?;
    let url = format!("http://{peer}");
    stats["peer_health"]
        .as_array()
        .and_then(|peers| peers.iter().find(|p| p["url"] == url.as_str()))
        .and_then(|p| p["state"].as_str())
        .map(str::to_string)
        .with_context(|| format!("no peer_health for {url}"))
}

/// c. Removes and a purge at node 1 of three while node 3 is stopped (SIGSTOP): bounded by
/// the write timeout, then at once once node 3 is marked down.
pub(super) async fn with_a_stopped_member(node: &Path) -> anyhow::Result<Vec<Row>> {
    let cluster = procs::cluster(node, 3, &[], |_| strings(&["--allow-writes"]), Log::Kept).await?;
    let api = cluster.nodes[0].addr;
    let victim = &cluster.nodes[2];
    victim.signal(Signal::STOP)?;
    let stopped = Instant::now();
    let rows = async {
        let remove = |key: &str| {
            let path = format!("/api/demo/{key}");
            async move { timed(api, Method::DELETE, &path, Bytes::new()).await }
        };
        let (status, answer, first) = remove("apple").await?;
        let mut rows = vec![Row {
            scenario: "c. remove at node 1, node 3 stopped (SIGSTOP), not yet marked down",
            figure: format!(
                "{} `{}` in {:.2} s",
                status.as_u16(),
                String::from_utf8_lossy(&answer).trim(),
                first.as_secs_f64()
            ),
            target: "< 5 s",
            met: status == StatusCode::OK && first < Duration::from_secs(5),
        }];
        let mut removes = 1;
        while health_of(api, cluster.peers[2]).await? != "down" {
            anyhow::ensure!(
                stopped.elapsed() < Duration::from_secs(30),
                "node 3 not marked down 30 s after it stopped ({removes} removes)"
            );
            remove("banana").await?;
            removes += 1;
        }
        let down_after = stopped.elapsed();
        let (status, answer, took) = remove("cherry").await?;
        let purge = timed(api, Method::DELETE, "/api/demo", Bytes::new()).await?;
        let (purge_status, purge_answer, purge_took) = purge;
        rows.push(Row {
            scenario: "c. remove and purge at node 1 once node 3 is marked down",
            figure: format!(
                "node 3 down {:.1} s after the stop, after {removes} {}; then remove: {} `{}` in \
                 {}; purge: {} `{}` in {}",
                down_after.as_secs_f64(),
                if removes == 1 { "remove" } else { "removes" },
                status.as_u16(),
                String::from_utf8_lossy(&answer).trim(),
                ms(took),
                purge_status.as_u16(),
                String::from_utf8_lossy(&purge_answer).trim(),
                ms(purge_took),
            ),
            target: "< 1 s each",
            met: status == StatusCode::OK
                && purge_status == StatusCode::OK
                && took.max(purge_took) < Duration::from_secs(1),
        });
        Ok(rows)
    }
    .await;
    victim.signal(Signal::CONT)?;
    rows
}

/// d. A signed peer write captured and sent again after the value was written anew.
pub(super) async fn replayed(node: &Path) -> anyhow::Result<Vec<Row>> {
    const KEY: &str = "replayed";
    let secret = SecretFile::new()?;
    let args = |_| {
        let mut args = secret.args();
        args.push("--allow-writes".to_string());
        args
    };
    let cluster = procs::cluster(node, 3, &[], args, Log::Kept).await?;
    let api = |i: usize| cluster.nodes[i].addr;
    let client_path = format!("/api/demo/{KEY}");
    // The key's owner: the node whose `sets` a client's set bumps.
    timed(
        api(0),
        Method::PUT,
        &client_path,
        Bytes::from_static(b"first"),
    )
    .await?;
    let mut owner = None;
    for (i, proc) in cluster.nodes.iter().enumerate() {
        if procs::group_counter(proc.addr, "demo", "sets").await? > 0 {
            owner = Some(i);
        }
    }
    let owner = owner.context("no node counted the set")?;

    let path = format!("/_alo/demo/{KEY}");
    let to = format!("http://{}", cluster.peers[owner]);
    let proof = PeerSecrets::new([SECRET])?.proof(&to, "PUT", &path, b"old", SystemTime::now());
    let captured = Bytes::from(format!(
        "PUT {path} HTTP/1.1\r\nhost: alo\r\n{AUTH_HEADER}: {proof}\r\ncontent-length: 3\r\n\
         connection: close\r\n\r\nold"
    ));
    let limit = Duration::from_secs(5);
    let send = |to: usize| raw::exchange(cluster.peers[to], captured.clone(), Bytes::new(), limit);
    let first = send(owner).await?.status;
    let (written, _, _) = timed(
        api(0),
        Method::PUT,
        &client_path,
        Bytes::from_static(b"new"),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut replays = Vec::new();
    for i in (0..3).map(|i| (owner + i) % 3) {
        let status = send(i).await?.status;
        let (_, value, _) = timed(api(i), Method::GET, &client_path, Bytes::new()).await?;
        replays.push((i, status, String::from_utf8_lossy(&value).into_owned()));
    }
    let show = |status: Option<u16>| status.map_or("no answer".to_string(), |s| s.to_string());
    let (_, to_owner, at_owner) = &replays[0];
    let mut rows = vec![Row {
        scenario: "d. a captured signed PUT (\"old\") sent again to the key's owner 2 s after \"new\" was written",
        figure: format!(
            "first delivery {}; client write of \"new\" {}; replay {}; GET at the owner: {at_owner:?}",
            show(first),
            written.as_u16(),
            show(*to_owner),
        ),
        target: "401, \"new\" stays",
        met: *to_owner == Some(401) && at_owner == "new",
    }];
    let others: Vec<String> = replays[1..]
        .iter()
        .map(|(i, status, value)| {
            format!("node {}: replay {}, GET {value:?}", i + 1, show(*status))
        })
        .collect();
    let held = replays[1..]
        .iter()
        .all(|(_, status, value)| *status == Some(401) && value == "new");
    let log = &cluster.nodes[owner].log();
    let reason = log
        .lines()
        .find(|l| l.contains("refused peer requests"))
        .and_then(|l| l.split("last_reason=").nth(1))
        .unwrap_or("-");
    rows.push(Row {
        scenario: "d. the same captured bytes to the two other members",
        figure: format!("{}; the owner logged: {reason}", others.join("; ")),
        target: "401, \"new\" stays",
        met: held,
    });
    Ok(rows)
}
