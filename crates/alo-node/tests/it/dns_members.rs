//! `--peers-dns`: members from A and SRV records served by the test's own DNS server, followed
//! as the records change, kept when an answer is empty or fails; `/readyz`; and processes that
//! find each other through DNS.

use std::net::Ipv4Addr;

use http::StatusCode;

use crate::client::{ClientApi, total};
use crate::cluster::write_docs;
use crate::dns::DnsServer;
use crate::node::{Logs, Node, bind};
use crate::process::Process;

/// The SRV name of the tests' clusters.
pub(crate) const SRV: &str = "_alo._tcp.cluster.test";

/// `--peers-dns NAME` against `dns`, looked up every `interval_ms`.
pub(crate) fn dns_args<'a>(name: &'a str, dns: &'a str, interval_ms: &'a str) -> Vec<&'a str> {
    vec![
        "--peers-dns",
        name,
        "--peers-dns-server",
        dns,
        "--peers-dns-interval-ms",
        interval_ms,
    ]
}

/// An interval no test waits for: lookups come from `Reload::now` only.
const NEVER: &str = "3600000";

/// The membership part of `/stats`.
async fn membership(node: &impl ClientApi) -> serde_json::Value {
    node.all_stats().await["membership"].clone()
}

#[tokio::test]
async fn a_records_give_the_members_at_the_port_named() {
    let dns = DnsServer::start().await;
    let listeners = bind().await;
    let port = listeners.peer.local_addr().expect("bound").port();
    let at = |last: u8| format!("http://127.0.0.{last}:{port}");
    let name = format!("nodes.test:{port}");
    let server = dns.addr.to_string();
    dns.set_a(
        "nodes.test",
        &[
            [127, 0, 0, 3].into(),
            Ipv4Addr::LOCALHOST,
            [127, 0, 0, 2].into(),
        ],
    );
    let logs = Logs::capture();
    let node = Node::start_on(listeners, &dns_args(&name, &server, NEVER));
    node.reload.now().await;
    assert_eq!(node.members().await, [at(1), at(2), at(3)]);

    // A member goes: the ring follows, and the change is logged and counted.
    dns.set_a("nodes.test", &[Ipv4Addr::LOCALHOST, [127, 0, 0, 3].into()]);
    node.reload.now().await;
    assert_eq!(node.members().await, [at(1), at(3)]);
    let changed = logs.lines_with("members changed");
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert!(
        changed[0].contains(&format!("removed=[\"{}\"]", at(2))),
        "{changed:?}"
    );
    assert!(changed[0].contains("added=[]"), "{changed:?}");
    assert_eq!(membership(&node).await["changes"], 1);

    // No records, a failing server, a list without this node: each keeps the view.
    let kept = [at(1), at(3)];
    dns.set_a("nodes.test", &[]);
    assert_kept(&node, "an empty answer", &kept, 1).await;
    dns.set_failing(true);
    assert_kept(&node, "a failed lookup", &kept, 2).await;
    dns.set_failing(false);
    dns.set_a("nodes.test", &[[127, 0, 0, 2].into()]);
    assert_kept(&node, "a list without this node", &kept, 3).await;
    let metrics = node.get("/metrics").await.2;
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(metrics.contains("\nalo_members 2\n"), "{metrics}");
    assert!(
        metrics.contains("\nalo_membership_changes_total 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\nalo_membership_failures_total 3\n"),
        "{metrics}"
    );
}

/// Reads the node's members again and checks they are still `members`, with `failures` reads
/// failed so far and one change.
async fn assert_kept(node: &Node, what: &str, members: &[String], failures: u64) {
    node.reload.now().await;
    assert_eq!(node.members().await, members, "{what}");
    let membership = membership(node).await;
    assert_eq!(membership["failures"], failures, "{what}: {membership}");
    assert_eq!(membership["changes"], 1, "{what}");
}

