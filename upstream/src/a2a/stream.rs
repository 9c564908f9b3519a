//! A streamed A2A call (`SendStreamingMessage`): each event the agent sends with text (a
//! status update's message, an artifact chunk) is relayed at once as an MCP progress
//! notification; when the task ends, the tool's result is built from everything the stream
//! carried. What a stream may accumulate is bounded, and so is its whole duration.

use super::result;
use crate::backend::AnswerEvents;
use crate::body::{success_body, within};
use crate::sse::{json_events, SseEvent};
use crate::{Credentials, UpstreamError};
use futures::{Stream, StreamExt};
use serde_json::{json, Value};
use std::pin::Pin;
use std::time::{Duration, Instant};
use switchboard_config::kinds::upstream::A2aBindings;

/// Most of one progress message.
const MAX_MESSAGE_CHARS: usize = 1000;
/// Most artifact content one stream may accumulate (as for a whole answer).
const MAX_KEPT_BYTES: usize = super::MAX_ANSWER;

type Events = Pin<Box<dyn Stream<Item = Result<SseEvent, String>> + Send>>;

/// How the agent began to answer.
pub(super) enum Started {
    /// An event stream.
    Events(Events),
    /// One JSON answer (the result: an agent that did not stream after all).
    Whole(Value),
}

/// Opens the stream (the answer's head within `limit`). A JSON-RPC error the agent sends
/// instead of a stream is the call's error.
pub(super) async fn start(
    http: &reqwest::Client,
    b: &A2aBindings,
    creds: &Credentials,
    message: &Value,
    limit: Duration,
) -> Result<Started, UpstreamError> {
    let url = &b.endpoint;
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "SendStreamingMessage", "params": {"message": message}});
    within(url, limit, async {
        let resp = super::post(http, b, creds, &body, Some("text/event-stream")).await?;
        if resp.status().is_success() && crate::is_event_stream(&resp) {
            return Ok(Started::Events(Box::pin(json_events(resp.bytes_stream()))));
        }
        let bytes = success_body(resp, url, super::MAX_ANSWER).await?;
        super::answer_of(url, &bytes).map(Started::Whole)
    })
    .await
}

struct Relay {
    events: Events,
    id: Value,
    token: Value,
    /// The task as the stream told it so far (always an object).
    task: Value,
    count: u64,
    /// Bytes of artifact content kept.
    kept: usize,
    /// When the whole stream must have ended.
    deadline: Instant,
    limit: Duration,
    done: bool,
    /// The result (or the failure) went out: nothing more follows.
    sent: bool,
}

impl Relay {
    /// Takes in one stream response; the progress message it gives, if any, or why the
    /// stream cannot go on.
    fn take(&mut self, payload: &Value) -> Result<Option<String>, String> {
        if let Some(t) = payload.get("task") {
            if !t.is_object() {
                return Err("the agent sent a task that is not an object".into());
            }
            self.task = t.clone();
            self.done = result::is_final(&self.task);
            return Ok(None);
        }
        if let Some(m) = payload.get("message") {
            // A plain message ends the exchange.
            self.task = json!({"status": {"state": "completed", "message": m}});
            self.done = true;
            return Ok(None);
        }
        if let Some(u) = payload.get("statusUpdate") {
            if let Some(status) = u.get("status") {
                self.task["status"] = status.clone();
            }
            self.done = result::is_final(&self.task);
            return Ok(u
                .pointer("/status/message/parts")
                .and_then(Value::as_array)
                .map(|p| texts(p)));
        }
        if let Some(u) = payload.get("artifactUpdate") {
            let artifact = u.get("artifact").cloned().unwrap_or(Value::Null);
            let parts = artifact
                .get("parts")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            self.kept += parts.iter().map(|p| p.to_string().len()).sum::<usize>();
            if self.kept > MAX_KEPT_BYTES {
                return Err(format!("the agent's artifacts pass {MAX_KEPT_BYTES} bytes"));
            }
            let said = texts(&parts);
            let id = artifact.get("artifactId").cloned();
            if !self.task["artifacts"].is_array() {
                self.task["artifacts"] = json!([]);
            }
            let Some(list) = self.task["artifacts"].as_array_mut() else {
                return Ok(Some(said));
            };
            // Chunks name their artifact; the newest is the likeliest one.
            let known = list
                .iter_mut()
                .rev()
                .find(|a| a.get("artifactId").is_some() && a.get("artifactId") == id.as_ref());
            match known {
                Some(a) if u.get("append") == Some(&Value::Bool(true)) => {
                    if let Some(existing) = a["parts"].as_array_mut() {
                        existing.extend(parts);
                    }
                }
                Some(a) => *a = artifact,
                None => list.push(artifact),
            }
            return Ok(Some(said));
        }
        Ok(None)
    }
}

