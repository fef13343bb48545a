use clap::Parser as _;
use http::StatusCode;

use crate::client::{ClientApi as _, stats};
use crate::node::Node;
use crate::process::Process;

#[tokio::test]
async fn with_no_origin_flags_the_demo_answers_and_caches() {
    // The documented defaults, read without binding them: tests bind ephemeral ports only.
    let defaults = alo_node::Config::parse_from(["alo-node"]);
    assert_eq!(defaults.api.to_string(), "127.0.0.1:9999");
    assert_eq!(defaults.listen.to_string(), "127.0.0.1:8001");
    let node = Node::start(&[]).await;
    let (status, headers, body) = node.get("/api/demo/apple").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "a red or green fruit");
    assert_eq!(headers["content-type"], "application/octet-stream");
    let (status, _, body) = node.get("/api/demo/apple").await;
    assert_eq!(
        (status, &body[..]),
        (StatusCode::OK, &b"a red or green fruit"[..])
    );
    let demo = stats(&node, "demo").await;
    assert_eq!(demo["local_loads"], 1, "one origin load");
    assert_eq!(
        demo["cache_hits"], 1,
        "the second request came from the cache"
    );

    let (status, _, body) = node.get("/healthz").await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"ok\n"[..]));
    // Its members are the flag's (none: this node alone), applied before it serves.
    let (status, _, body) = node.get("/readyz").await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"ready\n"[..]));
    let (status, _, _) = node.get("/api/demo/durian").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = node.get("/api/nope/apple").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = node.get("/api/demo/%zz").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text() {
    let node = Node::start(&[]).await;
    node.get("/api/demo/hello").await;
    let (status, headers, body) = node.get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/plain")
    );
    let text = std::str::from_utf8(&body).expect("UTF-8");
    let mut samples = 0;
    // Strict about families, as Prometheus's parser is: each declared once, its samples
    // together right after its `TYPE` line.
    let mut families = std::collections::HashSet::new();
    let mut current = "";
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().expect("a name");
            assert!(
                families.insert(name.to_string()),
                "family {name} is defined twice"
            );
            current = name;
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        assert!(is_sample(line), "not a sample: {line:?}");
        let name = line.split(['{', ' ']).next().expect("a name");
        // A histogram's samples are its buckets, sum and count.
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix).filter(|f| *f == current))
            .unwrap_or(name);
        assert_eq!(family, current, "a sample outside its family: {line:?}");
        samples += 1;
    }
    assert!(samples >= 9);
    // The get above, timed: a miss loaded from the demo origin, with every bucket.
    assert!(
        text.contains("# TYPE alo_get_duration_seconds histogram\n"),
        "{text}"
    );
    assert!(
        text.contains("alo_get_duration_seconds_count{group=\"demo\",outcome=\"origin\"} 1\n"),
        "{text}"
    );
    // And the origin load under it.
    assert!(
        text.contains("alo_origin_load_duration_seconds_count{group=\"demo\"} 1\n"),
        "{text}"
    );
    for le in ["0.000025", "0.001", "1", "10", "+Inf"] {
        let bucket = format!(
            "alo_get_duration_seconds_bucket{{group=\"demo\",outcome=\"hit\",le=\"{le}\"}} "
        );
        assert!(text.contains(&bucket), "no bucket {le}: {text}");
    }
    assert!(text.contains("alo_local_loads_total{group=\"demo\"} 1\n"));
    assert!(text.contains("\nalo_members 1\n"), "{text}");
    assert!(text.contains("\nalo_ready 1\n"), "{text}");
    assert!(
        text.contains("\nalo_membership_changes_total 0\n"),
        "{text}"
    );
    promtool_accepts(text);
}

/// `promtool check metrics`, Prometheus's own checker, on `text`. CI installs it (`.ci/run`);
/// elsewhere the test says it skipped this part.
fn promtool_accepts(text: &str) {
    use std::io::Write as _;
    let spawned = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("promtool not run ({e}); .ci/run installs it");
            return;
        }
        Err(e) => panic!("promtool is needed in CI: {e}"),
    };
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(text.as_bytes())
        .expect("promtool reads the metrics");
    let out = child.wait_with_output().expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `name{labels} value`, as the exposition format writes a sample.
fn is_sample(line: &str) -> bool {
    let Some((series, value)) = line.rsplit_once(' ') else {
        return false;
    };
    let name_end = series.find('{').unwrap_or(series.len());
    let (name, labels) = series.split_at(name_end);
    let name_ok = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
    let labels_ok = labels.is_empty()
        || (labels.starts_with('{')
            && labels.ends_with('}')
            && labels[1..labels.len() - 1].split(',').all(|pair| {
                pair.split_once('=')
                    .is_some_and(|(k, v)| !k.is_empty() && v.starts_with('"') && v.ends_with('"'))
            }));
    name_ok && labels_ok && value.parse::<f64>().is_ok()
}

#[tokio::test]
async fn sigterm_lets_a_slow_load_finish_then_exits_zero() {
    let mut node = Process::start(&[
        "--listen",
        "127.0.0.1:0",
        "--api",
        "127.0.0.1:0",
        "--demo-delay-ms",
        "1500",
    ])
    .await;
    let url = format!("{}/api/demo/cherry", node.api);
    let request = tokio::spawn(async move { crate::client::get(&url).await });
    // The origin load has begun: the request is in flight.
    node.wait_for_log("demo origin load started").await;
    node.terminate();
    let (status, _, body) = request.await.expect("request task");
    assert_eq!(status, StatusCode::OK, "the in-flight request completed");
    assert_eq!(body, "a small round stone fruit");
    let exit = node.child.wait().await.expect("the node exits");
    assert!(exit.success(), "exit status {exit:?}");
}
