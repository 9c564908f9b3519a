//! `VirtualServer`: the MCP server a client sees, assembled from upstreams and local items.

use super::upstream::Timeouts;
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
    /// Who may call which methods, tools, prompts and resources.
    #[serde(default, skip_serializing_if = "Authorization::is_empty")]
    pub authorization: Authorization,
    /// Limits on what one request may carry.
    #[serde(default, skip_serializing_if = "RequestLimits::is_empty")]
    pub limits: RequestLimits,
    /// How long client sessions last.
    #[serde(default, skip_serializing_if = "SessionSettings::is_empty")]
    pub sessions: SessionSettings,
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
    /// Time limits for calls through this server to this upstream, over the upstream's own.
    #[serde(default, skip_serializing_if = "Timeouts::is_empty")]
    pub timeouts: Timeouts,
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

/// Allow/deny rules, checked in order; the first rule that matches decides, and
/// `defaultAction` decides when none does. Tools, prompts and resources a caller may not use
/// are left out of that caller's listings too.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Authorization {
    #[serde(default, skip_serializing_if = "Action::is_allow")]
    pub default_action: Action,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<AuthorizationRule>,
}

impl Authorization {
    /// True when nothing is set (everything allowed), so serialisation can omit the block.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// What a rule does when it matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    #[default]
    Allow,
    Deny,
}

impl Action {
    /// True for the default, so serialisation can omit it.
    pub fn is_allow(&self) -> bool {
        *self == Action::Allow
    }
}

/// One rule. Every selector that is set must match (lists match when any entry does;
/// `*` and `?` are wildcards); a rule with none set matches every request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuthorizationRule {
    pub action: Action,
    /// JSON-RPC methods, e.g. `tools/call`, `prompts/*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Tool names as clients see them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
    /// Prompt names as clients see them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prompts: Vec<String>,
    /// Resource URIs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// Principals (the subject claim, or an API key's principal).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<String>,
    /// The principal belongs to one of these groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// The principal holds one of these scopes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
}

impl AuthorizationRule {
    /// Every pattern list of the rule with its field name, for validation.
    pub fn selectors(&self) -> [(&'static str, &Vec<String>); 7] {
        [
            ("methods", &self.methods),
            ("tools", &self.tools),
            ("prompts", &self.prompts),
            ("resources", &self.resources),
            ("subjects", &self.subjects),
            ("groups", &self.groups),
            ("scopes", &self.scopes),
        ]
    }
}

/// Client sessions of a virtual server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SessionSettings {
    /// How long a session id works after `initialize` (default 24h, 1m to 30 days); then
    /// the client gets 404 and initializes again, as after any lost session.
    #[serde(
        default,
        with = "crate::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_lifetime: Option<std::time::Duration>,
}

impl SessionSettings {
    /// Default session lifetime.
    pub const DEFAULT_LIFETIME: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
    /// Shortest lifetime accepted: a session must outlive a few calls.
    pub const MIN_LIFETIME: std::time::Duration = std::time::Duration::from_secs(60);
    /// Longest lifetime accepted (the control plane's session keys rotate past it).
    pub const MAX_LIFETIME: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

    /// True when nothing is set, so serialisation can omit the block.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The lifetime in force.
    pub fn lifetime(&self) -> std::time::Duration {
        self.max_lifetime.unwrap_or(Self::DEFAULT_LIFETIME)
    }
}

/// Per-request limits; unset fields take the data plane's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RequestLimits {
    /// Largest request body (default: the data plane's `--max-body-bytes`, 4 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<usize>,
    /// Deepest nesting of JSON arrays and objects in a request (default 64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_json_depth: Option<usize>,
    /// Largest `arguments` of a `tools/call` or `prompts/get`, as JSON text (default: no
    /// limit beyond the body's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_argument_bytes: Option<usize>,
}

impl RequestLimits {
    /// Default JSON nesting limit.
    pub const DEFAULT_JSON_DEPTH: usize = 64;

    /// True when nothing is set, so serialisation can omit the block.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}
