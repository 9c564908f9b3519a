//! A2A agents as MCP tools: the agent card (`/.well-known/agent-card.json`) lists skills,
//! each becomes a tool taking a `message` (and optional `data`); a call is an A2A
//! `SendMessage` (protocol 1.0, or `message/send` for 0.3 agents) whose task's artifacts
//! become the tool's result. With a progress token and a streaming agent the call is
//! `SendStreamingMessage`, relayed as progress notifications as the agent works
//! ([`stream`]). Long-running tasks are followed with `GetTask` until they end.

mod card;
mod result;
mod stream;

pub use card::{card_url, tools_from_card, A2aDiscovery};

use crate::backend::{rpc_error, Answer, CallOptions, Caller};
use crate::body::{success_body, within};
use crate::{Credentials, UpstreamError};
use async_trait::async_trait;
use serde_json::{json, Map, Value};
use std::time::{Duration, Instant};
use switchboard_config::kinds::upstream::A2aBindings;

/// Longest a call may take when the upstream sets no limit.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(300);
/// Largest answer read from an agent.
const MAX_ANSWER: usize = 8 << 20;
/// How soon a task still running is first asked about again (doubling up to
/// [`POLL_AT_MOST`]).
const POLL_FIRST: Duration = Duration::from_millis(200);
const POLL_AT_MOST: Duration = Duration::from_secs(2);

/// Executes `tools/call`s against an A2A agent.
pub struct A2aCaller<'a> {
    pub bindings: Option<&'a A2aBindings>,
    pub http: Result<reqwest::Client, UpstreamError>,
    pub creds: &'a Credentials,
}

/// Whether the agent speaks the 0.3 protocol (lower-case enums, `kind` tags, slash methods).
fn legacy(b: &A2aBindings) -> bool {
    b.protocol_version.starts_with("0.")
}

/// The A2A message for `text` (and `data`) to `skill`.
fn message(b: &A2aBindings, skill: &str, text: &str, data: Option<&Value>, id: &str) -> Value {
    let metadata = json!({"skill": skill});
    if legacy(b) {
        let mut parts = vec![json!({"kind": "text", "text": text})];
        if let Some(d) = data {
            parts.push(json!({"kind": "data", "data": d}));
        }
        return json!({"kind": "message", "role": "user", "messageId": id, "parts": parts, "metadata": metadata});
    }
    let mut parts = vec![json!({"text": text})];
    if let Some(d) = data {
        parts.push(json!({"data": d, "mediaType": "application/json"}));
    }
    json!({"role": "ROLE_USER", "messageId": id, "parts": parts, "metadata": metadata})
}

/// Posts one JSON-RPC request to the agent (with its era's version header and the
/// upstream's credentials); the response, whatever its status.
async fn post(
    http: &reqwest::Client,
    b: &A2aBindings,
    creds: &Credentials,
    body: &Value,
    accept: Option<&str>,
) -> Result<reqwest::Response, UpstreamError> {
    let url = &b.endpoint;
    let mut req = http.post(url).json(body);
    if !legacy(b) {
        req = req.header("A2A-Version", "1.0");
    }
    if let Some(accept) = accept {
        req = req.header("accept", accept);
    }
    let req = creds.apply(http, req).await?;
    // The error without its URL, as everywhere a URL may carry what it should not.
    let resp = req
        .send()
        .await
        .map_err(|e| UpstreamError::unreachable(url, &e.without_url()))?;
    creds.note_status(resp.status().as_u16());
    Ok(resp)
}

/// The `result` of the agent's JSON-RPC answer `bytes` (its error as the call's error).
fn answer_of(url: &str, bytes: &[u8]) -> Result<Value, UpstreamError> {
    let msg: Value = serde_json::from_slice(bytes).map_err(|e| UpstreamError::Unusable {
        url: url.to_string(),
        reason: format!("the agent answered invalid JSON: {e}"),
    })?;
    crate::client::result_of(url, msg)
}

