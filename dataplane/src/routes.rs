//! What the gateway serves, compiled from one snapshot: per virtual server, its local prompts
//! and resources and its tool/prompt/resource listings, ready to answer from memory. Built
//! when a snapshot arrives (a snapshot that does not compile is NACKed), then swapped in whole.

use crate::policy::auth::{Authenticator, Authenticators};
use crate::policy::authz::Rules;
use crate::policy::ratelimit::Limit;
use crate::session::Sealer;
use crate::stdio::LocalEndpoints;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use switchboard_config::kinds::virtual_server::{RequestLimits, UpstreamSelection};
use switchboard_config::kinds::{
    prompt::PromptSpec,
    resource::ResourceSpec,
    upstream::{McpTransport, McpUpstream, Timeouts, UpstreamSpec, WhenUnhealthy},
};
use switchboard_config::Snapshot;
use switchboard_upstream::Credentials;

/// Everything one snapshot routes.
#[derive(Debug, Default)]
pub struct Routes {
    /// The snapshot version these routes came from.
    pub version: String,
    servers: HashMap<String, Arc<ServerView>>,
    hosts: HashMap<String, String>,
    upstreams: HashMap<String, Arc<UpstreamEntry>>,
    /// Upstreams the control plane found down, with the reason: calls to them fail fast.
    unhealthy: HashMap<String, String>,
    /// Seals and opens gateway session ids with the snapshot's key.
    pub sealer: Arc<Sealer>,
}

/// Lists an upstream's named items (tools or prompts) under the names the selection gives
/// them, and routes those names back. A name already taken (locally, or by an upstream
/// listed earlier) stays with its first owner, as `switchboard_config::clashes` reports.
fn expose_named(
    sel: &UpstreamSelection,
    items: &[serde_json::Value],
    allowed: Option<&Vec<String>>,
    taken_locally: &dyn Fn(&str) -> bool,
    routes: &mut HashMap<String, ToolRoute>,
    listed: &mut Vec<serde_json::Value>,
) {
    for (exposed, upstream_name, item) in switchboard_config::clashes::exposed(sel, items, allowed)
    {
        if taken_locally(&exposed) || routes.contains_key(&exposed) {
            continue;
        }
        let hint = |h: &str| item.pointer(&format!("/annotations/{h}")) == Some(&true.into());
        routes.insert(
            exposed.clone(),
            ToolRoute {
                upstream: sel.upstream.clone(),
                tool: upstream_name.to_string(),
                idempotent: hint("idempotentHint") || hint("readOnlyHint"),
                task_support: TaskSupport::of(item),
                mirrored: mirrored(item),
            },
        );
        let mut entry = item.clone();
        entry["name"] = serde_json::Value::String(exposed);
        listed.push(entry);
    }
}

impl ServerView {
    /// The upstream that serves `uri`: listed exactly, or matching a template's literal
    /// prefix (the part before its first `{`).
    pub fn resource_upstream(&self, uri: &str) -> Option<&str> {
        if let Some(u) = self.resource_routes.get(uri) {
            return Some(u);
        }
        self.resource_templates.iter().find_map(|(t, upstream)| {
            let template = t.get("uriTemplate")?.as_str()?;
            let prefix = template.split('{').next()?;
            (!prefix.is_empty() && uri.starts_with(prefix)).then_some(upstream.as_str())
        })
    }
}

/// An upstream as this snapshot routes to it: its definition (through `Deref`) and the
/// credentials resolved from the snapshot's secrets.
#[derive(Debug, Clone)]
pub struct UpstreamEntry {
    pub spec: UpstreamSpec,
    pub creds: Credentials,
    /// A REST or OpenAPI upstream's tools, compiled from its catalog (empty until it is
    /// discovered).
    pub rest_api: Arc<switchboard_upstream::rest::RestApi>,
    /// An A2A upstream's endpoint and skills, from its catalog (none until discovered).
    pub a2a: Option<switchboard_config::kinds::upstream::A2aBindings>,
    /// pingora's form of `creds.tls`, made when a pass-through server first needs it.
    pub peer_tls: std::sync::OnceLock<Result<Arc<crate::gateway::PeerTls>, String>>,
}

impl UpstreamEntry {
    /// An upstream with these credentials.
    pub fn new(spec: UpstreamSpec, creds: Credentials) -> UpstreamEntry {
        UpstreamEntry {
            spec,
            creds,
            rest_api: Arc::default(),
            a2a: None,
            peer_tls: std::sync::OnceLock::new(),
        }
    }

