//! Calls to upstreams: forwarding a request and streaming its answer back, under the
//! upstream's circuit breaker and retry policy; opening a client's upstream sessions;
//! fanning a request out to all of them.

use super::held::with_side_stream;
use super::replay::{event_with_id, Kind, Reader, Replay};
use super::*;
use crate::policy::circuit::Transition;
use switchboard_config::kinds::upstream::CircuitBreaker;
use tokio::sync::mpsc;

/// Where an answer goes: the HTTP response itself, or a channel (legacy HTTP+SSE stream,
/// WebSocket), which takes each message whole.
pub(super) enum Out<'a> {
    Http(&'a mut Session),
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
    async fn end(&mut self) -> Result<()> {
        match self {
            Out::Http(session) => session.write_response_body(None, true).await,
            Out::Events(_) => Ok(()),
        }
    }
}

impl Gateway {
    /// Sends a call upstream and streams the answer back with the client's id restored.
    pub(super) async fn forward(
        &self,
        out: &mut Out<'_>,
        routes: &Routes,
        server: &ServerView,
        mut f: Forward,
        resumable: Option<&str>,
    ) -> Result<&'static str> {
        if f.task {
            return self.create_task(out, routes, server, f).await;
        }
        // A stateless client that can be asked things gets an upstream session of its own
        // for the call (see `held`), ended with the call unless the call waits for input.
        let spec = routes.upstream(&f.upstream);
        let own = match &spec {
            Some(spec) if f.stateless && f.continuation.is_none() => {
                self.call_session(&f, spec).await
            }
            _ => None,
        };
        // Its GET stream is open before the call starts, so nothing the upstream asks on it
        // is lost.
        let mut side = None;
        let mut left = None;
        let mut ender = None;
        if let (Some(own), Some(spec)) = (&own, &spec) {
            f.session = Some(own.clone());
            ender = Some(self.call_session_ender(own, spec));
            side = self.session_stream(&f, spec, own).await;
        } else if let Some(spec) = spec
            .as_ref()
            .filter(|_| routes.unhealthy(&f.upstream).is_none())
        {
            // A session-era client that can be asked: see `questions`.
            if let Some((stream, gone)) = self.question_stream(&f, server, spec).await {
                side = Some(stream);
                left = Some(gone);
            }
        }
        let outcome = self
            .forward_call(out, routes, server, f, resumable, (side, left))
            .await;
        if let (Some(ender), Ok("input_required")) = (ender, &outcome) {
            ender.disarm(); // the held call ends it now
        }
        outcome
    }

    async fn forward_call(
        &self,
        out: &mut Out<'_>,
        routes: &Routes,
        server: &ServerView,
        f: Forward,
        resumable: Option<&str>,
        (side, left): (Option<switchboard_upstream::Messages>, Option<ClientLeft>),
    ) -> Result<&'static str> {
        let fail = |message: String| {
            Reply::json(
                200,
                &jsonrpc::error_response(
                    &f.client_id,
                    &RpcError {
                        code: jsonrpc::INTERNAL_ERROR,
                        message,
                        data: Some(json!({"upstream": f.upstream})),
                    },
                ),
            )
        };
        let Some(spec) = routes.upstream(&f.upstream) else {
            let reply = fail(format!("upstream `{}` is not in this snapshot", f.upstream));
            return out.reply(reply).await.map(|()| "upstream_error");
        };
        if let Some(why) = routes.unhealthy(&f.upstream) {
            let reply = fail(unhealthy_message(&f.upstream, why));
            return out.reply(reply).await.map(|()| "upstream_error");
        }
        let timeouts = server.timeouts(&spec, &f.upstream);
        let span = if crate::tracecontext::enabled() {
            tracing::info_span!(
                "mcp.upstream",
                otel.kind = "client",
                mcp.upstream = %f.upstream,
                mcp.method = %f.method,
            )
        } else {
            tracing::Span::none()
        };
        let mut headers = f.headers.clone();
        headers.extend(crate::tracecontext::headers_for(&span));
        let call = CallOptions {
            timeout: timeouts.request,
            headers,
        };
        let idle = timeouts.idle.unwrap_or(DEFAULT_IDLE);
        if let Some(c) = &f.continuation {
            return self
                .resume_held(out, &spec, &f, c, &call, idle, resumable)
                .await;
        }
        // In the client's own upstream session its ids are unique already: keep them, so
        // what the client later says about a request (notifications/cancelled) means the
        // same request upstream. Shared sessions get ids of the gateway's own.
        let own = crate::upstreams::uses_own_session(&f.upstream, &spec, f.session.as_ref());
        let gateway_id = if own {
            f.client_id.clone()
        } else {
            self.upstreams.internal_id()
        };
        let body =
            json!({"jsonrpc": "2.0", "id": gateway_id, "method": f.method, "params": f.params});
        let answering = Answering {
            f: &f,
            gateway_id: gateway_id.clone(),
            left,
        };
        let restore = |msg: Value| answering.restore(msg);
        let json_reply = |msg: Value| {
            let code = msg.pointer("/error/code").and_then(Value::as_i64);
            let status = match code {
                Some(code) if f.stateless => crate::mcp::modern::http_status(code),
                _ => 200,
            };
            Reply::json(status, &restore(msg))
        };
        let failed = |e: CallError| {
            match e {
            CallError::Open(left) => fail(format!(
                "upstream `{}` keeps failing on this gateway; not calling it for another {:.1}s (circuit open)",
                f.upstream,
                left.as_secs_f64()
            )),
            CallError::Upstream(e) => fail(format!("upstream `{}` failed: {e}", f.upstream)),
        }
        };
        if spec
            .mcp
            .as_ref()
            .is_some_and(|m| m.transport == McpTransport::Sse)
        {
            let answer = self
                .attempt(&f, &spec, || {
                    self.upstreams.call_legacy(&f.upstream, &spec, &body, &call)
                })
                .await;
            let (reply, outcome) = match answer {
                Ok(msg) => {
                    let reply = json_reply(msg);
                    let outcome = reply.outcome();
                    (reply, outcome)
                }
                Err(e) => (failed(e), "upstream_error"),
            };
            return out.reply(reply).await.map(|()| outcome);
        }
        let sent = self
            .attempt(&f, &spec, || {
                self.upstreams
                    .send(&f.upstream, &spec, &body, f.session.as_ref(), &call)
            })
            .instrument(span.clone())
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => return out.reply(failed(e)).await.map(|()| "upstream_error"),
        };
        if !is_event_stream(&resp) {
            let (reply, outcome) = match tokio::time::timeout(idle, resp.bytes()).await {
                Ok(Ok(b)) => match serde_json::from_slice::<Value>(&b) {
                    Ok(msg) => {
                        let reply = json_reply(msg);
                        let outcome = reply.outcome();
                        (reply, outcome)
                    }
                    Err(e) => (
                        fail(format!("upstream `{}` sent invalid JSON: {e}", f.upstream)),
                        "upstream_error",
                    ),
                },
                Ok(Err(e)) => (
                    fail(format!(
                        "upstream `{}` broke off its answer: {e}",
                        f.upstream
                    )),
                    "upstream_error",
                ),
                Err(_) => (
                    fail(format!(
                        "upstream `{}` sent no more of its answer for {idle:?}",
                        f.upstream
                    )),
                    "upstream_error",
                ),
            };
            return out.reply(reply).await.map(|()| outcome);
        }
        // SSE: pass every event on as it arrives (progress notifications included), ending
        // the stream with the response.
        let mut events: UpstreamEvents = Box::pin(json_events(resp.bytes_stream()));
        if let Some(side) = side {
            // The call's own session: what the upstream sends on its GET stream meanwhile
            // belongs to this call too.
            events = with_side_stream(events, side);
        }
        self.stream_answer(out, events, answering, idle, resumable, &spec)
            .await
    }

    /// Relays an upstream's SSE answer to a call, event by event, until its response. A
    /// request the upstream sends a stateless client meanwhile holds the call instead (the
    /// client gets an `InputRequiredResult`, see `held`).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn stream_answer(
        &self,
        out: &mut Out<'_>,
        mut events: UpstreamEvents,
        answering: Answering<'_>,
        idle: std::time::Duration,
        resumable: Option<&str>,
        spec: &Arc<UpstreamEntry>,
    ) -> Result<&'static str> {
        let f = answering.f;
        let _streaming = Tracked::new(&metrics().sse_streams);
        let replay = resumable.and_then(|fp| self.replays.open(fp, Kind::Call));
        // The stream starts with its first event: an answer that is only an error goes to
        // a stateless client as JSON with the HTTP status its era gives that error.
        let mut events_out = Events::new(out, replay);
        events_out.unstarted = Some(f.stateless);
        loop {
            let reading = events_out.reading();
            let next = tokio::select! {
                next = tokio::time::timeout(idle, events.next()) => match next {
                    Ok(next) => next,
                    Err(_) => Some(Err(format!("no event for {idle:?}"))),
                },
                // A client that leaves while the upstream is quiet (waiting for an answer
                // to a question, say) is noticed now, not at the next write.
                () = events_out.out.closed(), if reading => {
                    events_out.client_left()?;
                    if let Some(left) = &answering.left {
                        left.set();
                    }
                    continue;
                }
            };
            match next {
                Some(Ok(event)) if event.data.trim().is_empty() => {
                    continue; // an upstream's priming event: its ids mean nothing here
                }
                Some(Ok(event)) => {
                    let (data, done) = match serde_json::from_str::<Value>(&event.data) {
                        Ok(mut msg) => {
                            if f.stateless
                                && msg.get("method").and_then(Value::as_str)
                                    == Some("notifications/message")
                                && !crate::mcp::modern::log_wanted(&msg, f.log_level.as_deref())
                            {
                                continue; // the client did not ask for this level
                            }
                            let is_response = msg.get("id") == Some(&answering.gateway_id)
                                && (msg.get("result").is_some() || msg.get("error").is_some());
                            if crate::mcp::relay::is_request(&msg) {
                                if f.stateless && msg["method"] == "ping" {
                                    self.pong(f, spec, &msg).await;
                                    continue;
                                }
                                if f.stateless {
                                    // A stateless client cannot be asked mid-call: it gets
                                    // the question as an `InputRequiredResult`.
                                    return match self.hold(events, answering, msg, spec).await {
                                        Some((before, result)) => {
                                            let mut delivered = Ok(true);
                                            for note in before {
                                                if delivered.is_ok() {
                                                    delivered = events_out.send(&note, false).await;
                                                }
                                            }
                                            if delivered.is_ok() {
                                                delivered = events_out
                                                    .send(&result.to_string(), true)
                                                    .await;
                                            }
                                            if let Err(e) = delivered {
                                                // Nobody learnt the state: the call would only
                                                // wait out its time.
                                                self.drop_held(&result);
                                                return Err(e);
                                            }
                                            Ok("input_required")
                                        }
                                        None => {
                                            let msg = jsonrpc::error_response(
                                                &f.client_id,
                                                &RpcError::new(
                                                    jsonrpc::INTERNAL_ERROR,
                                                    "too many calls wait for their clients' input on this data plane",
                                                ),
                                            );
                                            events_out.send(&msg.to_string(), true).await?;
                                            Ok("error")
                                        }
                                    };
                                }
                                // The upstream asks the client something: make its answer
                                // find the way back (see `mcp::relay`).
                                msg["id"] = crate::mcp::relay::wrap(&f.upstream, &msg["id"]);
                            }
                            (answering.restore(msg).to_string(), is_response)
                        }
                        Err(_) => (event.data.clone(), false),
                    };
                    if !events_out.send(&data, done).await? {
                        if let Some(left) = &answering.left {
                            left.set();
                        }
                    }
                    if done {
                        return Ok("ok");
                    }
                }
                end => {
                    let why = match end {
                        Some(Err(e)) => e,
                        _ => "the stream ended without a response".into(),
                    };
                    let msg = jsonrpc::error_response(
                        &f.client_id,
                        &RpcError::new(
                            jsonrpc::INTERNAL_ERROR,
                            format!("upstream `{}`: {why}", f.upstream),
                        ),
                    );
                    events_out.send(&msg.to_string(), true).await?;
                    return Ok("upstream_error");
                }
            }
        }
    }
}

