//! Reading what an upstream sends within bounds: a JSON answer, an error body or an SSE
//! event may not grow without limit (nor an error body take for ever), whatever the
//! upstream does.

use crate::UpstreamError;
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use std::time::Duration;

/// Largest answer read from an upstream: one JSON body, or one SSE event. Far beyond any
/// tool result a client can use; past it the answer is an error, not an allocation.
pub const MAX_ANSWER_BYTES: usize = 32 << 20;

/// Most of an error body kept (for the message that names the failure).
pub const MAX_ERROR_BODY_BYTES: usize = 4 << 10;

/// Longest wait for an error body: it only adds words to a failure already known.
pub const ERROR_BODY_WAIT: Duration = Duration::from_secs(5);

/// Why a body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("the answer is larger than {max} bytes")]
    TooLarge { max: usize },
    #[error("{0}")]
    Broken(String),
}

/// The body of a successful answer from `url`, at most `max` bytes: any other status is
/// [`UpstreamError::Status`] (with the start of its body), a body too large or broken off
/// [`UpstreamError::Unusable`].
pub async fn success_body(
    resp: reqwest::Response,
    url: &str,
    max: usize,
) -> Result<Bytes, UpstreamError> {
    let status = resp.status().as_u16();
    if !(200..300).contains(&status) {
        return Err(UpstreamError::Status {
            url: url.to_string(),
            status,
            body: error_text(resp).await,
        });
    }
    read_bounded(resp, max)
        .await
        .map_err(|e| UpstreamError::Unusable {
            url: url.to_string(),
            reason: e.to_string(),
        })
}

/// `work` against `url`, or [`UpstreamError::Timeout`] once `limit` passes.
pub async fn within<T>(
    url: &str,
    limit: Duration,
    work: impl std::future::Future<Output = Result<T, UpstreamError>>,
) -> Result<T, UpstreamError> {
    tokio::time::timeout(limit, work)
        .await
        .map_err(|_| UpstreamError::Timeout {
            url: url.to_string(),
            after: limit,
        })?
}

/// The whole body of `resp`, refused once it passes `max` bytes.
pub async fn read_bounded(resp: reqwest::Response, max: usize) -> Result<Bytes, BodyError> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(BodyError::TooLarge { max });
    }
    collect_bounded(resp.bytes_stream(), max).await
}

/// The chunks of `stream`, joined, refused once they pass `max` bytes.
pub async fn collect_bounded<S, E>(stream: S, max: usize) -> Result<Bytes, BodyError>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: std::fmt::Display,
{
    let mut stream = std::pin::pin!(stream);
    let mut body = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| BodyError::Broken(e.to_string()))?;
        if body.len() + chunk.len() > max {
            return Err(BodyError::TooLarge { max });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The start of an error body, for a message: at most [`MAX_ERROR_BODY_BYTES`], waited for
/// at most [`ERROR_BODY_WAIT`]; what could not be read is left out.
pub async fn error_text(resp: reqwest::Response) -> String {
    let mut stream = std::pin::pin!(resp.bytes_stream());
    let mut body = Vec::new();
    let read = async {
        while let Some(Ok(chunk)) = stream.next().await {
            let room = MAX_ERROR_BODY_BYTES - body.len();
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() >= MAX_ERROR_BODY_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(ERROR_BODY_WAIT, read).await;
    String::from_utf8_lossy(&body).into_owned()
}

/// The bytes of an SSE body regrouped into whole lines (an unfinished line is held back
/// until its end arrives), and cut off with one error once an event (the bytes since the
/// last blank line) passes `max`. Whole lines keep the SSE parser linear: it parses what
/// it buffers again on every push, so a long line pushed in many pieces would cost the
/// square of its length.
pub fn bounded_events<S, B, E>(bytes: S, max: usize) -> EventChunks<S>
where
    S: Stream<Item = Result<B, E>>,
    B: Into<Bytes>,
    E: std::fmt::Display,
{
    EventChunks {
        inner: Box::pin(bytes),
        partial: BytesMut::new(),
        pending: 0,
        newline: false,
        max,
        done: false,
    }
}

/// See [`bounded_events`].
pub struct EventChunks<S> {
    inner: std::pin::Pin<Box<S>>,
    /// An unfinished line.
    partial: BytesMut,
    /// Bytes since the last blank line.
    pending: usize,
    /// Whether the last chunk ended with a line feed.
    newline: bool,
    max: usize,
    done: bool,
}

impl<S, B, E> Stream for EventChunks<S>
where
    S: Stream<Item = Result<B, E>>,
    B: Into<Bytes>,
    E: std::fmt::Display,
{
    type Item = Result<Bytes, String>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            let chunk: Bytes = match std::task::ready!(this.inner.as_mut().poll_next(cx)) {
                None => {
                    this.done = true;
                    if this.partial.is_empty() {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Ok(this.partial.split().freeze())));
                }
                Some(Err(e)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e.to_string())));
                }
                Some(Ok(c)) => c.into(),
            };
            this.pending =
                after_last_event(&chunk, this.newline).unwrap_or(this.pending + chunk.len());
            this.newline = chunk.last() == Some(&b'\n');
            if this.pending > this.max {
                this.done = true;
                let max = this.max;
                return Poll::Ready(Some(Err(format!("an event is larger than {max} bytes"))));
            }
            let Some(end) = memchr::memrchr(b'\n', &chunk) else {
                this.partial.extend_from_slice(&chunk);
                continue;
            };
            if this.partial.is_empty() {
                // The common case: whole lines, passed on without a copy.
                this.partial.extend_from_slice(&chunk[end + 1..]);
                return Poll::Ready(Some(Ok(chunk.slice(..=end))));
            }
            this.partial.extend_from_slice(&chunk[..=end]);
            let lines = this.partial.split().freeze();
            this.partial.extend_from_slice(&chunk[end + 1..]);
            return Poll::Ready(Some(Ok(lines)));
        }
    }
}

