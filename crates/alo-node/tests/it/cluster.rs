//! Nodes that know each other: each key loaded once in the cluster, a node that dies, a
//! peers file, and peers that prove who they are.

use std::path::Path;

use http::StatusCode;

use crate::client::{ClientApi as _, stats, total};
use crate::node::{Node, bind, cluster, url_of};

/// Writes `n` files `doc-<i>.txt` holding `contents of doc-<i>.txt` into `dir`: their names.
pub(crate) fn write_docs(dir: &Path, n: usize) -> Vec<String> {
    let keys: Vec<String> = (0..n).map(|i| format!("doc-{i}.txt")).collect();
    for key in &keys {
        std::fs::write(dir.join(key), format!("contents of {key}")).expect("write");
    }
    keys
}

/// `n` nodes that know each other, serving `dir` as group `files`, with `extra` flags.
pub(crate) async fn file_cluster(n: usize, dir: &Path, extra: &[&str]) -> Vec<Node> {
    let dir = dir.to_str().expect("UTF-8 temp path");
    let mut args = vec!["--origin-dir", dir];
    args.extend_from_slice(extra);
    cluster(n, &args).await
}

/// Origin loads of group `files`, all `nodes` together.
pub(crate) async fn loads(nodes: &[Node]) -> u64 {
    total(nodes, "files", "local_loads").await
}

#[tokio::test]
async fn three_nodes_load_each_key_once_and_survive_a_crash() {
    let files = tempfile::tempdir().expect("temp dir");
    let keys = write_docs(files.path(), 30);
    let mut nodes = file_cluster(3, files.path(), &[]).await;

    for key in &keys {
        for node in &nodes {
            let (status, _, body) = node.get(&format!("/api/files/{key}")).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(body, format!("contents of {key}"));
        }
    }
    assert_eq!(
        loads(&nodes).await,
        30,
        "each key loaded once in the cluster"
    );

    // One node ends at once, its connections dropped: the others answer every key, loading
    // the dead one's keys themselves.
    drop(nodes.pop());
    for key in &keys {
        for node in &nodes {
            let (status, _, body) = node.get(&format!("/api/files/{key}")).await;
            assert_eq!(status, StatusCode::OK, "{key} after a node died");
            assert_eq!(body, format!("contents of {key}"));
        }
    }
}

#[tokio::test]
async fn the_peers_file_is_applied_at_start_and_when_it_changes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("peers");
    let (a, b) = (bind().await, bind().await);
    let (url_a, url_b) = (url_of(&a), url_of(&b));
    std::fs::write(&file, format!("# the cluster\n{url_a}\n")).expect("write");
    let path = file.to_str().expect("UTF-8 temp path");
    let node = Node::start_on(a, &["--peers-file", path]);
    assert_eq!(node.members().await, [url_a.as_str()]);

    std::fs::write(&file, format!("{url_a}\n{url_b}  # the new one\n")).expect("write");
    node.reload.now().await;
    let mut both = [url_a.clone(), url_b.clone()];
    both.sort();
    assert_eq!(node.members().await, both);
    let membership = node.all_stats().await["membership"].clone();
    assert_eq!(membership["changes"], 1, "{membership}");
    assert_eq!(
        membership["source"],
        format!("the peers file {path}").as_str()
    );

    // The same members in another order, with a comment: nothing to apply.
    std::fs::write(&file, format!("{url_b}\n\n{url_a}\n# a comment\n")).expect("write");
    node.reload.now().await;
    assert_eq!(node.all_stats().await["membership"]["changes"], 1);
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
    let nodes = file_cluster(2, files.path(), &["--peer-secret-file", &secret]).await;
    for key in &keys {
        for node in &nodes {
            let (status, _, body) = node.get(&format!("/api/files/{key}")).await;
            assert_eq!(
                (status, body),
                (StatusCode::OK, format!("contents of {key}").into())
            );
        }
    }
    for node in &nodes {
        assert_eq!(stats(node, "files").await["peer_errors"], 0);
    }
    assert_eq!(
        loads(&nodes).await,
        10,
        "each key loaded once: the peers accepted each other"
    );

    // A stranger on the peer port: 401, and no group is asked.
    let before = served(&nodes).await;
    let (status, headers, _) =
        crate::client::get(&format!("{}/_alo/files/doc-0", nodes[0].url)).await;
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
    total(nodes, "files", "server_requests").await
}
