//! Membership that cannot work is refused: at start with an error, on a reload with a warning
//! and the old view kept.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::Command;

use crate::process::{Node, free_port};

/// Runs the binary with `args`, expecting it to refuse to start: its exit status and log.
async fn refused(args: &[&str]) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_alo-node"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    let mut stderr = child.stderr.take().expect("piped");
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("it stops at once")
        .expect("it exits");
    let mut log = String::new();
    stderr.read_to_string(&mut log).await.expect("readable");
    assert!(!status.success(), "it must refuse: {log}");
    log
}

#[tokio::test]
async fn a_node_that_is_not_among_its_members_does_not_start() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    // The same node under another name: it would send its own keys to itself over HTTP.
    let alias = format!("http://localhost:{port}");
    let log = refused(&[
        "--listen",
        &listen,
        "--api",
        "127.0.0.1:0",
        "--peers",
        &alias,
    ])
    .await;
    assert!(log.contains("is not among the members"), "{log}");
}

#[tokio::test]
async fn a_wildcard_listen_address_needs_a_self_url() {
    let log = refused(&["--listen", "0.0.0.0:0", "--api", "127.0.0.1:0"]).await;
    assert!(log.contains("--self-url"), "{log}");
    let log = refused(&[
        "--listen",
        "127.0.0.1:0",
        "--api",
        "127.0.0.1:0",
        "--self-url",
        "http://0.0.0.0:8001",
    ])
    .await;
    assert!(log.contains("wildcard"), "{log}");
}

#[tokio::test]
async fn zero_timeouts_and_a_zero_budget_are_refused() {
    for flag in [
        "--load-timeout-ms",
        "--shutdown-timeout-ms",
        "--cache-bytes",
    ] {
        let log = refused(&["--listen", "127.0.0.1:0", "--api", "127.0.0.1:0", flag, "0"]).await;
        assert!(log.contains("more than 0"), "{flag}: {log}");
    }
}

#[tokio::test]
async fn an_empty_peers_file_is_refused_at_start_and_on_reload() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("peers");
    let path = file.to_str().expect("UTF-8 temp path").to_string();
    std::fs::write(&file, "# nobody\n").expect("write");
    let log = refused(&[
        "--listen",
        "127.0.0.1:0",
        "--api",
        "127.0.0.1:0",
        "--peers-file",
        &path,
    ])
    .await;
    assert!(log.contains("names no member"), "{log}");

    let port = free_port();
    let (listen, url) = (
        format!("127.0.0.1:{port}"),
        format!("http://127.0.0.1:{port}"),
    );
    std::fs::write(&file, format!("{url}\nhttp://127.0.0.1:1\n")).expect("write");
    let mut node = Node::start(&[
        "--listen",
        &listen,
        "--api",
        "127.0.0.1:0",
        "--peers-file",
        &path,
    ])
    .await;
    // Emptied, half written, then leaving this node out: each refused, the view kept.
    for (text, says) in [
        ("", "does not end with a newline"),
        ("http://127.0.0.1:1", "does not end with a newline"),
        ("http://127.0.0.1:1\n", "is not among the members"),
    ] {
        std::fs::write(&file, text).expect("write");
        node.hangup();
        node.wait_for_log(says).await;
        let (_, _, body) = node.get("/stats").await;
        let stats: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(
            stats["peers"].as_array().expect("a list").len(),
            2,
            "{text:?}: {stats}"
        );
    }
}
