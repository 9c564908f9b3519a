//! `Upstream`: a server whose tools, prompts and resources virtual servers expose.

use super::rest::RestUpstream;
use super::secret::SecretRef;
use super::tls::ClientTls;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// How Switchboard reaches one upstream; exactly one transport field is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpstreamSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// An MCP server over streamable HTTP or legacy HTTP+SSE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp: Option<McpUpstream>,
    /// An MCP server run as a child process next to each data plane.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdio: Option<StdioUpstream>,
    /// A REST API whose OpenAPI operations become tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openapi: Option<OpenApiUpstream>,
    /// A REST API whose endpoints are declared as tools here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rest: Option<RestUpstream>,
    /// An A2A agent whose skills become tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub a2a: Option<A2aUpstream>,
    /// A gRPC service whose methods become tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcUpstream>,
    /// Static, non-secret headers sent with every upstream request.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Credentials for the upstream, taken from `Secret`s.
    #[serde(default, skip_serializing_if = "UpstreamAuth::is_empty")]
    pub auth: UpstreamAuth,
    /// How https connections to the upstream (and its OAuth2 token endpoint) are checked:
    /// extra CAs, a server name, a client certificate for mutual TLS.
    #[serde(default, skip_serializing_if = "ClientTls::is_empty")]
    pub tls: ClientTls,
    #[serde(default, skip_serializing_if = "Timeouts::is_empty")]
    pub timeouts: Timeouts,
    /// How often the control plane lists the catalog again (besides list_changed).
    #[serde(default, skip_serializing_if = "DiscoverySettings::is_default")]
    pub discovery: DiscoverySettings,
    /// Active health checking, and what clients see while the upstream is down.
    #[serde(default, skip_serializing_if = "HealthCheck::is_default")]
    pub health: HealthCheck,
    /// When data planes retry a failed call.
    #[serde(default, skip_serializing_if = "RetryPolicy::is_default")]
    pub retries: RetryPolicy,
    /// When a data plane stops sending to an upstream that keeps failing.
    #[serde(default, skip_serializing_if = "CircuitBreaker::is_default")]
    pub circuit_breaker: CircuitBreaker,
}

/// Which kind of upstream a spec declares (by the field it sets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpstreamKind {
    Mcp,
    Stdio,
    OpenApi,
    Rest,
    A2a,
    Grpc,
}

impl UpstreamKind {
    /// The kind as its field is spelled in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamKind::Mcp => "mcp",
            UpstreamKind::Stdio => "stdio",
            UpstreamKind::OpenApi => "openapi",
            UpstreamKind::Rest => "rest",
            UpstreamKind::A2a => "a2a",
            UpstreamKind::Grpc => "grpc",
        }
    }
}

impl std::fmt::Display for UpstreamKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl UpstreamSpec {
    /// The kind this spec declares (validation makes it exactly one); the first set, in the
    /// order above, when several are.
    pub fn kind(&self) -> Option<UpstreamKind> {
        if self.mcp.is_some() {
            Some(UpstreamKind::Mcp)
        } else if self.stdio.is_some() {
            Some(UpstreamKind::Stdio)
        } else if self.openapi.is_some() {
            Some(UpstreamKind::OpenApi)
        } else if self.rest.is_some() {
            Some(UpstreamKind::Rest)
        } else if self.a2a.is_some() {
            Some(UpstreamKind::A2a)
        } else if self.grpc.is_some() {
            Some(UpstreamKind::Grpc)
        } else {
            None
        }
    }
}

/// Retries with exponential backoff and full jitter. A call that never reached the upstream
/// (connect failure) is always retried; other failures (timeouts before the first byte,
/// HTTP 502/503/504) only for calls that are safe to repeat. Nothing is retried once any of
/// the answer reached the client.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RetryPolicy {
    /// Retries after the first attempt (default 2; 0 turns retries off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// First backoff (default 100ms), doubled each retry up to `maxBackoff` (default 2s).
    #[serde(
        default,
        with = "crate::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub backoff: Option<Duration>,
    #[serde(
        default,
        with = "crate::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_backoff: Option<Duration>,
    /// Which `tools/call`s may be repeated after reaching the upstream.
    #[serde(default, skip_serializing_if = "ToolCallRetries::is_default")]
    pub tool_calls: ToolCallRetries,
}

impl RetryPolicy {
    /// True when nothing is set, so serialisation can omit the block.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Retries in force.
    pub fn retries(&self) -> u32 {
        self.attempts.unwrap_or(2)
    }

    /// The wait before retry `n` (0-based), before jitter.
    pub fn backoff_for(&self, n: u32) -> Duration {
        let base = self.backoff.unwrap_or(Duration::from_millis(100));
        let max = self.max_backoff.unwrap_or(Duration::from_secs(2));
        base.saturating_mul(1u32 << n.min(16)).min(max)
    }
}

