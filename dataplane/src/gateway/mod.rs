//! The pingora side: route each HTTP request to a virtual server, then answer it from memory
//! or forward it to an upstream and stream the answer back (see `transport` for the rules).
//!
//! One request's way, in order (pingora's `request_filter` runs all of it; only pass-through
//! goes on to pingora's own proxy phases). `Gateway` is the edge and runs the phases up to
//! `decide`; `execute` hands what was decided to its `Forwarder` (`forwarder`), the upstream
//! side, with the request's `Scope` (its routes, virtual server and client headers):
//!
//! ```text
//!  edge      request_filter (here)     header size (431)
//!  route     endpoint()                the path: /healthz, /readyz, /metrics, or
//!                                      /servers/{name}/mcp | sse | ws | messages and
//!                                      the virtual server, from the routes in force
//!  edge      request_filter            Origin and Host checks of MCP endpoints
//!  admit     serve::serve_server       authentication (admission), the record counted
//!                                      in metrics and the access log (access)
//!  read      serve::read_body          the body, within the server's limit
//!  decide    transport::handle         sans-IO, called by dispatch: the era, the
//!                                      session, authorization and rate limits, and what
//!                                      to do: a transport::Outcome
//!  execute   serve::dispatch           a Reply, or the Forwarder's forward (forward),
//!                                      listen (listen), subscriptions (subscriptions),
//!                                      create_task, task_request and list_tasks (tasks),
//!                                      relay, open_session and fanout (forward)
//!  call      forward / resilience      a call goes through its upstream kind's Caller
//!                                      (crate::backends; MCP through the session pool,
//!                                      upstreams) under the circuit breaker and retries
//!                                      (resilience). MCP upstreams add what lives in
//!                                      their sessions: questions kept and streams
//!                                      reopened (questions, outstanding), held calls of
//!                                      stateless clients (held), tasks, and answers
//!                                      relayed to questions, which use the pool directly
//!  relay     out                       a streamed answer as events, resumable (replay);
//!                                      a whole one as a Reply (send here, or a channel's
//!                                      message); how it ended: metrics::Served
//! ```
//!
//! Every refusal and failure the gateway makes itself, at any phase, is a row of one table,
//! `crate::errors::GatewayError`: its words, JSON-RPC code, HTTP status per era, headers and
//! metric label. Authentication refusals (`admission`) and policy refusals
//! (`transport::Refusal`) carry their own codes and challenges; the plain-text answers of
//! the edge (431, 404 for unknown paths, /healthz and /readyz) are not JSON-RPC.
//!
//! Pass-through servers leave after `admit` (their per-request policies screened by
//! `serve::screen_passthrough` with `transport::screen`), and pingora proxies them to the
//! peer `passthrough` builds, through `upstream_peer`. WebSocket and legacy SSE clients
//! enter at `edge` and send each message through `dispatch` over a channel (`channel`,
//! `websocket`, `legacy`).

use crate::errors::GatewayError;
use crate::metrics::metrics;
use crate::policy::jwks::JwksCache;
use crate::policy::origin::OriginPolicy;
use crate::policy::ratelimit::RateLimiter;
use crate::routes::{Routes, ServerView};
use crate::signals::Signals;
use crate::transport::Reply;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::{HttpPeer, Session as Downstream};
use pingora::proxy::ProxyHttp;
use pingora::{Error, ErrorType, Result};
use std::sync::Arc;
use tracing::Instrument;

mod access;
mod admission;
mod channel;
mod forward;
mod forwarder;
mod held;
mod legacy;
mod listen;
mod out;
mod outstanding;
mod passthrough;
pub use passthrough::PeerTls;
mod questions;
mod replay;
mod resilience;
mod serve;
mod slots;
mod subscriptions;
mod tasks;
mod websocket;

use access::Record;
use admission::resource_metadata;
use forwarder::Forwarder;
use legacy::LegacyClients;
use passthrough::PassTarget;

