//! The streamable-HTTP side: sessions minted by the bridge, POSTs answered as SSE (progress
//! included) or JSON, a GET stream for what the server says outside calls, DELETE.

use crate::child::{Child, CHILD_PROTOCOL_VERSION};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use tokio_stream::wrappers::{BroadcastStream, UnboundedReceiverStream};

/// Versions the bridge serves to clients (all session-based).
const VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// Shared state of the HTTP handlers.
pub struct Bridge {
    pub child: Arc<Child>,
    sessions: Mutex<HashSet<String>>,
}

impl Bridge {
    /// HTTP sessions over `child`.
    pub fn new(child: Arc<Child>) -> Self {
        Bridge {
            child,
            sessions: Mutex::new(HashSet::new()),
        }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
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

/// The session a request names, or the error response for a missing or unknown one.
fn session(bridge: &Bridge, headers: &HeaderMap) -> Result<String, Box<Response>> {
    let Some(id) = header(headers, "mcp-session-id") else {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            &Value::Null,
            -32600,
            "missing Mcp-Session-Id header: send initialize first",
        )));
    };
    if !bridge.sessions().contains(id) {
        return Err(Box::new(error(
            StatusCode::NOT_FOUND,
            &Value::Null,
            -32600,
            "unknown session: initialize a new one",
        )));
    }
    Ok(id.to_string())
}

/// `GET /healthz`: live while the stdio server runs.
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

pub async fn health(State(bridge): State<Arc<Bridge>>) -> Response {
    match bridge.child.exit_reason() {
        None => (StatusCode::OK, "ok\n").into_response(),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response(),
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
        return initialize(&bridge, id.unwrap_or(Value::Null), &msg);
    }
    let session = match session(&bridge, &headers) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let (Some(id), Some(_)) = (id.clone(), method) else {
        // A notification, or the client's answer to a server request.
        return match bridge.child.notify(&session, msg).await {
            Ok(()) => StatusCode::ACCEPTED.into_response(),
            Err(e) => error(StatusCode::BAD_GATEWAY, &Value::Null, -32603, e.to_string()),
        };
    };
    let rx = match bridge.child.call(&session, msg).await {
        Ok(rx) => rx,
        Err(e) => return error(StatusCode::OK, &id, -32603, e.to_string()),
    };
    let wants_sse = header(&headers, "accept").is_some_and(|a| a.contains("text/event-stream"));
    if wants_sse {
        // Progress as it happens, then the answer; the stream ends with the answer.
        let events = UnboundedReceiverStream::new(rx)
            .map(|m| Ok::<_, Infallible>(Event::default().event("message").data(m.to_string())));
        return Sse::new(events).into_response();
    }
    let mut rx = rx;
    let mut last = None;
    while let Some(m) = rx.recv().await {
        last = Some(m);
    }
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

fn initialize(bridge: &Bridge, id: Value, msg: &Value) -> Response {
    let mut result = bridge.child.initialize_result();
    // Answer with the client's version when we speak it; the server's otherwise.
    let requested = msg
        .pointer("/params/protocolVersion")
        .and_then(Value::as_str);
    let version = requested
        .filter(|v| VERSIONS.contains(v))
        .unwrap_or(CHILD_PROTOCOL_VERSION);
    result["protocolVersion"] = json!(version);
    let sid = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
    bridge.sessions().insert(sid.clone());
    let mut resp =
        axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response();
    if let Ok(v) = HeaderValue::from_str(&sid) {
        resp.headers_mut().insert("mcp-session-id", v);
    }
    resp
}

/// `GET` on the MCP endpoint: what the server says outside calls, as SSE.
pub async fn get(State(bridge): State<Arc<Bridge>>, headers: HeaderMap) -> Response {
    if let Err(r) = session(&bridge, &headers) {
        return *r;
    }
    if !header(&headers, "accept").is_some_and(|a| a.contains("text/event-stream")) {
        return error(
            StatusCode::NOT_ACCEPTABLE,
            &Value::Null,
            -32600,
            "Accept must include text/event-stream",
        );
    }
    let events = BroadcastStream::new(bridge.child.subscribe()).filter_map(|m| async move {
        // A lagging reader skips what it missed rather than ending the stream.
        m.ok()
            .map(|m| Ok::<_, Infallible>(Event::default().event("message").data(m.to_string())))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// `DELETE` on the MCP endpoint: ends the session.
pub async fn delete(State(bridge): State<Arc<Bridge>>, headers: HeaderMap) -> Response {
    match session(&bridge, &headers) {
        Ok(id) => {
            bridge.sessions().remove(&id);
            StatusCode::OK.into_response()
        }
        Err(r) => *r,
    }
}
