//! The data plane's Prometheus metrics, served as text on `/metrics`. Label values come only
//! from the snapshot (server, tool and upstream names) or from fixed lists (methods,
//! outcomes), never from what a client sends, so cardinality stays bounded.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::sync::OnceLock;

/// Every data-plane metric, registered once per process.
pub struct Metrics {
    registry: Registry,
    /// server, method, tool, upstream, outcome.
    pub requests: IntCounterVec,
    /// server, method.
    pub request_seconds: HistogramVec,
    /// upstream, method: one upstream attempt, until its answer starts.
    pub upstream_seconds: HistogramVec,
    pub in_flight: IntGauge,
    pub sse_streams: IntGauge,
    pub websockets: IntGauge,
    /// server.
    pub sessions_opened: IntCounterVec,
    /// server.
    pub sessions_closed: IntCounterVec,
    /// server, policy.
    pub rate_limited: IntCounterVec,
    /// Connections closed at once, by why (`per_address`: the address had too many open).
    pub connections_refused: IntCounterVec,
    /// server, reason (missing, invalid, unavailable).
    pub auth_rejected: IntCounterVec,
    /// server.
    pub authz_denied: IntCounterVec,
    /// upstream.
    pub retries: IntCounterVec,
    /// upstream: questions no client stream took in time (the upstream got an error).
    pub undelivered_questions: IntCounterVec,
    /// upstream.
    pub circuit_opened: IntCounterVec,
    /// upstream: 1 while its circuit is open.
    pub circuit_open: IntGaugeVec,
    /// version: 1 for the snapshot being served.
    pub snapshot_info: IntGaugeVec,
    /// When the served snapshot was built (Unix seconds).
    pub snapshot_created: IntGauge,
    /// Seconds since then, as of the scrape.
    pub snapshot_age: IntGauge,
    pub snapshots_applied: IntCounter,
    pub snapshots_rejected: IntCounter,
}

/// The methods that get their own label value; the rest count as `other`.
const METHODS: [&str; 24] = [
    "initialize",
    "ping",
    "server/discover",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "resources/subscribe",
    "resources/unsubscribe",
    "completion/complete",
    "logging/setLevel",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
    "subscriptions/listen",
    "tasks/get",
    "tasks/result",
    "tasks/update",
    "tasks/cancel",
    "tasks/list",
];

/// How a request to a virtual server ended, as metrics and the access log count it (the
/// `outcome` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Served {
    /// Answered with a result (or a stream that ended normally).
    #[default]
    Ok,
    /// Answered with a JSON-RPC error, or an HTTP error status.
    Error,
    /// An upstream failed: unreachable, broke off, answered garbage, or its circuit is open.
    UpstreamError,
    /// Refused for missing or bad credentials.
    Unauthorized,
    /// Refused by authorization rules.
    Forbidden,
    /// Refused by a rate limit.
    RateLimited,
    /// The call waits for the client's input (an `InputRequiredResult` went out).
    InputRequired,
    /// Passed on as-is (pass-through); the HTTP status decides when the request ends.
    Proxied,
}

impl Served {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Served::Ok => "ok",
            Served::Error => "error",
            Served::UpstreamError => "upstream_error",
            Served::Unauthorized => "unauthorized",
            Served::Forbidden => "forbidden",
            Served::RateLimited => "rate_limited",
            Served::InputRequired => "input_required",
            Served::Proxied => "proxied",
        }
    }
}

/// `method` if it is a known MCP method, else `other`.
pub fn method_label(method: &str) -> &'static str {
    METHODS
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or("other")
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("registered once");
    c
}

fn histogram(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let buckets = vec![
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ];
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .expect("valid metric");
    registry
        .register(Box::new(h.clone()))
        .expect("registered once");
    h
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("registered once");
    g
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("registered once");
    g
}

fn plain_counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("registered once");
    c
}

