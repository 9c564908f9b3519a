//! `RateLimitPolicy`: a token bucket applied by data planes.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `requests` per `per`, bucketed by `key`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RateLimitPolicySpec {
    pub requests: u64,
    #[serde(with = "crate::duration")]
    pub per: Duration,
    /// Extra requests allowed in a burst (default: `requests`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u64>,
    /// What one bucket counts; the default is one bucket per virtual server.
    #[serde(default = "default_key")]
    pub key: Vec<RateLimitKey>,
    /// Apply only to these tool names (as clients see them); all calls when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<String>>,
    #[serde(default)]
    pub mode: RateLimitMode,
}

fn default_key() -> Vec<RateLimitKey> {
    vec![RateLimitKey::VirtualServer]
}

/// One dimension of a rate-limit bucket key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RateLimitKey {
    VirtualServer,
    Principal,
    Tool,
    ClientIp,
}

/// Whether the limit is for the whole cluster (split across replicas) or per replica.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RateLimitMode {
    #[default]
    Cluster,
    Local,
}
