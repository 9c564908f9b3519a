//! A streamed A2A call (`SendStreamingMessage`): each event the agent sends (a status
//! update's message, an artifact chunk) is relayed at once as an MCP progress notification;
//! when the task ends, the tool's result is built from everything the stream carried.

use super::result;
use crate::backend::AnswerEvents;
use crate::sse::{json_events, SseEvent};
use crate::{Credentials, UpstreamError};
use futures::{Stream, StreamExt};
use serde_json::{json, Value};
use std::pin::Pin;
use std::time::Duration;
use switchboard_config::kinds::upstream::A2aBindings;

/// Most of one progress message.
const MAX_MESSAGE_CHARS: usize = 1000;

type Events = Pin<Box<dyn Stream<Item = Result<SseEvent, String>> + Send>>;

/// Opens the stream (the answer's head within `limit`).
pub(super) async fn start(
    http: &reqwest::Client,
    b: &A2aBindings,
    creds: &Credentials,
    message: &Value,
    limit: Duration,
) -> Result<Events, UpstreamError> {
    let url = &b.endpoint;
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "SendStreamingMessage", "params": {"message": message}});
    let sending = async {
        let req = http
            .post(url)
            .header("A2A-Version", "1.0")
            .header("accept", "text/event-stream")
            .json(&body);
        let req = creds.apply(http, req).await?;
        let resp = req
            .send()
            .await
            .map_err(|e| UpstreamError::unreachable(url, &e.without_url()))?;
        let status = resp.status().as_u16();
        creds.note_status(status);
        if !(200..300).contains(&status) {
            return Err(UpstreamError::Status {
                url: url.clone(),
                status,
                body: crate::body::error_text(resp).await,
            });
        }
        Ok(resp)
    };
    let resp =
        tokio::time::timeout(limit, sending)
            .await
            .map_err(|_| UpstreamError::Timeout {
                url: url.clone(),
                after: limit,
            })??;
    Ok(Box::pin(json_events(resp.bytes_stream())))
}

struct Relay {
    events: Events,
    id: Value,
    token: Value,
    /// The task as the stream told it so far.
    task: Value,
    count: u64,
    done: bool,
    /// The result went out: nothing more follows.
    sent: bool,
}

impl Relay {
    /// Takes in one stream response; the progress message it gives, if any.
    fn take(&mut self, payload: &Value) -> Option<String> {
        if let Some(t) = payload.get("task") {
            self.task = t.clone();
            return None;
        }
        if let Some(m) = payload.get("message") {
            // A plain message ends the exchange.
            self.task = json!({"status": {"state": "completed", "message": m}});
            self.done = true;
            return None;
        }
        if let Some(u) = payload.get("statusUpdate") {
            if let Some(status) = u.get("status") {
                self.task["status"] = status.clone();
            }
            self.done = result::is_final(&self.task);
            return u
                .pointer("/status/message/parts")
                .and_then(Value::as_array)
                .map(|p| texts(p));
        }
        if let Some(u) = payload.get("artifactUpdate") {
            let artifact = u.get("artifact").cloned().unwrap_or(Value::Null);
            let parts = artifact
                .get("parts")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let said = texts(&parts);
            let id = artifact.get("artifactId").cloned();
            let artifacts = self.task["artifacts"].as_array_mut();
            let known = artifacts.and_then(|list| {
                list.iter_mut()
                    .find(|a| a.get("artifactId").is_some() && a.get("artifactId") == id.as_ref())
            });
            match known {
                Some(a) if u.get("append") == Some(&Value::Bool(true)) => {
                    if let Some(existing) = a["parts"].as_array_mut() {
                        existing.extend(parts);
                    }
                }
                Some(a) => *a = artifact,
                None => {
                    if !self.task["artifacts"].is_array() {
                        self.task["artifacts"] = json!([]);
                    }
                    if let Some(list) = self.task["artifacts"].as_array_mut() {
                        list.push(artifact);
                    }
                }
            }
            return Some(said);
        }
        None
    }
}

fn texts(parts: &[Value]) -> String {
    parts
        .iter()
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The MCP answer for a started stream: progress, then the result (`id`: the call's).
pub(super) fn relay(events: Events, id: Value, token: Value) -> AnswerEvents {
    let state = Relay {
        events,
        id,
        token,
        task: json!({}),
        count: 0,
        done: false,
        sent: false,
    };
    Box::pin(futures::stream::unfold(state, |mut s| async move {
        loop {
            if s.sent {
                return None;
            }
            if s.done {
                s.sent = true;
                let response = json!({"jsonrpc": "2.0", "id": s.id, "result": result::tool_result(&json!({"task": s.task}))});
                return Some((Ok(SseEvent::of_message(&response)), s));
            }
            match s.events.next().await {
                Some(Ok(event)) => {
                    let Ok(msg) = serde_json::from_str::<Value>(&event.data) else {
                        continue;
                    };
                    if let Some(err) = msg.get("error") {
                        s.sent = true;
                        return Some((Err(format!("the agent's stream failed: {err}")), s));
                    }
                    let payload = msg.get("result").cloned().unwrap_or(Value::Null);
                    let said = s.take(&payload).filter(|t| !t.is_empty());
                    let Some(said) = said else {
                        // Keep the silence limit at bay while the agent works.
                        return Some((Ok(SseEvent::default()), s));
                    };
                    s.count += 1;
                    let message: String = said.chars().take(MAX_MESSAGE_CHARS).collect();
                    let note = json!({
                        "jsonrpc": "2.0",
                        "method": "notifications/progress",
                        "params": {"progressToken": s.token, "progress": s.count, "message": message},
                    });
                    return Some((Ok(SseEvent::of_message(&note)), s));
                }
                Some(Err(e)) => {
                    s.sent = true;
                    return Some((Err(e), s));
                }
                // The stream ended: what it carried is the answer.
                None => s.done = true,
            }
        }
    }))
}