/// Which tool calls are safe to send twice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ToolCallRetries {
    /// Tools whose annotations say `idempotentHint` or `readOnlyHint`.
    #[default]
    WhenIdempotent,
    /// Every tool (the upstream's tools are known to be safe to repeat).
    Always,
    /// None, whatever the annotations say.
    Never,
}

impl ToolCallRetries {
    /// True for the default, so serialisation can omit it.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Circuit breaking per data plane: after `consecutiveFailures` failed calls in a row the
/// upstream is ejected for `openFor` (calls fail at once), then one trial call decides.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CircuitBreaker {
    /// Failures in a row that open the circuit (default 5; 0 turns it off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<u32>,
    /// How long it stays open before a trial call (default 10s).
    #[serde(
        default,
        with = "crate::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub open_for: Option<Duration>,
}

impl CircuitBreaker {
    /// True when nothing is set, so serialisation can omit the block.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// The failure threshold in force (0: never opens).
    pub fn threshold(&self) -> u32 {
        self.consecutive_failures.unwrap_or(5)
    }

    /// How long the circuit stays open.
    pub fn open_duration(&self) -> Duration {
        self.open_for.unwrap_or(Duration::from_secs(10))
    }
}

/// Catalog refresh settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DiscoverySettings {
    /// Periodic re-listing (default 5m); list_changed notifications refresh at once anyway.
    #[serde(
        default,
        with = "crate::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub refresh_interval: Option<Duration>,
}

impl DiscoverySettings {
    /// Default refresh interval.
    pub const DEFAULT_REFRESH: Duration = Duration::from_secs(300);

    /// True when nothing is set, so serialisation can omit the block.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// The interval in force.
    pub fn refresh(&self) -> Duration {
        self.refresh_interval.unwrap_or(Self::DEFAULT_REFRESH)
    }
}

/// Active health checks run by the discovery leader.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HealthCheck {
    /// Time between checks (default 10s).
    #[serde(
        default,
        with = "crate::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub interval: Option<Duration>,
    /// Longest a check may take (default 5s).
    #[serde(
        default,
        with = "crate::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    /// Consecutive failures that mark the upstream unhealthy (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy_threshold: Option<u32>,
    /// Whether an unhealthy upstream's tools stay listed (calls fail fast) or are hidden.
    #[serde(default, skip_serializing_if = "WhenUnhealthy::is_default")]
    pub when_unhealthy: WhenUnhealthy,
}

impl HealthCheck {
    /// True when nothing is set, so serialisation can omit the block.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// The check interval in force.
    pub fn every(&self) -> Duration {
        self.interval.unwrap_or(Duration::from_secs(10))
    }

    /// The check timeout in force.
    pub fn time_limit(&self) -> Duration {
        self.timeout.unwrap_or(Duration::from_secs(5))
    }

    /// The failure threshold in force.
    pub fn threshold(&self) -> u32 {
        self.unhealthy_threshold.unwrap_or(3).max(1)
    }
}

/// What clients see of an unhealthy upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum WhenUnhealthy {
    /// Its items stay listed; calls fail at once with a clear error.
    #[default]
    KeepListed,
    /// Its items disappear from listings until it recovers.
    Hide,
}

impl WhenUnhealthy {
    /// True for the default, so serialisation can omit it.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// The transport fields of an `Upstream`, by the name users write.
pub const TRANSPORT_FIELDS: [&str; 6] = ["mcp", "stdio", "openapi", "rest", "a2a", "grpc"];

impl UpstreamSpec {
    /// Every secret value the upstream needs (credentials, client certificate, child
    /// environment), with the field that names it.
    pub fn secret_refs(&self) -> Vec<(String, &SecretRef)> {
        let mut refs = self.auth.refs();
        refs.extend(self.tls.refs("spec.tls"));
        refs.extend(self.stdio.iter().flat_map(|s| s.refs()));
        refs
    }

    /// The URL the upstream is reached at (`None` for stdio, run by each data plane).
    pub fn url(&self) -> Option<&str> {
        self.mcp
            .as_ref()
            .map(|m| m.url.as_str())
            .or(self
                .openapi
                .as_ref()
                .and_then(|o| o.base_url.as_deref().or(o.spec_url.as_deref())))
            .or(self.rest.as_ref().map(|r| r.base_url.as_str()))
            .or(self.a2a.as_ref().map(|a| a.url.as_str()))
            .or(self.grpc.as_ref().map(|g| g.address.as_str()))
    }

    /// The transport fields that are set, so validation can demand exactly one.
    pub fn transports_set(&self) -> Vec<&'static str> {
        let set = [
            self.mcp.is_some(),
            self.stdio.is_some(),
            self.openapi.is_some(),
            self.rest.is_some(),
            self.a2a.is_some(),
            self.grpc.is_some(),
        ];
        TRANSPORT_FIELDS
            .iter()
            .zip(set)
            .filter(|(_, on)| *on)
            .map(|(name, _)| *name)
            .collect()
    }
}

