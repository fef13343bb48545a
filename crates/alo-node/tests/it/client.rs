//! Asking a node's client API over HTTP, whether the node runs in this process or another.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// A node with a client API at `http://127.0.0.1:port`.
pub(crate) trait ClientApi {
    /// `http://127.0.0.1:port` of the client API.
    fn api(&self) -> &str;

    /// GET `path` from the client API.
    async fn get(&self, path: &str) -> (StatusCode, HeaderMap, Bytes) {
        get(&format!("{}{path}", self.api())).await
    }

    /// `method path` with `headers` and `body` on the client API.
    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (StatusCode, HeaderMap, Bytes) {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.api()));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
            .expect("valid request");
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        exchange(client.request(request)).await
    }

    /// Asks the client API for `path` on a task of its own, for a request left in flight.
    fn get_in_background(&self, path: &str) -> tokio::task::JoinHandle<()> {
        let url = format!("{}{path}", self.api());
        tokio::spawn(async move {
            let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
            let _ = client.get(url.parse().expect("a URI")).await;
        })
    }

    /// All of `/stats`.
    async fn all_stats(&self) -> serde_json::Value {
        let (status, _, body) = self.get("/stats").await;
        assert_eq!(status, StatusCode::OK);
        serde_json::from_slice(&body).expect("JSON")
    }

    /// The members this node sees, as `/stats` lists them.
    async fn members(&self) -> Vec<String> {
        let stats = self.all_stats().await;
        let members = stats["peers"].as_array().expect("a list");
        members
            .iter()
            .map(|m| m.as_str().expect("a URL").to_string())
            .collect()
    }
}

/// One group's stats from `/stats`.
pub(crate) async fn stats(node: &impl ClientApi, group: &str) -> serde_json::Value {
    node.all_stats().await["groups"][group].clone()
}

/// Counter `counter` of group `group`, summed over `nodes`.
pub(crate) async fn total(nodes: &[impl ClientApi], group: &str, counter: &str) -> u64 {
    let mut total = 0;
    for node in nodes {
        total += stats(node, group).await[counter].as_u64().expect("a count");
    }
    total
}

/// GET `url`.
pub(crate) async fn get(url: &str) -> (StatusCode, HeaderMap, Bytes) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let request = Request::get(url).body(Empty::new()).expect("valid request");
    exchange(client.request(request)).await
}

/// A request's answer, with a generous bound so that a broken node fails the test instead of
/// hanging it.
async fn exchange(
    request: hyper_util::client::legacy::ResponseFuture,
) -> (StatusCode, HeaderMap, Bytes) {
    let exchange = async {
        let response = request.await.expect("the node answers");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        (parts.status, parts.headers, body)
    };
    tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .expect("answered within 30 s")
}
