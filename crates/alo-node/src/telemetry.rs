//! Where the binary's log and traces go: the log to stderr as text or JSON lines
//! (`--log-format`), filtered by `RUST_LOG` (default `info`); with `--otlp-endpoint` (and the
//! `otlp` feature), spans to an OpenTelemetry collector over OTLP/HTTP.
//!
//! The spans of a get: `client request` (the client API; it continues a client's own
//! `traceparent`), `peer request` (asking a member), `peer serve` (a member answering it),
//! `load` (a getter call) and `origin request` (the URL origin's request). They are at `DEBUG`
//! level, `load` aside, so the text log does not show them at the default `info`; the exporter
//! takes every span of alo's crates, and the events at `INFO` and above inside them.

use tracing::Subscriber;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer, Registry, fmt};

use crate::config::{Config, LogFormat};

/// The installed log and, with `--otlp-endpoint`, the trace exporter: [`Telemetry::shutdown`]
/// sends the spans not yet sent.
#[derive(Debug)]
#[must_use = "shut it down at exit, or the last spans are lost"]
pub struct Telemetry {
    #[cfg(feature = "otlp")]
    traces: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Telemetry {
    /// Installs the process's tracing subscriber as `config` asks (see the module's docs).
    ///
    /// # Errors
    /// Before installing anything: when `--otlp-endpoint` is not an `http://` URL, or the
    /// binary was built without the `otlp` feature.
    pub fn init(config: &Config) -> anyhow::Result<Telemetry> {
        let Some(endpoint) = &config.otlp_endpoint else {
            // The filter for every layer: a span no layer wants is never made.
            let log = log(config.log_format);
            Registry::default().with(filter()).with(log).init();
            return Ok(Telemetry {
                #[cfg(feature = "otlp")]
                traces: None,
            });
        };
        anyhow::ensure!(
            endpoint.starts_with("http://"),
            "--otlp-endpoint must be an http:// URL, not {endpoint:?}"
        );
        #[cfg(feature = "otlp")]
        {
            let (traces, layer) = otlp::exporter(endpoint)?;
            Registry::default()
                .with(log(config.log_format).with_filter(filter()))
                .with(layer)
                .init();
            Ok(Telemetry {
                traces: Some(traces),
            })
        }
        #[cfg(not(feature = "otlp"))]
        {
            anyhow::bail!(
                "--otlp-endpoint: this alo-node was built without traces; build it with `--features otlp`"
            )
        }
    }

    /// Sends the spans not sent yet (waiting for the collector at most its timeout), and stops
    /// the exporter.
    pub fn shutdown(self) {
        #[cfg(feature = "otlp")]
        if let Some(traces) = self.traces
            && let Err(e) = traces.shutdown()
        {
            tracing::warn!(error = %e, "the last spans were not all exported");
        }
    }
}

/// The log's filter: `RUST_LOG`, `info` by default.
fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

/// The log's layer: lines of text, or JSON objects with the spans they happened in.
fn log<S>(format: LogFormat) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let stderr = std::io::stderr;
    match format {
        LogFormat::Json => fmt::layer()
            .json()
            .with_current_span(true)
            .with_writer(stderr)
            .boxed(),
        _ => fmt::layer()
            .with_ansi(std::io::IsTerminal::is_terminal(&stderr()))
            .with_writer(stderr)
            .boxed(),
    }
}

#[cfg(feature = "otlp")]
mod otlp {
    use opentelemetry::KeyValue;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::{SpanExporter, WithExportConfig as _};
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing::{Level, Metadata, Subscriber};
    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::filter_fn;
    use tracing_subscriber::registry::LookupSpan;

    /// The provider that exports to `endpoint`, and the layer that makes alo's spans its spans.
    /// Sets the global propagator to W3C trace context, which `alo_http::trace` reads and writes
    /// with.
    pub(super) fn exporter<S>(
        endpoint: &str,
    ) -> anyhow::Result<(SdkTracerProvider, impl Layer<S> + use<S>)>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
        let exporter = SpanExporter::builder()
            .with_http()
            .with_endpoint(&url)
            .build()
            .map_err(|e| anyhow::anyhow!("--otlp-endpoint {endpoint}: {e}"))?;
        let mut resource = Resource::builder()
            .with_attribute(KeyValue::new("process.pid", i64::from(std::process::id())));
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name("alo-node");
        }
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build();
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        // What a span records is its fields, its times and its events: no busy and idle
        // times (two clock reads a poll), no thread, source location or target attributes,
        // and no OpenTelemetry context made current on each poll (the propagation reads the
        // span's own).
        let layer = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("alo-node"))
            .with_tracked_inactivity(false)
            .with_threads(false)
            .with_location(false)
            .with_target(false)
            .with_context_activation(false)
            .with_filter(filter_fn(traced));
        Ok((provider, layer))
    }

    /// What the exporter takes: the spans of alo's crates, and the events at `INFO` and above
    /// (inside those spans: the others it drops), never the exporter's own.
    fn traced(meta: &Metadata<'_>) -> bool {
        let target = meta.target();
        if meta.is_span() {
            target.starts_with("alo")
        } else {
            *meta.level() <= Level::INFO && !target.starts_with("opentelemetry")
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::Telemetry;
    use crate::Config;

    fn init(endpoint: &str) -> String {
        let config = Config::parse_from(["alo-node", "--otlp-endpoint", endpoint]);
        let refused = Telemetry::init(&config).expect_err("refused before installing anything");
        format!("{refused:#}")
    }

    #[test]
    fn an_otlp_endpoint_that_is_not_an_http_url_is_refused() {
        for endpoint in ["https://collector:4318", "collector:4318", ""] {
            let error = init(endpoint);
            assert!(
                error.contains("must be an http:// URL"),
                "{endpoint}: {error}"
            );
        }
    }

    #[cfg(not(feature = "otlp"))]
    #[test]
    fn without_the_otlp_feature_an_otlp_endpoint_is_refused() {
        let error = init("http://127.0.0.1:4318");
        assert!(error.contains("--features otlp"), "{error}");
    }
}
