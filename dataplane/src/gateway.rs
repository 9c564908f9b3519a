//! The pingora side: route each HTTP request to a virtual server, then answer it from memory
//! or forward it to an upstream and stream the answer back (see `transport` for the rules).

use crate::jsonrpc::{self, RpcError};
use crate::routes::{Routes, ServerView, UpstreamEntry};
use crate::signals::Signals;
use crate::transport::{self, Forward, Outcome, Reply, RequestInfo};
use crate::upstreams::UpstreamPool;
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
use switchboard_config::kinds::upstream::McpTransport;
use switchboard_upstream::{is_event_stream, json_events, UpstreamError};

/// The gateway's request handler; cheap to share, reads the current routes per request.
pub struct Gateway {
    routes: Arc<ArcSwap<Routes>>,
    max_body_bytes: usize,
    upstreams: UpstreamPool,
    signals: Arc<Signals>,
}

impl Gateway {
    /// A gateway over `routes` (swapped whole when a snapshot arrives).
    pub fn new(routes: Arc<ArcSwap<Routes>>, max_body_bytes: usize) -> Self {
        Gateway {
            routes,
            max_body_bytes,
            upstreams: UpstreamPool::default(),
            signals: Arc::default(),
        }
    }

    /// Records what upstream calls did into `signals` (reported to the control plane).
    pub fn with_signals(mut self, signals: Arc<Signals>) -> Self {
        self.signals = signals;
        self
    }

