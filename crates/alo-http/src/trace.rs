//! Traces across the hop: a request to a member carries the W3C trace context of the span it is
//! sent in (`traceparent`, and `tracestate` when there is one), and the member's span for the
//! request continues that trace, so one get is one trace across the nodes it crosses.
//!
//! The spans are `tracing`'s: `peer request` on the asking side (fields `peer` and `kind`:
//! `get`, `batch`, `peek` or `write`; a batch follows from the span of every get in it) and
//! `peer serve` on the answering side (field `kind`), each at `DEBUG` level, so that they cost
//! nothing where no subscriber wants them. The group's `load` span, and so a getter's work, runs
//! inside the `peer serve` span of the request that began the load.
//!
//! With the `opentelemetry` feature the context is read and written by OpenTelemetry's global
//! text-map propagator (set it to `TraceContextPropagator`, the codec of `traceparent`) for
//! spans that a `tracing-opentelemetry` layer records; alo-node does both with
//! `--otlp-endpoint`. Without the feature, or for a span no layer records, nothing is read or
//! written. The same two functions serve a node's own client API and its origin requests.

use http::HeaderMap;
use tracing::Span;

/// Writes the trace context of `span` on `headers`, for the server the request goes to to
/// continue the trace. Nothing when the span is not recorded (disabled, no OpenTelemetry layer,
/// or the `opentelemetry` feature off).
pub fn inject(span: &Span, headers: &mut HeaderMap) {
    if span.is_disabled() {
        return;
    }
    #[cfg(feature = "opentelemetry")]
    otel::inject(span, headers);
    #[cfg(not(feature = "opentelemetry"))]
    let _ = headers;
}

/// Makes `span`, a request's span not yet entered, continue the trace whose context `headers`
/// carry. Nothing when they carry none (or one that does not parse), or when the span is not
/// recorded: then it stays where it was made.
pub fn continue_from(span: &Span, headers: &HeaderMap) {
    if span.is_disabled() {
        return;
    }
    #[cfg(feature = "opentelemetry")]
    otel::continue_from(span, headers);
    #[cfg(not(feature = "opentelemetry"))]
    let _ = headers;
}

#[cfg(feature = "opentelemetry")]
mod otel {
    use http::HeaderMap;
    use opentelemetry::global;
    use opentelemetry::trace::TraceContextExt as _;
    use opentelemetry_http::{HeaderExtractor, HeaderInjector};
    use tracing::Span;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;

    pub(super) fn inject(span: &Span, headers: &mut HeaderMap) {
        let context = span.context();
        global::get_text_map_propagator(|propagator| {
            propagator.inject_context(&context, &mut HeaderInjector(headers));
        });
    }

    pub(super) fn continue_from(span: &Span, headers: &HeaderMap) {
        let context = global::get_text_map_propagator(|propagator| {
            propagator.extract(&HeaderExtractor(headers))
        });
        if context.span().span_context().is_valid() {
            // Fails only for a span already started or not recorded: it stays where it was made.
            let _ = span.set_parent(context);
        }
    }
}
