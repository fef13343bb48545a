//! A node that leaves on purpose keeps the cluster warm: its values go to the members that own
//! them without it, and the origin is not asked for them again.

use http::StatusCode;

use crate::client::{ClientApi as _, total};
use crate::cluster::{file_cluster, loads, write_docs};

#[tokio::test]
async fn a_node_that_stops_hands_its_values_over_and_no_key_is_loaded_again() {
    let files = tempfile::tempdir().expect("temp dir");
    let keys = write_docs(files.path(), 60);
    let mut nodes = file_cluster(3, files.path(), &[]).await;
    for key in &keys {
        let (status, _, _) = nodes[0].get(&format!("/api/files/{key}")).await;
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(
        loads(&nodes).await,
        60,
        "each key loaded once, by its owner"
    );
    let staying = loads(&nodes[..2]).await;
    let held_by_leaving = 60 - staying;
    assert!(held_by_leaving > 0);

    // Stopped as SIGTERM stops the binary: the node hands its values over, then stops.
    let leaving = nodes.pop().expect("three");
    leaving.stop().await.expect("a clean stop");

    // The others still list it; it refuses connections, so its keys go to their successor,
    // which holds them already.
    for key in &keys {
        for node in &nodes {
            let (status, _, body) = node.get(&format!("/api/files/{key}")).await;
            assert_eq!(
                (status, body),
                (StatusCode::OK, format!("contents of {key}").into())
            );
        }
    }
    assert_eq!(loads(&nodes).await, staying, "no key loaded again");
    assert_eq!(total(&nodes, "files", "fills").await, held_by_leaving);
}