/// An upstream's SSE answer, as events.
pub(super) type UpstreamEvents = std::pin::Pin<
    Box<
        dyn futures::Stream<Item = std::result::Result<switchboard_upstream::SseEvent, String>>
            + Send,
    >,
>;

/// A call being answered: what the client sent, and the id the upstream knows it by.
pub(super) struct Answering<'f> {
    pub(super) f: &'f Forward,
    pub(super) gateway_id: Value,
    /// Set once the client left a resumable stream, so the questions of its upstream
    /// session go to the client's other streams (see `questions`).
    pub(super) left: Option<ClientLeft>,
}

/// Whether the client of a call's stream has left it; shared with the call's question
/// stream, which is woken when it happens.
pub(super) type ClientLeft = Arc<Left>;

/// See [`ClientLeft`].
#[derive(Default)]
pub(super) struct Left {
    gone: std::sync::atomic::AtomicBool,
    told: tokio::sync::Notify,
}

impl Left {
    /// The client has left.
    pub(super) fn set(&self) {
        self.gone.store(true, std::sync::atomic::Ordering::SeqCst);
        self.told.notify_waiters();
    }

    /// Whether the client has left.
    pub(super) fn is_set(&self) -> bool {
        self.gone.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Resolves once the client has left.
    pub(super) async fn wait(&self) {
        loop {
            let told = self.told.notified();
            tokio::pin!(told);
            told.as_mut().enable();
            if self.is_set() {
                return;
            }
            told.await;
        }
    }
}

impl Answering<'_> {
    /// An upstream message as the client must see it: its own id on the response, and the
    /// stateless era's shape on the result.
    pub(super) fn restore(&self, mut msg: Value) -> Value {
        let answer = msg.get("id") == Some(&self.gateway_id);
        if answer {
            msg["id"] = self.f.client_id.clone();
            if self.f.stateless {
                if let Some(result) = msg.get_mut("result") {
                    crate::mcp::modern::shape_result(&self.f.method, result, &self.f.server);
                }
            }
        }
        if !self.f.stateless {
            // Task ids name the upstream, so later task requests find their way back.
            let tasks_result = answer && self.f.method.starts_with("tasks/");
            crate::mcp::relay::task_ids_out(&self.f.upstream, &mut msg, tasks_result);
        }
        msg
    }
}

