//! `--log-format`: the same events as text lines or as one JSON object a line.

use http::StatusCode;
use tokio::net::TcpListener;

use crate::client::ClientApi as _;
use crate::process::Process;

/// An origin URL where nobody listens: every load fails, and is logged with its key.
async fn closed_origin() -> String {
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let gone = format!("http://{}", closed.local_addr().expect("bound"));
    drop(closed);
    gone
}

#[tokio::test]
async fn with_json_every_log_line_is_an_object_with_the_events_fields() {
    let gone = closed_origin().await;
    let mut node = Process::start(&["--origin-url", &gone, "--log-format", "json"]).await;
    // A key that would break a line of text: JSON escapes it.
    let (status, _, _) = node.get("/api/web/a%0Ab%22c").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    node.wait_for_log("load failed").await;
    let log = node.log();
    let events: Vec<serde_json::Value> = log
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}")))
        .collect();
    for event in &events {
        for field in ["timestamp", "level", "target"] {
            assert!(event[field].is_string(), "no {field}: {event}");
        }
        assert!(event["fields"]["message"].is_string(), "{event}");
    }
    // The failed load, with the fields the text format shows beside its message.
    let failed = events
        .iter()
        .find(|e| e["fields"]["message"] == "load failed")
        .expect("the failed load is logged");
    assert_eq!(failed["level"], "WARN", "{failed}");
    assert_eq!(failed["fields"]["group"], "web", "{failed}");
    assert_eq!(failed["fields"]["key"], r#"a\nb"c"#, "{failed}");
    let limit = events
        .iter()
        .find(|e| e["fields"]["message"] == "open file limit")
        .expect("the start-up line");
    assert!(limit["fields"]["soft"].is_u64(), "{limit}");
}

#[tokio::test]
async fn text_is_the_default_and_a_format_it_does_not_know_is_refused() {
    let gone = closed_origin().await;
    let mut node = Process::start(&["--origin-url", &gone]).await;
    node.wait_for_log("open file limit").await;
    assert!(node.log().iter().all(|line| !line.starts_with('{')));

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_alo-node"))
        .args(["--log-format", "xml"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--log-format") && err.contains("json"),
        "{err}"
    );
}
