//! When a failed upstream call is sent again. A call that never left (no connection) is
//! always safe; one that reached the upstream and got no usable answer (a timeout before the
//! first byte, a reset, HTTP 502/503/504) only when repeating it is safe. Backoff doubles
//! per retry, with full jitter so replicas do not retry in step.

use std::time::Duration;
use switchboard_config::kinds::upstream::RetryPolicy;
use switchboard_upstream::UpstreamError;

/// How a failure bears on retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The request never reached the upstream.
    NotSent,
    /// It may have reached the upstream, and no answer came.
    NoAnswer,
    /// An answer came (an error the upstream meant, or our own problem): do not retry.
    Final,
}

/// Classifies an upstream error.
pub fn classify(e: &UpstreamError) -> Failure {
    match e {
        UpstreamError::Unreachable { connect: true, .. } => Failure::NotSent,
        UpstreamError::Unreachable { .. } | UpstreamError::Timeout { .. } => Failure::NoAnswer,
        UpstreamError::Status {
            status: 502..=504, ..
        } => Failure::NoAnswer,
        _ => Failure::Final,
    }
}

/// Whether the failure counts against the upstream's circuit.
pub fn is_upstream_fault(e: &UpstreamError) -> bool {
    classify(e) != Failure::Final
        || matches!(e, UpstreamError::Status { status, .. } if *status >= 500)
        || matches!(
            e,
            UpstreamError::Protocol { .. } | UpstreamError::Unusable { .. }
        )
}

/// The wait before retry number `done` (0-based) after `e`, or None to give up.
/// `safe`: the call may be repeated after reaching the upstream.
pub fn next_wait(
    policy: &RetryPolicy,
    e: &UpstreamError,
    done: u32,
    safe: bool,
) -> Option<Duration> {
    if done >= policy.retries() {
        return None;
    }
    match classify(e) {
        Failure::NotSent => {}
        Failure::NoAnswer if safe => {}
        _ => return None,
    }
    let cap = policy.backoff_for(done);
    // Full jitter: anywhere in [0, cap], never less than a millisecond.
    #[allow(clippy::cast_possible_truncation)]
    let ms = cap.as_millis().min(u128::from(u64::MAX)) as u64;
    Some(Duration::from_millis(fastrand::u64(1..=ms.max(1))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_safe_failures_are_retried_and_attempts_are_bounded() {
        let p = RetryPolicy::default();
        let refused = UpstreamError::Unreachable {
            url: "u".into(),
            reason: "refused".into(),
            connect: true,
        };
        let timeout = UpstreamError::Timeout {
            url: "u".into(),
            after: Duration::from_secs(1),
        };
        let bad = UpstreamError::Status {
            url: "u".into(),
            status: 400,
            body: String::new(),
        };
        assert!(next_wait(&p, &refused, 0, false).is_some());
        assert!(
            next_wait(&p, &refused, 2, false).is_none(),
            "two retries by default"
        );
        assert!(next_wait(&p, &timeout, 0, false).is_none());
        assert!(next_wait(&p, &timeout, 0, true).is_some());
        assert!(next_wait(&p, &bad, 0, true).is_none());
        let wait = next_wait(&p, &refused, 1, false).expect("retry");
        assert!(wait <= Duration::from_millis(200), "{wait:?}");
        assert!(is_upstream_fault(&timeout) && !is_upstream_fault(&bad));
    }
}
