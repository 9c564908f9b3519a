//! The pingora side: route each HTTP request to a virtual server, then answer it from memory
//! or forward it to an upstream and stream the answer back (see `transport` for the rules).

use crate::jsonrpc::{self, RpcError};
use crate::metrics::{method_label, metrics, Tracked};
use crate::policy::auth::{AuthError, Authenticator, Offered, Principal};
use crate::policy::authz::Target as Item;
use crate::policy::circuit::{Admission, Breakers};
use crate::policy::jwks::JwksCache;
use crate::policy::ratelimit::{KeyParts, RateLimiter};
use crate::policy::retry;
use crate::routes::{Routes, ServerView, UpstreamEntry};
use crate::signals::Signals;
use crate::transport::{self, Forward, Gate, Outcome, Refusal, Reply, RequestInfo};
use crate::upstreams::{CallOptions, UpstreamPool};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use pingora::http::ResponseHeader;
use pingora::prelude::{HttpPeer, Session};
use pingora::proxy::ProxyHttp;
use pingora::{Error, ErrorType, Result};
use serde_json::{json, Value};
use std::sync::Arc;
use switchboard_config::kinds::upstream::{McpTransport, ToolCallRetries};
use switchboard_upstream::{is_event_stream, json_events, UpstreamError};
use tracing::Instrument;

/// The gateway's request handler; cheap to share, reads the current routes per request.
pub struct Gateway {
    routes: Arc<ArcSwap<Routes>>,
    max_body_bytes: usize,
    max_header_bytes: usize,
    upstreams: UpstreamPool,
    signals: Arc<Signals>,
    jwks: JwksCache,
    limiter: RateLimiter,
    breakers: Breakers,
    /// Serves /metrics on this listener.
    metrics_here: bool,
    /// Serves only /metrics, /healthz and /readyz (a separate admin listener).
    admin_only: bool,
}

impl Gateway {
    /// A gateway over `routes` (swapped whole when a snapshot arrives).
    pub fn new(routes: Arc<ArcSwap<Routes>>, max_body_bytes: usize) -> Self {
        Gateway {
            routes,
            max_body_bytes,
            max_header_bytes: 64 << 10,
            upstreams: UpstreamPool::default(),
            signals: Arc::default(),
            jwks: JwksCache::default(),
            limiter: RateLimiter::default(),
            breakers: Breakers::default(),
            metrics_here: true,
            admin_only: false,
        }
    }

    /// Leaves /metrics to a separate admin listener.
    pub fn without_metrics(mut self) -> Self {
        self.metrics_here = false;
        self
    }

    /// The admin listener: /metrics, /healthz and /readyz only.
    pub fn admin_only(mut self) -> Self {
        self.admin_only = true;
        self
    }

    /// Refuses requests whose headers add up to more than `n` bytes (431).
    pub fn with_max_header_bytes(mut self, n: usize) -> Self {
        self.max_header_bytes = n;
        self
    }

    /// Records what upstream calls did into `signals` (reported to the control plane).
    pub fn with_signals(mut self, signals: Arc<Signals>) -> Self {
        self.signals = signals;
        self
    }

