//! The streamable-HTTP rules for one virtual-server endpoint, independent of the HTTP server
//! that carries them: which status, headers and body answer which request.

use crate::errors::GatewayError;
use crate::jsonrpc::{self, Message, RpcError};
use crate::mcp::modern::{self, RoutingHeaders};
use crate::mcp::{local, versions};
use crate::policy::auth::Principal;
use crate::policy::authz::{target_of, Target};
pub use crate::reply::Reply;
use crate::routes::{ServerView, TaskSupport};
use crate::session::{Session, Unusable};
use serde_json::{json, Value};
use std::time::Duration;

/// The parts of an HTTP request the rules look at.
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    pub method: String,
    pub content_type: Option<String>,
    pub accept: Option<String>,
    pub session_id: Option<String>,
    pub protocol_version: Option<String>,
    /// `Mcp-Method` (stateless era).
    pub mcp_method: Option<String>,
    /// `Mcp-Name` (stateless era).
    pub mcp_name: Option<String>,
    /// `Mcp-Param-*` headers (stateless era): (name after the prefix, lowercase; value).
    pub mcp_params: Vec<(String, String)>,
    /// Who is calling (authenticated before the rules here run).
    pub caller: Principal,
}

/// Admission checks that need state the rules here do not keep (rate limits).
pub trait Gate {
    /// Lets a request through, or says why not.
    fn admit(&self, method: &str, target: Target<'_>) -> Result<(), Refusal>;

    /// Whether session `id` was ended by a DELETE (here or on another replica).
    fn ended(&self, _id: &str) -> bool {
        false
    }
}

/// A gate that admits everything.
pub struct AdmitAll;

impl Gate for AdmitAll {
    fn admit(&self, _: &str, _: Target<'_>) -> Result<(), Refusal> {
        Ok(())
    }
}

/// Why a request was not let through.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub error: RpcError,
    /// When the client may try again (`Retry-After`).
    pub retry_after: Option<Duration>,
}

impl Refusal {
    /// The answer: a JSON-RPC error, with the era's HTTP status (inside a session the
    /// status is 200, so the session's other requests go on) and `Retry-After` if known.
    fn reply(self, id: &Value, stateless: bool) -> Reply {
        let status = if stateless {
            modern::http_status(self.error.code)
        } else {
            200
        };
        let mut reply = Reply::json(status, &jsonrpc::error_response(id, &self.error));
        if let Some(wait) = self.retry_after {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            reply.headers.push(("retry-after", secs.max(1).to_string()));
        }
        reply
    }
}

/// Authorization, request limits and the gate, for one request.
fn admit(
    server: &ServerView,
    req: &RequestInfo,
    gate: &dyn Gate,
    method: &str,
    params: &Value,
) -> Result<(), Refusal> {
    if method == "initialize" {
        // Anyone the server admits may initialize; but it costs a session on every
        // upstream, so it counts against rate limits.
        return gate.admit(method, Target::Nothing);
    }
    if matches!(method, "ping" | "server/discover") {
        return Ok(());
    }
    let target = target_of(method, params);
    if !server.authz.allows(&req.caller, method, target) {
        let who = if req.caller.subject.is_empty() {
            "anonymous callers".to_string()
        } else {
            format!("`{}`", req.caller.subject)
        };
        let what = match target {
            Target::Tool(n) => format!("call tool `{n}`"),
            Target::Prompt(n) => format!("get prompt `{n}`"),
            Target::Resource(u) => format!("read resource `{u}`"),
            Target::Nothing => format!("use {method}"),
        };
        return Err(Refusal {
            error: RpcError::new(
                jsonrpc::FORBIDDEN,
                format!("forbidden: {who} may not {what}"),
            ),
            retry_after: None,
        });
    }
    if let Some(max) = server.limits.max_argument_bytes {
        let size = params
            .get("arguments")
            .map_or(0, |a| serde_json::to_vec(a).map_or(0, |v| v.len()));
        if size > max {
            return Err(Refusal {
                error: RpcError::invalid_params(format!(
                    "arguments are {size} bytes; this server takes at most {max}"
                )),
                retry_after: None,
            });
        }
    }
    gate.admit(method, target)
}

/// Whether a pass-through server has policies that must read a request to apply
/// (authorization rules, argument limits, rate limits).
pub fn screens(server: &ServerView) -> bool {
    !server.authz.is_open()
        || server.limits.max_argument_bytes.is_some()
        || !server.rate_limits.is_empty()
}

/// Applies a pass-through server's policies to one request, which the upstream answers
/// if they let it through: the refusal to answer with instead, if any. A body that is not
/// one JSON-RPC message (a batch, say) is refused, since its policies cannot be checked;
/// notifications and responses pass.
pub fn screen(
    server: &ServerView,
    req: &RequestInfo,
    body: &[u8],
    gate: &dyn Gate,
    seen: &mut Seen,
) -> Option<Reply> {
    // What cannot be read cannot be screened: refused, not waved through.
    let message = match jsonrpc::parse(body) {
        Ok(m) => m,
        Err(rejected) => return Some(Reply::json(400, &rejected.to_response())),
    };
    let stateless = claims_modern(&message);
    let Message::Request { id, method, params } = message else {
        return None;
    };
    seen.method = Some(crate::metrics::method_label(&method).to_string());
    admit(server, req, gate, &method, &params)
        .err()
        .map(|refusal| refusal.reply(&id, stateless))
}

