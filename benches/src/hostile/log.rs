//! What a client's key can do to the node's log: nothing but appear in it, escaped.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;

use super::{Row, strings, timed};
use crate::procs::{self, Log};

/// A key that, logged as it is, would end its line and start one that looks like a warning.
const FORGED: &str =
    "x%0A2026-12-06T00:00:00.000000Z%20%20WARN%20alo_http::health:%20peer%20marked%20down%00";

/// f. A load that fails and is logged with a key that forges a log line.
pub(super) async fn forged_line(node: &Path) -> anyhow::Result<Vec<Row>> {
    let args = |_| strings(&["--origin-url", "http://127.0.0.1:1"]);
    let cluster = procs::cluster(node, 1, &[], args, Log::Kept).await?;
    let proc = &cluster.nodes[0];
    let (status, _, _) = timed(
        proc.addr,
        Method::GET,
        &format!("/api/web/{FORGED}"),
        Bytes::new(),
    )
    .await?;
    // The failure is logged where the load failed, by now; give the pipe a moment.
    let waited = Instant::now();
    while !proc.log().contains("peer marked down") && waited.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = proc.log();
    let forged = log
        .lines()
        .filter(|l| l.starts_with("2026-12-06T00:00:00"))
        .count();
    let control = log
        .lines()
        .filter(|l| l.chars().any(char::is_control))
        .count();
    let naming = log
        .lines()
        .filter(|l| l.contains("peer marked down"))
        .count();
    Ok(vec![Row {
        scenario: "f. GET of a key holding a newline, a forged log line and a NUL, its load failing",
        figure: format!(
            "{}; of {} log lines, {naming} name the key (escaped), {forged} start with \
             `2026-12-06T00:00:00`, {control} hold a control character",
            status.as_u16(),
            log.lines().count(),
        ),
        target: "0 forged lines, 0 with a control character",
        met: forged == 0 && control == 0 && naming > 0,
    }])
}