fn texts(parts: &[Value]) -> String {
    parts
        .iter()
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The MCP answer for a started stream: progress, then the result (`id`: the call's);
/// the whole stream within `limit`.
pub(super) fn relay(events: Events, id: Value, token: Value, limit: Duration) -> AnswerEvents {
    let state = Relay {
        events,
        id,
        token,
        task: json!({}),
        count: 0,
        kept: 0,
        deadline: Instant::now() + limit,
        limit,
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
                let state = result::state(&s.task);
                let result = if result::is_final(&s.task) {
                    result::tool_result(&json!({"task": s.task}))
                } else {
                    json!({"content": [{"type": "text", "text": format!("the agent's stream ended while its task was {}", if state.is_empty() { "unknown" } else { &state })}], "isError": true})
                };
                let response = json!({"jsonrpc": "2.0", "id": s.id, "result": result});
                return Some((Ok(SseEvent::of_message(&response)), s));
            }
            let left = s.deadline.saturating_duration_since(Instant::now());
            let next = match tokio::time::timeout(left, s.events.next()).await {
                Ok(next) => next,
                Err(_) => {
                    s.sent = true;
                    let why = format!("the agent's task did not end within {:?}", s.limit);
                    return Some((Err(why), s));
                }
            };
            match next {
                Some(Ok(event)) => {
                    let Ok(msg) = serde_json::from_str::<Value>(&event.data) else {
                        continue;
                    };
                    if let Some(err) = msg.get("error") {
                        s.sent = true;
                        return Some((Err(format!("the agent's stream failed: {err}")), s));
                    }
                    let payload = msg.get("result").cloned().unwrap_or(Value::Null);
                    let said = match s.take(&payload) {
                        Ok(said) => said.filter(|t| !t.is_empty()),
                        Err(why) => {
                            s.sent = true;
                            return Some((Err(why), s));
                        }
                    };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn relay_of(events: Vec<Value>) -> AnswerEvents {
        let events: Vec<Result<SseEvent, String>> = events
            .iter()
            .map(|e| {
                Ok(SseEvent::of_message(
                    &json!({"jsonrpc": "2.0", "id": 1, "result": e}),
                ))
            })
            .collect();
        relay(
            Box::pin(futures::stream::iter(events)),
            json!("call-1"),
            json!("tok"),
            Duration::from_secs(5),
        )
    }

    async fn all(mut s: AnswerEvents) -> Vec<Result<Value, String>> {
        let mut out = Vec::new();
        while let Some(e) = s.next().await {
            out.push(e.map(|e| serde_json::from_str(&e.data).unwrap_or(Value::Null)));
        }
        out
    }

    #[tokio::test]
    async fn chunks_are_progress_and_the_result_joins_them() {
        let got = all(relay_of(vec![
            json!({"task": {"id": "t", "status": {"state": "TASK_STATE_SUBMITTED"}}}),
            json!({"artifactUpdate": {"artifact": {"artifactId": "a", "parts": [{"text": "3"}]}}}),
            json!({"artifactUpdate": {"artifact": {"artifactId": "a", "parts": [{"text": "2"}]}, "append": true}}),
            json!({"statusUpdate": {"status": {"state": "TASK_STATE_COMPLETED"}}}),
            json!({"artifactUpdate": {"artifact": {"parts": [{"text": "after the end"}]}}}),
        ]))
        .await;
        let progress: Vec<&Value> = got
            .iter()
            .filter_map(|e| e.as_ref().ok())
            .filter_map(|m| m.pointer("/params/message"))
            .collect();
        assert_eq!(progress, [&json!("3"), &json!("2")]);
        let last = got.last().and_then(|e| e.as_ref().ok()).expect("a result");
        assert_eq!(last["id"], json!("call-1"));
        assert_eq!(last["result"]["content"][0]["text"], json!("3"));
        assert_eq!(last["result"]["content"][1]["text"], json!("2"));
    }

    #[tokio::test]
    async fn hostile_streams_end_with_an_error_not_a_panic() {
        let got = all(relay_of(vec![
            json!({"task": "not an object"}),
            json!({"statusUpdate": {"status": {"state": "TASK_STATE_WORKING"}}}),
        ]))
        .await;
        assert!(
            matches!(got.last(), Some(Err(e)) if e.contains("not an object")),
            "{got:?}"
        );
        let big = "x".repeat(MAX_KEPT_BYTES / 2 + 1);
        let chunk = json!({"artifactUpdate": {"artifact": {"artifactId": "a", "parts": [{"text": big}]}, "append": true}});
        let got = all(relay_of(vec![chunk.clone(), chunk])).await;
        assert!(
            matches!(got.last(), Some(Err(e)) if e.contains("bytes")),
            "{}",
            got.len()
        );
        // A stream that stops mid-task says so.
        let got = all(relay_of(vec![
            json!({"statusUpdate": {"status": {"state": "TASK_STATE_WORKING"}}}),
        ]))
        .await;
        let last = got.last().and_then(|e| e.as_ref().ok()).expect("a result");
        assert_eq!(last["result"]["isError"], json!(true));
    }
}
