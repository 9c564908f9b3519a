//! Token buckets for `RateLimitPolicy`s. Buckets live for the whole process (a new snapshot
//! keeps their levels); a cluster-wide policy gets a per-replica share of the rate and the
//! burst, from the number of replicas the control plane counted in this group.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard_config::kinds::rate_limit::{RateLimitKey, RateLimitMode, RateLimitPolicySpec};

/// Beyond this many buckets, full (idle) ones are dropped.
const MAX_BUCKETS: usize = 100_000;

/// One policy as this replica enforces it.
#[derive(Debug, Clone)]
pub struct Limit {
    pub name: String,
    key: Vec<RateLimitKey>,
    tools: Option<Vec<String>>,
    /// Tokens per second.
    rate: f64,
    capacity: f64,
}

impl Limit {
    /// This replica's share of `spec` when `replicas` replicas enforce it together.
    pub fn new(name: &str, spec: &RateLimitPolicySpec, replicas: u32) -> Limit {
        let share = match spec.mode {
            RateLimitMode::Cluster => f64::from(replicas.max(1)),
            RateLimitMode::Local => 1.0,
        };
        let per = spec.per.as_secs_f64().max(1e-3);
        // Precision loss only past 2^53 requests.
        #[allow(clippy::cast_precision_loss)]
        let (requests, burst) = (
            spec.requests as f64,
            spec.burst.unwrap_or(spec.requests) as f64,
        );
        Limit {
            name: name.to_string(),
            key: spec.key.clone(),
            tools: spec.tools.clone(),
            rate: requests / per / share,
            capacity: (burst / share).max(1.0),
        }
    }

    /// Whether this policy counts a request for `method` (and `tool`, for tools/call).
    pub fn applies(&self, method: &str, tool: Option<&str>) -> bool {
        if matches!(method, "initialize" | "ping") {
            return false;
        }
        match &self.tools {
            None => true,
            Some(tools) => {
                method == "tools/call" && tool.is_some_and(|t| tools.iter().any(|x| x == t))
            }
        }
    }
}

/// What a bucket key is made of.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyParts<'a> {
    pub server: &'a str,
    pub principal: &'a str,
    pub tool: &'a str,
    pub client_ip: &'a str,
}

fn bucket_key(limit: &Limit, parts: &KeyParts<'_>) -> String {
    let mut key = limit.name.clone();
    for k in &limit.key {
        key.push('\u{1f}');
        key.push_str(match k {
            RateLimitKey::VirtualServer => parts.server,
            RateLimitKey::Principal => parts.principal,
            RateLimitKey::Tool => parts.tool,
            RateLimitKey::ClientIp => parts.client_ip,
        });
    }
    key
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn refill(&mut self, limit: &Limit, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * limit.rate).min(limit.capacity);
        self.at = now;
    }
}

/// A refused request: which policy, and when a token will be there.
#[derive(Debug, Clone, PartialEq)]
pub struct Limited {
    pub policy: String,
    pub retry_after: Duration,
}

/// Every bucket of this data plane.
#[derive(Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// Takes one token from every bucket of `limits` that applies, or none when any is
    /// empty (so a refused request costs nothing).
    pub fn check(
        &self,
        limits: &[Arc<Limit>],
        method: &str,
        parts: &KeyParts<'_>,
    ) -> Result<(), Limited> {
        let tool = (!parts.tool.is_empty()).then_some(parts.tool);
        let applying: Vec<&Arc<Limit>> =
            limits.iter().filter(|l| l.applies(method, tool)).collect();
        if applying.is_empty() {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_BUCKETS {
            evict(&mut buckets, now);
        }
        let keys: Vec<String> = applying.iter().map(|l| bucket_key(l, parts)).collect();
        for (limit, key) in applying.iter().zip(&keys) {
            let b = buckets.entry(key.clone()).or_insert(Bucket {
                tokens: limit.capacity,
                at: now,
            });
            b.refill(limit, now);
            if b.tokens < 1.0 {
                let wait = (1.0 - b.tokens) / limit.rate.max(1e-9);
                return Err(Limited {
                    policy: limit.name.clone(),
                    retry_after: Duration::from_secs_f64(wait.min(86_400.0)),
                });
            }
        }
        for key in &keys {
            if let Some(b) = buckets.get_mut(key) {
                b.tokens -= 1.0;
            }
        }
        Ok(())
    }
}

/// Drops buckets that have been idle long enough to be full again (they would start
/// full anyway); if that frees nothing, starts over.
fn evict(buckets: &mut HashMap<String, Bucket>, now: Instant) {
    let before = buckets.len();
    buckets.retain(|_, b| now.saturating_duration_since(b.at) < Duration::from_secs(3600));
    if buckets.len() == before {
        tracing::warn!(buckets = before, "rate-limit buckets full; starting over");
        buckets.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(requests: u64, per: Duration, mode: RateLimitMode) -> RateLimitPolicySpec {
        RateLimitPolicySpec {
            requests,
            per,
            burst: None,
            key: vec![RateLimitKey::Principal],
            tools: None,
            mode,
        }
    }

    #[test]
    fn a_cluster_limit_is_split_and_keys_are_separate() {
        let hour = Duration::from_secs(3600);
        let limit = Arc::new(Limit::new("p", &spec(30, hour, RateLimitMode::Cluster), 3));
        let limiter = RateLimiter::default();
        let alice = KeyParts {
            principal: "alice",
            ..KeyParts::default()
        };
        let allowed = (0..20)
            .filter(|_| {
                limiter
                    .check(std::slice::from_ref(&limit), "tools/call", &alice)
                    .is_ok()
            })
            .count();
        assert_eq!(allowed, 10, "a third of 30");
        let refused = limiter.check(std::slice::from_ref(&limit), "tools/call", &alice);
        assert!(refused.is_err_and(|l| l.retry_after > Duration::from_secs(60)));
        let bob = KeyParts {
            principal: "bob",
            ..KeyParts::default()
        };
        assert!(limiter
            .check(std::slice::from_ref(&limit), "tools/call", &bob)
            .is_ok());
        assert!(limiter
            .check(std::slice::from_ref(&limit), "ping", &alice)
            .is_ok());
        let local = Limit::new("l", &spec(30, hour, RateLimitMode::Local), 3);
        assert!((local.capacity - 30.0).abs() < 1e-9);
    }

    #[test]
    fn a_refusal_takes_no_token_from_other_policies() {
        let hour = Duration::from_secs(3600);
        let wide = Arc::new(Limit::new("wide", &spec(5, hour, RateLimitMode::Local), 1));
        let narrow = Arc::new(Limit::new(
            "narrow",
            &spec(1, hour, RateLimitMode::Local),
            1,
        ));
        let limiter = RateLimiter::default();
        let who = KeyParts::default();
        let both = [wide.clone(), narrow];
        assert!(limiter.check(&both, "tools/call", &who).is_ok());
        for _ in 0..3 {
            assert!(limiter.check(&both, "tools/call", &who).is_err());
        }
        // wide spent one token only: four left.
        let left = (0..10)
            .filter(|_| {
                limiter
                    .check(std::slice::from_ref(&wide), "tools/call", &who)
                    .is_ok()
            })
            .count();
        assert_eq!(left, 4);
    }
}
