//! Circuit breaking per upstream on this data plane: after a run of failed calls the
//! upstream is ejected for a while (calls fail at once instead of piling up on a dead or
//! overloaded server), then a single trial call decides whether it comes back.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use switchboard_config::kinds::upstream::CircuitBreaker;

#[derive(Debug, Default)]
struct State {
    failures: u32,
    open_until: Option<Instant>,
    trial: bool,
}

/// Whether a call may go out now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Closed,
    /// The circuit is half-open and this call is the trial.
    Trial,
    /// Ejected: calls fail fast for this long still.
    Open(Duration),
}

/// What recording a call did to the circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Unchanged,
    Opened,
    /// A success after the circuit had opened.
    Closed,
}

/// Every upstream's circuit on this data plane.
#[derive(Debug, Default)]
pub struct Breakers {
    states: Mutex<HashMap<String, State>>,
}

impl Breakers {
    fn with<T>(&self, upstream: &str, f: impl FnOnce(&mut State) -> T) -> T {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        f(states.entry(upstream.to_string()).or_default())
    }

    /// Asks to send one call to `upstream`.
    pub fn admit(&self, upstream: &str, cfg: &CircuitBreaker) -> Admission {
        if cfg.threshold() == 0 {
            return Admission::Closed;
        }
        self.with(upstream, |s| match s.open_until {
            None => Admission::Closed,
            Some(until) => {
                let now = Instant::now();
                if now < until {
                    Admission::Open(until - now)
                } else if s.trial {
                    // One trial at a time; the rest wait for its verdict.
                    Admission::Open(Duration::from_millis(100))
                } else {
                    s.trial = true;
                    Admission::Trial
                }
            }
        })
    }

    /// Records how a call went, and says whether that opened or closed the circuit.
    pub fn record(&self, upstream: &str, cfg: &CircuitBreaker, ok: bool) -> Transition {
        let threshold = cfg.threshold();
        if threshold == 0 {
            return Transition::Unchanged;
        }
        self.with(upstream, |s| {
            if ok {
                let was_open = s.open_until.is_some();
                *s = State::default();
                return if was_open {
                    Transition::Closed
                } else {
                    Transition::Unchanged
                };
            }
            s.failures = s.failures.saturating_add(1);
            if s.trial || (s.open_until.is_none() && s.failures >= threshold) {
                s.trial = false;
                s.open_until = Some(Instant::now() + cfg.open_duration());
                return Transition::Opened;
            }
            Transition::Unchanged
        })
    }

    /// Whether `upstream`'s circuit is open now (for metrics and errors).
    pub fn is_open(&self, upstream: &str) -> bool {
        self.with(upstream, |s| s.open_until.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_a_run_then_a_trial_decides() {
        let cfg = CircuitBreaker {
            consecutive_failures: Some(2),
            open_for: Some(Duration::from_millis(50)),
        };
        let b = Breakers::default();
        assert_eq!(b.admit("u", &cfg), Admission::Closed);
        assert_eq!(b.record("u", &cfg, false), Transition::Unchanged);
        assert_eq!(
            b.record("u", &cfg, false),
            Transition::Opened,
            "second failure opens"
        );
        assert!(matches!(b.admit("u", &cfg), Admission::Open(_)));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(b.admit("u", &cfg), Admission::Trial);
        assert!(
            matches!(b.admit("u", &cfg), Admission::Open(_)),
            "one trial"
        );
        assert_eq!(
            b.record("u", &cfg, false),
            Transition::Opened,
            "a failed trial opens again"
        );
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(b.admit("u", &cfg), Admission::Trial);
        assert_eq!(b.record("u", &cfg, true), Transition::Closed);
        assert_eq!(b.admit("u", &cfg), Admission::Closed);
        assert!(!b.is_open("u"));
        let off = CircuitBreaker {
            consecutive_failures: Some(0),
            ..cfg
        };
        for _ in 0..5 {
            b.record("v", &off, false);
        }
        assert_eq!(b.admit("v", &off), Admission::Closed);
    }
}
