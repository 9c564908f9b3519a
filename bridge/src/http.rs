//! The streamable-HTTP side: sessions minted by the bridge, POSTs answered as SSE (progress
//! included) or JSON, a GET stream for what the server says outside calls, DELETE.

use crate::child::CHILD_PROTOCOL_VERSION;
use crate::sessions::{OpenError, Sessions};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::Arc;
use tokio_stream::wrappers::{BroadcastStream, UnboundedReceiverStream};

/// Versions the bridge serves to clients (all session-based).
const VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// Shared state of the HTTP handlers.
pub struct Bridge {
    pub sessions: Arc<Sessions>,
}

impl Bridge {
    /// HTTP sessions over `sessions`' children.
    pub fn new(sessions: Arc<Sessions>) -> Self {
        Bridge { sessions }
    }
}

fn error(status: StatusCode, id: &Value, code: i64, message: impl Into<String>) -> Response {
    let body =
        json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message.into()}});
    (status, axum::Json(body)).into_response()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The session a request names and its child, or the error response for a missing or
/// unknown one (a session whose child died is unknown: the client must initialize again).
fn session(
    bridge: &Bridge,
    headers: &HeaderMap,
) -> Result<(String, Arc<crate::child::Child>), Box<Response>> {
    let Some(id) = header(headers, "mcp-session-id") else {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            &Value::Null,
            -32600,
            "missing Mcp-Session-Id header: send initialize first",
        )));
    };
    match bridge.sessions.child(id) {
        Some(child) => Ok((id.to_string(), child)),
        None => Err(Box::new(error(
            StatusCode::NOT_FOUND,
            &Value::Null,
            -32600,
            "unknown session: initialize a new one",
        ))),
    }
}

/// Refuses MCP requests whose `Origin` or `Host` the policy does not accept (403): without
/// it a web page whose domain resolves to 127.0.0.1 could call the child's tools.
pub async fn check_origin(
    State(policy): State<Arc<crate::origin::OriginPolicy>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let headers = request.headers();
    let host = header(headers, "host")
        .map(str::to_string)
        .or_else(|| request.uri().authority().map(|a| a.to_string()));
    match policy.check(header(headers, "origin"), host.as_deref(), &|_| false) {
        Ok(()) => next.run(request).await,
        Err(why) => {
            tracing::info!(%why, "bridge request refused");
            error(StatusCode::FORBIDDEN, &Value::Null, -32600, why)
        }
    }
}

/// Refuses MCP requests without the configured bearer token (when one is configured).
pub async fn require_bearer(
    State(expected): State<Arc<Option<String>>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(expected) = expected.as_deref() else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Compare without stopping at the first difference.
    let same = given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        return next.run(request).await;
    }
    (
        axum::http::StatusCode::UNAUTHORIZED,
        [("www-authenticate", "Bearer")],
        "a valid bearer token is required\n",
    )
        .into_response()
}

/// `GET /healthz`: ok while a new session could be served.
pub async fn health(State(bridge): State<Arc<Bridge>>) -> Response {
    match bridge.sessions.health() {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response(),
    }
}

/// `POST` on the MCP endpoint.
pub async fn post(State(bridge): State<Arc<Bridge>>, headers: HeaderMap, body: Bytes) -> Response {
    let is_json = header(&headers, "content-type")
        .and_then(|c| c.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &Value::Null,
            -32600,
            "Content-Type must be application/json",
        );
    }
    let msg: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &Value::Null,
                -32700,
                format!("parse error: {e}"),
            )
        }
    };
    if !msg.is_object() || msg.get("jsonrpc") != Some(&json!("2.0")) {
        return error(
            StatusCode::BAD_REQUEST,
            &Value::Null,
            -32600,
            "not a JSON-RPC 2.0 message",
        );
    }
    let id = msg.get("id").cloned();
    let method = msg
        .get("method")
        .and_then(Value::as_str)
        .map(str::to_string);
    if method.as_deref() == Some("initialize") {
        return initialize(&bridge, id.unwrap_or(Value::Null), &msg).await;
    }
    let (session, child) = match session(&bridge, &headers) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let (Some(id), Some(_)) = (id.clone(), method) else {
        // A notification, or the client's answer to a server request.
        return match child.notify(&session, msg).await {
            Ok(()) => StatusCode::ACCEPTED.into_response(),
            Err(e @ crate::child::ChildError::NotAsked(_)) => {
                error(StatusCode::BAD_REQUEST, &Value::Null, -32600, e.to_string())
            }
            Err(e) => error(StatusCode::BAD_GATEWAY, &Value::Null, -32603, e.to_string()),
        };
    };
    // The session is busy until the answer is out (a long call is not idle).
    let busy = bridge.sessions.call(&session);
    let rx = match child.call(&session, msg).await {
        Ok(rx) => rx,
        Err(e) => return error(StatusCode::OK, &id, -32603, e.to_string()),
    };
    let wants_sse = header(&headers, "accept").is_some_and(|a| a.contains("text/event-stream"));
    if wants_sse {
        // Progress as it happens, then the answer; the stream ends with the answer.
        let events = UnboundedReceiverStream::new(rx).map(move |m| {
            let _busy = &busy;
            Ok::<_, Infallible>(Event::default().event("message").data(m.to_string()))
        });
        return Sse::new(events).into_response();
    }
    let mut rx = rx;
    let mut last = None;
    while let Some(m) = rx.recv().await {
        last = Some(m);
    }
    drop(busy);
    match last {
        Some(answer) => axum::Json(answer).into_response(),
        None => error(
            StatusCode::OK,
            &id,
            -32603,
            "the stdio server gave no answer",
        ),
    }
}