impl A2aCaller<'_> {
    /// One JSON-RPC call to the agent; its `result`.
    async fn rpc(
        &self,
        http: &reqwest::Client,
        b: &A2aBindings,
        method: &str,
        params: Value,
        limit: Duration,
    ) -> Result<Value, UpstreamError> {
        let url = &b.endpoint;
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let bytes = within(url, limit, async {
            let resp = post(http, b, self.creds, &body, None).await?;
            success_body(resp, url, MAX_ANSWER).await
        })
        .await?;
        answer_of(url, &bytes)
    }
}

#[async_trait]
impl Caller for A2aCaller<'_> {
    async fn call(&self, request: &Value, options: &CallOptions) -> Result<Answer, UpstreamError> {
        let method = request.get("method").and_then(Value::as_str).unwrap_or("");
        if method != "tools/call" {
            return Ok(rpc_error(
                request,
                -32601,
                format!("an A2A upstream serves tools/call only, not {method}"),
            ));
        }
        let Some(b) = self.bindings else {
            return Ok(rpc_error(
                request,
                -32602,
                "the agent's card has not been read yet".into(),
            ));
        };
        let params = request.get("params");
        let name = params
            .and_then(|p| p.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let Some(skill) = b.skills.get(name) else {
            return Ok(rpc_error(request, -32602, format!("unknown tool `{name}`")));
        };
        let empty = Map::new();
        let args = params
            .and_then(|p| p.get("arguments"))
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let Some(text) = args.get("message").and_then(Value::as_str) else {
            return Ok(rpc_error(
                request,
                -32602,
                "invalid arguments: `message` (a string) is required".into(),
            ));
        };
        let data = args.get("data").filter(|d| !d.is_null());
        if data.is_some_and(|d| !d.is_object()) {
            return Ok(rpc_error(
                request,
                -32602,
                "invalid arguments: `data` must be an object".into(),
            ));
        }
        let http = self.http.clone()?;
        let id = format!("sb-{}", fastrand::u64(..));
        let msg = message(b, skill, text, data, &id);
        let limit = options.timeout.unwrap_or(DEFAULT_CALL_TIMEOUT);
        let rpc_id = request.get("id").cloned().unwrap_or(Value::Null);
        let token = params
            .and_then(|p| p.pointer("/_meta/progressToken"))
            .cloned();
        if let (Some(token), true, false) = (token, b.streaming, legacy(b)) {
            return Ok(
                match stream::start(&http, b, self.creds, &msg, limit).await? {
                    stream::Started::Events(events) => {
                        Answer::Events(stream::relay(events, rpc_id, token, limit))
                    }
                    // The agent answered at once, as JSON.
                    stream::Started::Whole(answer) => Answer::Ready(json!({
                        "jsonrpc": "2.0",
                        "id": rpc_id,
                        "result": result::tool_result(&answer),
                    })),
                },
            );
        }
        let started = Instant::now();
        let mut wait = POLL_FIRST;
        let (send, get) = if legacy(b) {
            ("message/send", "tasks/get")
        } else {
            ("SendMessage", "GetTask")
        };
        let mut answer = self
            .rpc(&http, b, send, json!({"message": msg}), limit)
            .await?;
        // A task still running is followed until it ends (or the call's time is up).
        loop {
            let task = result::task_of(&answer);
            let running = task.as_ref().is_some_and(|t| !result::is_final(t));
            let Some(task) = task.filter(|_| running) else {
                break;
            };
            let left = limit.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(UpstreamError::Timeout {
                    url: b.endpoint.clone(),
                    after: limit,
                });
            }
            tokio::time::sleep(wait.min(left)).await;
            wait = (wait * 2).min(POLL_AT_MOST);
            let task_id = task.get("id").cloned().unwrap_or(Value::Null);
            answer = self
                .rpc(&http, b, get, json!({"id": task_id}), left)
                .await?;
        }
        Ok(Answer::Ready(json!({
            "jsonrpc": "2.0",
            "id": rpc_id,
            "result": result::tool_result(&answer),
        })))
    }
}
