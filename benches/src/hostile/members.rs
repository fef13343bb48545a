//! Members that are not what they should be: a member URL whose port is out of range, and a
//! member that announces a body it never sends.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};

use super::raw::HoldingMember;
use super::{Row, ms, strings, timed};
use crate::procs::{self, Log};

/// e. A member URL whose port does not fit in 16 bits.
pub(super) async fn port_out_of_range(node: &Path) -> anyhow::Result<Vec<Row>> {
    let listen = SocketAddr::from(([127, 0, 0, 1], procs::free_port()?));
    let peers = format!("http://{listen},http://127.0.0.1:99999");
    let args = strings(&[
        "--listen",
        &listen.to_string(),
        "--api",
        "127.0.0.1:0",
        "--peers",
        &peers,
    ]);
    let started = Instant::now();
    let (status, log) = procs::run_to_exit(node, &args, Duration::from_secs(10)).await?;
    let took = started.elapsed();
    let line = log.lines().find(|l| l.contains("65535"));
    // The line without its timestamp.
    let said = line.map_or("(no line names the range)", |l| {
        l.split_once(' ').map_or(l, |(_, rest)| rest.trim_start())
    });
    Ok(vec![Row {
        scenario: "e. `--peers http://127.0.0.1:<own port>,http://127.0.0.1:99999`",
        figure: format!(
            "exit status {} after {}: `{said}`",
            status
                .code()
                .map_or("(a signal)".to_string(), |c| c.to_string()),
            ms(took),
        ),
        target: "refused at start",
        met: !status.success() && line.is_some_and(|l| l.contains("1 to 65535")),
    }])
}

/// g. A member whose every answer announces a body of 10^12 bytes and sends none: the asker
/// must load the key itself at once. The ring decides which demo keys the member owns, so the
/// cluster is made again (new ports) until it owns at least one.
pub(super) async fn announcing_a_huge_body(node: &Path) -> anyhow::Result<Vec<Row>> {
    const KEYS: [&str; 4] = ["apple", "banana", "cherry", "hello"];
    for _ in 0..8 {
        let member = HoldingMember::start().await?;
        let others = [format!("http://{}", member.addr)];
        let cluster = procs::cluster(node, 1, &others, |_| Vec::new(), Log::Kept).await?;
        let api = cluster.nodes[0].addr;
        let mut gets = Vec::new();
        for key in KEYS {
            let asked = member.asked();
            let (status, _, took) =
                timed(api, Method::GET, &format!("/api/demo/{key}"), Bytes::new()).await?;
            gets.push((key, status, took, member.asked() > asked));
        }
        if !gets.iter().any(|&(_, _, _, asked)| asked) {
            continue;
        }
        let figure: Vec<String> = gets
            .iter()
            .map(|(key, status, took, asked)| {
                let whose = if *asked {
                    " (asked the member first)"
                } else {
                    ""
                };
                format!("{key}: {} in {}{whose}", status.as_u16(), ms(*took))
            })
            .collect();
        let met = gets
            .iter()
            .all(|&(_, status, took, _)| status == StatusCode::OK && took < Duration::from_secs(1));
        return Ok(vec![Row {
            scenario: "g. a member answering every request with `content-length: 1000000000000` and nothing more",
            figure: figure.join("; "),
            target: "200 within 1 s for every key, none 504",
            met,
        }]);
    }
    anyhow::bail!("in 8 clusters the member owned none of the demo keys")
}