    /// Sends a call upstream and streams the answer back with the client's id restored.
    async fn forward(
        &self,
        session: &mut Session,
        routes: &Routes,
        server: &ServerView,
        f: Forward,
    ) -> Result<&'static str> {
        let fail = |message: String| {
            Reply::json(
                200,
                &jsonrpc::error_response(
                    &f.client_id,
                    &RpcError {
                        code: jsonrpc::INTERNAL_ERROR,
                        message,
                        data: Some(json!({"upstream": f.upstream})),
                    },
                ),
            )
        };
        let Some(spec) = routes.upstream(&f.upstream) else {
            let reply = fail(format!("upstream `{}` is not in this snapshot", f.upstream));
            return send(session, reply).await.map(|()| "upstream_error");
        };
        if let Some(why) = routes.unhealthy(&f.upstream) {
            let reply = fail(unhealthy_message(&f.upstream, why));
            return send(session, reply).await.map(|()| "upstream_error");
        }
        let timeouts = server.timeouts(&spec, &f.upstream);
        let span = if crate::tracecontext::enabled() {
            tracing::info_span!(
                "mcp.upstream",
                otel.kind = "client",
                mcp.upstream = %f.upstream,
                mcp.method = %f.method,
            )
        } else {
            tracing::Span::none()
        };
        let mut headers = f.headers.clone();
        headers.extend(crate::tracecontext::headers_for(&span));
        let call = CallOptions {
            timeout: timeouts.request,
            headers,
        };
        let gateway_id = json!(self.upstreams.next_id());
        let body =
            json!({"jsonrpc": "2.0", "id": gateway_id, "method": f.method, "params": f.params});
        let restore = |mut msg: Value| {
            if msg.get("id") == Some(&gateway_id) {
                msg["id"] = f.client_id.clone();
                if f.stateless {
                    if let Some(result) = msg.get_mut("result") {
                        crate::mcp::modern::shape_result(&f.method, result, &f.server);
                    }
                }
            }
            msg
        };
        let json_reply = |msg: Value| {
            let code = msg.pointer("/error/code").and_then(Value::as_i64);
            let status = match code {
                Some(code) if f.stateless => crate::mcp::modern::http_status(code),
                _ => 200,
            };
            Reply::json(status, &restore(msg))
        };
        let failed = |e: CallError| {
            match e {
            CallError::Open(left) => fail(format!(
                "upstream `{}` keeps failing on this gateway; not calling it for another {:.1}s (circuit open)",
                f.upstream,
                left.as_secs_f64()
            )),
            CallError::Upstream(e) => fail(format!("upstream `{}` failed: {e}", f.upstream)),
        }
        };
        if spec
            .mcp
            .as_ref()
            .is_some_and(|m| m.transport == McpTransport::Sse)
        {
            let answer = self
                .attempt(&f, &spec, || {
                    self.upstreams.call_legacy(&f.upstream, &spec, &body, &call)
                })
                .await;
            let (reply, outcome) = match answer {
                Ok(msg) => {
                    let reply = json_reply(msg);
                    let outcome = reply.outcome();
                    (reply, outcome)
                }
                Err(e) => (failed(e), "upstream_error"),
            };
            return send(session, reply).await.map(|()| outcome);
        }
        let sent = self
            .attempt(&f, &spec, || {
                self.upstreams
                    .send(&f.upstream, &spec, &body, f.session.as_ref(), &call)
            })
            .instrument(span.clone())
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => return send(session, failed(e)).await.map(|()| "upstream_error"),
        };
        let idle = timeouts.idle.unwrap_or(DEFAULT_IDLE);
        if !is_event_stream(&resp) {
            let (reply, outcome) = match tokio::time::timeout(idle, resp.bytes()).await {
                Ok(Ok(b)) => match serde_json::from_slice::<Value>(&b) {
                    Ok(msg) => {
                        let reply = json_reply(msg);
                        let outcome = reply.outcome();
                        (reply, outcome)
                    }
                    Err(e) => (
                        fail(format!("upstream `{}` sent invalid JSON: {e}", f.upstream)),
                        "upstream_error",
                    ),
                },
                Ok(Err(e)) => (
                    fail(format!(
                        "upstream `{}` broke off its answer: {e}",
                        f.upstream
                    )),
                    "upstream_error",
                ),
                Err(_) => (
                    fail(format!(
                        "upstream `{}` sent no more of its answer for {idle:?}",
                        f.upstream
                    )),
                    "upstream_error",
                ),
            };
            return send(session, reply).await.map(|()| outcome);
        }
        // SSE: pass every event on as it arrives (progress notifications included), ending
        // the stream with the response.
        let mut header = ResponseHeader::build(200, Some(3))?;
        header.insert_header("content-type", "text/event-stream")?;
        header.insert_header("cache-control", "no-cache")?;
        if session.req_header().version == pingora::http::Version::HTTP_11 {
            // Delimit the stream so the connection can be kept alive afterwards.
            header.insert_header("transfer-encoding", "chunked")?;
        }
        session
            .write_response_header(Box::new(header), false)
            .await?;
        let _streaming = Tracked::new(&metrics().sse_streams);
        let mut events = Box::pin(json_events(resp.bytes_stream()));
        loop {
            let next = match tokio::time::timeout(idle, events.next()).await {
                Ok(next) => next,
                Err(_) => Some(Err(format!("no event for {idle:?}"))),
            };
            match next {
                Some(Ok(event)) => {
                    let (data, done) = match serde_json::from_str::<Value>(&event.data) {
                        Ok(msg) => {
                            let is_response = msg.get("id") == Some(&gateway_id)
                                && (msg.get("result").is_some() || msg.get("error").is_some());
                            (restore(msg).to_string(), is_response)
                        }
                        Err(_) => (event.data.clone(), false),
                    };
                    let wire = Bytes::from(event.to_wire(&data));
                    session.write_response_body(Some(wire), done).await?;
                    if done {
                        return Ok("ok");
                    }
                }
                end => {
                    let why = match end {
                        Some(Err(e)) => e,
                        _ => "the stream ended without a response".into(),
                    };
                    let msg = jsonrpc::error_response(
                        &f.client_id,
                        &RpcError::new(
                            jsonrpc::INTERNAL_ERROR,
                            format!("upstream `{}`: {why}", f.upstream),
                        ),
                    );
                    let wire = Bytes::from(format!("data: {msg}\n\n"));
                    session.write_response_body(Some(wire), true).await?;
                    return Ok("upstream_error");
                }
            }
        }
    }
}