/// Most resource URIs one `subscriptions/listen` may name; each costs an upstream
/// subscription, so the rest are not honored.
pub const MAX_LISTEN_URIS: usize = 64;

/// What to do with a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Answer with this.
    Reply(Reply),
    /// A stateless client opens a `subscriptions/listen` stream.
    Subscribe(Subscribe),
    /// Send this call to an upstream and stream its answer back.
    Forward(Box<Forward>),
    /// A session-era client lists its tasks: those of each upstream of its session.
    ListTasks { id: Value, session: Session },
    /// A stateless client asks about a task (`tasks/get`, `tasks/update`, `tasks/cancel`).
    Task {
        id: Value,
        method: String,
        params: Value,
    },
    /// A client opens a session: open its upstream sessions, then answer `result` with
    /// the sealed session id.
    Initialize {
        id: Value,
        result: Value,
        session: Session,
    },
    /// A client ends its session: answer 200 and end its upstream sessions.
    Terminate(Session),
    /// A client opens its session's SSE stream: relay what its upstream sessions send on
    /// their own (requests to the client, notifications).
    Listen(Session),
    /// The client answers a request an upstream sent it: deliver `message` (with the
    /// upstream's own id) to `upstream` in the client's session, then answer 202.
    Relay {
        upstream: String,
        message: Value,
        session: Session,
    },
    /// A client notification every upstream of its session must see (e.g. its roots
    /// changed): send it to each, then answer 202.
    Notify {
        method: String,
        params: Value,
        session: Session,
    },
    /// Send this request to every upstream of the client's session (e.g. `logging/setLevel`)
    /// and answer `{}` once they have had it.
    Fanout {
        id: Value,
        method: String,
        params: Value,
        session: Session,
    },
}

/// A stateless client's `subscriptions/listen`: its request id, its filter, and the
/// upstreams serving the resource URIs it names (URIs served here map to none).
#[derive(Debug, Clone, PartialEq)]
pub struct Subscribe {
    pub id: Value,
    pub filter: Value,
    pub routes: Vec<(String, Option<String>)>,
}

/// A request the gateway hands to an upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct Forward {
    /// The id the client used; the upstream sees a gateway id instead.
    pub client_id: Value,
    pub upstream: String,
    pub method: String,
    /// Params as the upstream must see them (tool name rewritten).
    pub params: Value,
    /// The client speaks the stateless era: results need its shape, errors its statuses.
    pub stateless: bool,
    /// The virtual server the call came through (names the gateway in results).
    pub server: String,
    /// The client's session (None in the stateless era): which upstream session to use.
    pub session: Option<Session>,
    /// The upstream says repeating this call does no harm (reads, idempotent tools).
    pub idempotent: bool,
    /// Extra headers for the upstream (e.g. the client's token, when forwarded).
    pub headers: Vec<(String, String)>,
    /// What a stateless client says it can do (`roots`, `sampling`, `elicitation`): the
    /// upstream session the call uses offers the same, so the upstream may ask for them.
    pub client_capabilities: Value,
    /// A stateless client's retry of a call that needed its input (`InputRequiredResult`).
    pub continuation: Option<Continuation>,
    /// Who is calling (a held call may be continued by its caller only).
    pub caller: String,
    /// Where from (an anonymous caller's share of the data plane's caps is per address).
    pub client_ip: String,
    /// The least severe log level a stateless client asked to hear about during this call
    /// (`_meta` `io.modelcontextprotocol/logLevel`); None: no log messages at all.
    pub log_level: Option<String>,
    /// Run as a task: the stateless client follows tasks and the tool runs as one upstream.
    pub task: bool,
}

pub use crate::mcp::modern::Continuation;

/// The protocol version assumed when a client sends no `MCP-Protocol-Version` header.
pub const DEFAULT_VERSION: &str = "2025-03-26";

/// What a request turned out to be, for metrics and the access log (bounded values: a
/// method outside MCP's, or a tool the snapshot does not route, is left out).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    pub method: Option<String>,
    pub tool: Option<String>,
}

/// Decides how to answer one request to `server`'s endpoint.
pub fn handle(
    server: &ServerView,
    req: &RequestInfo,
    body: &[u8],
    gate: &dyn Gate,
    seen: &mut Seen,
) -> Outcome {
    match req.method.as_str() {
        "POST" => post(server, req, body, gate, seen),
        "GET" if wants_stream(req) && req.session_id.is_some() && !server.upstreams.is_empty() => {
            match session_of(server, req, gate) {
                Ok(session) => Outcome::Listen(session),
                Err(reply) => Outcome::Reply(reply),
            }
        }
        "DELETE" => match session_of(server, req, gate) {
            Ok(session) => Outcome::Terminate(session),
            Err(reply) => Outcome::Reply(reply),
        },
        _ => Outcome::Reply(other_method(req)),
    }
}