impl Metrics {
    fn new() -> Metrics {
        let r = Registry::new();
        Metrics {
            requests: counter(
                &r,
                "switchboard_requests_total",
                "MCP requests answered, by virtual server, method, tool, upstream and outcome.",
                &["server", "method", "tool", "upstream", "outcome"],
            ),
            request_seconds: histogram(
                &r,
                "switchboard_request_duration_seconds",
                "Time from a request's arrival to the end of its answer.",
                &["server", "method"],
            ),
            upstream_seconds: histogram(
                &r,
                "switchboard_upstream_duration_seconds",
                "Time from sending a call upstream until its answer starts.",
                &["upstream", "method"],
            ),
            in_flight: gauge(
                &r,
                "switchboard_requests_in_flight",
                "Requests being handled now.",
            ),
            sse_streams: gauge(
                &r,
                "switchboard_sse_streams_open",
                "SSE answers being streamed to clients now.",
            ),
            websockets: gauge(
                &r,
                "switchboard_websocket_connections_open",
                "WebSocket client connections open now.",
            ),
            sessions_opened: counter(
                &r,
                "switchboard_sessions_opened_total",
                "Client sessions opened (initialize).",
                &["server"],
            ),
            sessions_closed: counter(
                &r,
                "switchboard_sessions_closed_total",
                "Client sessions ended (DELETE).",
                &["server"],
            ),
            rate_limited: counter(
                &r,
                "switchboard_rate_limited_total",
                "Requests refused by a rate limit.",
                &["server", "policy"],
            ),
            connections_refused: counter(
                &r,
                "switchboard_connections_refused_total",
                "Client connections closed at once (reason: per_address, the address had too many open).",
                &["reason"],
            ),
            auth_rejected: counter(
                &r,
                "switchboard_auth_rejected_total",
                "Requests refused for missing or invalid credentials.",
                &["server", "reason"],
            ),
            authz_denied: counter(
                &r,
                "switchboard_authz_denied_total",
                "Requests refused by authorization rules.",
                &["server"],
            ),
            retries: counter(
                &r,
                "switchboard_upstream_retries_total",
                "Upstream calls sent again after a failure.",
                &["upstream"],
            ),
            undelivered_questions: counter(
                &r,
                "switchboard_undelivered_questions_total",
                "Upstream requests to clients (sampling, elicitation, roots) that no client stream took in time; the upstream was answered with an error.",
                &["upstream"],
            ),
            circuit_opened: counter(
                &r,
                "switchboard_circuit_opened_total",
                "Times an upstream's circuit opened on this data plane.",
                &["upstream"],
            ),
            circuit_open: gauge_vec(
                &r,
                "switchboard_circuit_open",
                "1 while an upstream's circuit is open on this data plane.",
                &["upstream"],
            ),
            snapshot_info: gauge_vec(
                &r,
                "switchboard_snapshot_info",
                "The snapshot version being served (value 1).",
                &["version"],
            ),
            snapshot_created: gauge(
                &r,
                "switchboard_snapshot_created_timestamp_seconds",
                "When the served snapshot was built by the control plane.",
            ),
            snapshot_age: gauge(
                &r,
                "switchboard_snapshot_age_seconds",
                "Seconds since the served snapshot was built.",
            ),
            snapshots_applied: plain_counter(
                &r,
                "switchboard_snapshots_applied_total",
                "Snapshots accepted and served.",
            ),
            snapshots_rejected: plain_counter(
                &r,
                "switchboard_snapshots_rejected_total",
                "Snapshots refused (NACKed); the previous one kept serving.",
            ),
            registry: r,
        }
    }

    /// Creates the per-server and per-upstream series at zero, so they exist (and `rate()`
    /// works) before the first event.
    pub fn prime<'a>(
        &self,
        servers: impl Iterator<Item = (&'a str, bool, Vec<&'a str>)>,
        upstreams: impl Iterator<Item = &'a str>,
    ) {
        for (server, authenticates, policies) in servers {
            self.authz_denied.with_label_values(&[server]);
            self.sessions_opened.with_label_values(&[server]);
            self.sessions_closed.with_label_values(&[server]);
            if authenticates {
                for reason in ["missing", "invalid", "unavailable"] {
                    self.auth_rejected.with_label_values(&[server, reason]);
                }
            }
            for policy in policies {
                self.rate_limited.with_label_values(&[server, policy]);
            }
        }
        for upstream in upstreams {
            self.retries.with_label_values(&[upstream]);
            self.undelivered_questions.with_label_values(&[upstream]);
            self.circuit_opened.with_label_values(&[upstream]);
            self.circuit_open.with_label_values(&[upstream]);
        }
    }

    /// Records that `version`, built at `created_unix_ms`, is now served.
    pub fn serving(&self, version: &str, created_unix_ms: i64) {
        self.snapshot_info.reset();
        self.snapshot_info.with_label_values(&[version]).set(1);
        self.snapshot_created.set(created_unix_ms / 1000);
    }

    /// The text exposition of every metric, as of now.
    pub fn render(&self) -> Vec<u8> {
        let created = self.snapshot_created.get();
        if created > 0 {
            self.snapshot_age.set((now_ms() / 1000 - created).max(0));
        }
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }
}

/// Milliseconds since the Unix epoch (snapshot build times are given in these).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Counts a gauge up for as long as it lives.
#[derive(Debug)]
pub struct Tracked(&'static IntGauge);

impl Tracked {
    /// `gauge` + 1 until dropped.
    pub fn new(gauge: &'static IntGauge) -> Tracked {
        gauge.inc();
        Tracked(gauge)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_outside_the_list_share_one_label() {
        assert_eq!(method_label("tools/call"), "tools/call");
        assert_eq!(method_label("evil/{random}"), "other");
        let m = metrics();
        m.requests
            .with_label_values(&["s", "tools/call", "t", "u", "ok"])
            .inc();
        let text = String::from_utf8(m.render()).expect("utf-8");
        assert!(text.contains("switchboard_requests_total{method=\"tools/call\",outcome=\"ok\",server=\"s\",tool=\"t\",upstream=\"u\"}"), "{text}");
    }
}