async fn initialize(bridge: &Bridge, id: Value, msg: &Value) -> Response {
    let params = msg.get("params").cloned().unwrap_or_else(|| json!({}));
    let (sid, child) = match bridge.sessions.open(&params).await {
        Ok(opened) => opened,
        Err(e @ (OpenError::AtCapacity(_) | OpenError::Unavailable(_))) => {
            return error(StatusCode::SERVICE_UNAVAILABLE, &id, -32603, e.to_string())
        }
        Err(OpenError::Child(e)) => {
            return error(StatusCode::BAD_GATEWAY, &id, -32603, e.to_string())
        }
    };
    let mut result = child.initialize_result();
    if bridge.sessions.shares_child() {
        // The shared child was initialized by the bridge: answer with the client's version
        // when we speak it, the server's otherwise. A per-session child answered the
        // client's own initialize.
        let requested = params.get("protocolVersion").and_then(Value::as_str);
        let version = requested
            .filter(|v| VERSIONS.contains(v))
            .unwrap_or(CHILD_PROTOCOL_VERSION);
        if let Some(object) = result.as_object_mut() {
            object.insert("protocolVersion".into(), json!(version));
        }
    }
    let mut resp =
        axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response();
    if let Ok(v) = HeaderValue::from_str(&sid) {
        resp.headers_mut().insert("mcp-session-id", v);
    }
    resp
}

/// `GET` on the MCP endpoint: what the server says outside calls, as SSE.
pub async fn get(State(bridge): State<Arc<Bridge>>, headers: HeaderMap) -> Response {
    let (sid, child) = match session(&bridge, &headers) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    if !header(&headers, "accept").is_some_and(|a| a.contains("text/event-stream")) {
        return error(
            StatusCode::NOT_ACCEPTABLE,
            &Value::Null,
            -32600,
            "Accept must include text/event-stream",
        );
    }
    let Some(guard) = bridge.sessions.stream(&sid) else {
        return error(
            StatusCode::CONFLICT,
            &Value::Null,
            -32000,
            "this session already has a GET stream open",
        );
    };
    let events = BroadcastStream::new(child.subscribe()).filter_map(move |m| {
        let _open = &guard; // the session is listening while the stream lives
        async move {
            // A lagging reader skips what it missed rather than ending the stream.
            m.ok()
                .map(|m| Ok::<_, Infallible>(Event::default().event("message").data(m.to_string())))
        }
    });
    // The stream ends when the child dies, so the client learns at once.
    let ended = {
        let child = child.clone();
        async move {
            child.wait_exit().await;
        }
    };
    Sse::new(events.take_until(ended))
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// `DELETE` on the MCP endpoint: ends the session (and a per-session child).
pub async fn delete(State(bridge): State<Arc<Bridge>>, headers: HeaderMap) -> Response {
    let Some(id) = header(&headers, "mcp-session-id") else {
        return error(
            StatusCode::BAD_REQUEST,
            &Value::Null,
            -32600,
            "missing Mcp-Session-Id header",
        );
    };
    if bridge.sessions.close(id) {
        StatusCode::OK.into_response()
    } else {
        error(
            StatusCode::NOT_FOUND,
            &Value::Null,
            -32600,
            "unknown session",
        )
    }
}