/// Whether a GET asks for the session's SSE stream.
fn wants_stream(req: &RequestInfo) -> bool {
    req.accept
        .as_deref()
        .is_some_and(|a| a.contains("text/event-stream"))
}

fn other_method(req: &RequestInfo) -> Reply {
    match req.method.as_str() {
        "GET" => GatewayError::NoServerStream.refusal(),
        _ => GatewayError::MethodNotAllowed.refusal(),
    }
}

/// The session a request names, if this server sealed it, it is the caller's, it has not
/// expired and no DELETE ended it.
fn session_of(server: &ServerView, req: &RequestInfo, gate: &dyn Gate) -> Result<Session, Reply> {
    let Some(id) = &req.session_id else {
        return Err(GatewayError::MissingSession.refusal());
    };
    let session = match server.sealer.open(id) {
        Some(s) if s.server == server.name => s,
        _ => return Err(GatewayError::UnknownSession.refusal()),
    };
    if let Err(why) = session.usable_by(&req.caller.subject) {
        return Err(match why {
            Unusable::Expired => GatewayError::SessionExpired,
            Unusable::OtherPrincipal => GatewayError::SessionOfOther,
        }
        .refusal());
    }
    if gate.ended(id) {
        return Err(GatewayError::SessionEnded.refusal());
    }
    Ok(session)
}

fn post(
    server: &ServerView,
    req: &RequestInfo,
    body: &[u8],
    gate: &dyn Gate,
    seen: &mut Seen,
) -> Outcome {
    match post_checked(server, req, body, gate, seen) {
        Ok(outcome) => outcome,
        Err(reply) => Outcome::Reply(reply),
    }
}

