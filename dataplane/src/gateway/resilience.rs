//! Calls to an upstream under its circuit breaker and retry policy, with the passive health
//! signals and metrics they feed.

use super::forwarder::Forwarder;
use crate::errors::GatewayError;
use crate::metrics::{method_label, metrics};
use crate::policy::circuit::{Admission, Transition};
use crate::policy::retry;
use crate::routes::UpstreamEntry;
use crate::transport::Forward;
use switchboard_config::kinds::upstream::{CircuitBreaker, ToolCallRetries};
use switchboard_upstream::UpstreamError;

/// Why a call to an upstream got no answer.
pub(super) enum CallError {
    /// Its circuit is open on this data plane (for this long still).
    CircuitOpen(std::time::Duration),
    Upstream(UpstreamError),
}

impl CallError {
    /// The gateway's error for a call to `upstream` that got no answer.
    pub(super) fn into_gateway_error(self, upstream: &str) -> GatewayError {
        let upstream = upstream.to_string();
        match self {
            CallError::CircuitOpen(left) => GatewayError::CircuitOpen { upstream, left },
            CallError::Upstream(source) => GatewayError::Failed { upstream, source },
        }
    }
}

impl Forwarder {
    /// Runs one upstream call under the upstream's circuit breaker and retry policy, and
    /// records how it went (circuit state, passive health signals).
    pub(super) async fn attempt<T, F, Fut>(
        &self,
        f: &Forward,
        spec: &UpstreamEntry,
        mut call: F,
    ) -> std::result::Result<T, CallError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, UpstreamError>>,
    {
        let breaker = &spec.circuit_breaker;
        if let Admission::Open(left) = self.breakers.admit(&f.upstream, breaker) {
            return Err(CallError::CircuitOpen(left));
        }
        let safe = f.method != "tools/call"
            || match spec.retries.tool_calls {
                ToolCallRetries::Always => true,
                ToolCallRetries::Never => false,
                ToolCallRetries::WhenIdempotent => f.idempotent,
            };
        let m = metrics();
        let timer = m
            .upstream_seconds
            .with_label_values(&[f.upstream.as_str(), method_label(&f.method)]);
        let mut done = 0;
        loop {
            let started = std::time::Instant::now();
            let result = call().await;
            timer.observe(started.elapsed().as_secs_f64());
            match result {
                Ok(v) => {
                    self.signals.success(&f.upstream);
                    self.circuit(f, breaker, true);
                    return Ok(v);
                }
                Err(e) => {
                    if let Some(wait) = retry::next_wait(&spec.retries, &e, done, safe) {
                        done += 1;
                        m.retries.with_label_values(&[f.upstream.as_str()]).inc();
                        tracing::info!(upstream = %f.upstream, method = %f.method, error = %e, retry = done, ?wait, "retrying upstream call");
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    let fault = retry::is_upstream_fault(&e);
                    if fault {
                        self.signals.failure(&f.upstream, &e.to_string());
                    }
                    self.circuit(f, breaker, !fault);
                    tracing::warn!(upstream = %f.upstream, error = %e, retries = done, "upstream call failed");
                    return Err(CallError::Upstream(e));
                }
            }
        }
    }
}

impl Forwarder {
    /// Records a call's verdict in the upstream's circuit; metrics follow its transitions.
    fn circuit(&self, f: &Forward, breaker: &CircuitBreaker, ok: bool) {
        let m = metrics();
        match self.breakers.record(&f.upstream, breaker, ok) {
            Transition::Unchanged => {}
            Transition::Opened => {
                m.circuit_opened
                    .with_label_values(&[f.upstream.as_str()])
                    .inc();
                m.circuit_open
                    .with_label_values(&[f.upstream.as_str()])
                    .set(1);
                tracing::warn!(upstream = %f.upstream, open_for = ?breaker.open_duration(), "circuit opened: failing fast");
            }
            Transition::Closed => {
                m.circuit_open
                    .with_label_values(&[f.upstream.as_str()])
                    .set(0);
                tracing::info!(upstream = %f.upstream, "circuit closed");
            }
        }
    }
}
