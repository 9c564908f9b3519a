//! Server-Sent Events from an upstream response, parsed by `eventsource-stream`.

use crate::body::{bounded_events, MAX_ANSWER_BYTES};
use bytes::Bytes;
use eventsource_stream::Eventsource;
use futures::{Stream, StreamExt};

/// One event as received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
    pub id: String,
    /// How long to wait before reconnecting, when the server says (SSE `retry`).
    pub retry: Option<std::time::Duration>,
}

impl SseEvent {
    /// A message event carrying `msg`, for messages that did not arrive as SSE (an
    /// upstream's GET stream merged into a call's answer, say).
    pub fn of_message(msg: &serde_json::Value) -> SseEvent {
        SseEvent {
            event: "message".into(),
            data: msg.to_string(),
            id: String::new(),
            retry: None,
        }
    }

    /// The event in wire form, ready to forward (with its data replaced by `data`).
    pub fn to_wire(&self, data: &str) -> String {
        let mut out = String::new();
        if !self.id.is_empty() {
            out.push_str(&format!("id: {}\n", self.id));
        }
        if !self.event.is_empty() && self.event != "message" {
            out.push_str(&format!("event: {}\n", self.event));
        }
        for line in data.split('\n') {
            out.push_str(&format!("data: {line}\n"));
        }
        out.push('\n');
        out
    }
}

/// The events of a byte stream, in order; a stream error ends it with that error's text, and
/// so does an event larger than [`MAX_ANSWER_BYTES`] (the parser's buffer stays bounded).
pub fn json_events<S, B, E>(bytes: S) -> impl Stream<Item = Result<SseEvent, String>>
where
    S: Stream<Item = Result<B, E>>,
    B: Into<Bytes>,
    E: std::fmt::Display,
{
    bounded_events(bytes, MAX_ANSWER_BYTES)
        .eventsource()
        .map(|r| {
            r.map(|e| SseEvent {
                event: e.event,
                data: e.data,
                id: e.id,
                retry: e.retry,
            })
            .map_err(|e| e.to_string())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn events_split_across_chunks() {
        let chunks: Vec<Result<&[u8], String>> = vec![
            Ok(b"event: message\nid: 1\ndata: {\"a\":"),
            Ok(b"1}\n\ndata: {\"b\":2}\n\n"),
        ];
        let events: Vec<_> = json_events(futures::stream::iter(chunks)).collect().await;
        assert_eq!(events.len(), 2);
        let first = events[0].as_ref().expect("event");
        assert_eq!((first.data.as_str(), first.id.as_str()), ("{\"a\":1}", "1"));
        assert_eq!(first.to_wire("{}"), "id: 1\ndata: {}\n\n");
    }
}