fn post_checked(
    server: &ServerView,
    req: &RequestInfo,
    body: &[u8],
    gate: &dyn Gate,
    seen: &mut Seen,
) -> Result<Outcome, Reply> {
    let is_json = req.content_type.as_deref().is_some_and(|c| {
        c.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    });
    if !is_json {
        return Err(GatewayError::NotJson.refusal());
    }
    if let Some(accept) = &req.accept {
        let ok = accept.contains("application/json")
            || accept.contains("*/*")
            || accept.contains("application/*");
        if !ok {
            return Err(GatewayError::NotAcceptable.refusal());
        }
    }
    let max_depth = server
        .limits
        .max_json_depth
        .unwrap_or(switchboard_config::kinds::virtual_server::RequestLimits::DEFAULT_JSON_DEPTH);
    let depth = jsonrpc::nesting_depth(body);
    if depth > max_depth {
        return Err(GatewayError::TooDeep {
            depth,
            max: max_depth,
        }
        .refusal());
    }
    let message = match jsonrpc::parse(body) {
        Ok(m) => m,
        Err(rejected) => return Err(Reply::json(400, &rejected.to_response())),
    };
    if let Message::Request { method, params, .. } | Message::Notification { method, params } =
        &message
    {
        seen.method = Some(crate::metrics::method_label(method).to_string());
        let name = params.get("name").and_then(Value::as_str);
        seen.tool = name
            .filter(|n| method == "tools/call" && server.tool_routes.contains_key(*n))
            .map(str::to_string);
    }
    match req.protocol_version.as_deref() {
        Some(v) if versions::is_modern(v) => return Ok(stateless(server, req, message, gate)),
        Some(_) if req.session_id.is_none() && carries_envelope(&message) => {
            // A stateless-era request for a version we do not serve: that era's error.
            return Ok(stateless(server, req, message, gate));
        }
        Some(v) if !versions::is_supported(v) => {
            let all: Vec<&str> = versions::MODERN
                .iter()
                .chain(versions::SUPPORTED.iter())
                .copied()
                .collect();
            let e = modern::unsupported_among(v, &all);
            return Err(Reply::json(
                400,
                &jsonrpc::error_response(&message_id(&message), &e),
            ));
        }
        None if req.session_id.is_none() && claims_modern(&message) => {
            // A stateless request without its headers: say what is wrong with it.
            return Ok(stateless(server, req, message, gate));
        }
        _ => {}
    }
    match message {
        Message::Request { id, method, params } if method == "initialize" => {
            if let Err(refusal) = admit(server, req, gate, &method, &params) {
                return Ok(Outcome::Reply(refusal.reply(&id, false)));
            }
            match local::answer(server, &method, &params, &req.caller) {
                Ok(result) => {
                    let version = result["protocolVersion"]
                        .as_str()
                        .unwrap_or(versions::LATEST);
                    let mut session = Session::new(&server.name, version)
                        .bound(&req.caller.subject, server.sessions.lifetime());
                    session.capabilities = params.get("capabilities").cloned().unwrap_or_default();
                    Ok(Outcome::Initialize {
                        id,
                        result,
                        session,
                    })
                }
                Err(e) => Ok(Outcome::Reply(Reply::json(
                    200,
                    &jsonrpc::error_response(&id, &e),
                ))),
            }
        }
        Message::Request { id, method, params } => {
            let session = session_of(server, req, gate)?;
            if let Err(refusal) = admit(server, req, gate, &method, &params) {
                return Ok(Outcome::Reply(refusal.reply(&id, false)));
            }
            if method == "logging/setLevel" && !server.upstreams.is_empty() {
                return Ok(Outcome::Fanout {
                    id,
                    method,
                    params,
                    session,
                });
            }
            if matches!(
                method.as_str(),
                "tasks/get" | "tasks/result" | "tasks/cancel"
            ) {
                // A task of one of the session's upstreams, by the id the gateway gave it.
                let task = params
                    .get("taskId")
                    .and_then(Value::as_str)
                    .and_then(crate::mcp::relay::unwrap_task)
                    .filter(|(upstream, _)| session.upstreams.contains_key(upstream));
                let Some((upstream, task)) = task else {
                    return Ok(Outcome::Reply(
                        GatewayError::UnknownSessionTask.reply(&id, false),
                    ));
                };
                let mut params = params.clone();
                params["taskId"] = Value::String(task);
                let mut forward = forward_to(server, &id, &method, &upstream, params, false);
                forward.session = Some(session);
                return Ok(Outcome::Forward(Box::new(forward)));
            }
            if method == "tasks/list" && !server.upstreams.is_empty() {
                return Ok(Outcome::ListTasks { id, session });
            }
            if let Some(mut forward) = upstream_route(server, &id, &method, &params, false) {
                forward.session = Some(session);
                return Ok(Outcome::Forward(Box::new(forward)));
            }
            let response = match local::answer(server, &method, &params, &req.caller) {
                Ok(result) => jsonrpc::result_response(&id, result),
                Err(e) => jsonrpc::error_response(&id, &e),
            };
            Ok(Outcome::Reply(Reply::json(200, &response)))
        }
        Message::Response { id, mut body } => {
            let session = session_of(server, req, gate)?;
            let relayed = crate::mcp::relay::unwrap(&id)
                .filter(|(upstream, _)| session.upstreams.contains_key(upstream));
            match relayed {
                Some((upstream, original)) => {
                    body["jsonrpc"] = json!("2.0");
                    body["id"] = original;
                    crate::mcp::relay::task_ids_in(&mut body);
                    Ok(Outcome::Relay {
                        upstream,
                        message: body,
                        session,
                    })
                }
                // An answer to nothing we sent: accepted and dropped, as the spec allows.
                None => Ok(Outcome::Reply(Reply::empty(202))),
            }
        }
        Message::Notification { method, params } => {
            let session = session_of(server, req, gate)?;
            // Roots changes concern every upstream; a cancellation names a request id, which
            // in the client's own upstream sessions is its own id (see `gateway::forward`),
            // so upstreams that do not know it ignore it.
            let for_upstreams = matches!(
                method.as_str(),
                "notifications/roots/list_changed" | "notifications/cancelled"
            );
            if for_upstreams && !server.upstreams.is_empty() {
                return Ok(Outcome::Notify {
                    method,
                    params,
                    session,
                });
            }
            Ok(Outcome::Reply(Reply::empty(202)))
        }
    }
}

fn message_id(message: &Message) -> Value {
    match message {
        Message::Request { id, .. } | Message::Response { id, .. } => id.clone(),
        Message::Notification { .. } => Value::Null,
    }
}

/// Whether a request's envelope names a stateless-era version.
/// Whether a request carries the stateless era's envelope (a protocol version in
/// `params._meta`), whatever version it names.
fn carries_envelope(message: &Message) -> bool {
    let Message::Request { params, .. } = message else {
        return false;
    };
    params
        .pointer("/_meta")
        .is_some_and(|m| m.get(modern::PROTOCOL_VERSION_KEY).is_some())
}

fn claims_modern(message: &Message) -> bool {
    let Message::Request { params, .. } = message else {
        return false;
    };
    params
        .pointer("/_meta")
        .and_then(|m| m.get(modern::PROTOCOL_VERSION_KEY))
        .and_then(Value::as_str)
        .is_some_and(versions::is_modern)
}