/// An MCP server reached over HTTP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct McpUpstream {
    pub url: String,
    #[serde(default)]
    pub transport: McpTransport,
    /// Pin a protocol version instead of negotiating the newest both sides support.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<String>,
}

/// The HTTP flavour an MCP upstream speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum McpTransport {
    /// Streamable HTTP (2025-03-26 and later, and the stateless 2026-07-28 era).
    #[default]
    StreamableHttp,
    /// The 2024-11-05 HTTP+SSE transport.
    Sse,
}

/// A stdio MCP server that every data plane serving it runs as a child process of its own:
/// restarted with backoff when it dies, its stderr logged, its catalog reported to the
/// control plane. The child gets only `PATH`, `HOME`, `LANG`, `TZ` and `TMPDIR` from the data
/// plane's environment, plus `env` and `secretEnv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StdioUpstream {
    /// The program (found on the data plane's PATH, or a path).
    pub command: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Plain environment variables for the child.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Environment variables whose values come from `Secret`s (never logged).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_env: BTreeMap<String, SecretRef>,
    /// The child's working directory (the data plane's when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// One child shared by every client (default), or one per client session.
    #[serde(default, skip_serializing_if = "StdioIsolation::is_default")]
    pub isolation: StdioIsolation,
    /// With `perSession`: most children at once per data plane (default 16); a session
    /// beyond it is refused with a clear error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sessions: Option<u32>,
    /// With `perSession`: a child whose session sent nothing for this long is stopped
    /// (default 10m); the session's next request starts a new one.
    #[serde(
        default,
        with = "crate::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub idle_timeout: Option<Duration>,
}

impl StdioUpstream {
    /// Default cap on `perSession` children.
    pub const DEFAULT_MAX_SESSIONS: u32 = 16;
    /// Default idle time before a `perSession` child is stopped.
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);

    /// Every secret value the child's environment needs, with the field that names it.
    pub fn refs(&self) -> Vec<(String, &SecretRef)> {
        self.secret_env
            .iter()
            .map(|(name, r)| (format!("spec.stdio.secretEnv.{name}"), r))
            .collect()
    }

    /// The `perSession` cap in force.
    pub fn session_cap(&self) -> u32 {
        self.max_sessions.unwrap_or(Self::DEFAULT_MAX_SESSIONS)
    }

    /// The `perSession` idle time in force.
    pub fn idle(&self) -> Duration {
        self.idle_timeout.unwrap_or(Self::DEFAULT_IDLE_TIMEOUT)
    }
}

/// Who shares a stdio upstream's child process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StdioIsolation {
    /// One child per data plane, shared by every client session.
    #[default]
    Shared,
    /// One child per client session: clients never see each other's server state.
    PerSession,
}

impl StdioIsolation {
    /// True for the default, so serialisation can omit it.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// A REST API described by an OpenAPI 3.0 or 3.1 document: one tool per operation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OpenApiUpstream {
    /// Where the document is fetched from (http, https or file), and fetched again at
    /// every catalog refresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_url: Option<String>,
    /// The document itself (YAML or JSON), instead of `specUrl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<serde_json::Value>,
    /// Where requests go. Default: the document's first `servers` URL (a relative one
    /// resolved against `specUrl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Only operations that match (all when empty).
    #[serde(default, skip_serializing_if = "OperationFilter::is_empty")]
    pub include: OperationFilter,
    /// Never operations that match.
    #[serde(default, skip_serializing_if = "OperationFilter::is_empty")]
    pub exclude: OperationFilter,
}

/// Operations by tag, operationId or path (an exact path, or a prefix ending in `*`); an
/// operation matches when any one entry does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OperationFilter {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
}

impl OperationFilter {
    /// True when nothing is listed.
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty() && self.operations.is_empty() && self.paths.is_empty()
    }

    /// Whether an operation with these tags, operationId and path is listed.
    pub fn matches(&self, tags: &[String], operation_id: Option<&str>, path: &str) -> bool {
        self.tags.iter().any(|t| tags.contains(t))
            || operation_id.is_some_and(|id| self.operations.iter().any(|o| o == id))
            || self.paths.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => path.starts_with(prefix),
                None => p == path,
            })
    }
}

/// An A2A agent, discovered through its agent card (`/.well-known/agent-card.json` below
/// `url`): one tool per skill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct A2aUpstream {
    pub url: String,
}