/// How many bytes of `chunk` follow its last event boundary (a blank line: `\n\n` or
/// `\n\r\n`, also one that began at the end of the chunk before, when `newline`), or
/// None when it has none. Found with memchr, as it runs on every streamed chunk.
fn after_last_event(chunk: &[u8], newline: bool) -> Option<usize> {
    let within = [&b"\n\n"[..], &b"\n\r\n"[..]]
        .iter()
        .filter_map(|sep| memchr::memmem::rfind(chunk, sep).map(|i| i + sep.len()))
        .max();
    let at_start = newline
        .then(|| {
            if chunk.starts_with(b"\n") {
                Some(1)
            } else if chunk.starts_with(b"\r\n") {
                Some(2)
            } else {
                None
            }
        })
        .flatten();
    within.or(at_start).map(|end| chunk.len() - end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bodies_and_events_past_their_bound_are_refused() {
        let chunks = |parts: &[&'static [u8]]| {
            futures::stream::iter(
                parts
                    .iter()
                    .map(|p| Ok::<Bytes, String>(Bytes::from_static(p)))
                    .collect::<Vec<_>>(),
            )
        };
        let whole = collect_bounded(chunks(&[b"ab", b"cd"]), 4).await;
        assert_eq!(whole, Ok(Bytes::from_static(b"abcd")));
        let over = collect_bounded(chunks(&[b"ab", b"cde"]), 4).await;
        assert_eq!(over, Err(BodyError::TooLarge { max: 4 }));

        // Events of 3 bytes each pass a bound of 5 however they are split; one of 6 ends it.
        let fine: Vec<_> = bounded_events(chunks(&[b"data", b": a\n\ndata: b\r\n\r\n"]), 8)
            .collect()
            .await;
        assert!(fine.iter().all(Result::is_ok), "{fine:?}");
        let long: Vec<_> = bounded_events(
            chunks(&[b"data: 1\n\n", b"data: 12345", b"6789\n\n", b"data: 3\n\n"]),
            8,
        )
        .collect()
        .await;
        assert_eq!(long.len(), 2, "{long:?}");
        assert!(long[1]
            .as_ref()
            .is_err_and(|e| e.contains("larger than 8 bytes")));
        // Lines are regrouped whole; the last, unfinished one comes at the end.
        let lines: Vec<_> = bounded_events(chunks(&[b"data: a", b"bc\ndata", b": d\n\nid"]), 64)
            .collect()
            .await;
        let lines: Vec<_> = lines.into_iter().map(|l| l.expect("fine")).collect();
        assert_eq!(lines, ["data: abc\n", "data: d\n\n", "id"]);
    }
}