/// Why a call to an upstream got no answer.
enum CallError {
    /// Its circuit is open on this data plane (for this long still).
    Open(std::time::Duration),
    Upstream(UpstreamError),
}

impl Gateway {
    /// Runs one upstream call under the upstream's circuit breaker and retry policy, and
    /// records how it went (circuit state, passive health signals).
    async fn attempt<T, F, Fut>(
        &self,
        f: &Forward,
        spec: &UpstreamEntry,
        mut call: F,
    ) -> std::result::Result<T, CallError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, UpstreamError>>,
    {
        let breaker = &spec.circuit_breaker;
        if let Admission::Open(left) = self.breakers.admit(&f.upstream, breaker) {
            return Err(CallError::Open(left));
        }
        let safe = f.method != "tools/call"
            || match spec.retries.tool_calls {
                ToolCallRetries::Always => true,
                ToolCallRetries::Never => false,
                ToolCallRetries::WhenIdempotent => f.idempotent,
            };
        let m = metrics();
        let timer = m
            .upstream_seconds
            .with_label_values(&[f.upstream.as_str(), method_label(&f.method)]);
        let mut done = 0;
        loop {
            let started = std::time::Instant::now();
            let result = call().await;
            timer.observe(started.elapsed().as_secs_f64());
            match result {
                Ok(v) => {
                    self.signals.success(&f.upstream);
                    self.breakers.record(&f.upstream, breaker, true);
                    m.circuit_open
                        .with_label_values(&[f.upstream.as_str()])
                        .set(0);
                    return Ok(v);
                }
                Err(e) => {
                    if let Some(wait) = retry::next_wait(&spec.retries, &e, done, safe) {
                        done += 1;
                        m.retries.with_label_values(&[f.upstream.as_str()]).inc();
                        tracing::info!(upstream = %f.upstream, method = %f.method, error = %e, retry = done, ?wait, "retrying upstream call");
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    let fault = retry::is_upstream_fault(&e);
                    if fault {
                        self.signals.failure(&f.upstream, &e.to_string());
                    }
                    if self.breakers.record(&f.upstream, breaker, !fault) {
                        m.circuit_opened
                            .with_label_values(&[f.upstream.as_str()])
                            .inc();
                        m.circuit_open
                            .with_label_values(&[f.upstream.as_str()])
                            .set(1);
                        tracing::warn!(upstream = %f.upstream, open_for = ?breaker.open_duration(), "circuit opened: failing fast");
                    }
                    tracing::warn!(upstream = %f.upstream, error = %e, retries = done, "upstream call failed");
                    return Err(CallError::Upstream(e));
                }
            }
        }
    }
}

/// Longest silence allowed inside a streamed upstream answer when the resource sets none.
pub const DEFAULT_IDLE: std::time::Duration = std::time::Duration::from_secs(300);

/// Where a request path points.
enum Target {
    Server(Arc<ServerView>),
    /// The OAuth protected-resource metadata of a server's endpoint (RFC 9728).
    ResourceMetadata(Arc<ServerView>),
    UnknownServer(String),
    Health,
    Ready,
    Metrics,
    NotFound,
}

/// Where RFC 9728 puts the metadata of a resource: this prefix, then the resource's path.
const RESOURCE_METADATA: &str = "/.well-known/oauth-protected-resource";

fn target(routes: &Routes, path: &str, host: Option<&str>) -> Target {
    if let Some(resource) = path.strip_prefix(RESOURCE_METADATA) {
        return match target(routes, resource, host) {
            Target::Server(s) => Target::ResourceMetadata(s),
            other @ Target::UnknownServer(_) => other,
            _ => Target::NotFound,
        };
    }
    if let Some(rest) = path.strip_prefix("/servers/") {
        let name = rest
            .strip_suffix("/mcp/")
            .or_else(|| rest.strip_suffix("/mcp"))
            .filter(|n| !n.is_empty() && !n.contains('/'));
        return match name {
            Some(n) => routes
                .server(n)
                .map_or_else(|| Target::UnknownServer(n.to_string()), Target::Server),
            None => Target::NotFound,
        };
    }
    match path {
        "/mcp" | "/mcp/" => host
            .and_then(|h| routes.server_for_host(h))
            .map_or(Target::NotFound, Target::Server),
        "/healthz" => Target::Health,
        "/readyz" => Target::Ready,
        "/metrics" => Target::Metrics,
        _ => Target::NotFound,
    }
}

fn header<'a>(session: &'a Session, name: &str) -> Option<&'a str> {
    session
        .req_header()
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
}

async fn send(session: &mut Session, reply: Reply) -> Result<()> {
    let mut resp = ResponseHeader::build(reply.status, Some(reply.headers.len() + 2))?;
    for (name, value) in reply.headers {
        resp.insert_header(name, value)?;
    }
    resp.insert_header("content-length", reply.body.len().to_string())?;
    let empty = reply.body.is_empty();
    session.write_response_header(Box::new(resp), empty).await?;
    if !empty {
        session
            .write_response_body(Some(Bytes::from(reply.body)), true)
            .await?;
    }
    Ok(())
}