/// A streamed answer's events on their way out. On a resumable stream each gets an id and
/// a place in the stream's replay buffer, and a client that leaves does not stop the
/// stream: it is read on into the buffer, for the client to resume.
struct Events<'o, 'a> {
    out: &'o mut Out<'a>,
    replay: Option<Arc<Replay>>,
    /// The client, while it reads the stream (a resumable stream goes on into its buffer
    /// once it left).
    reader: Option<Reader>,
    /// Set while the response has not started (the first event starts it); true when an
    /// error-only answer goes as JSON with its era's status instead.
    unstarted: Option<bool>,
}

impl<'o, 'a> Events<'o, 'a> {
    fn new(out: &'o mut Out<'a>, replay: Option<(Arc<Replay>, Reader)>) -> Self {
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
    fn reading(&self) -> bool {
        self.replay.is_none() || self.reader.is_some()
    }

    /// The client left: a resumable stream goes on into its buffer; any other fails.
    fn client_left(&mut self) -> Result<()> {
        if self.replay.is_none() {
            return Err(gone());
        }
        tracing::debug!("a client left a resumable stream; it is kept for its return");
        self.reader = None;
        Ok(())
    }

    /// Sends one message (`last` ends the stream); whether the client is still there. Only
    /// a stream without replay fails when the client has left.
    async fn send(&mut self, data: &str, last: bool) -> Result<bool> {
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
async fn replayed(out: &mut Out<'_>, missed: Vec<(String, String)>) -> Result<()> {
    for (id, data) in missed {
        out.event(event_with_id(&id, &data), &data, false).await?;
    }
    Ok(())
}

/// Where a GET stream starts: afresh (resumable when it belongs to a session, whose
/// fingerprint this is), or where a client that lost it left off.
pub(super) enum ListenFrom<'a> {
    Fresh(Option<&'a str>),
    Resumed(Reader, u64),
}

impl Gateway {
    /// Serves a GET whose `Last-Event-ID` names a call's stream: what the client missed,
    /// then the rest of the call as it comes, ending with its answer.
    pub(super) async fn resume_call(
        &self,
        out: &mut Out<'_>,
        reader: Reader,
        mut seq: u64,
    ) -> Result<&'static str> {
        let replay = reader.replay().clone();
        out.start_stream().await?;
        let _streaming = Tracked::new(&metrics().sse_streams);
        let mut progress = replay.progress();
        let mut keepalive = tokio::time::interval(KEEPALIVE);
        keepalive.tick().await;
        let outcome = loop {
            let now = *progress.borrow_and_update();
            let missed = match replay.after(seq) {
                Ok(m) => m,
                Err(e) => {
                    tracing::info!(error = %e, "a resumed call stream ran past its buffer");
                    break "error";
                }
            };
            seq += missed.len() as u64;
            if replayed(out, missed).await.is_err() {
                break "ok"; // the client left again
            }
            if now.ended && seq >= now.last {
                let _ = out.end().await;
                break "ok";
            }
            tokio::select! {
                changed = progress.changed() => if changed.is_err() {
                    let _ = out.end().await;
                    break "ok";
                },
                _ = keepalive.tick() => if out.keepalive().await.is_err() {
                    break "ok";
                },
            }
        };
        drop(reader);
        Ok(outcome)
    }
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

/// Why a call to an upstream got no answer.
enum CallError {
    /// Its circuit is open on this data plane (for this long still).
    Open(std::time::Duration),
    Upstream(UpstreamError),
}

impl Gateway {
    /// Runs one upstream call under the upstream's circuit breaker and retry policy, and
    /// records how it went (circuit state, passive health signals).
    async fn attempt<T, F, Fut>(
        &self,
        f: &Forward,
        spec: &UpstreamEntry,
        mut call: F,
    ) -> std::result::Result<T, CallError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, UpstreamError>>,
    {
        let breaker = &spec.circuit_breaker;
        if let Admission::Open(left) = self.breakers.admit(&f.upstream, breaker) {
            return Err(CallError::Open(left));
        }
        let safe = f.method != "tools/call"
            || match spec.retries.tool_calls {
                ToolCallRetries::Always => true,
                ToolCallRetries::Never => false,
                ToolCallRetries::WhenIdempotent => f.idempotent,
            };
        let m = metrics();
        let timer = m
            .upstream_seconds
            .with_label_values(&[f.upstream.as_str(), method_label(&f.method)]);
        let mut done = 0;
        loop {
            let started = std::time::Instant::now();
            let result = call().await;
            timer.observe(started.elapsed().as_secs_f64());
            match result {
                Ok(v) => {
                    self.signals.success(&f.upstream);
                    self.circuit(f, breaker, true);
                    return Ok(v);
                }
                Err(e) => {
                    if let Some(wait) = retry::next_wait(&spec.retries, &e, done, safe) {
                        done += 1;
                        m.retries.with_label_values(&[f.upstream.as_str()]).inc();
                        tracing::info!(upstream = %f.upstream, method = %f.method, error = %e, retry = done, ?wait, "retrying upstream call");
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    let fault = retry::is_upstream_fault(&e);
                    if fault {
                        self.signals.failure(&f.upstream, &e.to_string());
                    }
                    self.circuit(f, breaker, !fault);
                    tracing::warn!(upstream = %f.upstream, error = %e, retries = done, "upstream call failed");
                    return Err(CallError::Upstream(e));
                }
            }
        }
    }
}

/// The server's MCP upstreams (streamable HTTP) that are not known to be down, with specs.
fn mcp_upstreams<'a>(
    routes: &'a Routes,
    server: &'a ServerView,
) -> impl Iterator<Item = (&'a String, Arc<UpstreamEntry>)> + 'a {
    server.upstreams.iter().filter_map(|name| {
        let spec = routes.upstream(name)?;
        if spec.mcp.as_ref()?.transport != McpTransport::StreamableHttp {
            return None; // legacy HTTP+SSE upstreams share one session per data plane
        }
        if routes.unhealthy(name).is_some() {
            return None; // opened on first use once it is back
        }
        Some((name, spec))
    })
}

/// What a client is told when it calls an upstream the health checks found down.
pub(super) fn unhealthy_message(upstream: &str, why: &str) -> String {
    if why.is_empty() {
        format!("upstream `{upstream}` is unhealthy; failing fast until it recovers")
    } else {
        format!("upstream `{upstream}` is unhealthy ({why}); failing fast until it recovers")
    }
}

impl Gateway {
    /// Answers a client's initialize: opens its sessions with every upstream of the server
    /// (in parallel; one that fails is opened on first use instead) and seals them into the
    /// id, so whichever replica gets the next request can use them.
    pub(super) async fn open_session(
        &self,
        routes: &Routes,
        server: &ServerView,
        headers: &ClientHeaders,
        id: Value,
        result: Value,
        mut session: crate::session::Session,
    ) -> Reply {
        let opening = mcp_upstreams(routes, server).map(|(name, spec)| {
            let session = &session;
            let call = CallOptions {
                headers: client_headers(headers, server, &spec),
                ..CallOptions::default()
            };
            async move {
                let opened = self.upstreams.open_for(name, &spec, session, &call).await;
                (name, opened)
            }
        });
        for (name, opened) in futures::future::join_all(opening).await {
            match opened {
                Ok(r) => {
                    session.upstreams.insert(name.clone(), r);
                }
                Err(e) => {
                    tracing::warn!(server = %server.name, upstream = %name, error = %e, "could not open an upstream session for a new client; will retry on first use")
                }
            }
        }
        transport::initialized(server, &id, result, &session)
    }

    /// Sends one request to every upstream of `server` in the client's sessions, waiting
    /// for each answer (an upstream that fails or refuses is logged, not fatal: the level
    /// still applies to the others).
    pub(super) async fn fanout(
        &self,
        routes: &Routes,
        server: &ServerView,
        method: &str,
        params: &Value,
        session: &crate::session::Session,
    ) {
        let notification = method.starts_with("notifications/");
        let sends = mcp_upstreams(routes, server).map(|(name, spec)| {
            let mut body = json!({"jsonrpc": "2.0", "method": method, "params": params});
            if !notification {
                body["id"] = self.upstreams.internal_id();
            }
            async move {
                let outcome = match self.upstreams.send(name, &spec, &body, Some(session), &CallOptions::default()).await {
                    Ok(resp) => resp.bytes().await.map(|_| ()).map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                if let Err(e) = outcome {
                    tracing::warn!(upstream = %name, %method, error = %e, "upstream did not take a fanned-out request");
                }
            }
        });
        futures::future::join_all(sends).await;
    }

    /// Delivers a client's answer to a request `upstream` sent it, in the client's session.
    pub(super) async fn relay(
        &self,
        routes: &Routes,
        server: &ServerView,
        client: &ClientHeaders,
        upstream: &str,
        message: &Value,
        session: &crate::session::Session,
    ) -> Reply {
        let Some(spec) = routes.upstream(upstream) else {
            return Reply::rpc_error(
                404,
                jsonrpc::INVALID_REQUEST,
                format!("upstream `{upstream}` is not in this snapshot"),
            );
        };
        let call = CallOptions {
            headers: client_headers(client, server, &spec),
            ..CallOptions::default()
        };
        let own = session.upstreams.get(upstream).and_then(|r| r.id.clone());
        if let (Some(id), Some(own)) = (message.get("id"), own) {
            let key = (upstream.to_string(), own);
            self.outstanding
                .answered(&key, &crate::mcp::relay::wrap(upstream, id));
        }
        match self
            .upstreams
            .send(upstream, &spec, message, Some(session), &call)
            .await
        {
            Ok(_) => Reply::empty(202),
            Err(e) => {
                tracing::warn!(%upstream, error = %e, "could not deliver a client's answer upstream");
                Reply::rpc_error(
                    502,
                    jsonrpc::INTERNAL_ERROR,
                    format!("could not deliver the answer to upstream `{upstream}`: {e}"),
                )
            }
        }
    }

    /// Serves a client's GET stream: the messages its upstream sessions send on their own,
    /// merged, with the ids of upstream requests wrapped so the answers find their way
    /// back, and the gateway's own `list_changed` notifications when a new snapshot changes
    /// the server's listings. Ends when the client leaves.
    pub(super) async fn listen(
        &self,
        out: &mut Out<'_>,
        routes: &Routes,
        server: &ServerView,
        client: &ClientHeaders,
        session: &crate::session::Session,
        from: ListenFrom<'_>,
    ) -> Result<&'static str> {
        let wanted: Vec<(&String, Arc<UpstreamEntry>)> = mcp_upstreams(routes, server)
            .filter(|(name, _)| session.upstreams.contains_key(*name))
            .collect();
        let opening = wanted.iter().map(|(name, spec)| async move {
            let opened = self.open_listen(name, spec, client, server, session).await;
            ((*name).clone(), opened)
        });
        let mut merged = futures::stream::SelectAll::new();
        // Streams to try again (refused because a call holds it, or ended), and when.
        let mut retry: std::collections::BTreeMap<
            String,
            (tokio::time::Instant, std::time::Duration),
        > = Default::default();
        // When each upstream stream was (re)opened, and the wait before it.
        let mut opened_at: std::collections::HashMap<
            String,
            (tokio::time::Instant, std::time::Duration),
        > = Default::default();
        for (name, opened) in futures::future::join_all(opening).await {
            match opened {
                Listened::Open(stream) => {
                    merged.push(stream);
                    opened_at.insert(
                        name,
                        (tokio::time::Instant::now(), super::questions::FIRST_REOPEN),
                    );
                }
                Listened::None => {}
                Listened::Retry(e) => {
                    tracing::debug!(upstream = %name, error = %e, "cannot open an upstream's stream for a client yet; trying again");
                    let first = super::questions::FIRST_REOPEN;
                    retry.insert(name, (tokio::time::Instant::now() + first, first));
                }
            }
        }
        // The questions this stream relays are kept until answered (see `outstanding`).
        let asking: std::collections::HashMap<
            &str,
            (super::outstanding::Key, std::time::Duration),
        > = wanted
            .iter()
            .filter_map(|(name, spec)| {
                let id = super::questions::own_session_id(name, spec, session)?;
                let patience = super::questions::patience(server, spec, name);
                Some((name.as_str(), (((*name).clone(), id), patience)))
            })
            .collect();
        let keys: Vec<super::outstanding::Key> = asking.values().map(|(k, _)| k.clone()).collect();
        let carrier = self.question_carrier();
        let mut waiting = self.outstanding.subscribe();
        out.start_stream().await?;
        let _streaming = Tracked::new(&metrics().sse_streams);
        let replay = match from {
            ListenFrom::Fresh(fp) => fp.and_then(|fp| self.replays.open(fp, Kind::Listen)),
            ListenFrom::Resumed(reader, seq) => {
                let missed = reader.replay().after(seq).unwrap_or_default();
                for (_, data) in &missed {
                    // Replayed here: no other stream needs to carry them again.
                    if let Ok(msg) = serde_json::from_str::<Value>(data) {
                        let asked = crate::mcp::relay::unwrap(&msg["id"])
                            .and_then(|(upstream, _)| asking.get(upstream.as_str()));
                        if let (true, Some((key, _))) = (crate::mcp::relay::is_request(&msg), asked)
                        {
                            carrier.claim(key, &msg["id"]);
                        }
                    }
                }
                if replayed(out, missed).await.is_err() {
                    return Ok("ok"); // the client left again
                }
                Some((reader.replay().clone(), reader))
            }
        };
        let mut events = Events::new(out, replay);
        // Questions that lost their stream before the client answered go out first.
        waiting.borrow_and_update();
        for (upstream, mut msg) in carrier.take_waiting(&keys) {
            msg["id"] = crate::mcp::relay::wrap(&upstream, &msg["id"]);
            crate::mcp::relay::task_ids_out(&upstream, &mut msg, false);
            if !matches!(events.send(&msg.to_string(), false).await, Ok(true)) {
                return Ok("ok"); // the client left
            }
        }
        let mut upstreams_open = !merged.is_empty();
        let mut keepalive = tokio::time::interval(KEEPALIVE);
        keepalive.tick().await;
        let mut changes = self.changes.clone();
        changes.borrow_and_update();
        let mut routes_change = true;
        let mut lists = server.lists;
        loop {
            let due = retry.values().map(|(at, _)| *at).min();
            let messages = tokio::select! {
                _ = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)), if due.is_some() => {
                    let now = tokio::time::Instant::now();
                    let ready: Vec<String> = retry
                        .iter()
                        .filter(|(_, (at, _))| *at <= now)
                        .map(|(name, _)| name.clone())
                        .collect();
                    for name in ready {
                        let Some((_, wait)) = retry.remove(&name) else { continue };
                        // The routes in force now (the upstream may have moved).
                        let Some(spec) = self.routes.load().upstream(&name) else { continue };
                        match self.open_listen(&name, &spec, client, server, session).await {
                            Listened::Open(stream) => {
                                tracing::debug!(upstream = %name, "upstream stream for a client reopened");
                                merged.push(stream);
                                upstreams_open = true;
                                opened_at.insert(name, (tokio::time::Instant::now(), wait));
                            }
                            Listened::None => {}
                            Listened::Retry(_) => {
                                let next = super::questions::next_reopen(wait);
                                retry.insert(name, (tokio::time::Instant::now() + next, next));
                            }
                        }
                    }
                    continue;
                }
                next = merged.next(), if upstreams_open => match next {
                    Some((upstream, Upstreamed::Ended)) => {
                        tracing::debug!(%upstream, "an upstream's stream to a client ended; reopening it");
                        // A stream that ends at once is not tried again at once.
                        let first = super::questions::FIRST_REOPEN;
                        let wait = match opened_at.remove(&upstream) {
                            Some((at, wait)) if at.elapsed() < std::time::Duration::from_secs(5) => {
                                super::questions::next_reopen(wait)
                            }
                            _ => first,
                        };
                        retry.insert(upstream, (tokio::time::Instant::now() + wait, wait));
                        continue;
                    }
                    Some((upstream, Upstreamed::Message(Ok(mut msg)))) => {
                        let method = msg.get("method").and_then(Value::as_str).unwrap_or("");
                        if switchboard_upstream::is_list_changed(method) {
                            // The gateway's own listing changes once discovery has the new
                            // catalog; it says so then (below).
                            continue;
                        }
                        if crate::mcp::relay::is_request(&msg) {
                            if let Some((key, patience)) = asking.get(upstream.as_str()) {
                                carrier.carry(key, &msg, session, *patience);
                            }
                            msg["id"] = crate::mcp::relay::wrap(&upstream, &msg["id"]);
                        }
                        crate::mcp::relay::task_ids_out(&upstream, &mut msg, false);
                        vec![msg]
                    }
                    Some((upstream, Upstreamed::Message(Err(e)))) => {
                        tracing::debug!(%upstream, error = %e, "an upstream's stream to a client broke");
                        continue;
                    }
                    None => {
                        upstreams_open = false;
                        continue;
                    }
                },
                changed = changes.changed(), if routes_change => {
                    if changed.is_err() {
                        routes_change = false; // fixed routes: nothing will change
                        continue;
                    }
                    let Some(now) = self.routes.load().server(&server.name) else {
                        events.out.end().await?;
                        return Ok("ok"); // the server is gone from this data plane
                    };
                    let notes = list_changes(&lists, &now.lists, [true; 3]);
                    lists = now.lists;
                    notes
                }
                changed = waiting.changed() => {
                    if changed.is_err() {
                        continue;
                    }
                    carrier
                        .take_waiting(&keys)
                        .into_iter()
                        .map(|(upstream, mut msg)| {
                            msg["id"] = crate::mcp::relay::wrap(&upstream, &msg["id"]);
                            crate::mcp::relay::task_ids_out(&upstream, &mut msg, false);
                            msg
                        })
                        .collect()
                }
                () = events.out.closed() => return Ok("ok"), // the client left
                _ = keepalive.tick() => {
                    if events.out.keepalive().await.is_err() {
                        return Ok("ok"); // the client left
                    }
                    continue;
                }
            };
            for msg in messages {
                if !matches!(events.send(&msg.to_string(), false).await, Ok(true)) {
                    return Ok("ok"); // the client left
                }
            }
        }
    }
}

/// What a client's GET stream reads from one upstream session's stream.
pub(super) enum Upstreamed {
    Message(std::result::Result<Value, String>),
    /// The stream is over (it is tried again while the client listens).
    Ended,
}

/// One upstream's stream for a client's GET stream, tagged with the upstream's name.
type Tagged = std::pin::Pin<Box<dyn futures::Stream<Item = (String, Upstreamed)> + Send>>;

/// The outcome of opening an upstream's stream for a client's GET stream.
enum Listened {
    Open(Tagged),
    /// The upstream offers none.
    None,
    /// Not now (a call holds it, or it failed): try again.
    Retry(String),
}

impl Gateway {
    /// Opens the GET stream of `client`'s session with `name`, noting that this data plane
    /// holds it (see `questions`) for as long as the stream lives.
    async fn open_listen(
        &self,
        name: &str,
        spec: &Arc<UpstreamEntry>,
        headers: &ClientHeaders,
        server: &ServerView,
        client: &crate::session::Session,
    ) -> Listened {
        let call = CallOptions {
            headers: client_headers(headers, server, spec),
            ..CallOptions::default()
        };
        match self.upstreams.listen(name, spec, client, &call).await {
            Ok(Some(stream)) => {
                let holding = super::questions::own_session_id(name, spec, client)
                    .map(|id| self.listening.hold(name, &id));
                let tag = name.to_string();
                let ended = tag.clone();
                let tagged = stream
                    .map(move |m| {
                        let _held = &holding; // released with the stream
                        (tag.clone(), Upstreamed::Message(m))
                    })
                    .chain(futures::stream::once(
                        async move { (ended, Upstreamed::Ended) },
                    ));
                Listened::Open(Box::pin(tagged))
            }
            Ok(None) => Listened::None,
            Err(e) => Listened::Retry(e.to_string()),
        }
    }
}

/// The kinds of listing a server has, in the order of `ServerView::lists`.
pub(super) const LIST_KINDS: [&str; 3] = ["tools", "prompts", "resources"];

/// The gateway's `notifications/*/list_changed` for the listings (of the kinds `wanted`)
/// whose fingerprints differ between `before` and `now`.
pub(super) fn list_changes(before: &[u64; 3], now: &[u64; 3], wanted: [bool; 3]) -> Vec<Value> {
    LIST_KINDS
        .iter()
        .enumerate()
        .filter(|(i, _)| wanted[*i] && before[*i] != now[*i])
        .map(|(_, kind)| json!({"jsonrpc": "2.0", "method": format!("notifications/{kind}/list_changed")}))
        .collect()
}

/// How often an idle client stream gets a comment, so a client that left is noticed.
pub(super) const KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(15);

impl Gateway {
    /// Records a call's verdict in the upstream's circuit; metrics follow its transitions.
    fn circuit(&self, f: &Forward, breaker: &CircuitBreaker, ok: bool) {
        let m = metrics();
        match self.breakers.record(&f.upstream, breaker, ok) {
            Transition::Unchanged => {}
            Transition::Opened => {
                m.circuit_opened
                    .with_label_values(&[f.upstream.as_str()])
                    .inc();
                m.circuit_open
                    .with_label_values(&[f.upstream.as_str()])
                    .set(1);
                tracing::warn!(upstream = %f.upstream, open_for = ?breaker.open_duration(), "circuit opened: failing fast");
            }
            Transition::Closed => {
                m.circuit_open
                    .with_label_values(&[f.upstream.as_str()])
                    .set(0);
                tracing::info!(upstream = %f.upstream, "circuit closed");
            }
        }
    }
}
