//! Membership that cannot work is refused: at start with an error, on a reload with a warning
//! and the old view kept. One source of members at a time.

use alo_node::Config;
use clap::Parser as _;

use crate::client::ClientApi as _;
use crate::node::{Logs, Node, bind, refused, refused_on, url_of};

#[tokio::test]
async fn a_node_that_is_not_among_its_members_does_not_start() {
    let listeners = bind().await;
    let port = listeners.peer.local_addr().expect("bound").port();
    // The same node under another name: it would send its own keys to itself over HTTP.
    let alias = format!("http://localhost:{port}");
    let error = refused_on(listeners, &["--peers", &alias]).await;
    assert!(error.contains("is not among the members"), "{error}");
}

#[tokio::test]
async fn a_member_url_whose_port_does_not_parse_is_refused_not_made_80() {
    let listeners = bind().await;
    let me = url_of(&listeners);
    let peers = format!("{me},http://127.0.0.1:99999");
    let error = refused_on(listeners, &["--peers", &peers]).await;
    assert!(error.contains("http://127.0.0.1:99999"), "{error}");
    assert!(error.contains("1 to 65535"), "{error}");
    let error = refused(&["--self-url", "http://127.0.0.1:99999"]).await;
    assert!(error.contains("1 to 65535"), "{error}");
    let error = refused(&["--origin-url", "http://127.0.0.1:99999/x"]).await;
    assert!(error.contains("1-65535"), "{error}");
}

#[tokio::test]
async fn a_wildcard_address_is_no_self_url() {
    // (A wildcard --listen without --self-url is refused too: a unit test of `self_url`
    // checks it without binding a wildcard address.)
    let error = refused(&["--self-url", "http://0.0.0.0:8001"]).await;
    assert!(error.contains("wildcard"), "{error}");
}

#[tokio::test]
async fn zero_timeouts_and_a_zero_budget_are_refused() {
    for flag in [
        "--load-timeout-ms",
        "--shutdown-timeout-ms",
        "--cache-bytes",
        "--peers-dns-interval-ms",
    ] {
        let error = Config::try_parse_from(["alo-node", flag, "0"]).expect_err(flag);
        assert!(error.to_string().contains("more than 0"), "{flag}: {error}");
    }
}

#[test]
fn one_source_of_members_at_a_time() {
    let sources = [
        ["--peers", "http://127.0.0.1:8001"],
        ["--peers-file", "/etc/alo/peers"],
        ["--peers-dns", "alo.test:8001"],
    ];
    for (i, first) in sources.iter().enumerate() {
        assert!(Config::try_parse_from(["alo-node", first[0], first[1]]).is_ok());
        for second in &sources[i + 1..] {
            let error =
                Config::try_parse_from(["alo-node", first[0], first[1], second[0], second[1]])
                    .expect_err("two sources");
            assert!(error.to_string().contains("cannot be used with"), "{error}");
        }
    }
    // The DNS source's own flags need it.
    for flags in [
        &["--peers-dns-server", "127.0.0.1:53"][..],
        &["--peers-dns-confirm"],
    ] {
        let args = std::iter::once("alo-node").chain(flags.iter().copied());
        let error = Config::try_parse_from(args).expect_err("without --peers-dns");
        assert!(error.to_string().contains("--peers-dns <NAME>"), "{error}");
    }
    for bad in ["alo.test", "alo.test:0", "_alo._tcp.alo.test:8001"] {
        let error = Config::try_parse_from(["alo-node", "--peers-dns", bad]).expect_err(bad);
        assert!(error.to_string().contains("--peers-dns"), "{error}");
    }
}

#[tokio::test]
async fn an_empty_peers_file_is_refused_at_start_and_on_reload() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("peers");
    let path = file.to_str().expect("UTF-8 temp path").to_string();
    std::fs::write(&file, "# nobody\n").expect("write");
    let error = refused(&["--peers-file", &path]).await;
    assert!(error.contains("names no member"), "{error}");

    let listeners = bind().await;
    let url = url_of(&listeners);
    std::fs::write(&file, format!("{url}\nhttp://127.0.0.1:1\n")).expect("write");
    let logs = Logs::capture();
    let node = Node::start_on(listeners, &["--peers-file", &path]);
    assert_eq!(node.members().await.len(), 2);
    // Emptied, half written, then leaving this node out, then a port that does not parse:
    // each refused, the view kept, and each logged, since a reload was asked for (the file is
    // also read every second, unasked).
    let bad_port = format!("{url}\nhttp://127.0.0.1:99999\n");
    for (text, says) in [
        ("", "does not end with a newline"),
        ("http://127.0.0.1:1", "does not end with a newline"),
        ("http://127.0.0.1:1\n", "is not among the members"),
        (bad_port.as_str(), "1 to 65535"),
    ] {
        let (logged, failed) = (logs.lines_with(says).len(), failures(&node).await);
        std::fs::write(&file, text).expect("write");
        node.reload.now().await;
        let stats = node.all_stats().await;
        assert_eq!(
            stats["peers"].as_array().expect("a list").len(),
            2,
            "{text:?}: {stats}"
        );
        assert!(failures(&node).await > failed, "{text:?}: {stats}");
        assert!(logs.lines_with(says).len() > logged, "{says}");
    }
    assert_eq!(node.all_stats().await["membership"]["changes"], 0);
}

/// Reads of the member source that failed.
async fn failures(node: &Node) -> u64 {
    let stats = node.all_stats().await;
    stats["membership"]["failures"].as_u64().expect("a count")
}