fn text(status: u16, body: &str) -> Reply {
    Reply {
        status,
        headers: vec![("content-type", "text/plain; charset=utf-8".into())],
        body: body.as_bytes().to_vec(),
        error_code: None,
    }
}

/// The MCP-over-HTTP upstreams behind `server` that this snapshot defines, with their specs.
/// The server's MCP upstreams that are not known to be down.
fn mcp_upstreams<'a>(
    routes: &'a Routes,
    server: &'a ServerView,
) -> impl Iterator<Item = (&'a String, Arc<UpstreamEntry>)> + 'a {
    server.upstreams.iter().filter_map(|name| {
        let spec = routes.upstream(name)?;
        if spec.mcp.as_ref()?.transport != McpTransport::StreamableHttp {
            return None; // legacy HTTP+SSE upstreams share one session per data plane
        }
        if routes.unhealthy(name).is_some() {
            return None; // opened on first use once it is back
        }
        Some((name, spec))
    })
}

/// What a client is told when it calls an upstream the health checks found down.
fn unhealthy_message(upstream: &str, why: &str) -> String {
    if why.is_empty() {
        format!("upstream `{upstream}` is unhealthy; failing fast until it recovers")
    } else {
        format!("upstream `{upstream}` is unhealthy ({why}); failing fast until it recovers")
    }
}

impl Gateway {
    /// Answers a client's initialize: opens its sessions with every upstream of the server
    /// (in parallel; one that fails is opened on first use instead) and seals them into the
    /// id, so whichever replica gets the next request can use them.
    async fn open_session(
        &self,
        routes: &Routes,
        server: &ServerView,
        headers: &ClientHeaders,
        id: Value,
        result: Value,
        mut session: crate::session::Session,
    ) -> Reply {
        let opening = mcp_upstreams(routes, server).map(|(name, spec)| {
            let session = &session;
            let call = CallOptions {
                headers: client_headers(headers, server, &spec),
                ..CallOptions::default()
            };
            async move {
                let opened = self.upstreams.open_for(name, &spec, session, &call).await;
                (name, opened)
            }
        });
        for (name, opened) in futures::future::join_all(opening).await {
            match opened {
                Ok(r) => {
                    session.upstreams.insert(name.clone(), r);
                }
                Err(e) => {
                    tracing::warn!(server = %server.name, upstream = %name, error = %e, "could not open an upstream session for a new client; will retry on first use")
                }
            }
        }
        transport::initialized(server, &id, result, &session)
    }

    /// Sends one request to every upstream of `server` in the client's sessions, waiting
    /// for each answer (an upstream that fails or refuses is logged, not fatal: the level
    /// still applies to the others).
    async fn fanout(
        &self,
        routes: &Routes,
        server: &ServerView,
        method: &str,
        params: &Value,
        session: &crate::session::Session,
    ) {
        let sends = mcp_upstreams(routes, server).map(|(name, spec)| {
            let body = json!({"jsonrpc": "2.0", "id": self.upstreams.next_id(), "method": method, "params": params});
            async move {
                let outcome = match self.upstreams.send(name, &spec, &body, Some(session), &CallOptions::default()).await {
                    Ok(resp) => resp.bytes().await.map(|_| ()).map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                if let Err(e) = outcome {
                    tracing::warn!(upstream = %name, %method, error = %e, "upstream did not take a fanned-out request");
                }
            }
        });
        futures::future::join_all(sends).await;
    }

    /// Reads the whole body, or answers 413 when it is over the limit (checked against
    /// Content-Length up front, and against what arrives for chunked bodies).
    async fn read_body(
        &self,
        session: &mut Session,
        max: usize,
    ) -> Result<std::result::Result<Vec<u8>, Reply>> {
        let too_large = || {
            Reply::rpc_error(
                413,
                jsonrpc::INVALID_REQUEST,
                format!("request body is larger than {max} bytes"),
            )
        };
        let declared = header(session, "content-length").and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > max) {
            return Ok(Err(too_large()));
        }
        let mut body = Vec::with_capacity(declared.unwrap_or(0).min(max));
        while let Some(chunk) = session.read_request_body().await? {
            if body.len() + chunk.len() > max {
                return Ok(Err(too_large()));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Ok(body))
    }
}

/// The client's credentials that policies may pass on to upstreams.
struct ClientHeaders {
    authorization: Option<String>,
    upstream_authorization: Option<String>,
}

/// Headers a call to `upstream` carries for this client: its own token when the server
/// forwards tokens, and its `X-Upstream-Authorization` when the upstream takes it.
fn client_headers(
    client: &ClientHeaders,
    server: &ServerView,
    upstream: &UpstreamEntry,
) -> Vec<(String, String)> {
    let passed = client
        .upstream_authorization
        .as_ref()
        .filter(|_| upstream.auth.passthrough);
    let forwarded = client
        .authorization
        .as_ref()
        .filter(|_| server.forward_token);
    passed
        .or(forwarded)
        .map(|v| vec![("authorization".to_string(), v.clone())])
        .unwrap_or_default()
}

/// Rate limits, as the transport rules ask for them.
struct Limits<'a> {
    limiter: &'a RateLimiter,
    server: &'a ServerView,
    principal: &'a str,
    client_ip: &'a str,
}

impl Gate for Limits<'_> {
    fn admit(&self, method: &str, target: Item<'_>) -> std::result::Result<(), Refusal> {
        if self.server.rate_limits.is_empty() {
            return Ok(());
        }
        let tool = match target {
            Item::Tool(t) => t,
            _ => "",
        };
        let parts = KeyParts {
            server: &self.server.name,
            principal: self.principal,
            tool,
            client_ip: self.client_ip,
        };
        self.limiter
            .check(&self.server.rate_limits, method, &parts)
            .map_err(|l| {
                let secs = l.retry_after.as_secs_f64().ceil().max(1.0);
                tracing::debug!(server = %self.server.name, policy = %l.policy, principal = %self.principal, "rate limited");
                metrics()
                    .rate_limited
                    .with_label_values(&[self.server.name.as_str(), l.policy.as_str()])
                    .inc();
                Refusal {
                    error: RpcError {
                        code: jsonrpc::RATE_LIMITED,
                        message: format!(
                            "rate limit `{}` exceeded; retry in {secs:.0}s",
                            l.policy
                        ),
                        data: Some(json!({"policy": l.policy, "retryAfterSeconds": secs})),
                    },
                    retry_after: Some(l.retry_after),
                }
            })
    }
}