    /// An upstream that needs no secrets (only its static headers).
    pub fn plain(spec: UpstreamSpec) -> UpstreamEntry {
        let creds = Credentials::from_headers(&spec.headers);
        UpstreamEntry::new(spec, creds)
    }
}

impl std::ops::Deref for UpstreamEntry {
    type Target = UpstreamSpec;

    fn deref(&self) -> &UpstreamSpec {
        &self.spec
    }
}

/// Where a tool (or prompt) a client asks for really lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolRoute {
    pub upstream: String,
    /// The tool's name at the upstream.
    pub tool: String,
    /// The upstream says calling it twice does no harm (`idempotentHint`/`readOnlyHint`).
    pub idempotent: bool,
    /// Whether the upstream runs calls of it as tasks (`execution.taskSupport`).
    pub task_support: TaskSupport,
    /// Arguments a stateless client mirrors in headers: (argument, `Mcp-Param-` suffix),
    /// from the input schema's `x-mcp-header` annotations.
    pub mirrored: Vec<(String, String)>,
}

/// The arguments `tool`'s input schema marks with `x-mcp-header`, with their header names.
fn mirrored(tool: &serde_json::Value) -> Vec<(String, String)> {
    tool.pointer("/inputSchema/properties")
        .and_then(serde_json::Value::as_object)
        .map(|props| {
            props
                .iter()
                .filter_map(|(name, p)| {
                    let header = p.get("x-mcp-header")?.as_str()?;
                    Some((name.clone(), header.to_string()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// How a tool takes part in tasks, as its upstream lists it (`execution.taskSupport`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TaskSupport {
    /// Never as a task (the default).
    #[default]
    Forbidden,
    /// As a task when the client can follow one, else in the call.
    Optional,
    /// Only as a task.
    Required,
}

impl TaskSupport {
    /// What a listed tool says.
    pub fn of(tool: &serde_json::Value) -> TaskSupport {
        match tool
            .pointer("/execution/taskSupport")
            .and_then(serde_json::Value::as_str)
        {
            Some("optional") => TaskSupport::Optional,
            Some("required") => TaskSupport::Required,
            _ => TaskSupport::Forbidden,
        }
    }
}

/// One virtual server as clients see it.
#[derive(Debug, Default)]
pub struct ServerView {
    pub name: String,
    pub description: Option<String>,
    /// Local prompts by the name clients use.
    pub prompts: BTreeMap<String, PromptSpec>,
    /// Local resources by URI.
    pub resources: BTreeMap<String, ResourceSpec>,
    /// Tool definitions as listed to clients (from discovered catalogs).
    pub tools: Vec<serde_json::Value>,
    /// Client-visible tool name -> upstream and upstream tool name.
    pub tool_routes: HashMap<String, ToolRoute>,
    /// Upstream prompts as listed to clients (after the local ones).
    pub upstream_prompts: Vec<serde_json::Value>,
    /// Client-visible prompt name -> upstream and upstream prompt name.
    pub prompt_routes: HashMap<String, ToolRoute>,
    /// Upstream resources as listed to clients (URIs are not renamed).
    pub upstream_resources: Vec<serde_json::Value>,
    /// Resource URI -> the upstream that serves it.
    pub resource_routes: HashMap<String, String>,
    /// Upstream resource templates, and the upstream behind each.
    pub resource_templates: Vec<(serde_json::Value, String)>,
    /// The snapshot version, for pagination cursors.
    pub version: String,
    /// The upstreams behind this server (each client session opens one session with each).
    pub upstreams: Vec<String>,
    /// Seals this server's session ids (the snapshot's key).
    pub sealer: Arc<Sealer>,
    /// The one upstream proxied as-is, for a pass-through server.
    pub passthrough: Option<String>,
    /// Authenticates clients (none: open to all).
    pub auth: Option<Arc<Authenticator>>,
    /// Send the client's `Authorization` header on to upstreams.
    pub forward_token: bool,
    /// Who may do what.
    pub authz: Rules,
    /// This replica's shares of the server's rate limits, in order.
    pub rate_limits: Vec<Arc<Limit>>,
    /// Limits on one request.
    pub limits: RequestLimits,
    /// How long a client session lasts.
    pub sessions: switchboard_config::kinds::virtual_server::SessionSettings,
    /// Per-upstream time limits set on this server's selections.
    pub route_timeouts: HashMap<String, Timeouts>,
    /// Fingerprints of the tool, prompt and resource listings, so sessions can be told
    /// when one changes.
    pub lists: [u64; 3],
    /// The server's only upstream, when it federates exactly one.
    pub sole: Option<Sole>,
}

/// A server's only upstream: names the snapshot does not know (a tool the upstream added
/// since its catalog was taken, a resource it serves without listing) go to it, so the
/// server is as transparent as the upstream itself. Only where its selection lets
/// everything through: allow-lists and renames are never bypassed.
#[derive(Debug, Clone, Default)]
pub struct Sole {
    pub upstream: String,
    pub prefix: String,
    pub tools: bool,
    pub prompts: bool,
    pub resources: bool,
}

impl ServerView {
    /// Where an unknown tool name goes: the sole upstream, prefix removed.
    pub fn sole_tool(&self, name: &str) -> Option<ToolRoute> {
        let sole = self.sole.as_ref().filter(|s| s.tools)?;
        let tool = name
            .strip_prefix(sole.prefix.as_str())
            .filter(|t| !t.is_empty())?;
        Some(ToolRoute {
            upstream: sole.upstream.clone(),
            tool: tool.to_string(),
            idempotent: false,
            task_support: TaskSupport::Forbidden,
            mirrored: Vec::new(),
        })
    }

    /// Where an unknown prompt name goes (local prompts are never shadowed).
    pub fn sole_prompt(&self, name: &str) -> Option<ToolRoute> {
        let sole = self.sole.as_ref().filter(|s| s.prompts)?;
        if self.prompts.contains_key(name) {
            return None;
        }
        let prompt = name
            .strip_prefix(sole.prefix.as_str())
            .filter(|t| !t.is_empty())?;
        Some(ToolRoute {
            upstream: sole.upstream.clone(),
            tool: prompt.to_string(),
            idempotent: true,
            task_support: TaskSupport::Forbidden,
            mirrored: Vec::new(),
        })
    }

    /// Where a resource URI no listing or template claims goes.
    pub fn sole_resources(&self) -> Option<&str> {
        self.sole
            .as_ref()
            .filter(|s| s.resources)
            .map(|s| s.upstream.as_str())
    }
}

impl ServerView {
    /// Hashes of what `tools/list`, `prompts/list` and `resources/list` return.
    fn fingerprints(&self) -> [u64; 3] {
        fn hash(v: impl serde::Serialize) -> u64 {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            serde_json::to_string(&v).unwrap_or_default().hash(&mut h);
            h.finish()
        }
        [
            hash(&self.tools),
            hash((&self.prompts, &self.upstream_prompts)),
            hash((
                &self.resources,
                &self.upstream_resources,
                &self.resource_templates,
            )),
        ]
    }

    /// The time limits for a call to `upstream` through this server: the selection's, then
    /// the upstream's own.
    pub fn timeouts(&self, upstream: &UpstreamSpec, name: &str) -> Timeouts {
        let own = &upstream.timeouts;
        match self.route_timeouts.get(name) {
            None => own.clone(),
            Some(r) => Timeouts {
                connect: r.connect.or(own.connect),
                request: r.request.or(own.request),
                idle: r.idle.or(own.idle),
            },
        }
    }
}

/// Why a snapshot cannot be served: the data plane refuses (NACKs) it with this and keeps
/// serving the last good one.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error(transparent)]
    SessionKey(#[from] crate::session::BadKey),
    #[error(transparent)]
    AuthProvider(#[from] crate::policy::auth::AuthConfigError),
    #[error("virtual server `{server}` {uses} unknown {kind} `{name}`")]
    Unknown {
        server: String,
        /// "uses" or "lists", as the reference reads in the virtual server.
        uses: &'static str,
        kind: &'static str,
        name: String,
    },
    #[error("prompt `{prompt}`: template does not compile: {why}")]
    Template {
        prompt: String,
        why: minijinja::Error,
    },
    #[error("host `{host}` is claimed by virtual servers `{first}` and `{second}`")]
    HostClaimedTwice {
        host: String,
        first: String,
        second: String,
    },
    #[error("upstream `{upstream}`: {why}")]
    Upstream { upstream: String, why: String },
}

impl Routes {
    /// Compiles a snapshot; any template that does not compile rejects the whole snapshot.
    pub fn compile(snapshot: &Snapshot) -> Result<Routes, CompileError> {
        Self::compile_with(snapshot, &LocalEndpoints::new())
    }

    /// Compiles a snapshot whose stdio upstreams this data plane serves at `local` (see
    /// [`crate::stdio`]): their calls go there, with the bridge's token.
    pub fn compile_with(
        snapshot: &Snapshot,
        local: &LocalEndpoints,
    ) -> Result<Routes, CompileError> {
        let sealer = if snapshot.session_key.is_empty() {
            Sealer::default()
        } else {
            Sealer::from_keys(&snapshot.session_key, &snapshot.previous_session_keys)?
        };
        let mut routes = Routes {
            version: snapshot.version.clone(),
            sealer: Arc::new(sealer),
            ..Routes::default()
        };
        let env = minijinja::Environment::new();
        let mut authenticators = Authenticators::new();
        for (name, spec) in &snapshot.auth_providers {
            let a = Authenticator::compile(name, spec, snapshot)?;
            authenticators.insert(name.clone(), Arc::new(a));
        }
        for (name, vs) in &snapshot.virtual_servers {
            let unknown = |uses, kind, what: &String| CompileError::Unknown {
                server: name.clone(),
                uses,
                kind,
                name: what.clone(),
            };
            let auth = match &vs.auth_provider {
                None => None,
                Some(p) => Some(
                    authenticators
                        .get(p)
                        .cloned()
                        .ok_or_else(|| unknown("uses", "auth provider", p))?,
                ),
            };
            let mut rate_limits = Vec::new();
            for r in &vs.rate_limits {
                let spec = snapshot
                    .rate_limits
                    .get(r)
                    .ok_or_else(|| unknown("uses", "rate limit", r))?;
                rate_limits.push(Arc::new(Limit::new(r, spec, snapshot.replicas)));
            }
            let mut view = ServerView {
                name: name.clone(),
                description: vs.description.clone(),
                version: snapshot.version.clone(),
                sealer: routes.sealer.clone(),
                passthrough: vs.passthrough.clone(),
                forward_token: auth
                    .as_ref()
                    .and_then(|a| a.jwt())
                    .is_some_and(|j| j.forward_token),
                auth,
                authz: Rules::compile(&vs.authorization),
                rate_limits,
                limits: vs.limits.clone(),
                sessions: vs.sessions.clone(),
                route_timeouts: vs
                    .upstreams
                    .iter()
                    .filter(|s| !s.timeouts.is_empty())
                    .map(|s| (s.upstream.clone(), s.timeouts.clone()))
                    .collect(),
                ..ServerView::default()
            };
            for p in &vs.prompts {
                let spec = snapshot
                    .prompts
                    .get(p)
                    .ok_or_else(|| unknown("lists", "prompt", p))?;
                let templates = spec
                    .template
                    .iter()
                    .chain(spec.messages.iter().flatten().map(|m| &m.template));
                for t in templates {
                    env.template_from_str(t)
                        .map_err(|why| CompileError::Template {
                            prompt: p.clone(),
                            why,
                        })?;
                }
                view.prompts.insert(p.clone(), spec.clone());
            }
            for r in &vs.resources {
                let spec = snapshot
                    .resources
                    .get(r)
                    .ok_or_else(|| unknown("lists", "resource", r))?;
                view.resources.insert(spec.uri.clone(), spec.clone());
            }
            for sel in &vs.upstreams {
                if !view.upstreams.contains(&sel.upstream) {
                    view.upstreams.push(sel.upstream.clone());
                }
                let Some(catalog) = snapshot.catalogs.get(&sel.upstream) else {
                    continue; // not discovered yet: its items appear when it is
                };
                let hidden = snapshot.unhealthy.contains_key(&sel.upstream)
                    && snapshot
                        .upstreams
                        .get(&sel.upstream)
                        .is_some_and(|u| u.health.when_unhealthy == WhenUnhealthy::Hide);
                if hidden {
                    continue; // listed again once it recovers
                }
                expose_named(
                    sel,
                    &catalog.tools,
                    sel.tools.as_ref(),
                    &|_| false,
                    &mut view.tool_routes,
                    &mut view.tools,
                );
                expose_named(
                    sel,
                    &catalog.prompts,
                    sel.prompts.as_ref(),
                    &|exposed| view.prompts.contains_key(exposed),
                    &mut view.prompt_routes,
                    &mut view.upstream_prompts,
                );
                for resource in &catalog.resources {
                    let Some(uri) = resource.get("uri").and_then(|u| u.as_str()) else {
                        continue;
                    };
                    if sel
                        .resources
                        .as_ref()
                        .is_some_and(|allowed| !allowed.iter().any(|r| r == uri))
                    {
                        continue;
                    }
                    if view.resources.contains_key(uri) || view.resource_routes.contains_key(uri) {
                        continue; // first owner wins; local resources come first
                    }
                    view.resource_routes
                        .insert(uri.to_string(), sel.upstream.clone());
                    view.upstream_resources.push(resource.clone());
                }
                if sel.resources.is_none() {
                    for template in &catalog.resource_templates {
                        view.resource_templates
                            .push((template.clone(), sel.upstream.clone()));
                    }
                }
            }
            view.lists = view.fingerprints();
            if let [sel] = vs.upstreams.as_slice() {
                view.sole = Some(Sole {
                    upstream: sel.upstream.clone(),
                    prefix: sel.prefix.clone(),
                    tools: sel.tools.is_none() && sel.rename.is_empty(),
                    prompts: sel.prompts.is_none() && sel.rename.is_empty(),
                    resources: sel.resources.is_none(),
                });
            }
            for host in &vs.hosts {
                if let Some(other) = routes.hosts.insert(host.to_ascii_lowercase(), name.clone()) {
                    return Err(CompileError::HostClaimedTwice {
                        host: host.clone(),
                        first: other,
                        second: name.clone(),
                    });
                }
            }
            routes.servers.insert(name.clone(), Arc::new(view));
        }
        for (name, spec) in &snapshot.upstreams {
            let auth = spec.auth.resolve(&|r| snapshot.secret(r)).map_err(|why| {
                CompileError::Upstream {
                    upstream: name.clone(),
                    why,
                }
            })?;
            let mut spec = spec.clone();
            let mut headers = spec.headers.clone();
            if let (Some(_), Some(endpoint)) = (&spec.stdio, local.get(name)) {
                spec.mcp = Some(McpUpstream {
                    url: endpoint.url.clone(),
                    transport: McpTransport::StreamableHttp,
                    protocol_version: None,
                });
                headers.insert(
                    "authorization".into(),
                    format!("Bearer {}", endpoint.bearer),
                );
            }
            let tls = if local.contains_key(name) {
                None // a stdio child's bridge, on loopback
            } else {
                switchboard_upstream::TlsSettings::for_upstream(&spec, &|r| snapshot.secret(r))
                    .map_err(|e| CompileError::Upstream {
                        upstream: name.clone(),
                        why: e.to_string(),
                    })?
            };
            let creds = Credentials::new(&headers, auth).with_tls(tls);
            let mut entry = UpstreamEntry::new(spec, creds);
            entry.a2a = snapshot.catalogs.get(name).and_then(|c| c.a2a.clone());
            if let Some(catalog) = snapshot.catalogs.get(name).filter(|c| c.rest.is_some()) {
                entry.rest_api = Arc::new(switchboard_upstream::rest::RestApi::compile(catalog));
            }
            routes.upstreams.insert(name.clone(), Arc::new(entry));
        }
        routes.unhealthy = snapshot
            .unhealthy
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        crate::metrics::metrics().prime(
            routes.servers.values().map(|v| {
                let policies = v.rate_limits.iter().map(|l| l.name.as_str()).collect();
                (v.name.as_str(), v.auth.is_some(), policies)
            }),
            routes.upstreams.keys().map(String::as_str),
        );
        Ok(routes)
    }

    /// Why `upstream` is considered down, if the control plane says it is.
    pub fn unhealthy(&self, upstream: &str) -> Option<&str> {
        self.unhealthy.get(upstream).map(String::as_str)
    }

    /// An upstream's definition, for forwarding.
    pub fn upstream(&self, name: &str) -> Option<Arc<UpstreamEntry>> {
        self.upstreams.get(name).cloned()
    }

    /// The virtual server named in a path.
    pub fn server(&self, name: &str) -> Option<Arc<ServerView>> {
        self.servers.get(name).cloned()
    }

    /// The virtual server mapped to a Host header (port ignored).
    pub fn server_for_host(&self, host: &str) -> Option<Arc<ServerView>> {
        let bare = host.rsplit_once(':').map_or(host, |(h, _)| h);
        self.hosts
            .get(&bare.to_ascii_lowercase())
            .and_then(|name| self.server(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resources_route_by_uri_then_by_template_prefix() {
        let mut view = ServerView::default();
        view.resource_routes
            .insert("demo://exact".into(), "a".into());
        view.resource_templates
            .push((json!({"uriTemplate": "demo://resource/{id}"}), "b".into()));
        view.resource_templates
            .push((json!({"uriTemplate": "{any}"}), "c".into()));
        assert_eq!(view.resource_upstream("demo://exact"), Some("a"));
        assert_eq!(view.resource_upstream("demo://resource/7"), Some("b"));
        // An empty literal prefix never matches everything.
        assert_eq!(view.resource_upstream("other://x"), None);
    }
}
