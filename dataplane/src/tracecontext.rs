//! W3C trace context across the gateway: a client's `traceparent` becomes the parent of the
//! request's span, and calls upstream carry the upstream span's context. All of it is off
//! (no spans made, no headers touched) unless the process exports traces.

use opentelemetry::propagation::{Extractor, Injector};
use std::sync::atomic::{AtomicBool, Ordering};
use tracing_opentelemetry::OpenTelemetrySpanExt;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns tracing on for this process (the binary does when it exports over OTLP).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether spans are made and propagated.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct Pairs(Vec<(String, String)>);

impl Injector for Pairs {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_string(), value));
    }
}

/// Makes `span` a child of the trace the client's headers name, if any.
pub fn adopt(span: &tracing::Span, headers: &http::HeaderMap) {
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(headers)));
    let _ = span.set_parent(parent);
}

/// The headers that carry `span`'s context to an upstream.
pub fn headers_for(span: &tracing::Span) -> Vec<(String, String)> {
    let cx = span.context();
    let mut pairs = Pairs(Vec::new());
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut pairs));
    pairs.0
}
