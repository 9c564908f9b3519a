//! A streamable-HTTP MCP server that costs almost nothing, so benchmarks measure whatever
//! sits in front of it. Tools: `echo` (returns its `message`), `stream` (sends `count`
//! progress notifications on an SSE answer, then its result), and `--tools N` more no-op
//! tools to list. Sessions are ids it hands out and never checks. It is also a REST API of
//! one endpoint, `GET /rest/echo?message=...` -> `{"message": ...}`, for REST tools.
//!
//!   cargo run --release --example bench-upstream -- --listen 127.0.0.1:3100 --tools 1000

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

struct Upstream {
    tools: Value,
    sessions: AtomicU64,
}

fn reply(id: &Value, result: Value) -> Response {
    let body = json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string();
    ([("content-type", "application/json")], body).into_response()
}

async fn mcp(State(up): State<Arc<Upstream>>, _headers: HeaderMap, body: Bytes) -> Response {
    let Ok(msg) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not JSON").into_response();
    };
    let Some(id) = msg
        .get("id")
        .cloned()
        .filter(|_| msg.get("method").is_some())
    else {
        return StatusCode::ACCEPTED.into_response(); // notifications and responses
    };
    let params = msg.get("params").cloned().unwrap_or_default();
    match msg.get("method").and_then(Value::as_str).unwrap_or("") {
        "initialize" => {
            let n = up.sessions.fetch_add(1, Ordering::Relaxed);
            let version = params["protocolVersion"].as_str().unwrap_or("2025-06-18");
            let mut resp = reply(
                &id,
                json!({
                    "protocolVersion": version,
                    "capabilities": {"tools": {}},
                    "serverInfo": {"name": "bench-upstream", "version": "1"},
                }),
            );
            if let Ok(v) = format!("bench-{n}").parse() {
                resp.headers_mut().insert("mcp-session-id", v);
            }
            resp
        }
        "ping" => reply(&id, json!({})),
        "tools/list" => reply(&id, json!({"tools": up.tools})),
        "tools/call" => match params["name"].as_str() {
            Some("stream") => {
                let count = params["arguments"]["count"].as_u64().unwrap_or(10);
                let token = params
                    .pointer("/_meta/progressToken")
                    .cloned()
                    .unwrap_or(json!("bench"));
                let mut events: Vec<Result<Bytes, std::convert::Infallible>> = (1..=count)
                    .map(|i| {
                        let note = json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": token, "progress": i, "total": count}});
                        Ok(Bytes::from(format!("event: message\ndata: {note}\n\n")))
                    })
                    .collect();
                let done = json!({"jsonrpc": "2.0", "id": id, "result": {"content": [{"type": "text", "text": format!("{count} events")}]}});
                events.push(Ok(Bytes::from(format!("event: message\ndata: {done}\n\n"))));
                (
                    [("content-type", "text/event-stream")],
                    Body::from_stream(futures::stream::iter(events)),
                )
                    .into_response()
            }
            _ => {
                let text = params["arguments"]["message"].as_str().unwrap_or("");
                reply(&id, json!({"content": [{"type": "text", "text": text}]}))
            }
        },
        other => {
            let body = json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": format!("no method {other}")}});
            ([("content-type", "application/json")], body.to_string()).into_response()
        }
    }
}

/// The REST endpoint: the `message` query parameter (as sent, not decoded) back as JSON.
async fn rest_echo(uri: Uri) -> Response {
    let message = uri
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("message=")))
        .unwrap_or_default();
    let body = json!({ "message": message }).to_string();
    ([("content-type", "application/json")], body).into_response()
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let listen = arg("--listen").unwrap_or_else(|| "127.0.0.1:3100".into());
    let extra: usize = arg("--tools").and_then(|n| n.parse().ok()).unwrap_or(0);
    let schema = json!({"type": "object", "properties": {"message": {"type": "string"}}});
    let mut tools = vec![
        json!({"name": "echo", "description": "Returns its message", "inputSchema": schema, "annotations": {"readOnlyHint": true}}),
        json!({"name": "stream", "description": "Streams `count` progress events", "inputSchema": {"type": "object", "properties": {"count": {"type": "integer"}}}}),
    ];
    tools.extend((0..extra).map(|i| {
        json!({"name": format!("tool_{i:04}"), "description": "A tool that does nothing, for listing", "inputSchema": schema})
    }));
    let state = Arc::new(Upstream {
        tools: Value::Array(tools),
        sessions: AtomicU64::new(0),
    });
    let app = Router::new()
        .route("/mcp", post(mcp).delete(|| async { StatusCode::OK }))
        .route("/rest/echo", get(rest_echo))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    eprintln!("bench-upstream on http://{listen}/mcp ({extra} extra tools)");
    axum::serve(listener, app).await
}