/// The gateway's request handler: the edge (what the pipeline's edge, route, admit, read
/// and decide phases need), and the forwarder that executes what was decided. Cheap to
/// share; reads the current routes per request.
pub struct Gateway {
    routes: Arc<ArcSwap<Routes>>,
    max_body_bytes: usize,
    max_header_bytes: usize,
    /// Longest a client may take to send a whole body.
    body_timeout: std::time::Duration,
    /// How long an idle keep-alive connection waits for its next request.
    keepalive_timeout: std::time::Duration,
    jwks: JwksCache,
    limiter: RateLimiter,
    /// Serves /metrics on this listener.
    metrics_here: bool,
    /// Serves only /metrics, /healthz and /readyz (a separate admin listener).
    admin_only: bool,
    /// Origin and Host checks for MCP endpoints.
    origins: OriginPolicy,
    /// Legacy HTTP+SSE client streams open here.
    legacy: LegacyClients,
    /// WebSocket connections open here, capped, with a share per client.
    websockets: Arc<slots::Slots>,
    /// Sessions' GET streams and `subscriptions/listen` streams open here, likewise.
    listen_streams: Arc<slots::Slots>,
    subscription_streams: Arc<slots::Slots>,
    /// Proxies whose `X-Forwarded-For` names the client.
    trusted_proxies: Vec<ipnet::IpNet>,
    /// Sessions a DELETE ended, here or on another data plane.
    ended: Arc<crate::ended_sessions::EndedSessions>,
    /// The upstream side: calls and everything that outlives one.
    calls: Forwarder,
}

impl Gateway {
    /// A gateway over `routes` (swapped whole when a snapshot arrives).
    pub fn new(routes: Arc<ArcSwap<Routes>>, max_body_bytes: usize) -> Self {
        Gateway {
            routes: routes.clone(),
            max_body_bytes,
            max_header_bytes: 64 << 10,
            body_timeout: std::time::Duration::from_secs(30),
            keepalive_timeout: std::time::Duration::from_secs(60),
            jwks: JwksCache::default(),
            limiter: RateLimiter::default(),
            metrics_here: true,
            admin_only: false,
            origins: OriginPolicy::default(),
            legacy: LegacyClients::default(),
            websockets: websocket_slots(websocket::MAX_CONNECTIONS),
            listen_streams: listen_slots(MAX_STREAMS),
            subscription_streams: subscription_slots(MAX_STREAMS),
            trusted_proxies: Vec::new(),
            ended: Arc::default(),
            calls: Forwarder::new(routes),
        }
    }

    /// Tells client streams about route changes `changes` announces.
    pub fn with_changes(mut self, changes: tokio::sync::watch::Receiver<u64>) -> Self {
        self.calls.changes = changes;
        self
    }

