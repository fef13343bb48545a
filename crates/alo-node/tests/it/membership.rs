//! Membership that cannot work is refused: at start with an error, on a reload with a warning
//! and the old view kept.

use crate::process::{Node, free_port, refused};

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