/// The URL clients reach this request's host at (`X-Forwarded-Proto` says the scheme a
/// proxy in front terminated).
fn base_url(session: &Session) -> String {
    let scheme = header(session, "x-forwarded-proto")
        .filter(|p| *p == "https" || *p == "http")
        .unwrap_or("http");
    let host = header(session, "host").unwrap_or("localhost");
    format!("{scheme}://{host}")
}

/// The server's endpoint path as this request addressed it (by name, or by host on /mcp).
fn endpoint_path(session: &Session) -> String {
    let path = session.req_header().uri.path();
    let path = path.strip_prefix(RESOURCE_METADATA).unwrap_or(path);
    path.trim_end_matches('/').to_string()
}

/// RFC 9728 metadata for a server that takes OAuth bearer tokens (404 for the others).
fn resource_metadata(session: &Session, server: &ServerView) -> Reply {
    let Some(jwt) = server.auth.as_deref().and_then(Authenticator::jwt) else {
        return text(404, "this server takes no OAuth tokens\n");
    };
    let servers = if jwt.authorization_servers.is_empty() {
        vec![jwt.issuer.clone()]
    } else {
        jwt.authorization_servers.clone()
    };
    let mut doc = json!({
        "resource": format!("{}{}", base_url(session), endpoint_path(session)),
        "authorization_servers": servers,
        "bearer_methods_supported": ["header"],
        "resource_name": server.name,
    });
    if !jwt.scopes_supported.is_empty() {
        doc["scopes_supported"] = json!(jwt.scopes_supported);
    }
    Reply::json(200, &doc)
}

/// A `WWW-Authenticate` parameter value, quoted.
fn quoted(value: &str) -> String {
    let clean: String = value
        .chars()
        .filter(|c| !c.is_control())
        .map(|c| if c == '"' { '\'' } else { c })
        .collect();
    format!("\"{clean}\"")
}

