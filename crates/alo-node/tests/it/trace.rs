//! Traces cross the hop (with the `otlp` feature): two processes export their spans to an OTLP
//! receiver in this test, which decodes them; a get asked of one node and loaded by the other
//! from the origin is one trace, from the client's `traceparent` to the origin's.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message as _;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

use crate::client::{ClientApi as _, stats};
use crate::dns::DnsServer;
use crate::dns_members::{SRV, dns_args};
use crate::process::Process;

/// One span as the receiver decoded it.
#[derive(Clone, Debug)]
struct Received {
    /// `process.pid` of the node that exported it.
    pid: i64,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
}

/// An OTLP/HTTP receiver: `POST /v1/traces` with a protobuf `ExportTraceServiceRequest`.
struct Receiver {
    url: String,
    spans: watch::Receiver<Vec<Received>>,
    _stop: oneshot::Sender<()>,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("bound"));
        let (tx, spans) = watch::channel(Vec::new());
        let tx = Arc::new(tx);
        let handler = move |req: Request<Incoming>| {
            let tx = Arc::clone(&tx);
            async move {
                assert_eq!(req.uri().path(), "/v1/traces");
                let body = req.into_body().collect().await.expect("body").to_bytes();
                let export = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                tx.send_modify(|spans| spans.extend(decoded(&export)));
                let answer = ExportTraceServiceResponse::default().encode_to_vec();
                let mut resp = Response::new(Full::new(Bytes::from(answer)));
                resp.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/x-protobuf"),
                );
                resp
            }
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let options = alo_http::ServerOptions::default();
        tokio::spawn(alo_http::serve_with(listener, options, handler, stopped));
        Receiver {
            url,
            spans,
            _stop: stop,
        }
    }

    /// The spans of trace `trace_id` once `done` says they are all there (30 s at most).
    async fn trace(&self, trace_id: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let of_trace = |spans: &[Received]| -> Vec<Received> {
            spans
                .iter()
                .filter(|s| s.trace_id == trace_id)
                .cloned()
                .collect()
        };
        let mut spans = self.spans.clone();
        let wait = spans.wait_for(|spans| done(&of_trace(spans)));
        let Ok(spans) = tokio::time::timeout(Duration::from_secs(30), wait).await else {
            panic!(
                "the trace within 30 s; received: {:#?}",
                self.spans.borrow()
            );
        };
        of_trace(&spans.expect("the receiver runs"))
    }
}

/// The spans of an export, each with the pid of the process that sent it.
fn decoded(export: &ExportTraceServiceRequest) -> Vec<Received> {
    let mut spans = Vec::new();
    for resource_spans in &export.resource_spans {
        let pid = resource_spans
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|a| a.key == "process.pid")
            .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                Value::IntValue(pid) => Some(*pid),
                _ => None,
            })
            .expect("a process.pid");
        for scope_spans in &resource_spans.scope_spans {
            for span in &scope_spans.spans {
                spans.push(Received {
                    pid,
                    name: span.name.clone(),
                    trace_id: hex::encode(&span.trace_id),
                    span_id: hex::encode(&span.span_id),
                    parent_span_id: hex::encode(&span.parent_span_id),
                });
            }
        }
    }
    spans
}

/// An origin that answers every key, and keeps the `traceparent` of each request.
async fn tracing_origin() -> (String, Arc<Mutex<Vec<String>>>, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("bound"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&seen);
    let handler = move |req: Request<Incoming>| {
        let parent = req
            .headers()
            .get("traceparent")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        kept.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(parent.unwrap_or_default());
        async move { Response::new(Full::new(Bytes::from_static(b"from the origin"))) }
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let options = alo_http::ServerOptions::default();
    tokio::spawn(alo_http::serve_with(listener, options, handler, stopped));
    (url, seen, stop)
}

fn pid(process: &Process) -> i64 {
    i64::from(process.child.id().expect("running"))
}

/// The one span named `name` that process `pid` exported.
fn one<'a>(spans: &'a [Received], pid: i64, name: &str) -> &'a Received {
    let found: Vec<&Received> = spans
        .iter()
        .filter(|s| s.pid == pid && s.name == name)
        .collect();
    match found.as_slice() {
        [span] => span,
        _ => panic!("one {name:?} span of {pid}: {spans:#?}"),
    }
}