#[tokio::test]
async fn srv_records_make_a_cluster_that_loads_each_key_once() {
    let files = tempfile::tempdir().expect("temp dir");
    let keys = write_docs(files.path(), 30);
    let dir = files.path().to_str().expect("UTF-8 temp path");
    let dns = DnsServer::start().await;
    let server = dns.addr.to_string();
    let mut args = dns_args(SRV, &server, NEVER);
    args.extend(["--origin-dir", dir]);
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(bind().await);
    }
    let ports: Vec<u16> = listeners
        .iter()
        .map(|l| l.peer.local_addr().expect("bound").port())
        .collect();
    // Two of the three are in DNS so far.
    dns.set_srv(
        SRV,
        &[("n0.cluster.test", ports[0]), ("n1.cluster.test", ports[1])],
    );
    let nodes: Vec<Node> = listeners
        .into_iter()
        .map(|l| Node::start_on(l, &args))
        .collect();
    for node in &nodes {
        node.reload.now().await;
    }
    for node in &nodes[..2] {
        assert_eq!(node.members().await.len(), 2);
        assert_eq!(node.get("/readyz").await.0, StatusCode::OK);
    }
    // The third serves alone, and says it is not ready.
    assert_eq!(nodes[2].members().await, [nodes[2].url.clone()]);
    assert_eq!(
        nodes[2].get("/readyz").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );

    let all: Vec<(&str, u16)> = ["n0.cluster.test", "n1.cluster.test", "n2.cluster.test"]
        .into_iter()
        .zip(ports.iter().copied())
        .collect();
    dns.set_srv(SRV, &all);
    for node in &nodes {
        node.reload.now().await;
        let mut urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
        urls.sort();
        assert_eq!(node.members().await, urls);
        assert_eq!(node.get("/readyz").await.0, StatusCode::OK);
    }
    for key in &keys {
        for node in &nodes {
            let (status, _, body) = node.get(&format!("/api/files/{key}")).await;
            assert_eq!(
                (status, body),
                (StatusCode::OK, format!("contents of {key}").into())
            );
        }
    }
    let loads = total(&nodes, "files", "local_loads").await;
    assert_eq!(loads, 30, "each key loaded once in the cluster");
}

#[tokio::test]
async fn lookups_on_the_interval_follow_the_records_and_log_a_failure_streak_once() {
    let dns = DnsServer::start().await;
    let server = dns.addr.to_string();
    let listeners = bind().await;
    let port = listeners.peer.local_addr().expect("bound").port();
    dns.set_srv(SRV, &[("self.cluster.test", port)]);
    let logs = Logs::capture();
    let node = Node::start_on(listeners, &dns_args(SRV, &server, "20"));
    // A lookup that began after a change of the records saw it, and the one after began once
    // its list was applied.
    let after_change = |dns: &DnsServer| dns.srv_queries() + 2;
    dns.wait_for_srv_queries(2).await;
    assert_eq!(node.members().await, [node.url.as_str()]);

    dns.set_srv(
        SRV,
        &[("self.cluster.test", port), ("other.cluster.test", 1)],
    );
    dns.wait_for_srv_queries(after_change(&dns)).await;
    assert_eq!(
        node.members().await,
        ["http://127.0.0.1:1".to_string(), node.url.clone()]
    );

    // Several lookups fail (the resolver asks more than once per lookup).
    dns.set_failing(true);
    dns.wait_for_srv_queries(after_change(&dns) + 6).await;
    dns.set_failing(false);
    dns.wait_for_srv_queries(after_change(&dns)).await;
    assert_eq!(node.members().await.len(), 2, "the view was kept");
    let failures = membership(&node).await["failures"]
        .as_u64()
        .expect("a count");
    assert!(failures >= 2, "{failures}");
    let kept = logs.lines_with("kept the members");
    assert_eq!(kept.len(), 1, "one streak, one warning: {kept:#?}");
    let again = logs.lines_with("answers again");
    assert_eq!(again.len(), 1, "{again:#?} {:#?}", logs.lines_with(""));
    assert_eq!(membership(&node).await["changes"], 1);
}

#[tokio::test]
async fn with_confirm_a_new_list_applies_only_when_seen_twice_in_a_row() {
    let dns = DnsServer::start().await;
    let server = dns.addr.to_string();
    let listeners = bind().await;
    let port = listeners.peer.local_addr().expect("bound").port();
    let with = |other: u16| [("self.cluster.test", port), ("other.cluster.test", other)];
    let other = |members: Vec<String>| {
        let others: Vec<String> = members
            .into_iter()
            .filter(|m| !m.ends_with(&format!(":{port}")))
            .collect();
        others
    };
    dns.set_srv(SRV, &with(1));
    let mut args = dns_args(SRV, &server, NEVER);
    args.push("--peers-dns-confirm");
    let node = Node::start_on(listeners, &args);
    node.reload.now().await;
    // The first list is applied at once.
    assert_eq!(other(node.members().await), ["http://127.0.0.1:1"]);

    // An answer that flaps: 2, back to 1, 2 again. No two reads in a row give 2.
    for flap in [2, 1, 2] {
        dns.set_srv(SRV, &with(flap));
        node.reload.now().await;
        assert_eq!(
            other(node.members().await),
            ["http://127.0.0.1:1"],
            "{flap}"
        );
    }
    // A second read in a row that gives 2.
    node.reload.now().await;
    assert_eq!(other(node.members().await), ["http://127.0.0.1:2"]);
    assert_eq!(membership(&node).await["changes"], 1);
}

