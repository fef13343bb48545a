use std::path::Path;

use http::StatusCode;

use crate::process::{Node, cluster, free_port, stats};

/// Writes `n` files `doc-<i>.txt` holding `contents of doc-<i>.txt` into `dir`: their names.
fn write_docs(dir: &Path, n: usize) -> Vec<String> {
    let keys: Vec<String> = (0..n).map(|i| format!("doc-{i}.txt")).collect();
    for key in &keys {
        std::fs::write(dir.join(key), format!("contents of {key}")).expect("write");
    }
    keys
}

/// `n` node processes that know each other, serving `dir` as group `files`, with `extra` flags:
/// their peer ports, and the nodes.
async fn file_cluster(n: usize, dir: &Path, extra: &[&str]) -> (Vec<u16>, Vec<Node>) {
    let dir = dir.to_str().expect("UTF-8 temp path");
    let mut args = vec!["--origin-dir", dir];
    args.extend_from_slice(extra);
    cluster(n, &args).await
}

#[tokio::test]
async fn three_processes_load_each_key_once_and_survive_a_kill() {
    let files = tempfile::tempdir().expect("temp dir");
    let keys = write_docs(files.path(), 30);
    let (_, mut nodes) = file_cluster(3, files.path(), &[]).await;

    for key in &keys {
        for node in &nodes {
            let (status, _, body) = node.get(&format!("/api/files/{key}")).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(body, format!("contents of {key}"));
        }
    }
    let mut loads = 0;
    for node in &nodes {
        loads += stats(node, "files").await["local_loads"]
            .as_u64()
            .expect("a count");
    }
    assert_eq!(loads, 30, "each key loaded once in the whole cluster");

    // SIGKILL one process: the others answer every key, loading the dead one's keys themselves.
    let mut dead = nodes.pop().expect("three nodes");
    dead.child.kill().await.expect("killed");
    for key in &keys {
        for node in &nodes {
            let (status, _, body) = node.get(&format!("/api/files/{key}")).await;
            assert_eq!(status, StatusCode::OK, "{key} after a node died");
            assert_eq!(body, format!("contents of {key}"));
        }
    }
}

#[tokio::test]
async fn the_peers_file_is_applied_at_start_and_on_sighup() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("peers");
    let (a, b) = (free_port(), free_port());
    let (url_a, url_b) = (
        format!("http://127.0.0.1:{a}"),
        format!("http://127.0.0.1:{b}"),
    );
    std::fs::write(&file, format!("# the cluster\n{url_a}\n")).expect("write");
    let listen = format!("127.0.0.1:{a}");
    let path = file.to_str().expect("UTF-8 temp path");
    let mut node = Node::start(&[
        "--listen",
        &listen,
        "--api",
        "127.0.0.1:0",
        "--peers-file",
        path,
    ])
    .await;
    let members = |v: serde_json::Value| v["peers"].as_array().expect("a list").len();
    let (_, _, body) = node.get("/stats").await;
    assert_eq!(members(serde_json::from_slice(&body).expect("JSON")), 1);

    std::fs::write(&file, format!("{url_a}\n{url_b}  # the new one\n")).expect("write");
    node.hangup();
    node.wait_for_log("reloaded the peers file").await;
    let (_, _, body) = node.get("/stats").await;
    let stats: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(members(stats.clone()), 2, "{stats}");
    assert_eq!(stats["peers"][1], url_b.as_str());
}

#[tokio::test]
async fn with_a_secret_peers_are_served_and_strangers_get_401() {
    let files = tempfile::tempdir().expect("temp dir");
    let keys = write_docs(files.path(), 10);
    let secret = files.path().join("secret");
    std::fs::write(
        &secret,
        "# rotating\nthe new cluster secret\nthe old cluster secret\n",
    )
    .expect("write");
    let secret = secret.to_str().expect("UTF-8").to_string();
    let (ports, nodes) = file_cluster(2, files.path(), &["--peer-secret-file", &secret]).await;
    for key in &keys {
        for node in &nodes {
            let (status, _, body) = node.get(&format!("/api/files/{key}")).await;
            assert_eq!(
                (status, body),
                (StatusCode::OK, format!("contents of {key}").into())
            );
        }
    }
    let mut loads = 0;
    for node in &nodes {
        let files = stats(node, "files").await;
        assert_eq!(files["peer_errors"], 0);
        loads += files["local_loads"].as_u64().expect("a count");
    }
    assert_eq!(
        loads, 10,
        "each key loaded once: the peers accepted each other"
    );

    // A stranger on the peer port: 401, and no group is asked.
    let before = served(&nodes).await;
    let (status, headers, _) =
        crate::process::get(&format!("http://127.0.0.1:{}/_alo/files/doc-0", ports[0])).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["x-alo-error"], "unauthorized");
    assert_eq!(
        served(&nodes).await,
        before,
        "the stranger's request reached no group"
    );
}

/// Requests from peers that the nodes' `files` groups answered, all nodes together.
async fn served(nodes: &[Node]) -> u64 {
    let mut n = 0;
    for node in nodes {
        n += stats(node, "files").await["server_requests"]
            .as_u64()
            .expect("a count");
    }
    n
}