/// A 2026-07-28 request: no session; the envelope is checked, then the request is answered
/// or forwarded like any other, and errors carry the era's HTTP statuses.
fn stateless(server: &ServerView, req: &RequestInfo, message: Message, gate: &dyn Gate) -> Outcome {
    let Message::Request { id, method, params } = message else {
        // No client-to-server notifications or responses exist in this era.
        return Outcome::Reply(Reply::empty(202));
    };
    let headers = RoutingHeaders {
        protocol_version: req.protocol_version.clone(),
        method: req.mcp_method.clone(),
        name: req.mcp_name.clone(),
    };
    let fail = |e: RpcError| {
        Outcome::Reply(Reply::json(
            modern::http_status(e.code),
            &jsonrpc::error_response(&id, &e),
        ))
    };
    if let Err(e) = modern::check(&method, &params, &headers) {
        return fail(e);
    }
    // Methods this era removed: 404 with method-not-found, as for any unknown method.
    if matches!(
        method.as_str(),
        "initialize"
            | "logging/setLevel"
            | "ping"
            | "resources/subscribe"
            | "resources/unsubscribe"
    ) {
        return fail(GatewayError::RemovedInEra(method).rpc());
    }
    if let Err(refusal) = admit(server, req, gate, &method, &params) {
        return Outcome::Reply(refusal.reply(&id, true));
    }
    if method == "subscriptions/listen" {
        let filter = params.get("notifications").cloned().unwrap_or_default();
        if !filter.is_object() {
            return fail(GatewayError::ListenWithoutFilter.rpc());
        }
        // Resources the caller may not subscribe to are not honored, like those no one
        // serves; past MAX_LISTEN_URIS none are (each costs an upstream subscription).
        let routes = filter
            .get("resourceSubscriptions")
            .and_then(Value::as_array)
            .map(|uris| {
                uris.iter()
                    .filter_map(Value::as_str)
                    .take(MAX_LISTEN_URIS)
                    .filter(|uri| {
                        server.authz.allows(
                            &req.caller,
                            "resources/subscribe",
                            Target::Resource(uri),
                        )
                    })
                    .map(|uri| {
                        let upstream = (!server.resources.contains_key(uri))
                            .then(|| {
                                server
                                    .resource_upstream(uri)
                                    .or_else(|| server.sole_resources())
                            })
                            .flatten()
                            .map(str::to_string);
                        (uri.to_string(), upstream)
                    })
                    .collect()
            })
            .unwrap_or_default();
        return Outcome::Subscribe(Subscribe { id, filter, routes });
    }
    if matches!(
        method.as_str(),
        "tasks/get" | "tasks/update" | "tasks/cancel"
    ) {
        let capabilities = params
            .get("_meta")
            .and_then(|m| m.get(modern::CLIENT_CAPABILITIES_KEY))
            .unwrap_or(&Value::Null);
        if !modern::follows_tasks(capabilities) {
            return fail(modern::task_capability_missing());
        }
        return Outcome::Task { id, method, params };
    }
    if let Some(mut forward) = upstream_route(server, &id, &method, &params, true) {
        let route = (method == "tools/call")
            .then(|| params.get("name").and_then(Value::as_str))
            .flatten()
            .and_then(|n| server.tool_routes.get(n));
        if let Some(route) = route.filter(|r| !r.mirrored.is_empty()) {
            if let Err(e) = modern::check_mirrored(&route.mirrored, &params, &req.mcp_params) {
                return fail(e);
            }
        }
        // A tool that runs only as a task needs a client that follows tasks.
        let required = route.is_some_and(|r| r.task_support == TaskSupport::Required);
        if required && !forward.task {
            return fail(modern::task_capability_missing());
        }
        forward.caller = req.caller.subject.clone();
        return Outcome::Forward(Box::new(forward));
    }
    match local::answer(server, &method, &params, &req.caller) {
        Ok(mut result) => {
            modern::shape_result(&method, &mut result, &server.name);
            Outcome::Reply(Reply::json(200, &jsonrpc::result_response(&id, result)))
        }
        Err(e) => fail(e),
    }
}

/// A request for `upstream`, with `params` as it must see them.
fn forward_to(
    server: &ServerView,
    id: &Value,
    method: &str,
    upstream: &str,
    mut params: Value,
    stateless: bool,
) -> Forward {
    let mut client_capabilities = Value::Null;
    let mut continuation = None;
    let mut log_level = None;
    if stateless {
        client_capabilities = params
            .get("_meta")
            .and_then(|m| m.get(modern::CLIENT_CAPABILITIES_KEY))
            .cloned()
            .unwrap_or(Value::Null);
        log_level = params
            .get("_meta")
            .and_then(|m| m.get(modern::LOG_LEVEL_KEY))
            .and_then(Value::as_str)
            .map(str::to_string);
        continuation = modern::take_continuation(&mut params);
        // The session era's task augmentation is not this era's: a stateless client's
        // `task` is ignored, as the tasks extension says.
        if let Some(p) = params.as_object_mut() {
            p.remove("task");
        }
        // Upstreams are spoken to in the session era today.
        modern::strip_envelope(&mut params);
    }
    Forward {
        task: false,
        client_capabilities,
        continuation,
        log_level,
        caller: String::new(),
        client_ip: String::new(),
        client_id: id.clone(),
        upstream: upstream.to_string(),
        method: method.to_string(),
        params,
        stateless,
        server: server.name.clone(),
        session: None,
        idempotent: true,
        headers: Vec::new(),
    }
}