impl Gateway {
    /// Serves one request to a virtual server (the caller answers `Step::Reply`).
    async fn serve_server(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        routes: &Routes,
        server: Arc<ServerView>,
    ) -> Result<Step> {
        let rec = ctx.record.insert(Record::new(&server.name));
        let caller = match self.authenticate(session, &server).await {
            Ok(p) => p,
            Err(reply) => {
                rec.outcome = reply.outcome();
                send(session, reply).await?;
                return Ok(Step::Done(true));
            }
        };
        rec.principal = caller.subject.clone();
        let client = ClientHeaders {
            authorization: header(session, "authorization").map(str::to_string),
            upstream_authorization: header(session, "x-upstream-authorization").map(str::to_string),
        };
        if let Some(upstream) = server.passthrough.clone() {
            rec.upstream = upstream.clone();
            rec.outcome = "proxied";
            let query = session.req_header().uri.query().map(str::to_string);
            return match self.pass_target(routes, &upstream, query.as_deref()).await {
                Ok(mut t) => {
                    // The client's credentials stop here unless a policy passes them.
                    t.drop_headers.push("x-upstream-authorization".into());
                    if !server.forward_token {
                        t.drop_headers.push("authorization".into());
                    }
                    if let Some(h) = server
                        .auth
                        .as_deref()
                        .and_then(Authenticator::api_key_header)
                    {
                        t.drop_headers.push(h.to_string());
                    }
                    if let Some(spec) = routes.upstream(&upstream) {
                        t.headers.extend(client_headers(&client, &server, &spec));
                    }
                    // pingora proxies the request and streams the answer as-is.
                    ctx.pass = Some(t);
                    Ok(Step::Done(false))
                }
                Err(why) => {
                    rec.outcome = "upstream_error";
                    let reply = Reply::rpc_error(
                        502,
                        jsonrpc::INTERNAL_ERROR,
                        format!("pass-through to `{upstream}`: {why}"),
                    );
                    send(session, reply).await?;
                    Ok(Step::Done(true))
                }
            };
        }
        let max_body = server.limits.max_body_bytes.unwrap_or(self.max_body_bytes);
        let body = match self.read_body(session, max_body).await? {
            Ok(b) => b,
            Err(reply) => {
                rec.outcome = reply.outcome();
                send(session, reply).await?;
                // The rest of an oversized body is not worth reading.
                session.set_keepalive(None);
                return Ok(Step::Done(true));
            }
        };
        let info = RequestInfo {
            method: session.req_header().method.as_str().to_string(),
            content_type: header(session, "content-type").map(str::to_string),
            accept: header(session, "accept").map(str::to_string),
            session_id: header(session, "mcp-session-id").map(str::to_string),
            protocol_version: header(session, "mcp-protocol-version").map(str::to_string),
            mcp_method: header(session, "mcp-method").map(str::to_string),
            mcp_name: header(session, "mcp-name").map(str::to_string),
            caller,
        };
        let client_ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip().to_string())
            .unwrap_or_default();
        let gate = Limits {
            limiter: &self.limiter,
            server: &server,
            principal: &info.caller.subject,
            client_ip: &client_ip,
        };
        rec.session = info
            .session_id
            .as_deref()
            .map(crate::session::fingerprint)
            .unwrap_or_default();
        let mut seen = transport::Seen::default();
        let outcome = transport::handle(&server, &info, &body, &gate, &mut seen);
        rec.method = seen.method.unwrap_or_default();
        rec.tool = seen.tool.unwrap_or_default();
        let span = tracing::Span::current();
        span.record("mcp.method", rec.method.as_str());
        span.record("mcp.tool", rec.tool.as_str());
        let reply = match outcome {
            Outcome::Reply(reply) => reply,
            Outcome::Initialize {
                id,
                result,
                session,
            } => {
                metrics()
                    .sessions_opened
                    .with_label_values(&[server.name.as_str()])
                    .inc();
                self.open_session(routes, &server, &client, id, result, session)
                    .await
            }
            Outcome::Fanout {
                id,
                method,
                params,
                session,
            } => {
                self.fanout(routes, &server, &method, &params, &session)
                    .await;
                Reply::json(200, &jsonrpc::result_response(&id, json!({})))
            }
            Outcome::Terminate(session) => {
                metrics()
                    .sessions_closed
                    .with_label_values(&[server.name.as_str()])
                    .inc();
                self.upstreams
                    .close_for(&session, &|name| routes.upstream(name));
                Reply::empty(200)
            }
            Outcome::Forward(mut f) => {
                tracing::debug!(server = %server.name, upstream = %f.upstream, method = %f.method, "forwarding");
                if let Some(spec) = routes.upstream(&f.upstream) {
                    f.headers = client_headers(&client, &server, &spec);
                }
                rec.upstream = f.upstream.clone();
                rec.outcome = self.forward(session, routes, &server, f).await?;
                return Ok(Step::Done(true));
            }
        };
        rec.outcome = reply.outcome();
        if reply.error_code == Some(jsonrpc::FORBIDDEN) {
            metrics()
                .authz_denied
                .with_label_values(&[server.name.as_str()])
                .inc();
        }
        Ok(Step::Reply(reply))
    }

    /// Who is calling `server`, or the 401 (503 when keys cannot be fetched) to answer.
    async fn authenticate(
        &self,
        session: &Session,
        server: &ServerView,
    ) -> std::result::Result<Principal, Reply> {
        let Some(auth) = &server.auth else {
            return Ok(Principal::anonymous());
        };
        let offered = Offered {
            authorization: header(session, "authorization"),
            api_key: auth.api_key_header().and_then(|h| header(session, h)),
        };
        let e = match auth.authenticate(offered, &self.jwks).await {
            Ok(p) => return Ok(p),
            Err(e) => e,
        };
        tracing::info!(server = %server.name, error = %e, "authentication failed");
        let reason = match &e {
            AuthError::Missing(_) => "missing",
            AuthError::Invalid(_) => "invalid",
            AuthError::Unavailable(_) => "unavailable",
        };
        metrics()
            .auth_rejected
            .with_label_values(&[server.name.as_str(), reason])
            .inc();
        let mut challenge = String::from("Bearer realm=\"switchboard\"");
        let status = match &e {
            AuthError::Missing(_) => 401,
            AuthError::Invalid(why) => {
                challenge.push_str(", error=\"invalid_token\", error_description=");
                challenge.push_str(&quoted(why));
                401
            }
            AuthError::Unavailable(_) => 503,
        };
        if auth.jwt().is_some() {
            let url = format!(
                "{}{RESOURCE_METADATA}{}",
                base_url(session),
                endpoint_path(session)
            );
            challenge.push_str(", resource_metadata=");
            challenge.push_str(&quoted(&url));
        }
        let mut reply = Reply::rpc_error(status, jsonrpc::UNAUTHORIZED, e.to_string());
        reply.headers.push(("www-authenticate", challenge));
        Err(reply)
    }
}

