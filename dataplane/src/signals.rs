//! Passive health: what calls to each upstream did on this data plane since the last
//! report, sent to the control plane on the discovery stream so the discovery leader can
//! check a failing upstream at once instead of at its next interval.

use std::collections::HashMap;
use std::sync::Mutex;
use switchboard_proto::v1::UpstreamSignal;

/// Per-upstream success and failure counts, drained by each report.
#[derive(Default)]
pub struct Signals {
    counts: Mutex<HashMap<String, UpstreamSignal>>,
}

impl Signals {
    fn with(&self, upstream: &str, f: impl FnOnce(&mut UpstreamSignal)) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let entry = counts
            .entry(upstream.to_string())
            .or_insert_with(|| UpstreamSignal {
                upstream: upstream.to_string(),
                ..Default::default()
            });
        f(entry);
    }

    /// A call reached the upstream and got an answer.
    pub fn success(&self, upstream: &str) {
        self.with(upstream, |s| s.successes += 1);
    }

    /// A call could not reach the upstream or got no usable answer.
    pub fn failure(&self, upstream: &str, error: &str) {
        self.with(upstream, |s| {
            s.failures += 1;
            s.last_error = error.chars().take(300).collect();
        });
    }

    /// What to report now: the upstreams with failures since the last report (the counts
    /// start again either way).
    pub fn take(&self) -> Vec<UpstreamSignal> {
        let drained = std::mem::take(&mut *self.counts.lock().unwrap_or_else(|p| p.into_inner()));
        let mut out: Vec<UpstreamSignal> =
            drained.into_values().filter(|s| s.failures > 0).collect();
        out.sort_by(|a, b| a.upstream.cmp(&b.upstream));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_only_failing_upstreams_once() {
        let s = Signals::default();
        s.success("a");
        s.failure("b", "connection refused");
        s.success("b");
        let report = s.take();
        assert_eq!(report.len(), 1);
        assert_eq!(
            (
                report[0].upstream.as_str(),
                report[0].failures,
                report[0].successes
            ),
            ("b", 1, 1)
        );
        assert!(s.take().is_empty());
    }
}