/// Calls answered by an upstream: its tools and prompts (by client-visible name, renamed
/// back) and its resources (by URI).
fn upstream_route(
    server: &ServerView,
    id: &Value,
    method: &str,
    params: &Value,
    stateless: bool,
) -> Option<Forward> {
    let forward =
        |upstream: &str, params: Value| forward_to(server, id, method, upstream, params, stateless);
    let name = params.get("name").and_then(Value::as_str).unwrap_or("");
    let renamed = |route: &crate::routes::ToolRoute| {
        let mut p = params.clone();
        p["name"] = Value::String(route.tool.clone());
        forward(&route.upstream, p)
    };
    match method {
        "tools/call" => match server.tool_routes.get(name) {
            Some(route) => {
                let forward = renamed(route);
                Some(Forward {
                    idempotent: route.idempotent,
                    task: stateless
                        && route.task_support != TaskSupport::Forbidden
                        && modern::follows_tasks(&forward.client_capabilities),
                    ..forward
                })
            }
            None => server.sole_tool(name).map(|route| renamed(&route)),
        },
        "prompts/get" => match server.prompt_routes.get(name) {
            Some(route) => Some(renamed(route)),
            None => server.sole_prompt(name).map(|route| renamed(&route)),
        },
        "completion/complete" => {
            let reference = params.get("ref")?;
            match reference.get("type").and_then(Value::as_str)? {
                "ref/prompt" => {
                    let prompt = reference.get("name").and_then(Value::as_str)?;
                    let route = server.prompt_routes.get(prompt)?;
                    let mut p = params.clone();
                    p["ref"]["name"] = Value::String(route.tool.clone());
                    Some(forward(&route.upstream, p))
                }
                "ref/resource" => {
                    let uri = reference.get("uri").and_then(Value::as_str)?;
                    server
                        .resource_upstream(uri)
                        .or_else(|| server.sole_resources())
                        .map(|u| forward(u, params.clone()))
                }
                _ => None,
            }
        }
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            let uri = params.get("uri").and_then(Value::as_str)?;
            if server.resources.contains_key(uri) {
                return None; // served locally
            }
            server
                .resource_upstream(uri)
                .or_else(|| server.sole_resources())
                .map(|u| forward(u, params.clone()))
        }
        _ => None,
    }
}