#[tokio::test]
async fn readyz_is_503_until_a_member_list_includes_this_node() {
    let dns = DnsServer::start().await;
    let server = dns.addr.to_string();
    let listeners = bind().await;
    let port = listeners.peer.local_addr().expect("bound").port();
    let node = Node::start_on(listeners, &dns_args(SRV, &server, NEVER));
    // The name does not exist yet: the node serves (it is alive), not ready.
    node.reload.now().await;
    let (status, _, body) = node.get("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        body,
        "not ready: no member list that includes this node yet\n"
    );
    assert_eq!(node.get("/healthz").await.0, StatusCode::OK);
    assert_eq!(
        node.get("/api/demo/apple").await.0,
        StatusCode::OK,
        "alone, it loads itself"
    );
    let metrics = node.get("/metrics").await.2;
    assert!(String::from_utf8_lossy(&metrics).contains("\nalo_ready 0\n"));

    dns.set_srv(SRV, &[("self.cluster.test", port)]);
    node.reload.now().await;
    let (status, _, body) = node.get("/readyz").await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"ready\n"[..]));
    assert_eq!(membership(&node).await["ready"], true);
}

#[tokio::test]
async fn three_processes_find_each_other_through_dns_and_load_each_key_once() {
    let dns = DnsServer::start().await;
    let server = dns.addr.to_string();
    let mut args = vec!["--listen", "127.0.0.1:0", "--api", "127.0.0.1:0"];
    args.extend(dns_args(SRV, &server, "100"));
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(Process::start(&args).await);
    }
    let targets: Vec<(String, u16)> = nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let port = node.peer.rsplit_once(':').expect("host:port").1;
            (format!("n{i}.cluster.test"), port.parse().expect("a port"))
        })
        .collect();
    let targets: Vec<(&str, u16)> = targets.iter().map(|(t, p)| (t.as_str(), *p)).collect();
    dns.set_srv(SRV, &targets);
    for node in &mut nodes {
        node.wait_for_log("members set").await;
        assert_eq!(node.get("/readyz").await.0, StatusCode::OK);
        assert_eq!(node.members().await.len(), 3);
    }
    let keys = ["apple", "banana", "cherry", "hello"];
    for key in keys {
        for node in &nodes {
            assert_eq!(
                node.get(&format!("/api/demo/{key}")).await.0,
                StatusCode::OK
            );
        }
    }
    let loads = total(&nodes, "demo", "local_loads").await;
    assert_eq!(loads, 4, "each key loaded once in the cluster");

    // One is killed and leaves DNS: the others drop it.
    let mut dead = nodes.pop().expect("three");
    dead.child.kill().await.expect("killed");
    dns.set_srv(SRV, &targets[..2]);
    for node in &mut nodes {
        node.wait_for_log("members changed").await;
        assert_eq!(node.members().await.len(), 2);
        for key in keys {
            assert_eq!(
                node.get(&format!("/api/demo/{key}")).await.0,
                StatusCode::OK
            );
        }
    }
}

#[tokio::test]
async fn sighup_looks_the_name_up_again() {
    let dns = DnsServer::start().await;
    let server = dns.addr.to_string();
    let mut args = vec!["--listen", "127.0.0.1:0", "--api", "127.0.0.1:0"];
    args.extend(dns_args(SRV, &server, NEVER));
    let mut node = Process::start(&args).await;
    let port: u16 = node
        .peer
        .rsplit_once(':')
        .expect("host:port")
        .1
        .parse()
        .expect("a port");
    node.wait_for_log("kept the members").await;
    assert_eq!(node.get("/readyz").await.0, StatusCode::SERVICE_UNAVAILABLE);
    dns.set_srv(SRV, &[("self.cluster.test", port)]);
    node.hangup();
    node.wait_for_log("members set").await;
    assert_eq!(node.get("/readyz").await.0, StatusCode::OK);
    dns.set_srv(
        SRV,
        &[("self.cluster.test", port), ("other.cluster.test", 1)],
    );
    node.hangup();
    node.wait_for_log("members changed").await;
    assert_eq!(node.members().await.len(), 2);
}
