//! Token buckets for `RateLimitPolicy`s. Buckets live for the whole process (a new snapshot
//! keeps their levels); a cluster-wide policy gets a per-replica share of the rate and the
//! burst, from the number of replicas the control plane counted in this group.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard_config::kinds::rate_limit::{RateLimitKey, RateLimitMode, RateLimitPolicySpec};

/// Most buckets one policy keeps; beyond it, full ones are dropped, and while none is, new
/// keys of that policy are refused.
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
    /// `initialize` counts (it opens a session on every upstream); `ping` is answered by
    /// the gateway itself and does not.
    pub fn applies(&self, method: &str, tool: Option<&str>) -> bool {
        if method == "ping" {
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
    /// When it is full again if nothing takes from it: from then on it is no different
    /// from a new bucket, and may be dropped.
    full_at: Instant,
}

impl Bucket {
    fn refill(&mut self, limit: &Limit, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * limit.rate).min(limit.capacity);
        self.at = now;
    }

    /// Takes a token, and notes when the bucket is full again.
    fn take(&mut self, limit: &Limit) {
        self.tokens -= 1.0;
        let missing = (limit.capacity - self.tokens).max(0.0) / limit.rate.max(1e-9);
        self.full_at = self.at + Duration::from_secs_f64(missing.min(86_400.0 * 365.0));
    }
}

/// A refused request: which policy, and when a token will be there.
#[derive(Debug, Clone, PartialEq)]
pub struct Limited {
    pub policy: String,
    pub retry_after: Duration,
}

/// One policy's buckets, by key.
#[derive(Debug, Default)]
struct PolicyBuckets {
    buckets: HashMap<String, Bucket>,
    /// When full buckets were last dropped (at most once a second: it walks them all).
    swept: Option<Instant>,
}

/// Every bucket of this data plane, kept apart per policy: keys of one policy (say, client
/// addresses an attacker rotates) can never push out another policy's buckets.
pub struct RateLimiter {
    policies: Mutex<HashMap<String, PolicyBuckets>>,
    /// Most buckets one policy keeps.
    per_policy: usize,
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter::with_capacity(MAX_BUCKETS)
    }
}

impl RateLimiter {
    /// A limiter keeping at most `per_policy` buckets per policy.
    pub fn with_capacity(per_policy: usize) -> RateLimiter {
        RateLimiter {
            policies: Mutex::default(),
            per_policy,
        }
    }

    /// Takes one token from every bucket of `limits` that applies, or none when any is
    /// empty (so a refused request costs nothing). A policy whose buckets are all in use
    /// refuses new keys until some are full again: its limit holds, and nothing resets.
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
        let mut policies = self.policies.lock().unwrap_or_else(|p| p.into_inner());
        let keys: Vec<String> = applying.iter().map(|l| bucket_key(l, parts)).collect();
        // First check every bucket, then take from all: a refusal costs nothing. A key
        // with no bucket has a full one; it is stored only once it gives a token, so
        // refused requests fill nothing.
        for (limit, key) in applying.iter().zip(&keys) {
            let policy = policies.entry(limit.name.clone()).or_default();
            if let Some(b) = policy.buckets.get_mut(key) {
                b.refill(limit, now);
                if b.tokens < 1.0 {
                    let wait = (1.0 - b.tokens) / limit.rate.max(1e-9);
                    return Err(Limited {
                        policy: limit.name.clone(),
                        retry_after: Duration::from_secs_f64(wait.min(86_400.0)),
                    });
                }
            } else if policy.buckets.len() >= self.per_policy {
                sweep(policy, now);
                if policy.buckets.len() >= self.per_policy {
                    return Err(Limited {
                        policy: limit.name.clone(),
                        retry_after: Duration::from_secs(1),
                    });
                }
            }
        }
        for (limit, key) in applying.iter().zip(&keys) {
            let policy = policies.entry(limit.name.clone()).or_default();
            let b = policy.buckets.entry(key.clone()).or_insert(Bucket {
                tokens: limit.capacity,
                at: now,
                full_at: now,
            });
            b.take(limit);
        }
        Ok(())
    }
}

/// Drops the buckets of `policy` that are full again (a new bucket would be the same), at
/// most once a second.
fn sweep(policy: &mut PolicyBuckets, now: Instant) {
    if policy
        .swept
        .is_some_and(|at| now.saturating_duration_since(at) < Duration::from_secs(1))
    {
        return;
    }
    policy.swept = Some(now);
    let before = policy.buckets.len();
    policy.buckets.retain(|_, b| b.full_at > now);
    tracing::debug!(
        dropped = before - policy.buckets.len(),
        "rate-limit buckets swept"
    );
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
    fn rotating_keys_of_one_policy_reset_no_other_limit() {
        let hour = Duration::from_secs(3600);
        let per_ip = Arc::new(Limit::new(
            "per-ip",
            &RateLimitPolicySpec {
                key: vec![RateLimitKey::ClientIp],
                ..spec(100, hour, RateLimitMode::Local)
            },
            1,
        ));
        let per_user = Arc::new(Limit::new(
            "per-user",
            &spec(2, hour, RateLimitMode::Local),
            1,
        ));
        let limiter = RateLimiter::with_capacity(50);
        let both = [per_ip, per_user];
        let from = |ip: &'static str| KeyParts {
            principal: "mallory",
            client_ip: ip,
            ..KeyParts::default()
        };
        assert!(limiter
            .check(&both, "tools/call", &from("10.0.0.1"))
            .is_ok());
        assert!(limiter
            .check(&both, "tools/call", &from("10.0.0.1"))
            .is_ok());
        // Mallory's own limit is spent; addresses rotated past every bucket there is must
        // not reset it (they did: a full map was cleared wholesale).
        let ips: Vec<String> = (0..200)
            .map(|i| format!("10.1.{}.{}", i / 256, i % 256))
            .collect();
        for ip in &ips {
            let parts = KeyParts {
                principal: "mallory",
                client_ip: ip,
                ..KeyParts::default()
            };
            let refused = limiter.check(&both, "tools/call", &parts);
            assert!(refused.is_err(), "{ip}");
        }
        // Other principals' new addresses: up to the cap, then refused until buckets refill.
        let fresh: Vec<String> = (0..60).map(|i| format!("10.2.0.{i}")).collect();
        let admitted = fresh
            .iter()
            .enumerate()
            .filter(|(i, ip)| {
                let who = format!("u{i}");
                let parts = KeyParts {
                    principal: &who,
                    client_ip: ip,
                    ..KeyParts::default()
                };
                limiter.check(&both, "tools/call", &parts).is_ok()
            })
            .count();
        assert_eq!(admitted, 49, "50 buckets per policy, one of them Mallory's");
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