    /// Checks `Origin` (and, on loopback listeners, `Host`) of MCP requests.
    pub fn with_origin_policy(mut self, origins: OriginPolicy) -> Self {
        self.origins = origins;
        self
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

    /// Keeps at most `n` WebSocket connections open (default 10 000), a tenth of them (at
    /// least one) for any one client.
    pub fn with_max_websockets(mut self, n: usize) -> Self {
        self.websockets = websocket_slots(n);
        self
    }

    /// Answers 408 to a client whose whole body takes longer than `body`, and closes
    /// keep-alive connections idle for `keepalive` (pingora's default waits for ever).
    pub fn with_client_timeouts(
        mut self,
        body: std::time::Duration,
        keepalive: std::time::Duration,
    ) -> Self {
        self.body_timeout = body;
        self.keepalive_timeout = keepalive;
        self
    }

    /// Keeps at most `n` GET streams and `n` `subscriptions/listen` streams open (default
    /// 10 000 each), a tenth of them (at least one) for any one client.
    pub fn with_max_streams(mut self, n: usize) -> Self {
        self.listen_streams = listen_slots(n);
        self.subscription_streams = subscription_slots(n);
        self
    }

    /// Refuses requests whose headers add up to more than `n` bytes (431).
    pub fn with_max_header_bytes(mut self, n: usize) -> Self {
        self.max_header_bytes = n;
        self
    }

    /// Takes the client's address from `X-Forwarded-For` when the peer is one of `proxies`
    /// (see `serve::client_address`).
    pub fn with_trusted_proxies(mut self, proxies: Vec<ipnet::IpNet>) -> Self {
        self.trusted_proxies = proxies;
        self
    }

    /// Remembers ended sessions in `ended` (shared with the discovery client, which reports
    /// them to the control plane and learns those other data planes ended).
    pub fn with_ended_sessions(mut self, ended: Arc<crate::ended_sessions::EndedSessions>) -> Self {
        self.ended = ended;
        self
    }

    /// Records what upstream calls did into `signals` (reported to the control plane).
    pub fn with_signals(mut self, signals: Arc<Signals>) -> Self {
        self.calls.signals = signals;
        self
    }
}

/// Reads a client's `Last-Event-ID` as the gateway does (for the fuzzers).
#[cfg(fuzzing)]
pub fn fuzz_last_event_id(id: &str) -> bool {
    replay::parse(id).is_some()
}

/// Most GET streams, and most `subscriptions/listen` streams, one data plane keeps open (a
/// tenth of each per client).
const MAX_STREAMS: usize = 10_000;

/// Places for `n` WebSocket connections.
fn websocket_slots(n: usize) -> Arc<slots::Slots> {
    slots::Slots::new(n, "WebSocket connections", || {
        GatewayError::TooManyWebSockets
    })
}

/// Places for `n` sessions' GET streams.
fn listen_slots(n: usize) -> Arc<slots::Slots> {
    slots::Slots::new(n, "GET streams", || GatewayError::TooManyStreams)
}

/// Places for `n` `subscriptions/listen` streams.
fn subscription_slots(n: usize) -> Arc<slots::Slots> {
    slots::Slots::new(n, "subscription streams", || GatewayError::TooManyStreams)
}

/// Longest silence allowed inside a streamed upstream answer when the resource sets none.
pub const DEFAULT_IDLE: std::time::Duration = std::time::Duration::from_secs(300);

/// Where a request path points.
enum Endpoint {
    Server(Arc<ServerView>),
    /// A legacy (HTTP+SSE) client's event stream.
    LegacyStream(Arc<ServerView>),
    /// A legacy client's POST.
    LegacyPost(Arc<ServerView>),
    /// A WebSocket client's upgrade request.
    WebSocket(Arc<ServerView>),
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

fn endpoint(routes: &Routes, path: &str, host: Option<&str>) -> Endpoint {
    if let Some(resource) = path.strip_prefix(RESOURCE_METADATA) {
        return match endpoint(routes, resource, host) {
            Endpoint::Server(s) => Endpoint::ResourceMetadata(s),
            other @ Endpoint::UnknownServer(_) => other,
            _ => Endpoint::NotFound,
        };
    }
    if let Some(rest) = path.strip_prefix("/servers/") {
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let Some((name, endpoint)) = rest.split_once('/').filter(|(n, _)| !n.is_empty()) else {
            return Endpoint::NotFound;
        };
        let make: fn(Arc<ServerView>) -> Endpoint = match endpoint {
            "mcp" => Endpoint::Server,
            "sse" => Endpoint::LegacyStream,
            "messages" => Endpoint::LegacyPost,
            "ws" => Endpoint::WebSocket,
            _ => return Endpoint::NotFound,
        };
        return routes
            .server(name)
            .map_or_else(|| Endpoint::UnknownServer(name.to_string()), make);
    }
    match path {
        "/mcp" | "/mcp/" => host
            .and_then(|h| routes.server_for_host(h))
            .map_or(Endpoint::NotFound, Endpoint::Server),
        "/healthz" => Endpoint::Health,
        "/readyz" => Endpoint::Ready,
        "/metrics" => Endpoint::Metrics,
        _ => Endpoint::NotFound,
    }
}

fn header<'a>(session: &'a Downstream, name: &str) -> Option<&'a str> {
    session
        .req_header()
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
}

/// The host the request names: its `Host` header, or on HTTP/2 its `:authority` (which
/// pingora keeps in the URI).
fn request_host(session: &Downstream) -> Option<&str> {
    header(session, "host").or_else(|| session.req_header().uri.authority().map(|a| a.as_str()))
}

