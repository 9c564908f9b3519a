//! `VirtualServer`: the MCP server a client sees, assembled from upstreams and local items.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What one virtual server exposes and which policies guard it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VirtualServerSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Host names that route to this server in addition to `/servers/{name}/mcp`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Upstreams federated into this server.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<UpstreamSelection>,
    /// Names of `Prompt` resources served locally.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prompts: Vec<String>,
    /// Names of `Resource` resources served locally.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// Name of the `AuthProvider` that authenticates clients (none: open).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_provider: Option<String>,
    /// Names of `RateLimitPolicy` resources applied in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rate_limits: Vec<String>,
    /// Proxy this one upstream as-is (sidecar use) instead of federating.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passthrough: Option<String>,
    /// Which data planes serve this server (all when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
}

/// One upstream inside a virtual server, with what it contributes and under which names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpstreamSelection {
    /// Name of an `Upstream` resource.
    pub upstream: String,
    /// Prepended to every tool and prompt name of this upstream, to keep names unique.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    /// Expose only these tools (by upstream name); all when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<String>>,
    /// Expose only these prompts; all when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompts: Option<Vec<String>>,
    /// Expose only these resource URIs; all when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Vec<String>>,
    /// Upstream tool name -> name shown to clients (the prefix is not applied to these).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rename: BTreeMap<String, String>,
}

impl UpstreamSelection {
    /// The name a client sees for an upstream tool or prompt.
    pub fn exposed_name(&self, upstream_name: &str) -> String {
        match self.rename.get(upstream_name) {
            Some(renamed) => renamed.clone(),
            None => format!("{}{}", self.prefix, upstream_name),
        }
    }
}

/// Selects data planes by identity; empty lists match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Placement {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<String>,
    /// Every label here must be present on the node with the same value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl Placement {
    /// Whether a data plane with this identity should serve the resource.
    pub fn matches(&self, cluster: &str, zone: &str, labels: &BTreeMap<String, String>) -> bool {
        (self.clusters.is_empty() || self.clusters.iter().any(|c| c == cluster))
            && (self.zones.is_empty() || self.zones.iter().any(|z| z == zone))
            && self
                .labels
                .iter()
                .all(|(k, v)| labels.get(k).is_some_and(|have| have == v))
    }
}
