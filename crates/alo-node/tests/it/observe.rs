//! The dashboard (`examples/grafana/alo.json`) and the alert rules
//! (`examples/prometheus/alerts.yaml`) name only metrics a node's `/metrics` exports, so they
//! cannot rot silently when a metric is renamed. `.ci/run` also runs `promtool check rules` on
//! the rules.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use yaml_rust2::YamlLoader;

use crate::client::ClientApi as _;
use crate::node::cluster;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every family a node of two exports (a family with no sample is left out of `/metrics`, so
/// the node has a peer), by the names its samples carry.
async fn exported() -> BTreeSet<String> {
    let nodes = cluster(2, &[]).await;
    let (_, _, body) = nodes[0].get("/metrics").await;
    let text = String::from_utf8_lossy(&body);
    let mut names = BTreeSet::new();
    for declared in text.lines().filter_map(|line| line.strip_prefix("# TYPE ")) {
        let (name, kind) = declared.split_once(' ').expect("a name and a type");
        names.insert(name.to_string());
        if kind == "histogram" {
            for part in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{part}"));
            }
        }
    }
    assert!(names.len() > 30, "{text}");
    names
}

/// The metric names in a PromQL expression: every `alo_…` word.
fn metrics_in(expr: &str) -> Vec<String> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut found = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("alo_") {
        let starts_a_word = !rest[..at].ends_with(word);
        let after = &rest[at..];
        let len = after.find(|c: char| !word(c)).unwrap_or(after.len());
        if starts_a_word {
            found.push(after[..len].to_string());
        }
        rest = &after[len..];
    }
    found
}

#[test]
fn metric_names_are_read_from_promql_as_whole_words() {
    let expr = "sum by (group) (rate(alo_hits_total{job=~\"alo_x\"}[5m])) / no_alo_gets";
    assert_eq!(metrics_in(expr), ["alo_hits_total", "alo_x"]);
}

#[tokio::test]
async fn the_dashboard_and_the_alerts_name_only_exported_metrics() {
    let exported = exported().await;

    let path = examples().join("grafana/alo.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&read(&path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut titles = Vec::new();
    let mut named = 0;
    for panel in panels {
        let title = panel["title"].as_str().expect("a title");
        titles.push(title.to_lowercase());
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for target in targets {
            let expr = target["expr"].as_str().expect("a PromQL expression");
            for metric in metrics_in(expr) {
                assert!(
                    exported.contains(&metric),
                    "{title}: {metric} is not exported"
                );
                named += 1;
            }
        }
    }
    assert!(named > 20);
    for topic in [
        "latency",
        "hit ratio",
        "origin",
        "peers up",
        "membership",
        "budget",
    ] {
        assert!(
            titles.iter().any(|t| t.contains(topic)),
            "no panel on {topic}: {titles:?}"
        );
    }

    let path = examples().join("prometheus/alerts.yaml");
    let docs = YamlLoader::load_from_str(&read(&path)).expect("alerts.yaml is YAML");
    let mut alerts = Vec::new();
    for group in docs[0]["groups"].as_vec().expect("groups") {
        for rule in group["rules"].as_vec().expect("rules") {
            let alert = rule["alert"].as_str().expect("an alert name");
            let expr = rule["expr"].as_str().expect("an expression");
            assert!(rule["for"].as_str().is_some(), "{alert}: no `for`");
            assert!(
                rule["labels"]["severity"].as_str().is_some(),
                "{alert}: no severity"
            );
            assert!(
                rule["annotations"]["summary"].as_str().is_some(),
                "{alert}: no summary"
            );
            let metrics = metrics_in(expr);
            assert!(!metrics.is_empty(), "{alert}: names no metric");
            for metric in metrics {
                assert!(
                    exported.contains(&metric),
                    "{alert}: {metric} is not exported"
                );
            }
            alerts.push(alert.to_string());
        }
    }
    for alert in [
        "AloPeerDown",
        "AloOriginFailing",
        "AloLoadTimeouts",
        "AloHitRatioCollapsed",
        "AloMembershipFailing",
    ] {
        assert!(alerts.iter().any(|a| a == alert), "no {alert}: {alerts:?}");
    }
}

#[tokio::test]
async fn a_hop_is_timed_by_its_peer_and_kind() {
    let nodes = cluster(2, &[]).await;
    // Keys until one hops (the owner's answer, a value or not found, is an answer).
    let mut hopped = false;
    for i in 0..64 {
        nodes[0].get(&format!("/api/demo/k{i}")).await;
        let (_, _, body) = nodes[0].get("/metrics").await;
        let text = String::from_utf8_lossy(&body).into_owned();
        let timed = format!(
            "alo_peer_request_duration_seconds_count{{peer=\"{}\",kind=\"get\"}} ",
            nodes[1].url
        );
        if let Some(line) = text.lines().find(|l| l.starts_with(&timed)) {
            if line.ends_with(" 0") {
                continue;
            }
            hopped = true;
            assert!(
                text.contains("# TYPE alo_peer_batch_keys histogram"),
                "{text}"
            );
            break;
        }
        panic!("no {timed}: {text}");
    }
    assert!(hopped, "no get of 64 went to the other node");
}