async fn send(session: &mut Downstream, reply: Reply) -> Result<()> {
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

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn new_ctx(&self) -> Self::CTX {
        Ctx::default()
    }

    async fn request_filter(&self, session: &mut Downstream, ctx: &mut Self::CTX) -> Result<bool> {
        // A connection kept alive waits this long for its next request, not for ever.
        session.set_keepalive(Some(self.keepalive_timeout.as_secs().max(1)));
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
        let host = request_host(session).map(str::to_string);
        let endpoint = match endpoint(&routes, &path, host.as_deref()) {
            t @ (Endpoint::Health | Endpoint::Ready | Endpoint::Metrics) if self.admin_only => t,
            _ if self.admin_only => Endpoint::NotFound,
            Endpoint::Metrics if !self.metrics_here => Endpoint::NotFound,
            t => t,
        };
        if let Endpoint::Server(server)
        | Endpoint::LegacyStream(server)
        | Endpoint::LegacyPost(server)
        | Endpoint::WebSocket(server) = &endpoint
        {
            let claimed = |h: &str| routes.server_for_host(h).is_some();
            let checked = self
                .origins
                .check(header(session, "origin"), host.as_deref(), &claimed);
            if let Err(why) = checked {
                tracing::info!(server = %server.name, %why, "request refused");
                send(session, GatewayError::OriginRefused(why).refusal()).await?;
                return Ok(true);
            }
        }
        let reply = match endpoint {
            Endpoint::Health => text(200, "ok\n"),
            Endpoint::Metrics => Reply {
                status: 200,
                headers: vec![("content-type", "text/plain; version=0.0.4".into())],
                body: metrics().render(),
                error_code: None,
            },
            Endpoint::Ready if routes.version.is_empty() => text(503, "no snapshot yet\n"),
            Endpoint::Ready => text(200, &format!("ready, snapshot {}\n", routes.version)),
            Endpoint::NotFound => text(404, "not found: MCP endpoints are /servers/{name}/mcp (streamable HTTP), /servers/{name}/sse (HTTP+SSE) and /servers/{name}/ws (WebSocket)\n"),
            Endpoint::UnknownServer(name) => GatewayError::UnknownServer(name).refusal(),
            Endpoint::ResourceMetadata(server) => resource_metadata(session, &server),
            Endpoint::LegacyStream(server) => {
                self.legacy_stream(session, ctx, &server).await?;
                return Ok(true);
            }
            Endpoint::WebSocket(server) => {
                self.websocket(session, ctx, &server).await?;
                return Ok(true);
            }
            Endpoint::LegacyPost(server) => {
                let client =
                    legacy::key_of(session).and_then(|k| self.legacy.get(&k, &server.name));
                let Some(client) = client else {
                    send(session, GatewayError::UnknownLegacyClient.refusal()).await?;
                    return Ok(true);
                };
                match self
                    .serve_server(session, ctx, &routes, server, Some(client))
                    .await?
                {
                    Step::Done(handled) => return Ok(handled),
                    Step::Reply(reply) => reply,
                }
            }
            Endpoint::Server(server) => {
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
                    .serve_server(session, ctx, &routes, server, None)
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

    async fn logging(&self, session: &mut Downstream, _e: Option<&Error>, ctx: &mut Self::CTX) {
        if let Some(rec) = ctx.record.take() {
            let status = session.response_written().map_or(0, |r| r.status.as_u16());
            rec.finish(status);
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Downstream,
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
        let mut peer = HttpPeer::new(t.addr(), t.tls, sni);
        peer.options.connection_timeout = Some(t.connect);
        if let Some(tls) = &t.peer_tls {
            tls.apply(&mut peer);
        }
        Ok(Box::new(peer))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Downstream,
        _peer: &HttpPeer,
        ctx: &mut Self::CTX,
        mut e: Box<Error>,
    ) -> Box<Error> {
        // Nothing was sent: the next address the upstream's host resolves to may answer.
        if ctx.pass.as_mut().is_some_and(PassTarget::next_address) {
            e.set_retry(true);
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Downstream,
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
            matches!(endpoint(&routes, "/servers/demo/mcp", None), Endpoint::UnknownServer(n) if n == "demo")
        );
        assert!(matches!(
            endpoint(&routes, "/servers/demo/mcp/", None),
            Endpoint::UnknownServer(_)
        ));
        assert!(matches!(
            endpoint(&routes, "/servers//mcp", None),
            Endpoint::NotFound
        ));
        assert!(matches!(
            endpoint(&routes, "/servers/a/b/mcp", None),
            Endpoint::NotFound
        ));
        assert!(matches!(
            endpoint(&routes, "/healthz", None),
            Endpoint::Health
        ));
        assert!(matches!(
            endpoint(&routes, "/mcp", Some("x.example")),
            Endpoint::NotFound
        ));
        assert!(matches!(
            endpoint(&routes, "/other", None),
            Endpoint::NotFound
        ));
    }
}
