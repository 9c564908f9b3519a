//! The record of one request to a virtual server: counted in metrics and written as one
//! access-log line when the request ends.

use crate::metrics::{metrics, Served, Tracked};

/// What one request to a virtual server came to: counted and logged when it ends.
#[derive(Debug)]
pub(super) struct Record {
    pub(super) started: std::time::Instant,
    pub(super) server: String,
    pub(super) method: String,
    pub(super) tool: String,
    pub(super) upstream: String,
    pub(super) outcome: Served,
    pub(super) principal: String,
    /// A fingerprint of the session id (the id itself is a credential).
    pub(super) session: String,
    pub(super) _in_flight: Tracked,
}

impl Record {
    pub(super) fn new(server: &str) -> Record {
        Record {
            started: std::time::Instant::now(),
            server: server.to_string(),
            method: String::new(),
            tool: String::new(),
            upstream: String::new(),
            outcome: Served::Ok,
            principal: String::new(),
            session: String::new(),
            _in_flight: Tracked::new(&metrics().in_flight),
        }
    }

    /// Counts the request and writes its access-log line.
    pub(super) fn finish(&self, status: u16) {
        let m = metrics();
        let outcome = match (self.outcome, status) {
            (Served::Proxied, s) if s >= 400 => Served::Error,
            (Served::Proxied, _) => Served::Ok,
            (o, _) => o,
        }
        .label();
        m.requests
            .with_label_values(&[
                self.server.as_str(),
                self.method.as_str(),
                self.tool.as_str(),
                self.upstream.as_str(),
                outcome,
            ])
            .inc();
        let took = self.started.elapsed();
        m.request_seconds
            .with_label_values(&[self.server.as_str(), self.method.as_str()])
            .observe(took.as_secs_f64());
        tracing::info!(
            target: "switchboard::access",
            server = %self.server,
            method = %self.method,
            tool = %self.tool,
            upstream = %self.upstream,
            status,
            outcome,
            duration_ms = took.as_secs_f64() * 1000.0,
            principal = %self.principal,
            session = %self.session,
            "request"
        );
    }
}