/// Where a pass-through request goes; decided in `request_filter`, used by pingora's proxy.
pub struct PassTarget {
    addr: std::net::SocketAddr,
    tls: bool,
    /// Host header (and SNI) for the upstream.
    host: String,
    path_and_query: String,
    /// Client headers that must not reach the upstream.
    drop_headers: Vec<String>,
    /// Set on the upstream request (after dropping), e.g. the upstream's credentials.
    headers: Vec<(String, String)>,
    connect: std::time::Duration,
}

/// What one request to a virtual server came to: counted and logged when it ends.
#[derive(Debug)]
struct Record {
    started: std::time::Instant,
    server: String,
    method: String,
    tool: String,
    upstream: String,
    outcome: &'static str,
    principal: String,
    /// A fingerprint of the session id (the id itself is a credential).
    session: String,
    _in_flight: Tracked,
}

impl Record {
    fn new(server: &str) -> Record {
        Record {
            started: std::time::Instant::now(),
            server: server.to_string(),
            method: String::new(),
            tool: String::new(),
            upstream: String::new(),
            outcome: "ok",
            principal: String::new(),
            session: String::new(),
            _in_flight: Tracked::new(&metrics().in_flight),
        }
    }

    /// Counts the request and writes its access-log line.
    fn finish(&self, status: u16) {
        let m = metrics();
        let outcome = match (self.outcome, status) {
            ("proxied", s) if s >= 400 => "error",
            ("proxied", _) => "ok",
            (o, _) => o,
        };
        m.requests
            .with_label_values(&[
                self.server.as_str(),
                self.method.as_str(),
                self.tool.as_str(),
                self.upstream.as_str(),
                outcome,
            ])
            .inc();
        let took = self.started.elapsed();
        m.request_seconds
            .with_label_values(&[self.server.as_str(), self.method.as_str()])
            .observe(took.as_secs_f64());
        tracing::info!(
            target: "switchboard::access",
            server = %self.server,
            method = %self.method,
            tool = %self.tool,
            upstream = %self.upstream,
            status,
            outcome,
            duration_ms = took.as_secs_f64() * 1000.0,
            principal = %self.principal,
            session = %self.session,
            "request"
        );
    }
}

/// Where serving a request to a virtual server got to.
enum Step {
    /// Answer with this.
    Reply(Reply),
    /// Already answered (true), or left to pingora's proxy (false).
    Done(bool),
}

/// Per-request state.
#[derive(Default)]
pub struct Ctx {
    pass: Option<PassTarget>,
    record: Option<Record>,
}