#[tokio::test]
async fn a_get_that_asks_its_owner_is_one_trace_from_the_client_to_the_origin() {
    let receiver = Receiver::start().await;
    let (origin, origin_saw, _stop_origin) = tracing_origin().await;
    let dns = DnsServer::start().await;
    let dns_server = dns.addr.to_string();
    // Spans are sent every 20 ms, not every 5 s.
    let env = [("OTEL_BSP_SCHEDULE_DELAY", "20")];
    let mut args = dns_args(SRV, &dns_server, "100");
    args.extend(["--origin-url", &origin, "--otlp-endpoint", &receiver.url]);
    let mut asker = Process::start_with_env(&env, &args).await;
    let mut owner = Process::start_with_env(&env, &args).await;
    let port = |node: &Process| -> u16 {
        let port = node.peer.rsplit_once(':').expect("host:port").1;
        port.parse().expect("a port")
    };
    let (asker_port, owner_port) = (port(&asker), port(&owner));
    dns.set_srv(
        SRV,
        &[
            ("a.cluster.test", asker_port),
            ("b.cluster.test", owner_port),
        ],
    );
    for node in [&mut asker, &mut owner] {
        node.wait_for_log("members set").await;
    }

    // The first key the other node owns: one the asker got from a peer.
    let mut asked = None;
    for i in 1..=64_u32 {
        let trace_id = format!("{i:032x}");
        let client_span = "00f067aa0ba902b7";
        let traceparent = format!("00-{trace_id}-{client_span}-01");
        let headers = [("traceparent", traceparent.as_str())];
        let path = format!("/api/web/key-{i}");
        let (status, _, body) = asker.send(Method::GET, &path, &headers, "").await;
        assert_eq!(
            (status, &body[..]),
            (StatusCode::OK, &b"from the origin"[..])
        );
        if stats(&asker, "web").await["peer_loads"] == 1 {
            asked = Some((trace_id, client_span));
            break;
        }
    }
    let (trace_id, client_span) = asked.expect("one of 64 keys is the other node's");

    let (a, b) = (pid(&asker), pid(&owner));
    let names = [
        (a, "client request"),
        (a, "peer request"),
        (b, "peer serve"),
        (b, "load"),
        (b, "origin request"),
    ];
    let spans = receiver
        .trace(&trace_id, |spans| {
            names
                .iter()
                .all(|(pid, name)| spans.iter().any(|s| s.pid == *pid && s.name == *name))
        })
        .await;
    // One trace, each span the child of the one before, across the two processes.
    let client_request = one(&spans, a, "client request");
    let peer_request = one(&spans, a, "peer request");
    let peer_serve = one(&spans, b, "peer serve");
    let load = one(&spans, b, "load");
    let origin_request = one(&spans, b, "origin request");
    assert_eq!(client_request.parent_span_id, client_span);
    assert_eq!(peer_request.parent_span_id, client_request.span_id);
    assert_eq!(peer_serve.parent_span_id, peer_request.span_id);
    assert_eq!(load.parent_span_id, peer_serve.span_id);
    assert_eq!(origin_request.parent_span_id, load.span_id);
    // And the origin was asked in it.
    let origin_saw = origin_saw.lock().unwrap_or_else(PoisonError::into_inner);
    let expected = format!("00-{trace_id}-{}-01", origin_request.span_id);
    assert!(
        origin_saw.contains(&expected),
        "the origin saw {origin_saw:?}, not {expected}"
    );
}
