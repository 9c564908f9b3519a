//! Where an answer goes: the HTTP response itself or a channel (a legacy SSE stream, a
//! WebSocket), as one reply or a stream of events; a streamed answer's events, with ids and a
//! replay buffer when the stream is resumable.

use super::replay::{event_with_id, Kind, Reader, Replay};
use super::send;
use crate::transport::Reply;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::Session as Downstream;
use pingora::{Error, ErrorType, Result};
use serde_json::Value;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Where an answer goes: the HTTP response itself, or a channel (legacy HTTP+SSE stream,
/// WebSocket), which takes each message whole.
pub(super) enum Out<'a> {
    Http(&'a mut Downstream),
    Events(&'a mpsc::Sender<String>),
}

/// An SSE `message` event carrying `data` (one `data:` line per line of it, so nothing in
/// it can pass for a field of its own).
pub(super) fn message_event(data: &str) -> String {
    let mut wire = String::from("event: message\n");
    super::replay::data_lines(&mut wire, data);
    wire
}

/// What a message sent to a channel whose client left comes to.
fn gone() -> Box<Error> {
    Error::explain(
        ErrorType::ConnectionClosed,
        "the client's connection is closed",
    )
}

impl Out<'_> {
    /// A whole answer.
    pub(super) async fn reply(&mut self, reply: Reply) -> Result<()> {
        match self {
            Out::Http(session) => send(session, reply).await,
            Out::Events(tx) => {
                if reply.body.is_empty() {
                    return Ok(());
                }
                let data = String::from_utf8_lossy(&reply.body).into_owned();
                tx.send(data).await.map_err(|_| gone())
            }
        }
    }

    /// Starts a streamed answer.
    pub(super) async fn start_stream(&mut self) -> Result<()> {
        let Out::Http(session) = self else {
            return Ok(());
        };
        let mut header = ResponseHeader::build(200, Some(3))?;
        header.insert_header("content-type", "text/event-stream")?;
        header.insert_header("cache-control", "no-cache")?;
        if session.req_header().version == pingora::http::Version::HTTP_11 {
            // Delimit the stream so the connection can be kept alive afterwards.
            header.insert_header("transfer-encoding", "chunked")?;
        }
        session.write_response_header(Box::new(header), false).await
    }

    /// One event of a streamed answer: `wire` as it goes on an HTTP response, `data` its
    /// message; `last` ends the answer.
    pub(super) async fn event(&mut self, wire: String, data: &str, last: bool) -> Result<()> {
        match self {
            Out::Http(session) => {
                session
                    .write_response_body(Some(Bytes::from(wire)), last)
                    .await
            }
            Out::Events(tx) => tx.send(data.to_string()).await.map_err(|_| gone()),
        }
    }

    /// A comment that keeps an idle HTTP stream open (channels keep themselves alive).
    pub(super) async fn keepalive(&mut self) -> Result<()> {
        match self {
            Out::Http(session) => {
                session
                    .write_response_body(Some(Bytes::from_static(b": keepalive\n\n")), false)
                    .await
            }
            Out::Events(tx) if tx.is_closed() => Err(gone()),
            Out::Events(_) => Ok(()),
        }
    }

    /// Resolves when the client of a stream has gone (a closed connection or a reset
    /// stream), so what would be written to it next is kept instead (see `outstanding`).
    pub(super) async fn closed(&mut self) {
        match self {
            Out::Http(session) => loop {
                match session.read_body_or_idle(true).await {
                    Err(_) => return,
                    Ok(Some(_)) => continue, // bytes after a GET: not ours to read
                    Ok(None) => futures::future::pending::<()>().await,
                }
            },
            Out::Events(tx) => tx.closed().await,
        }
    }

    /// Ends a streamed answer that ends with no last event.
    pub(super) async fn end(&mut self) -> Result<()> {
        match self {
            Out::Http(session) => session.write_response_body(None, true).await,
            Out::Events(_) => Ok(()),
        }
    }
}

/// A streamed answer's events on their way out. On a resumable stream each gets an id and
/// a place in the stream's replay buffer, and a client that leaves does not stop the
/// stream: it is read on into the buffer, for the client to resume.
pub(super) struct Events<'o, 'a> {
    pub(super) out: &'o mut Out<'a>,
    replay: Option<Arc<Replay>>,
    /// The client, while it reads the stream (a resumable stream goes on into its buffer
    /// once it left).
    reader: Option<Reader>,
    /// Set while the response has not started (the first event starts it); true when an
    /// error-only answer goes as JSON with its era's status instead.
    pub(super) unstarted: Option<bool>,
}

impl<'o, 'a> Events<'o, 'a> {
    pub(super) fn new(out: &'o mut Out<'a>, replay: Option<(Arc<Replay>, Reader)>) -> Self {
        let (replay, reader) = replay.unzip();
        Events {
            out,
            replay,
            reader,
            unstarted: None,
        }
    }

    /// Starts the response before the first event, unless `data` is a whole answer that
    /// is only an error for a stateless client: that goes as JSON with its status. Whether
    /// the event is still to be sent.
    async fn start(&mut self, data: &str, last: bool) -> Result<bool> {
        let Some(json_errors) = self.unstarted.take() else {
            return Ok(true);
        };
        if json_errors && last {
            if let Ok(msg) = serde_json::from_str::<Value>(data) {
                let code = msg.pointer("/error/code").and_then(Value::as_i64);
                let status = code.map(crate::mcp::modern::http_status).unwrap_or(200);
                if status != 200 {
                    self.out.reply(Reply::json(status, &msg)).await?;
                    return Ok(false);
                }
            }
        }
        self.out.start_stream().await?;
        Ok(true)
    }

    /// Whether a client reads the stream.
    pub(super) fn reading(&self) -> bool {
        self.replay.is_none() || self.reader.is_some()
    }

    /// The client left: a resumable stream goes on into its buffer; any other fails.
    pub(super) fn client_left(&mut self) -> Result<()> {
        if self.replay.is_none() {
            return Err(gone());
        }
        tracing::debug!("a client left a resumable stream; it is kept for its return");
        self.reader = None;
        Ok(())
    }

    /// Sends one message (`last` ends the stream); whether the client is still there. Only
    /// a stream without replay fails when the client has left.
    pub(super) async fn send(&mut self, data: &str, last: bool) -> Result<bool> {
        if !self.start(data, last).await? {
            return Ok(true);
        }
        let Some(replay) = &self.replay else {
            self.out.event(message_event(data), data, last).await?;
            return Ok(true);
        };
        let id = replay.push(data);
        if last {
            replay.end();
        }
        if self.reader.is_none() {
            return Ok(false); // the client left
        }
        let wire = event_with_id(&id, data);
        if self.out.event(wire, data, last).await.is_err() {
            tracing::debug!("a client left a resumable stream; it is kept for its return");
            self.reader = None;
            return Ok(false);
        }
        if last {
            replay.delivered();
            self.reader = None;
        }
        Ok(true)
    }
}

/// Sends what a resumed stream's client missed.
pub(super) async fn replayed(out: &mut Out<'_>, missed: Vec<(String, String)>) -> Result<()> {
    for (id, data) in missed {
        out.event(event_with_id(&id, &data), &data, false).await?;
    }
    Ok(())
}

impl Drop for Events<'_, '_> {
    fn drop(&mut self) {
        // A call's writer that stops before its answer (a failure, or its task was
        // dropped) ends the stream, so readers that resumed it are not left waiting.
        if let Some(replay) = &self.replay {
            if replay.kind() == Kind::Call {
                replay.end();
            }
        }
    }
}

/// How often an idle client stream gets a comment, so a client that left is noticed.
pub(super) const KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(15);
