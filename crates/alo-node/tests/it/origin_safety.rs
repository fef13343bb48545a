//! Origins that keys cannot lead astray: no dot segments sent to a URL origin, nothing outside
//! the directory, and no special file that blocks or fails a node.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;

use crate::client::ClientApi as _;
use crate::node::{Node, refused};
use crate::origins::counted_origin;

/// How long a request for a special file may take: far less than a blocked open would.
const PROMPTLY: Duration = Duration::from_secs(5);

/// A node serving the directory `root` as group `files`.
async fn dir_node(root: &Path) -> Node {
    let dir = root.to_str().expect("UTF-8 temp path");
    Node::start(&["--origin-dir", dir]).await
}

/// GET `path`, failing the test unless the node answers within [`PROMPTLY`].
async fn get_promptly(node: &Node, path: &str) -> (StatusCode, Bytes) {
    let (status, _, body) = tokio::time::timeout(PROMPTLY, node.get(path))
        .await
        .unwrap_or_else(|_| panic!("{path} answered within {PROMPTLY:?}"));
    (status, body)
}

#[tokio::test]
async fn a_fifo_is_absent_and_does_not_block_the_node() {
    let root = tempfile::tempdir().expect("temp dir");
    std::fs::write(root.path().join("page"), "a page").expect("write");
    let status = std::process::Command::new("mkfifo")
        .arg(root.path().join("pipe"))
        .status()
        .expect("mkfifo runs");
    assert!(status.success(), "mkfifo: {status}");
    let node = dir_node(root.path()).await;

    // Nobody writes to the FIFO: a blocking open would wait forever.
    for _ in 0..2 {
        let (status, body) = get_promptly(&node, "/api/files/pipe").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body:?}");
    }
    let (status, body) = get_promptly(&node, "/api/files/page").await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"a page"[..]));
}

#[tokio::test]
async fn directories_and_sockets_are_absent_and_their_answers_name_no_path() {
    let root = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(root.path().join("sub")).expect("mkdir");
    std::fs::write(root.path().join("sub/page"), "a page").expect("write");
    let _socket = std::os::unix::net::UnixListener::bind(root.path().join("sock")).expect("bind");
    let node = dir_node(root.path()).await;
    let root_text = root.path().to_str().expect("UTF-8 temp path");

    for key in ["sub", "sub%2F", ".", "sub%2F.", "sock", "sub%2Fpage%2Fmore"] {
        let (status, body) = get_promptly(&node, &format!("/api/files/{key}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{key}: {body:?}");
        let body = String::from_utf8_lossy(&body);
        assert!(!body.contains(root_text), "{key}: {body}");
    }
    let (status, body) = get_promptly(&node, "/api/files/sub%2Fpage").await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"a page"[..]));
}

#[tokio::test]
async fn dot_segment_keys_never_reach_a_url_origin() {
    let (url, _stop, requests) = counted_origin().await;
    let base = format!("{url}/things");
    let node = Node::start(&["--origin-url", &base]).await;

    for key in [
        "..",
        "%2E%2E",
        "..%2Fsecret",
        "%2E%2E%2Fsecret",
        "a%2F.%2Fb",
        "a%2F..",
        ".%2Fx",
        "a%2F..%2F..%2Fb",
    ] {
        let (status, body) = get_promptly(&node, &format!("/api/web/{key}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{key}: {body:?}");
    }
    assert_eq!(
        requests.load(Ordering::SeqCst),
        0,
        "the origin was not asked"
    );
    // Dots inside a segment are ordinary characters.
    let (status, _) = get_promptly(&node, "/api/web/a..b%2F.c").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = get_promptly(&node, "/api/web/a").await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"the thing a"[..]));
    assert_eq!(requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_base_url_with_a_query_or_fragment_stops_the_node_at_start() {
    for base in ["http://127.0.0.1:1/x?y=1", "http://127.0.0.1:1/x#y"] {
        let error = refused(&["--origin-url", base]).await;
        assert!(error.contains("--origin-url"), "{base}: {error}");
    }
}

#[tokio::test]
async fn links_are_followed_only_inside_the_directory() {
    let outside = tempfile::tempdir().expect("temp dir");
    std::fs::write(outside.path().join("secret"), "do not serve").expect("write");
    let root = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(root.path().join("sub")).expect("mkdir");
    std::fs::write(root.path().join("page"), "a page").expect("write");
    let link = |target: &Path, name: &str| {
        std::os::unix::fs::symlink(target, root.path().join(name)).expect("symlink");
    };
    link(&outside.path().join("secret"), "out");
    // Both temp dirs live in the same directory, so this relative link climbs out and back in.
    let outside_name = outside.path().file_name().expect("a name");
    link(
        &Path::new("..").join(outside_name).join("secret"),
        "out-relative",
    );
    link(outside.path(), "out-dir");
    link(Path::new("page"), "in");
    link(Path::new("../page"), "sub/in");
    let node = dir_node(root.path()).await;

    for key in ["out", "out-relative", "out-dir%2Fsecret"] {
        let (status, body) = get_promptly(&node, &format!("/api/files/{key}")).await;
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::NOT_FOUND,
            "{key}: {status} {body:?}"
        );
        assert!(!String::from_utf8_lossy(&body).contains("do not serve"));
    }
    for key in ["in", "sub%2Fin"] {
        let (status, body) = get_promptly(&node, &format!("/api/files/{key}")).await;
        assert_eq!(
            (status, &body[..]),
            (StatusCode::OK, &b"a page"[..]),
            "{key}"
        );
    }
}