/// How an A2A agent is called, as its catalog carries it (from its card).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct A2aBindings {
    /// The JSON-RPC endpoint the card names.
    pub endpoint: String,
    /// The protocol version spoken there (`1.0`, or `0.3` for older agents).
    pub protocol_version: String,
    /// Whether the agent streams (`SendStreamingMessage`).
    pub streaming: bool,
    /// Tool name -> skill id.
    pub skills: BTreeMap<String, String>,
}

/// A gRPC service, discovered through server reflection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GrpcUpstream {
    /// `http://host:port` or `https://host:port`.
    pub address: String,
    /// Expose only these fully-qualified services (all when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
}

/// Per-upstream time limits; unset fields take the gateway defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Timeouts {
    #[serde(
        default,
        with = "crate::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub connect: Option<Duration>,
    /// Until the first response byte.
    #[serde(
        default,
        with = "crate::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub request: Option<Duration>,
    /// Longest silence inside a streamed response.
    #[serde(
        default,
        with = "crate::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub idle: Option<Duration>,
}

impl Timeouts {
    /// True when no limit is set, so serialisation can omit the block.
    pub fn is_empty(&self) -> bool {
        self.connect.is_none() && self.request.is_none() && self.idle.is_none()
    }
}

/// How Switchboard authenticates to an upstream; at most one of `bearer`, `basic` and
/// `oauth2`, plus any number of secret headers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpstreamAuth {
    /// `Authorization: Bearer <value>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer: Option<SecretRef>,
    /// `Authorization: Basic` with this user name and password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic: Option<BasicAuth>,
    /// Headers whose values are secret (e.g. `X-Api-Key`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, SecretRef>,
    /// A bearer token from an OAuth2 client-credentials grant, fetched and renewed by
    /// whoever talks to the upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth2: Option<OAuth2ClientCredentials>,
    /// Send a client's `X-Upstream-Authorization` header to this upstream as its
    /// `Authorization` (over the credentials above, which still serve discovery and clients
    /// that send none).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub passthrough: bool,
}

impl UpstreamAuth {
    /// True when no credentials are configured.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Every secret value this configuration needs, with the field that names it.
    pub fn refs(&self) -> Vec<(String, &SecretRef)> {
        let mut out = Vec::new();
        if let Some(b) = &self.bearer {
            out.push(("spec.auth.bearer".to_string(), b));
        }
        if let Some(b) = &self.basic {
            out.push(("spec.auth.basic.password".to_string(), &b.password));
        }
        for (name, r) in &self.headers {
            out.push((format!("spec.auth.headers.{name}"), r));
        }
        if let Some(o) = &self.oauth2 {
            out.push((
                "spec.auth.oauth2.clientSecret".to_string(),
                &o.client_secret,
            ));
        }
        out
    }

    /// The credentials with every secret looked up by `lookup`: the headers to send, and
    /// the OAuth2 grant to run. Errors name the missing secret value.
    pub fn resolve(
        &self,
        lookup: &dyn Fn(&SecretRef) -> Option<String>,
    ) -> Result<ResolvedAuth, String> {
        let get = |r: &SecretRef| {
            lookup(r).ok_or_else(|| format!("Secret `{}` has no key `{}`", r.secret, r.key))
        };
        let mut out = ResolvedAuth::default();
        if let Some(b) = &self.bearer {
            out.headers
                .insert("authorization".into(), format!("Bearer {}", get(b)?));
        }
        if let Some(b) = &self.basic {
            use base64::Engine;
            let pair = format!("{}:{}", b.username, get(&b.password)?);
            let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
            out.headers
                .insert("authorization".into(), format!("Basic {encoded}"));
        }
        for (name, r) in &self.headers {
            out.headers.insert(name.to_ascii_lowercase(), get(r)?);
        }
        if let Some(o) = &self.oauth2 {
            out.oauth2 = Some(OAuth2Grant {
                token_url: o.token_url.clone(),
                client_id: o.client_id.clone(),
                client_secret: get(&o.client_secret)?,
                scopes: o.scopes.clone(),
                audience: o.audience.clone(),
            });
        }
        Ok(out)
    }
}

/// HTTP basic credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BasicAuth {
    pub username: String,
    pub password: SecretRef,
}

/// An OAuth2 client-credentials grant (RFC 6749 section 4.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OAuth2ClientCredentials {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: SecretRef,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
}

/// Credentials with their secrets filled in: never stored, never printed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ResolvedAuth {
    /// Header name (lower case) -> value.
    pub headers: BTreeMap<String, String>,
    pub oauth2: Option<OAuth2Grant>,
}

impl std::fmt::Debug for ResolvedAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolvedAuth")
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("oauth2", &self.oauth2.as_ref().map(|o| &o.token_url))
            .finish()
    }
}

/// An OAuth2 client-credentials grant ready to run.
#[derive(Clone, PartialEq, Eq)]
pub struct OAuth2Grant {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: String,
    pub scopes: Vec<String>,
    pub audience: Option<String>,
}