/// The answer to `initialize` once `session` holds its upstream sessions: the result, and
/// the session sealed into `Mcp-Session-Id`.
pub fn initialized(server: &ServerView, id: &Value, result: Value, session: &Session) -> Reply {
    let mut reply = Reply::json(200, &jsonrpc::result_response(id, result));
    reply
        .headers
        .push(("mcp-session-id", server.sealer.seal(session)));
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> ServerView {
        ServerView {
            name: "demo".into(),
            version: "v1".into(),
            ..ServerView::default()
        }
    }

    fn post_req(session: Option<String>) -> RequestInfo {
        RequestInfo {
            method: "POST".into(),
            content_type: Some("application/json".into()),
            accept: Some("application/json, text/event-stream".into()),
            session_id: session,
            ..RequestInfo::default()
        }
    }

    fn stateless_req(method: &str) -> RequestInfo {
        RequestInfo {
            protocol_version: Some("2026-07-28".into()),
            mcp_method: Some(method.into()),
            ..post_req(None)
        }
    }

    const META: &str = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}"#;

    /// A stateless request to `method` with its headers and envelope.
    fn stateless_call(s: &ServerView, id: u32, method: &str) -> Reply {
        handle(
            s,
            &stateless_req(method),
            format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{{{META}}}}}"#)
                .as_bytes(),
        )
    }

    #[test]
    fn a_listen_names_only_resources_the_caller_may_subscribe_to_and_not_too_many() {
        let mut s = view();
        s.authz = crate::policy::authz::Rules::compile(
            &serde_yaml::from_str("rules:\n  - action: deny\n    resources: ['docs://secret/*', 'file:///secret/*']\n")
                .expect("rules"),
        );
        let listen = |uris: Vec<String>| {
            let body = json!({"jsonrpc": "2.0", "id": 1, "method": "subscriptions/listen",
                "params": {"notifications": {"resourceSubscriptions": uris},
                "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                          "io.modelcontextprotocol/clientCapabilities": {}}}});
            let req = stateless_req("subscriptions/listen");
            let bytes = body.to_string();
            match super::handle(&s, &req, bytes.as_bytes(), &AdmitAll, &mut Seen::default()) {
                Outcome::Subscribe(sub) => {
                    sub.routes.into_iter().map(|(u, _)| u).collect::<Vec<_>>()
                }
                other => panic!("not a subscription: {other:?}"),
            }
        };
        let named = listen(vec![
            "docs://open/a".into(),
            "docs://secret/key".into(),
            "DOCS://SECRET/key".into(),
            "file:///open/../secret/key".into(),
            "file:///open/readme".into(),
        ]);
        assert_eq!(named, ["docs://open/a", "file:///open/readme"]);
        let many = listen((0..500).map(|i| format!("docs://open/{i}")).collect());
        assert_eq!(many.len(), MAX_LISTEN_URIS);
    }

    #[test]
    fn methods_the_stateless_era_removed_are_not_found() {
        let s = view();
        for method in [
            "ping",
            "resources/subscribe",
            "resources/unsubscribe",
            "initialize",
        ] {
            let r = stateless_call(&s, 9, method);
            assert_eq!(
                (r.status, body(&r)["error"]["code"].clone()),
                (404, json!(jsonrpc::METHOD_NOT_FOUND)),
                "{method}"
            );
        }
    }

    #[test]
    fn stateless_era_needs_no_session() {
        let s = view();
        let discover = stateless_call(&s, 1, "server/discover");
        assert_eq!(discover.status, 200);
        let result = &body(&discover)["result"];
        assert_eq!(result["supportedVersions"], json!(["2026-07-28"]));
        assert_eq!(result["resultType"], "complete");
        assert!(!discover.headers.iter().any(|(k, _)| *k == "mcp-session-id"));
        let list = stateless_call(&s, 2, "prompts/list");
        assert_eq!(
            (list.status, body(&list)["result"]["ttlMs"].clone()),
            (200, json!(0))
        );
        // Errors carry the era's statuses: unknown method 404, bad envelope 400.
        let unknown = stateless_call(&s, 3, "nope/nope");
        assert_eq!(unknown.status, 404);
        let bare = handle(
            &s,
            &stateless_req("tools/list"),
            br#"{"jsonrpc":"2.0","id":4,"method":"tools/list"}"#,
        );
        assert_eq!(
            (bare.status, body(&bare)["error"]["code"].clone()),
            (400, json!(-32602))
        );
        // Headers missing entirely: the envelope alone routes it here, and the mismatch is named.
        let headerless = handle(
            &s,
            &post_req(None),
            format!(r#"{{"jsonrpc":"2.0","id":5,"method":"tools/list","params":{{{META}}}}}"#)
                .as_bytes(),
        );
        assert_eq!(
            (
                headerless.status,
                body(&headerless)["error"]["code"].clone()
            ),
            (400, json!(modern::HEADER_MISMATCH))
        );
        let note = handle(
            &s,
            &stateless_req("notifications/cancelled"),
            br#"{"jsonrpc":"2.0","method":"notifications/cancelled"}"#,
        );
        assert_eq!(note.status, 202);
    }

    /// The reply a client sees, standing in for the gateway on initialize and DELETE.
    fn handle(server: &ServerView, req: &RequestInfo, body: &[u8]) -> Reply {
        match super::handle(server, req, body, &AdmitAll, &mut Seen::default()) {
            Outcome::Reply(r) => r,
            Outcome::Initialize {
                id,
                result,
                session,
            } => initialized(server, &id, result, &session),
            Outcome::Terminate(_) => Reply::empty(200),
            Outcome::Fanout { id, .. } => {
                Reply::json(200, &jsonrpc::result_response(&id, json!({})))
            }
            Outcome::Relay { .. } | Outcome::Notify { .. } => Reply::empty(202),
            Outcome::Listen(_) | Outcome::Subscribe(_) => Reply::empty(200),
            Outcome::Forward(f) => panic!("unexpected forward {f:?}"),
            Outcome::Task { method, .. } => panic!("unexpected task request {method}"),
            Outcome::ListTasks { .. } => panic!("unexpected tasks/list"),
        }
    }

    fn body(r: &Reply) -> Value {
        serde_json::from_slice(&r.body).expect("json body")
    }

    #[test]
    fn initialize_then_requests_with_the_session() {
        let s = view();
        let init = handle(
            &s,
            &post_req(None),
            br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}"#,
        );
        assert_eq!(init.status, 200);
        let sid = init
            .headers
            .iter()
            .find(|(k, _)| *k == "mcp-session-id")
            .map(|(_, v)| v.clone())
            .expect("session id");
        let note = handle(
            &s,
            &post_req(Some(sid.clone())),
            br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        );
        assert_eq!((note.status, note.body.len()), (202, 0));
        let ping = handle(
            &s,
            &post_req(Some(sid.clone())),
            br#"{"jsonrpc":"2.0","id":"p","method":"ping"}"#,
        );
        assert_eq!(body(&ping), json!({"jsonrpc":"2.0","id":"p","result":{}}));
        let del = handle(
            &s,
            &RequestInfo {
                method: "DELETE".into(),
                session_id: Some(sid),
                ..RequestInfo::default()
            },
            b"",
        );
        assert_eq!(del.status, 200);
    }

    #[test]
    fn a_session_serves_only_its_principal_until_it_expires_or_is_ended() {
        struct Ended(String);
        impl Gate for Ended {
            fn admit(&self, _: &str, _: Target<'_>) -> Result<(), Refusal> {
                Ok(())
            }
            fn ended(&self, id: &str) -> bool {
                id == self.0
            }
        }
        let s = view();
        let ping = br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
        let as_who = |sid: &str, subject: &str| {
            let mut r = post_req(Some(sid.to_string()));
            r.caller.subject = subject.into();
            r
        };
        let hour = std::time::Duration::from_secs(3600);
        let alices = s
            .sealer
            .seal(&Session::new("demo", "2025-06-18").bound("alice", hour));
        assert_eq!(handle(&s, &as_who(&alices, "alice"), ping).status, 200);
        let stolen = handle(&s, &as_who(&alices, "mallory"), ping);
        assert_eq!(stolen.status, 403);
        assert!(String::from_utf8_lossy(&stolen.body).contains("another principal"));
        assert_eq!(handle(&s, &as_who(&alices, ""), ping).status, 403);
        let spent = s
            .sealer
            .seal(&Session::new("demo", "2025-06-18").bound("alice", std::time::Duration::ZERO));
        let expired = handle(&s, &as_who(&spent, "alice"), ping);
        assert_eq!(expired.status, 404, "a client initializes again after 404");
        assert!(String::from_utf8_lossy(&expired.body).contains("expired"));
        let gate = Ended(alices.clone());
        let mut seen = Seen::default();
        match super::handle(&s, &as_who(&alices, "alice"), ping, &gate, &mut seen) {
            Outcome::Reply(r) => {
                assert_eq!(r.status, 404);
                assert!(String::from_utf8_lossy(&r.body).contains("ended (DELETE)"));
            }
            other => panic!("an ended session served: {other:?}"),
        }
    }

    #[test]
    fn initialize_counts_against_rate_limits() {
        struct Limited;
        impl Gate for Limited {
            fn admit(&self, method: &str, _: Target<'_>) -> Result<(), Refusal> {
                Err(Refusal {
                    error: RpcError::new(jsonrpc::RATE_LIMITED, format!("limited: {method}")),
                    retry_after: None,
                })
            }
        }
        let s = view();
        let init = br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}"#;
        match super::handle(&s, &post_req(None), init, &Limited, &mut Seen::default()) {
            Outcome::Reply(r) => {
                let text = String::from_utf8_lossy(&r.body);
                assert!(text.contains("limited: initialize"), "{text}");
            }
            other => panic!("a limited initialize opened a session: {other:?}"),
        }
    }

    #[test]
    fn transport_errors() {
        let s = view();
        let ping = br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
        assert_eq!(handle(&s, &post_req(None), ping).status, 400, "no session");
        assert_eq!(
            handle(&s, &post_req(Some("forged".into())), ping).status,
            404
        );
        let hour = std::time::Duration::from_secs(3600);
        let other = s
            .sealer
            .seal(&Session::new("other", "2025-06-18").bound("", hour));
        assert_eq!(
            handle(&s, &post_req(Some(other)), ping).status,
            404,
            "another server's session"
        );
        let mut r = post_req(None);
        r.content_type = Some("text/plain".into());
        assert_eq!(handle(&s, &r, ping).status, 415);
        let mut r = post_req(None);
        r.accept = Some("text/html".into());
        assert_eq!(handle(&s, &r, ping).status, 406);
        let mut r = post_req(None);
        r.protocol_version = Some("1999-01-01".into());
        assert_eq!(handle(&s, &r, ping).status, 400);
        let get = handle(
            &s,
            &RequestInfo {
                method: "GET".into(),
                ..RequestInfo::default()
            },
            b"",
        );
        assert_eq!(get.status, 405);
        let bad = handle(&s, &post_req(None), b"{oops");
        assert_eq!(
            (bad.status, body(&bad)["error"]["code"].as_i64()),
            (400, Some(jsonrpc::PARSE_ERROR))
        );
    }
}

#[cfg(test)]
mod forward_tests {
    use super::*;
    use crate::routes::ToolRoute;

    #[test]
    fn routed_tools_are_forwarded_with_the_upstream_name() {
        let mut view = ServerView {
            name: "demo".into(),
            ..ServerView::default()
        };
        view.tool_routes.insert(
            "everything_echo".into(),
            ToolRoute {
                upstream: "everything".into(),
                tool: "echo".into(),
                idempotent: false,
                task_support: Default::default(),
                mirrored: Vec::new(),
            },
        );
        let sid = view.sealer.seal(
            &Session::new("demo", "2025-06-18").bound("", std::time::Duration::from_secs(3600)),
        );
        let req = RequestInfo {
            method: "POST".into(),
            content_type: Some("application/json".into()),
            session_id: Some(sid),
            ..RequestInfo::default()
        };
        let body = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"everything_echo","arguments":{"message":"hi"}}}"#;
        match handle(&view, &req, body, &AdmitAll, &mut Seen::default()) {
            Outcome::Forward(f) => {
                assert_eq!(f.client_id, json!(7));
                assert_eq!(f.upstream, "everything");
                assert_eq!(f.params["name"], "echo");
                assert_eq!(f.params["arguments"]["message"], "hi");
            }
            other => panic!("expected a forward, got {other:?}"),
        }
    }
}
