//! Semantic validation: everything a schema cannot say (references, names, URLs, templates,
//! clashes). Every check reports through the resource's origin, so errors carry positions.

use crate::diagnostic::Diagnostic;
use crate::kinds::{
    auth_provider::AuthProviderSpec,
    operator_token::OperatorTokenSpec,
    prompt::PromptSpec,
    rate_limit::RateLimitPolicySpec,
    resource::ResourceSpec,
    secret::SecretRef,
    tls::ClientTls,
    upstream::{StdioIsolation, UpstreamSpec},
    virtual_server::{UpstreamSelection, VirtualServerSpec},
};
use crate::object::{Kind, Resource};
use crate::parse::Located;
use crate::set::{parse_sources, ResourceSet, Source};
use crate::Diagnostics;
use base64::Engine;
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// MCP protocol versions an upstream may be pinned to.
pub const PROTOCOL_VERSIONS: [&str; 5] = [
    "2024-11-05",
    "2025-03-26",
    "2025-06-18",
    "2025-11-25",
    "2026-07-28",
];

/// Parses and validates files: the whole of `switchboard validate`.
pub fn load_sources(sources: &[Source]) -> Result<ResourceSet, Diagnostics> {
    let (set, mut errors) = parse_sources(sources);
    errors.extend(validate(&set));
    // Report in reading order: files as given, then document, line and column.
    let file_order = |name: &str| sources.iter().position(|s| s.name == name);
    errors.sort_by_key(|d| (file_order(&d.file), d.document, d.line, d.column));
    if errors.is_empty() {
        Ok(set)
    } else {
        Err(Diagnostics(errors))
    }
}

/// Every semantic error in the set (empty when it is consistent).
pub fn validate(set: &ResourceSet) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for item in set.iter() {
        let mut v = Checker {
            item,
            out: &mut out,
        };
        v.name();
        match &item.resource {
            Resource::Upstream(o) => v.upstream(&o.spec),
            Resource::VirtualServer(o) => v.virtual_server(&o.spec, set),
            Resource::Prompt(o) => v.prompt(&o.spec),
            Resource::Resource(o) => v.resource(&o.spec),
            Resource::AuthProvider(o) => v.auth_provider(&o.spec),
            Resource::RateLimitPolicy(o) => v.rate_limit(&o.spec),
            Resource::Secret(o) => v.secret(&o.spec),
            Resource::OperatorToken(o) => v.operator_token(&o.spec),
        }
        if let Resource::Upstream(o) = &item.resource {
            v.upstream_auth(&o.spec, set);
        }
        if let Resource::AuthProvider(o) = &item.resource {
            v.secret_refs(o.spec.refs(), set);
        }
    }
    out
}

/// Things that are valid but unsafe, one sentence each naming the resource and field
/// (`apply` and `validate` print them as warnings).
pub fn cautions(set: &ResourceSet) -> Vec<String> {
    let mut out = Vec::new();
    for item in set.iter() {
        let tls = match &item.resource {
            Resource::Upstream(o) => Some(("spec.tls", &o.spec.tls)),
            Resource::AuthProvider(o) => o.spec.jwt.as_ref().map(|j| ("spec.jwt.tls", &j.tls)),
            _ => None,
        };
        if let Some((field, tls)) = tls {
            if tls.insecure_skip_verify {
                out.push(format!(
                    "{}/{}: {field}.insecureSkipVerify: certificates are not checked, so anyone on the path can read and change this traffic",
                    item.resource.kind().as_str().to_ascii_lowercase(),
                    item.resource.name()
                ));
            }
        }
    }
    out
}

struct Checker<'a> {
    item: &'a Located,
    out: &'a mut Vec<Diagnostic>,
}

