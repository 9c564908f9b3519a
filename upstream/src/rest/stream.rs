//! An API that answers with Server-Sent Events (a streamed `text/event-stream` answer):
//! each event is relayed to the client at once as a progress notification, when the call
//! asked for progress, and once the stream ends the tool's result is every event's data,
//! one per line (at most `MAX_ANSWER_BYTES` of it kept).

use crate::backend::AnswerEvents;
use crate::body::MAX_ANSWER_BYTES;
use crate::sse::{json_events, SseEvent};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde_json::{json, Value};

/// Most of one event put in a progress message.
const MAX_MESSAGE_CHARS: usize = 1000;

struct Relay {
    events: std::pin::Pin<Box<dyn Stream<Item = Result<SseEvent, String>> + Send>>,
    /// The call's JSON-RPC id (the result carries it) and progress token.
    id: Value,
    token: Option<Value>,
    count: u64,
    lines: Vec<String>,
    kept: usize,
    done: bool,
}

/// The answer to a call whose API streams `bytes` as SSE.
pub(super) fn relay<S>(bytes: S, id: Value, token: Option<Value>) -> AnswerEvents
where
    S: Stream<Item = Result<Bytes, reqwest::Error>> + Send + 'static,
{
    let state = Relay {
        events: Box::pin(json_events(bytes)),
        id,
        token,
        count: 0,
        lines: Vec::new(),
        kept: 0,
        done: false,
    };
    Box::pin(futures::stream::unfold(state, |mut s| async move {
        if s.done {
            return None;
        }
        let item = match s.events.next().await {
            Some(Ok(event)) => {
                s.count += 1;
                if s.kept + event.data.len() <= MAX_ANSWER_BYTES {
                    s.kept += event.data.len();
                    s.lines.push(event.data.clone());
                }
                match &s.token {
                    // Nothing to relay, but the stream is alive: an empty event keeps the
                    // gateway's silence limit from cutting it.
                    None => Ok(SseEvent::default()),
                    Some(token) => {
                        let message: String = event.data.chars().take(MAX_MESSAGE_CHARS).collect();
                        let note = json!({
                            "jsonrpc": "2.0",
                            "method": "notifications/progress",
                            "params": {"progressToken": token, "progress": s.count, "message": message},
                        });
                        Ok(SseEvent::of_message(&note))
                    }
                }
            }
            Some(Err(e)) => {
                s.done = true;
                Err(e)
            }
            None => {
                s.done = true;
                let result = json!({
                    "jsonrpc": "2.0",
                    "id": s.id,
                    "result": {
                        "content": [{"type": "text", "text": s.lines.join("\n")}],
                        "_meta": {"events": s.count},
                    },
                });
                Ok(SseEvent::of_message(&result))
            }
        };
        Some((item, s))
    }))
}