impl Gateway {
    /// Resolves a pass-through server's upstream for this request.
    async fn pass_target(
        &self,
        routes: &Routes,
        upstream: &str,
        query: Option<&str>,
    ) -> std::result::Result<PassTarget, String> {
        let spec = routes
            .upstream(upstream)
            .ok_or_else(|| format!("upstream `{upstream}` is not in this snapshot"))?;
        if let Some(why) = routes.unhealthy(upstream) {
            return Err(unhealthy_message(upstream, why));
        }
        let mcp = spec
            .mcp
            .as_ref()
            .ok_or_else(|| format!("upstream `{upstream}` is not an MCP-over-HTTP server"))?;
        let url = reqwest::Url::parse(&mcp.url).map_err(|e| format!("upstream URL: {e}"))?;
        let host = url.host_str().unwrap_or_default().to_string();
        let port = url
            .port_or_known_default()
            .ok_or_else(|| format!("upstream URL `{}` has no port", mcp.url))?;
        let addr = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| format!("cannot resolve `{host}`: {e}"))?
            .next()
            .ok_or_else(|| format!("`{host}` resolves to no address"))?;
        let mut path_and_query = url.path().to_string();
        if let Some(q) = query.or(url.query()) {
            path_and_query.push('?');
            path_and_query.push_str(q);
        }
        let host_header = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        Ok(PassTarget {
            addr,
            tls: url.scheme() == "https",
            host: host_header,
            path_and_query,
            drop_headers: Vec::new(),
            headers: spec
                .creds
                .current(self.upstreams.http())
                .await
                .map_err(|e| format!("credentials: {e}"))?
                .into_iter()
                .collect(),
            connect: spec
                .timeouts
                .connect
                .unwrap_or(crate::upstreams::DEFAULT_CONNECT_TIMEOUT),
        })
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn new_ctx(&self) -> Self::CTX {
        Ctx::default()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        let header_bytes: usize = session
            .req_header()
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len())
            .sum();
        if header_bytes > self.max_header_bytes {
            let reply = text(
                431,
                &format!(
                    "request headers are {header_bytes} bytes; at most {} are accepted\n",
                    self.max_header_bytes
                ),
            );
            send(session, reply).await?;
            session.set_keepalive(None);
            return Ok(true);
        }
        let routes = self.routes.load_full();
        let path = session.req_header().uri.path().to_string();
        let host = header(session, "host").map(str::to_string);
        let target = match target(&routes, &path, host.as_deref()) {
            t @ (Target::Health | Target::Ready | Target::Metrics) if self.admin_only => t,
            _ if self.admin_only => Target::NotFound,
            Target::Metrics if !self.metrics_here => Target::NotFound,
            t => t,
        };
        let reply = match target {
            Target::Health => text(200, "ok\n"),
            Target::Metrics => Reply {
                status: 200,
                headers: vec![("content-type", "text/plain; version=0.0.4".into())],
                body: metrics().render(),
                error_code: None,
            },
            Target::Ready if routes.version.is_empty() => text(503, "no snapshot yet\n"),
            Target::Ready => text(200, &format!("ready, snapshot {}\n", routes.version)),
            Target::NotFound => text(404, "not found: MCP endpoints are /servers/{name}/mcp\n"),
            Target::UnknownServer(name) => transport::unknown_server(&name),
            Target::ResourceMetadata(server) => resource_metadata(session, &server),
            Target::Server(server) => {
                let span = if crate::tracecontext::enabled() {
                    let span = tracing::info_span!(
                        "mcp.request",
                        otel.kind = "server",
                        mcp.server = %server.name,
                        mcp.method = tracing::field::Empty,
                        mcp.tool = tracing::field::Empty,
                    );
                    crate::tracecontext::adopt(&span, &session.req_header().headers);
                    span
                } else {
                    tracing::Span::none()
                };
                let step = self
                    .serve_server(session, ctx, &routes, server)
                    .instrument(span)
                    .await?;
                match step {
                    Step::Done(handled) => return Ok(handled),
                    Step::Reply(reply) => reply,
                }
            }
        };
        send(session, reply).await?;
        Ok(true)
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Self::CTX) {
        if let Some(rec) = ctx.record.take() {
            let status = session.response_written().map_or(0, |r| r.status.as_u16());
            rec.finish(status);
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        // Only pass-through requests get here; the rest are answered in request_filter.
        let Some(t) = &ctx.pass else {
            return Err(Error::explain(
                ErrorType::HTTPStatus(502),
                "no upstream route for this request",
            ));
        };
        let sni = t.host.split(':').next().unwrap_or_default().to_string();
        let mut peer = HttpPeer::new(t.addr, t.tls, sni);
        peer.options.connection_timeout = Some(t.connect);
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut pingora::http::RequestHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        let Some(t) = &ctx.pass else {
            return Ok(());
        };
        let uri = t
            .path_and_query
            .parse()
            .map_err(|e| Error::explain(ErrorType::InternalError, format!("upstream path: {e}")))?;
        upstream_request.set_uri(uri);
        upstream_request.insert_header("host", t.host.clone())?;
        for h in &t.drop_headers {
            upstream_request.remove_header(h.as_str());
        }
        for (k, v) in &t.headers {
            upstream_request.insert_header(k.clone(), v.clone())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_route_to_servers() {
        let routes = Routes::default();
        assert!(
            matches!(target(&routes, "/servers/demo/mcp", None), Target::UnknownServer(n) if n == "demo")
        );
        assert!(matches!(
            target(&routes, "/servers/demo/mcp/", None),
            Target::UnknownServer(_)
        ));
        assert!(matches!(
            target(&routes, "/servers//mcp", None),
            Target::NotFound
        ));
        assert!(matches!(
            target(&routes, "/servers/a/b/mcp", None),
            Target::NotFound
        ));
        assert!(matches!(target(&routes, "/healthz", None), Target::Health));
        assert!(matches!(
            target(&routes, "/mcp", Some("x.example")),
            Target::NotFound
        ));
        assert!(matches!(target(&routes, "/other", None), Target::NotFound));
    }
}