    /// Sends a call upstream and streams the answer back with the client's id restored.
    async fn forward(&self, session: &mut Session, routes: &Routes, f: Forward) -> Result<()> {
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
            return send(
                session,
                fail(format!("upstream `{}` is not in this snapshot", f.upstream)),
            )
            .await;
        };
        if let Some(why) = routes.unhealthy(&f.upstream) {
            return send(session, fail(unhealthy_message(&f.upstream, why))).await;
        }
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
        if spec
            .mcp
            .as_ref()
            .is_some_and(|m| m.transport == McpTransport::Sse)
        {
            let reply = match self.upstreams.call_legacy(&f.upstream, &spec, &body).await {
                Ok(msg) => {
                    self.signals.success(&f.upstream);
                    json_reply(msg)
                }
                Err(e) => {
                    self.signals.failure(&f.upstream, &e.to_string());
                    tracing::warn!(upstream = %f.upstream, error = %e, "upstream call failed");
                    fail(format!("upstream `{}` failed: {e}", f.upstream))
                }
            };
            return send(session, reply).await;
        }
        let resp = match self
            .upstreams
            .send(&f.upstream, &spec, &body, f.session.as_ref())
            .await
        {
            Ok(r) => {
                self.signals.success(&f.upstream);
                r
            }
            Err(e) => {
                if !matches!(e, UpstreamError::Rpc { .. }) {
                    self.signals.failure(&f.upstream, &e.to_string());
                }
                tracing::warn!(upstream = %f.upstream, error = %e, "upstream call failed");
                return send(
                    session,
                    fail(format!("upstream `{}` failed: {e}", f.upstream)),
                )
                .await;
            }
        };
        if !is_event_stream(&resp) {
            let reply = match resp
                .bytes()
                .await
                .map(|b| serde_json::from_slice::<Value>(&b))
            {
                Ok(Ok(msg)) => json_reply(msg),
                Ok(Err(e)) => fail(format!("upstream `{}` sent invalid JSON: {e}", f.upstream)),
                Err(e) => fail(format!(
                    "upstream `{}` broke off its answer: {e}",
                    f.upstream
                )),
            };
            return send(session, reply).await;
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
        let idle = spec.timeouts.idle.unwrap_or(DEFAULT_IDLE);
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
                        return Ok(());
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
                    return session.write_response_body(Some(wire), true).await;
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
    UnknownServer(String),
    Health,
    Ready,
    NotFound,
}

fn target(routes: &Routes, path: &str, host: Option<&str>) -> Target {
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
        id: Value,
        result: Value,
        mut session: crate::session::Session,
    ) -> Reply {
        let opening = mcp_upstreams(routes, server).map(|(name, spec)| {
            let session = &session;
            async move { (name, self.upstreams.open_for(name, &spec, session).await) }
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
                let outcome = match self.upstreams.send(name, &spec, &body, Some(session)).await {
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
    ) -> Result<std::result::Result<Vec<u8>, Reply>> {
        let too_large = || {
            Reply::rpc_error(
                413,
                jsonrpc::INVALID_REQUEST,
                format!("request body is larger than {} bytes", self.max_body_bytes),
            )
        };
        let declared = header(session, "content-length").and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > self.max_body_bytes) {
            return Ok(Err(too_large()));
        }
        let mut body = Vec::with_capacity(declared.unwrap_or(0));
        while let Some(chunk) = session.read_request_body().await? {
            if body.len() + chunk.len() > self.max_body_bytes {
                return Ok(Err(too_large()));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Ok(body))
    }
}

/// Where a pass-through request goes; decided in `request_filter`, used by pingora's proxy.
pub struct PassTarget {
    addr: std::net::SocketAddr,
    tls: bool,
    /// Host header (and SNI) for the upstream.
    host: String,
    path_and_query: String,
    headers: Vec<(String, String)>,
    connect: std::time::Duration,
}

/// Per-request state.
#[derive(Default)]
pub struct Ctx {
    pass: Option<PassTarget>,
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
        let routes = self.routes.load_full();
        let path = session.req_header().uri.path().to_string();
        let host = header(session, "host").map(str::to_string);
        let reply = match target(&routes, &path, host.as_deref()) {
            Target::Health => text(200, "ok\n"),
            Target::Ready if routes.version.is_empty() => text(503, "no snapshot yet\n"),
            Target::Ready => text(200, &format!("ready, snapshot {}\n", routes.version)),
            Target::NotFound => text(404, "not found: MCP endpoints are /servers/{name}/mcp\n"),
            Target::UnknownServer(name) => transport::unknown_server(&name),
            Target::Server(server) if server.passthrough.is_some() => {
                let upstream = server.passthrough.clone().unwrap_or_default();
                let query = session.req_header().uri.query().map(str::to_string);
                match self.pass_target(&routes, &upstream, query.as_deref()).await {
                    Ok(t) => {
                        // pingora proxies the request and streams the answer as-is.
                        ctx.pass = Some(t);
                        return Ok(false);
                    }
                    Err(why) => Reply::rpc_error(
                        502,
                        jsonrpc::INTERNAL_ERROR,
                        format!("pass-through to `{upstream}`: {why}"),
                    ),
                }
            }
            Target::Server(server) => {
                let body = match self.read_body(session).await? {
                    Ok(b) => b,
                    Err(reply) => {
                        send(session, reply).await?;
                        // The rest of an oversized body is not worth reading.
                        session.set_keepalive(None);
                        return Ok(true);
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
                };
                match transport::handle(&server, &info, &body) {
                    Outcome::Reply(reply) => reply,
                    Outcome::Initialize {
                        id,
                        result,
                        session,
                    } => {
                        self.open_session(&routes, &server, id, result, session)
                            .await
                    }
                    Outcome::Fanout {
                        id,
                        method,
                        params,
                        session,
                    } => {
                        self.fanout(&routes, &server, &method, &params, &session)
                            .await;
                        Reply::json(200, &jsonrpc::result_response(&id, json!({})))
                    }
                    Outcome::Terminate(session) => {
                        self.upstreams
                            .close_for(&session, &|name| routes.upstream(name));
                        Reply::empty(200)
                    }
                    Outcome::Forward(f) => {
                        tracing::debug!(server = %server.name, upstream = %f.upstream, method = %f.method, "forwarding");
                        self.forward(session, &routes, f).await?;
                        return Ok(true);
                    }
                }
            }
        };
        send(session, reply).await?;
        Ok(true)
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