impl Checker<'_> {
    fn err(&mut self, field: &str, message: impl Into<String>) {
        self.out.push(self.item.diagnostic(field, message));
    }

    fn name(&mut self) {
        let name = self.item.resource.name();
        if !is_dns_label(name) {
            self.err(
                "metadata.name",
                format!("invalid name `{name}`: use 1-63 lower-case letters, digits and '-', starting and ending with a letter or digit"),
            );
        }
    }

    fn url(&mut self, field: &str, value: &str, schemes: &[&str]) {
        match url::Url::parse(value) {
            Ok(u) if schemes.contains(&u.scheme()) && (u.has_host() || u.scheme() == "file") => {}
            Ok(u) if !schemes.contains(&u.scheme()) => self.err(
                field,
                format!(
                    "URL `{value}` has scheme `{}`, expected {}",
                    u.scheme(),
                    schemes.join(" or ")
                ),
            ),
            Ok(_) => self.err(field, format!("URL `{value}` has no host")),
            Err(e) => self.err(field, format!("invalid URL `{value}`: {e}")),
        }
    }

    fn exactly_one(&mut self, field: &str, names: &[&str], set: &[&str]) {
        match set.len() {
            1 => {}
            0 => self.err(field, format!("set exactly one of {}", names.join(", "))),
            _ => self.err(
                field,
                format!(
                    "set exactly one of {}, not several ({})",
                    names.join(", "),
                    set.join(", ")
                ),
            ),
        }
    }

    fn upstream(&mut self, spec: &UpstreamSpec) {
        for (field, value) in [
            (
                "spec.discovery.refreshInterval",
                spec.discovery.refresh_interval,
            ),
            ("spec.health.interval", spec.health.interval),
            ("spec.health.timeout", spec.health.timeout),
        ] {
            if value.is_some_and(|d| d < std::time::Duration::from_millis(100)) {
                self.err(field, "must be at least 100ms");
            }
        }
        let backoffs = [
            ("spec.retries.backoff", spec.retries.backoff),
            ("spec.retries.maxBackoff", spec.retries.max_backoff),
            ("spec.circuitBreaker.openFor", spec.circuit_breaker.open_for),
        ];
        for (field, value) in backoffs {
            if value.is_some_and(|d| d.is_zero()) {
                self.err(field, "must be greater than zero");
            }
        }
        if spec.retries.attempts.is_some_and(|n| n > 10) {
            self.err("spec.retries.attempts", "at most 10 retries");
        }
        if spec.health.unhealthy_threshold == Some(0) {
            self.err("spec.health.unhealthyThreshold", "must be at least 1");
        }
        let set = spec.transports_set();
        self.exactly_one("spec", &crate::kinds::upstream::TRANSPORT_FIELDS, &set);
        if let Some(mcp) = &spec.mcp {
            self.url("spec.mcp.url", &mcp.url, &["http", "https"]);
            if let Some(v) = &mcp.protocol_version {
                if !PROTOCOL_VERSIONS.contains(&v.as_str()) {
                    self.err(
                        "spec.mcp.protocolVersion",
                        format!(
                            "unknown MCP protocol version `{v}`, expected one of {}",
                            PROTOCOL_VERSIONS.join(", ")
                        ),
                    );
                }
            }
        }
        if let Some(stdio) = &spec.stdio {
            if stdio.command.trim().is_empty() {
                self.err("spec.stdio.command", "command must not be empty");
            }
            for name in stdio.env.keys().chain(stdio.secret_env.keys()) {
                if name.is_empty() || name.contains('=') || name.contains('\0') {
                    self.err(
                        &format!("spec.stdio.env.{name}"),
                        "an environment variable name must be non-empty, without `=` or NUL",
                    );
                }
            }
            for name in stdio.secret_env.keys() {
                if stdio.env.contains_key(name) {
                    self.err(
                        &format!("spec.stdio.secretEnv.{name}"),
                        "set in both env and secretEnv",
                    );
                }
            }
            if stdio.max_sessions.is_some_and(|m| m < 2) {
                self.err(
                    "spec.stdio.maxSessions",
                    "must be at least 2 (each data plane's catalog watcher holds one session)",
                );
            }
            let per_session = stdio.isolation == StdioIsolation::PerSession;
            if !per_session && (stdio.max_sessions.is_some() || stdio.idle_timeout.is_some()) {
                self.err(
                    "spec.stdio",
                    "maxSessions and idleTimeout apply to `isolation: perSession` only",
                );
            }
        }
        if let Some(api) = &spec.openapi {
            self.openapi(api);
        }
        if let Some(rest) = &spec.rest {
            self.rest(rest);
        }
        if let Some(a2a) = &spec.a2a {
            self.url("spec.a2a.url", &a2a.url, &["http", "https"]);
        }
        if spec.stdio.is_some() && !spec.tls.is_empty() {
            self.err(
                "spec.tls",
                "a stdio upstream is reached over loopback by its data plane: remove tls",
            );
        } else {
            self.client_tls("spec.tls", &spec.tls, spec.url());
        }
        if let Some(grpc) = &spec.grpc {
            self.url("spec.grpc.address", &grpc.address, &["http", "https"]);
        }
        for name in spec.headers.keys() {
            if !is_header_name(name) {
                self.err(
                    &format!("spec.headers.{name}"),
                    format!("invalid HTTP header name `{name}`"),
                );
            }
        }
        let t = &spec.timeouts;
        for (field, d) in [
            ("spec.timeouts.connect", t.connect),
            ("spec.timeouts.request", t.request),
            ("spec.timeouts.idle", t.idle),
        ] {
            if d.is_some_and(|d| d.is_zero()) {
                self.err(field, "timeout must be greater than zero");
            }
        }
    }

    fn openapi(&mut self, api: &crate::kinds::upstream::OpenApiUpstream) {
        if let Some(b) = &api.base_url {
            self.url("spec.openapi.baseUrl", b, &["http", "https"]);
        }
        match (&api.spec_url, &api.spec) {
            (Some(u), None) => self.url("spec.openapi.specUrl", u, &["http", "https", "file"]),
            (None, Some(doc)) => {
                // An inline document is checked now, so `apply` names what is wrong in it.
                if let Err(e) = crate::openapi::convert(doc, api, None) {
                    let field = if e.at.is_empty() {
                        "spec.openapi.spec".to_string()
                    } else {
                        format!("spec.openapi.spec.{}", e.at)
                    };
                    self.err(&field, format!("cannot use this OpenAPI document: {e}"));
                }
            }
            (Some(_), Some(_)) => self.err("spec.openapi", "set one of specUrl and spec, not both"),
            (None, None) => self.err(
                "spec.openapi",
                "set specUrl (where the OpenAPI document is) or spec (the document itself)",
            ),
        }
    }

    fn rest(&mut self, rest: &crate::kinds::rest::RestUpstream) {
        use crate::kinds::rest::{is_tool_name, placeholders};
        self.url("spec.rest.baseUrl", &rest.base_url, &["http", "https"]);
        if rest.tools.is_empty() {
            self.err("spec.rest.tools", "declare at least one tool");
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, tool) in rest.tools.iter().enumerate() {
            let at = |field: &str| format!("spec.rest.tools[{i}].{field}");
            if !is_tool_name(&tool.name) {
                self.err(
                    &at("name"),
                    format!(
                        "invalid tool name `{}`: use 1-128 of A-Z a-z 0-9 _ - .",
                        tool.name
                    ),
                );
            } else if !seen.insert(tool.name.as_str()) {
                self.err(
                    &at("name"),
                    format!("tool `{}` is declared twice", tool.name),
                );
            }
            if !tool.path.starts_with('/') {
                self.err(&at("path"), "a path starts with `/`");
            }
            let names = match placeholders(&tool.path) {
                Ok(n) => n,
                Err(e) => {
                    self.err(&at("path"), e);
                    Vec::new()
                }
            };
            let schema = tool.schema();
            if schema.get("type").and_then(serde_json::Value::as_str) != Some("object") {
                self.err(&at("inputSchema"), "an input schema has `type: object`");
            }
            if let Err(e) = crate::schema::Schema::compile(&schema) {
                self.err(
                    &at(&format!("inputSchema{}", e.field_suffix())),
                    e.to_string(),
                );
            }
            if let Some(out) = &tool.output_schema {
                if out.get("type").and_then(serde_json::Value::as_str) != Some("object") {
                    self.err(&at("outputSchema"), "an output schema has `type: object`");
                }
                if let Err(e) = crate::schema::Schema::compile(out) {
                    self.err(
                        &at(&format!("outputSchema{}", e.field_suffix())),
                        e.to_string(),
                    );
                }
            }
            // Every argument the call places must be one the schema declares (when it
            // declares any), so a typo is found now and not by the API.
            let declared = schema
                .get("properties")
                .and_then(serde_json::Value::as_object);
            let required: Vec<&str> = schema
                .get("required")
                .and_then(serde_json::Value::as_array)
                .map(|r| r.iter().filter_map(serde_json::Value::as_str).collect())
                .unwrap_or_default();
            for name in &names {
                if declared.is_some_and(|d| !d.contains_key(*name)) {
                    self.err(
                        &at("path"),
                        format!("placeholder `{{{name}}}` is not a property of inputSchema"),
                    );
                } else if !required.contains(name) {
                    self.err(
                        &at("inputSchema.required"),
                        format!("path placeholder `{name}` must be a required argument"),
                    );
                }
            }
            let placed = tool
                .query
                .iter()
                .map(|(k, a)| (format!("query.{k}"), a))
                .chain(
                    tool.headers
                        .iter()
                        .map(|(k, a)| (format!("headers.{k}"), a)),
                )
                .chain(tool.body.iter().map(|a| ("body".to_string(), a)));
            for (field, arg) in placed {
                if declared.is_some_and(|d| !d.contains_key(arg)) {
                    self.err(
                        &at(&field),
                        format!("argument `{arg}` is not a property of inputSchema"),
                    );
                }
            }
            for name in tool.headers.keys() {
                let lower = name.to_ascii_lowercase();
                if !is_header_name(name) {
                    self.err(
                        &at(&format!("headers.{name}")),
                        format!("invalid HTTP header name `{name}`"),
                    );
                } else if ["host", "content-length", "transfer-encoding", "connection"]
                    .contains(&lower.as_str())
                {
                    self.err(
                        &at(&format!("headers.{name}")),
                        format!("`{name}` is set by the gateway"),
                    );
                }
            }
            if tool.body.is_some()
                && matches!(
                    tool.method,
                    crate::kinds::rest::HttpMethod::Get | crate::kinds::rest::HttpMethod::Head
                )
            {
                self.err(
                    &at("body"),
                    format!("a {} request has no body", tool.method),
                );
            }
            if let Some(f) = &tool.filter {
                if let Err(e) = crate::jq::Filter::compile(f) {
                    self.err(&at("filter"), e.to_string());
                }
            }
            if tool.timeout.is_some_and(|d| d.is_zero()) {
                self.err(&at("timeout"), "timeout must be greater than zero");
            }
        }
    }

    fn secret(&mut self, spec: &crate::kinds::secret::SecretSpec) {
        if spec.data.is_empty() && spec.sealed.is_empty() {
            self.err("spec.data", "a Secret needs at least one value");
        }
        for key in spec.data.keys().chain(spec.sealed.keys()) {
            if key.trim().is_empty() {
                self.err("spec.data", "keys must not be empty");
            }
        }
        for key in spec.data.keys() {
            if spec.sealed.contains_key(key) {
                self.err(
                    &format!("spec.data.{key}"),
                    "given both plain and sealed; keep one",
                );
            }
        }
        if spec.served_by.is_some() {
            for key in ["tls.crt", "tls.key"] {
                if !spec.has_key(key) {
                    self.err(
                        "spec.servedBy",
                        format!("a listener certificate needs `{key}` (PEM)"),
                    );
                }
            }
        }
    }

    fn operator_token(&mut self, spec: &OperatorTokenSpec) {
        if !crate::kinds::operator_token::ROLES.contains(&spec.role.as_str()) {
            self.err(
                "spec.role",
                format!("unknown role `{}`: use viewer, editor or admin", spec.role),
            );
        }
        if spec.sha256.len() != 64 || !spec.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            self.err(
                "spec.sha256",
                "must be the 64 hex digits of the token's SHA-256 (switchboard token create makes both)",
            );
        }
    }

    fn upstream_auth(&mut self, spec: &UpstreamSpec, set: &ResourceSet) {
        let auth = &spec.auth;
        let schemes = [
            auth.bearer.is_some(),
            auth.basic.is_some(),
            auth.oauth2.is_some(),
        ];
        if schemes.iter().filter(|on| **on).count() > 1 {
            self.err(
                "spec.auth",
                "set at most one of bearer, basic and oauth2 (they all use the Authorization header)",
            );
        }
        if let Some(o) = &auth.oauth2 {
            self.url(
                "spec.auth.oauth2.tokenUrl",
                &o.token_url,
                &["http", "https"],
            );
        }
        self.secret_refs(spec.secret_refs(), set);
    }

    /// A `tls` block that can be used: PEM that holds certificates, a certificate with its
    /// key, a server name that is a name, and a URL (when there is one) that is https.
    fn client_tls(&mut self, field: &str, tls: &ClientTls, url: Option<&str>) {
        if tls.is_empty() {
            return;
        }
        if let Some(u) = url.and_then(|u| url::Url::parse(u).ok()) {
            if u.scheme() != "https" {
                self.err(
                    field,
                    format!(
                        "tls applies to https URLs only, and `{u}` is {}",
                        u.scheme()
                    ),
                );
            }
        }
        if let Some(pem) = &tls.ca_cert {
            if let Err(e) = crate::kinds::tls::pem_certificates(pem) {
                self.err(
                    &format!("{field}.caCert"),
                    format!("not a PEM certificate bundle: {e}"),
                );
            }
        }
        if let Some(name) = &tls.server_name {
            let is_ip = name.parse::<std::net::IpAddr>().is_ok();
            let is_dns = !name.is_empty()
                && name.len() <= 253
                && name.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                });
            if !is_ip && !is_dns {
                self.err(
                    &format!("{field}.serverName"),
                    format!("`{name}` is neither a DNS name nor an IP address"),
                );
            }
        }
        if tls.client_cert.is_some() != tls.client_key.is_some() {
            self.err(field, "set clientCert and clientKey together");
        }
        if tls.insecure_skip_verify && (tls.ca_cert.is_some() || tls.server_name.is_some()) {
            self.err(
                &format!("{field}.insecureSkipVerify"),
                "checks nothing, so caCert and serverName would be ignored: keep one or the other",
            );
        }
    }

    /// Every referenced Secret exists and has the key.
    fn secret_refs(&mut self, refs: Vec<(String, &SecretRef)>, set: &ResourceSet) {
        for (field, r) in refs {
            match set.get(Kind::Secret, &r.secret).map(|l| &l.resource) {
                Some(Resource::Secret(s)) if s.spec.has_key(&r.key) => {}
                Some(_) => self.err(
                    &format!("{field}.key"),
                    format!("Secret `{}` has no key `{}`", r.secret, r.key),
                ),
                None => self.err(
                    &format!("{field}.secret"),
                    format!("Secret `{}` does not exist", r.secret),
                ),
            }
        }
    }

    fn reference(&mut self, set: &ResourceSet, field: &str, kind: Kind, name: &str) {
        if !set.contains(kind, name) {
            self.err(field, format!("{kind} `{name}` does not exist"));
        }
    }

    fn virtual_server(&mut self, spec: &VirtualServerSpec, set: &ResourceSet) {
        if let Some(p) = &spec.passthrough {
            self.reference(set, "spec.passthrough", Kind::Upstream, p);
            let kind = match set.get(Kind::Upstream, p).map(|item| &item.resource) {
                Some(crate::object::Resource::Upstream(u)) => u.spec.kind(),
                _ => None,
            };
            if let Some(kind) = kind.filter(|k| {
                !matches!(
                    k,
                    crate::kinds::upstream::UpstreamKind::Mcp
                        | crate::kinds::upstream::UpstreamKind::Stdio
                )
            }) {
                self.err(
                    "spec.passthrough",
                    format!("a passthrough server proxies an MCP upstream as-is; `{p}` is of kind `{kind}`: list it under upstreams instead"),
                );
            }
            if !spec.upstreams.is_empty() || !spec.prompts.is_empty() || !spec.resources.is_empty()
            {
                self.err(
                    "spec.passthrough",
                    "a passthrough server proxies one upstream as-is: remove upstreams, prompts and resources",
                );
            }
        } else if spec.upstreams.is_empty() && spec.prompts.is_empty() && spec.resources.is_empty()
        {
            self.err(
                "spec",
                "serves nothing: list upstreams, prompts or resources, or set passthrough",
            );
        }
        for (i, host) in spec.hosts.iter().enumerate() {
            if !is_hostname(host) {
                self.err(
                    &format!("spec.hosts[{i}]"),
                    format!("invalid host name `{host}`"),
                );
            }
        }
        if let Some(a) = &spec.auth_provider {
            self.reference(set, "spec.authProvider", Kind::AuthProvider, a);
        }
        for (i, r) in spec.rate_limits.iter().enumerate() {
            self.reference(
                set,
                &format!("spec.rateLimits[{i}]"),
                Kind::RateLimitPolicy,
                r,
            );
        }
        for (i, p) in spec.prompts.iter().enumerate() {
            self.reference(set, &format!("spec.prompts[{i}]"), Kind::Prompt, p);
        }
        for (i, r) in spec.resources.iter().enumerate() {
            self.reference(set, &format!("spec.resources[{i}]"), Kind::Resource, r);
        }
        self.resource_uri_clashes(spec, set);
        for (i, rule) in spec.authorization.rules.iter().enumerate() {
            for (field, patterns) in rule.selectors() {
                for (j, p) in patterns.iter().enumerate() {
                    if p.trim().is_empty() {
                        self.err(
                            &format!("spec.authorization.rules[{i}].{field}[{j}]"),
                            "must not be empty (use `*` to match everything)",
                        );
                    }
                }
            }
        }
        let limits = [
            ("maxBodyBytes", spec.limits.max_body_bytes),
            ("maxJsonDepth", spec.limits.max_json_depth),
            ("maxArgumentBytes", spec.limits.max_argument_bytes),
        ];
        for (field, limit) in limits {
            if limit == Some(0) {
                self.err(&format!("spec.limits.{field}"), "must be at least 1");
            }
        }
        use crate::kinds::virtual_server::SessionSettings;
        if let Some(d) = spec.sessions.max_lifetime {
            if d < SessionSettings::MIN_LIFETIME {
                self.err("spec.sessions.maxLifetime", "must be at least 1m");
            } else if d > SessionSettings::MAX_LIFETIME {
                self.err("spec.sessions.maxLifetime", "must be at most 30 days");
            }
        }
        let mut seen_upstreams = BTreeMap::new();
        for (i, sel) in spec.upstreams.iter().enumerate() {
            let at = format!("spec.upstreams[{i}]");
            self.reference(
                set,
                &format!("{at}.upstream"),
                Kind::Upstream,
                &sel.upstream,
            );
            if let Some(first) = seen_upstreams.insert(sel.upstream.clone(), i) {
                self.err(
                    &format!("{at}.upstream"),
                    format!(
                        "upstream `{}` is already selected at spec.upstreams[{first}]",
                        sel.upstream
                    ),
                );
            }
            if !sel.prefix.is_empty() && !is_tool_name(&sel.prefix) {
                self.err(
                    &format!("{at}.prefix"),
                    format!(
                        "invalid prefix `{}`: use letters, digits, '_', '-' and '.'",
                        sel.prefix
                    ),
                );
            }
            for (j, t) in sel.tools.iter().flatten().enumerate() {
                if !is_tool_name(t) {
                    self.err(
                        &format!("{at}.tools[{j}]"),
                        format!("invalid tool name `{t}`"),
                    );
                }
            }
            for (from, to) in &sel.rename {
                if !is_tool_name(to) {
                    self.err(
                        &format!("{at}.rename.{from}"),
                        format!("invalid tool name `{to}`"),
                    );
                }
                if let Some(tools) = &sel.tools {
                    if !tools.contains(from) {
                        self.err(
                            &format!("{at}.rename.{from}"),
                            format!("renames `{from}`, which is not in this upstream's tools list"),
                        );
                    }
                }
            }
        }
        self.name_clashes(spec, set);
    }

    /// Two upstreams may only share a prefix when both list their tools and prompts
    /// explicitly and the lists do not collide; local prompts collide with upstream ones too.
    fn name_clashes(&mut self, spec: &VirtualServerSpec, set: &ResourceSet) {
        for what in ["tools", "prompts"] {
            let singular = &what[..what.len() - 1];
            let listed = |sel: &UpstreamSelection| {
                if what == "tools" {
                    sel.tools.clone()
                } else {
                    sel.prompts.clone()
                }
            };
            let mut owners: BTreeMap<String, String> = BTreeMap::new();
            if what == "prompts" {
                for (i, p) in spec.prompts.iter().enumerate() {
                    owners.insert(p.clone(), format!("spec.prompts[{i}]"));
                }
            }
            for (i, sel) in spec.upstreams.iter().enumerate() {
                let at = format!("spec.upstreams[{i}]");
                let names = listed(sel);
                // Tools exposed wholesale are unknown until discovery, but two upstreams that
                // both expose every tool under one prefix are a clash waiting to happen.
                // (Prompts are rarer; discovery checks the real catalogs for both.)
                let wholesale_clash = spec.upstreams[..i].iter().find(|other| {
                    what == "tools"
                        && other.prefix == sel.prefix
                        && (names.is_none() || listed(other).is_none())
                        && set.contains(Kind::Upstream, &sel.upstream)
                        && set.contains(Kind::Upstream, &other.upstream)
                });
                if let Some(other) = wholesale_clash {
                    let all = if names.is_none() {
                        &sel.upstream
                    } else {
                        &other.upstream
                    };
                    self.err(
                        &format!("{at}.prefix"),
                        format!(
                            "upstreams `{}` and `{}` share the prefix `{}` and `{all}` exposes all its tools: names may clash; give each a distinct prefix or list its tools",
                            other.upstream, sel.upstream, sel.prefix
                        ),
                    );
                }
                for (j, n) in names.iter().flatten().enumerate() {
                    let exposed = sel.exposed_name(n);
                    let here = format!("{at}.{what}[{j}]");
                    if let Some(other) = owners.insert(exposed.clone(), here.clone()) {
                        self.err(
                            &here,
                            format!("{singular} name `{exposed}` clashes with {other}; set a prefix or rename"),
                        );
                    }
                }
            }
        }
    }

    fn resource_uri_clashes(&mut self, spec: &VirtualServerSpec, set: &ResourceSet) {
        let mut uris: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, name) in spec.resources.iter().enumerate() {
            if let Some(Located {
                resource: Resource::Resource(r),
                ..
            }) = set.get(Kind::Resource, name)
            {
                if let Some(first) = uris.insert(&r.spec.uri, i) {
                    self.err(
                        &format!("spec.resources[{i}]"),
                        format!(
                            "resource URI `{}` is already served by spec.resources[{first}]",
                            r.spec.uri
                        ),
                    );
                }
            }
        }
    }

    fn prompt(&mut self, spec: &PromptSpec) {
        let mut templates: Vec<(String, &str)> = Vec::new();
        match (&spec.template, &spec.messages) {
            (Some(t), None) => templates.push(("spec.template".into(), t)),
            (None, Some(msgs)) if !msgs.is_empty() => {
                for (i, m) in msgs.iter().enumerate() {
                    templates.push((format!("spec.messages[{i}].template"), &m.template));
                }
            }
            (None, Some(_)) => self.err("spec.messages", "must hold at least one message"),
            (None, None) => self.err("spec", "set exactly one of template, messages"),
            (Some(_), Some(_)) => {
                self.err("spec", "set exactly one of template, messages, not both")
            }
        }
        let mut declared = HashSet::new();
        for (i, a) in spec.arguments.iter().enumerate() {
            if a.name.is_empty() {
                self.err(
                    &format!("spec.arguments[{i}].name"),
                    "argument name must not be empty",
                );
            }
            if !declared.insert(a.name.as_str()) {
                self.err(
                    &format!("spec.arguments[{i}].name"),
                    format!("duplicate argument `{}`", a.name),
                );
            }
        }
        let env = minijinja::Environment::new();
        for (field, src) in templates {
            match env.template_from_str(src) {
                Err(e) => {
                    let line = e
                        .line()
                        .map(|l| format!(" (template line {l})"))
                        .unwrap_or_default();
                    self.err(
                        &field,
                        format!(
                            "invalid template{line}: {}",
                            e.detail().unwrap_or(&e.kind().to_string())
                        ),
                    );
                }
                Ok(t) => {
                    let used: BTreeSet<String> =
                        t.undeclared_variables(false).into_iter().collect();
                    for var in used {
                        if !declared.contains(var.as_str()) {
                            self.err(
                                &field,
                                format!("template uses `{var}`, which is not a declared argument"),
                            );
                        }
                    }
                }
            }
        }
    }

    fn resource(&mut self, spec: &ResourceSpec) {
        match url::Url::parse(&spec.uri) {
            Ok(_) => {}
            Err(e) => self.err("spec.uri", format!("invalid URI `{}`: {e}", spec.uri)),
        }
        match (&spec.text, &spec.blob) {
            (Some(_), None) => {}
            (None, Some(b)) => {
                if let Err(e) = base64::engine::general_purpose::STANDARD.decode(b.trim()) {
                    self.err("spec.blob", format!("blob is not valid base64: {e}"));
                }
            }
            (None, None) => self.err("spec", "set exactly one of text, blob"),
            (Some(_), Some(_)) => self.err("spec", "set exactly one of text, blob, not both"),
        }
    }

    fn auth_provider(&mut self, spec: &AuthProviderSpec) {
        let mut set = Vec::new();
        if spec.jwt.is_some() {
            set.push("jwt");
        }
        if spec.api_keys.is_some() {
            set.push("apiKeys");
        }
        if spec.client_certificate.is_some() {
            set.push("clientCertificate");
        }
        self.exactly_one("spec", &["jwt", "apiKeys", "clientCertificate"], &set);
        if let Some(cc) = &spec.client_certificate {
            if let Err(e) = crate::kinds::tls::pem_certificates(&cc.ca_cert) {
                self.err(
                    "spec.clientCertificate.caCert",
                    format!("not a PEM certificate bundle: {e}"),
                );
            }
        }
        if let Some(jwt) = &spec.jwt {
            if jwt.issuer.trim().is_empty() {
                self.err("spec.jwt.issuer", "issuer must not be empty");
            }
            if jwt.algorithms.is_empty() {
                self.err("spec.jwt.algorithms", "list at least one algorithm");
            }
            if jwt.audiences.iter().all(|a| a.trim().is_empty()) {
                self.err(
                    "spec.jwt.audiences",
                    "list at least one audience (this gateway's): without one, a token the issuer made for any other service would pass",
                );
            }
            if let Some(u) = &jwt.jwks_url {
                self.url("spec.jwt.jwksUrl", u, &["http", "https"]);
            }
            self.client_tls("spec.jwt.tls", &jwt.tls, jwt.jwks_url.as_deref());
            if jwt.jwks_url.is_none() && jwt.keys.is_empty() {
                self.err(
                    "spec.jwt",
                    "set jwksUrl or keys: no key could verify a token",
                );
            }
            let wants_hmac = jwt.algorithms.iter().any(|a| a.is_hmac());
            let wants_public = jwt.algorithms.iter().any(|a| !a.is_hmac());
            for (i, k) in jwt.keys.iter().enumerate() {
                let at = format!("spec.jwt.keys[{i}]");
                let mut set = Vec::new();
                if k.pem.is_some() {
                    set.push("pem");
                }
                if k.secret_env.is_some() {
                    set.push("secretEnv");
                }
                if k.secret.is_some() {
                    set.push("secret");
                }
                self.exactly_one(&at, &["pem", "secretEnv", "secret"], &set);
                if let Some(pem) = &k.pem {
                    if !pem.trim_start().starts_with("-----BEGIN ") {
                        self.err(
                            &format!("{at}.pem"),
                            "not a PEM block (expected `-----BEGIN ...`)",
                        );
                    }
                    if !wants_public {
                        self.err(
                            &format!("{at}.pem"),
                            "a public key is useless with only HMAC algorithms",
                        );
                    }
                }
                if let Some(env) = &k.secret_env {
                    if env.is_empty() {
                        self.err(
                            &format!("{at}.secretEnv"),
                            "must name an environment variable",
                        );
                    }
                }
                if (k.secret_env.is_some() || k.secret.is_some()) && !wants_hmac {
                    self.err(&at, "an HMAC secret is useless without an HS* algorithm");
                }
            }
            let has_secret = jwt
                .keys
                .iter()
                .any(|k| k.secret_env.is_some() || k.secret.is_some());
            if wants_hmac && !has_secret {
                self.err(
                    "spec.jwt.algorithms",
                    "HS* algorithms need a key with secret or secretEnv",
                );
            }
            for (i, a) in jwt.authorization_servers.iter().enumerate() {
                self.url(
                    &format!("spec.jwt.authorizationServers[{i}]"),
                    a,
                    &["http", "https"],
                );
            }
            let claims = [
                ("subject", &jwt.claims.subject),
                ("groups", &jwt.claims.groups),
                ("scopes", &jwt.claims.scopes),
            ];
            for (field, claim) in claims {
                if claim.as_deref().is_some_and(str::is_empty) {
                    self.err(&format!("spec.jwt.claims.{field}"), "must name a claim");
                }
            }
            if jwt
                .jwks_refresh
                .is_some_and(|d| d < std::time::Duration::from_secs(1))
            {
                self.err("spec.jwt.jwksRefresh", "must be at least 1s");
            }
        }
        if let Some(keys) = &spec.api_keys {
            if keys.header.as_deref().is_some_and(|h| !is_header_name(h)) {
                self.err("spec.apiKeys.header", "not a valid HTTP header name");
            }
            if keys.keys.is_empty() {
                self.err("spec.apiKeys.keys", "list at least one key");
            }
            let mut seen = HashSet::new();
            for (i, k) in keys.keys.iter().enumerate() {
                let at = format!("spec.apiKeys.keys[{i}]");
                if k.principal.is_empty() {
                    self.err(&format!("{at}.principal"), "principal must not be empty");
                }
                let is_hex = k.sha256.len() == 64
                    && k.sha256
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
                if !is_hex {
                    self.err(&format!("{at}.sha256"), "must be 64 lower-case hex digits (the SHA-256 of the key, e.g. from `switchboard hash-key`)");
                } else if !seen.insert(k.sha256.as_str()) {
                    self.err(&format!("{at}.sha256"), "the same key is listed twice");
                }
            }
        }
    }

    fn rate_limit(&mut self, spec: &RateLimitPolicySpec) {
        if spec.requests == 0 {
            self.err("spec.requests", "must be at least 1");
        }
        if spec.per.is_zero() {
            self.err("spec.per", "must be greater than zero");
        }
        if spec.burst == Some(0) {
            self.err("spec.burst", "must be at least 1 when set");
        }
        if spec.key.is_empty() {
            self.err("spec.key", "list at least one key dimension");
        }
        let mut seen = HashSet::new();
        for (i, k) in spec.key.iter().enumerate() {
            if !seen.insert(*k) {
                self.err(&format!("spec.key[{i}]"), "listed twice");
            }
        }
    }
}

/// RFC 1123 label: what Kubernetes accepts as a name, safe in URLs, keys and metrics.
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// MCP tool names: 1-128 of letters, digits, `_`, `-` and `.`.
pub fn is_tool_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
}

fn is_hostname(s: &str) -> bool {
    let host = s.strip_prefix("*.").unwrap_or(s);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

fn is_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c))
}
