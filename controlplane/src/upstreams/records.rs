//! What discovery stores per upstream, as JSON documents in the status namespace.

use serde::{Deserialize, Serialize};
use switchboard_config::Catalog;

/// Key of an upstream's catalog.
pub fn catalog_key(upstream: &str) -> String {
    format!("catalog/{upstream}")
}

/// Key of an upstream's health.
pub fn health_key(upstream: &str) -> String {
    format!("health/{upstream}")
}

/// Key of a pending on-demand refresh.
pub fn refresh_key(upstream: &str) -> String {
    format!("refresh/{upstream}")
}

/// Key of the latest passive signal about an upstream.
pub fn signal_key(upstream: &str) -> String {
    format!("signal/{upstream}")
}

/// Key naming the replica that leads discovery.
pub const LEADER_KEY: &str = "leader/discovery";

/// Which replica leads discovery, written by that replica when it takes over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaderRecord {
    pub holder: String,
    pub since_unix_ms: i64,
}

/// A discovered catalog and its content hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CatalogRecord {
    pub hash: String,
    pub catalog: Catalog,
    pub discovered_unix_ms: i64,
}

/// Whether an upstream answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum HealthState {
    /// Not checked yet.
    #[default]
    Unknown,
    Healthy,
    Unhealthy,
}

impl HealthState {
    /// The word `get upstreams` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Unknown => "unknown",
            HealthState::Healthy => "healthy",
            HealthState::Unhealthy => "unhealthy",
        }
    }
}

/// An upstream's health as the leader last recorded it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthRecord {
    pub state: HealthState,
    pub consecutive_failures: u32,
    #[serde(default)]
    pub last_error: String,
    #[serde(default)]
    pub last_error_unix_ms: i64,
    /// Last successful catalog listing.
    #[serde(default)]
    pub last_refresh_unix_ms: i64,
    /// When `state` last changed.
    #[serde(default)]
    pub since_unix_ms: i64,
    /// The protocol version the upstream agreed to.
    #[serde(default)]
    pub protocol_version: String,
    /// Whether the leader listens for the upstream's list_changed notifications.
    #[serde(default)]
    pub listening: bool,
}

/// A request to list an upstream's catalog now (`switchboard refresh upstream NAME`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefreshRequest {
    pub requested_unix_ms: i64,
}

/// Failures data planes saw calling an upstream (passive health), relayed by the replica
/// they are connected to; the leader answers with an immediate active check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignalRecord {
    pub failures: u64,
    pub last_error: String,
    pub at_unix_ms: i64,
    /// The data plane that saw them.
    pub node: String,
}
