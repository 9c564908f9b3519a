//! Calls to upstreams: forwarding a request and streaming its answer back (see `out` for
//! where answers go and `resilience` for the circuit breaker and retries); opening a
//! client's upstream sessions; fanning a request out to all of them; relaying a client's
//! answer to an upstream's question.

use super::admission::client_headers;
use super::forwarder::{Forwarder, Scope};
use super::out::{Events, Out};
use super::replay::Kind;
use super::DEFAULT_IDLE;
use crate::backends::{caller_for, NoCaller};
use crate::errors::GatewayError;
use crate::metrics::{metrics, Served, Tracked};
use crate::routes::{Routes, ServerView, UpstreamEntry};
use crate::transport;
use crate::transport::{Forward, Reply};
use crate::upstreams::CallOptions;
use futures::StreamExt;
use pingora::Result;
use serde_json::{json, Value};
use std::sync::Arc;
use switchboard_config::kinds::upstream::McpTransport;
use switchboard_upstream::backend::{Answer, AnswerEvents};
use switchboard_upstream::SseEvent;
use tracing::Instrument;

impl Forwarder {
    /// Sends a call upstream and streams the answer back with the client's id restored.
    pub(super) async fn forward(
        &self,
        out: &mut Out<'_>,
        at: Scope<'_>,
        mut f: Forward,
        resumable: Option<&str>,
    ) -> Result<Served> {
        if f.task {
            return self.create_task(out, at, f).await;
        }
        let Scope { routes, server, .. } = at;
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
        let outcome = self.forward_call(out, at, f, resumable, (side, left)).await;
        if let (Some(ender), Ok(Served::InputRequired)) = (ender, &outcome) {
            ender.disarm(); // the held call ends it now
        }
        outcome
    }

    async fn forward_call(
        &self,
        out: &mut Out<'_>,
        Scope { routes, server, .. }: Scope<'_>,
        f: Forward,
        resumable: Option<&str>,
        (side, left): (Option<switchboard_upstream::Messages>, Option<ClientLeft>),
    ) -> Result<Served> {
        // The gateway's own failures (see `errors`); session-era clients get them with 200,
        // as before the stateless era's statuses existed.
        let fail = |e: GatewayError| e.reply(&f.client_id, false);
        let Some(spec) = routes.upstream(&f.upstream) else {
            let e = GatewayError::NotServed(f.upstream.clone());
            return out.reply(fail(e)).await.map(|()| Served::UpstreamError);
        };
        if let Some(why) = routes.unhealthy(&f.upstream) {
            let e = GatewayError::Unhealthy {
                upstream: f.upstream.clone(),
                why: why.to_string(),
            };
            return out.reply(fail(e)).await.map(|()| Served::UpstreamError);
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
        let how = Calling {
            spec: &spec,
            call: &call,
            idle,
            resumable,
        };
        if let Some(c) = &f.continuation {
            return self.resume_held(out, &f, c, &how).await;
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
        // A whole answer, or the gateway's failure, as the reply and how metrics count it.
        let finish = |answer: std::result::Result<Value, GatewayError>| match answer {
            Ok(msg) => {
                let reply = json_reply(msg);
                let outcome = reply.outcome();
                (reply, outcome)
            }
            Err(e) => {
                let outcome = e.served();
                (fail(e), outcome)
            }
        };
        // The upstream's kind executes the call (see `backends`); everything around it is
        // the same for every kind.
        let caller = match caller_for(&self.upstreams, &f.upstream, &spec, f.session.as_ref()) {
            Ok(caller) => caller,
            Err(NoCaller { kind }) => {
                let e = GatewayError::KindNotCalled {
                    upstream: f.upstream.clone(),
                    kind,
                };
                let (reply, outcome) = finish(Err(e));
                return out.reply(reply).await.map(|()| outcome);
            }
        };
        let sent = self
            .attempt(&f, &spec, || caller.call(&body, &call))
            .instrument(span.clone())
            .await;
        let answer = match sent {
            Ok(Answer::Events(mut events)) => {
                // SSE: pass every event on as it arrives (progress notifications included),
                // ending the stream with the response.
                if let Some(side) = side {
                    // The call's own session: what the upstream sends on its GET stream
                    // meanwhile belongs to this call too.
                    events = with_side_stream(events, side);
                }
                return self.stream_answer(out, events, answering, &how).await;
            }
            Ok(Answer::Ready(msg)) => Ok(msg),
            Ok(Answer::Body(body)) => match tokio::time::timeout(idle, body).await {
                Ok(read) => read.map_err(|e| GatewayError::of_answer(&f.upstream, e)),
                Err(_) => Err(GatewayError::Silent {
                    upstream: f.upstream.clone(),
                    idle,
                }),
            },
            Err(e) => Err(e.into_gateway_error(&f.upstream)),
        };
        let (reply, outcome) = finish(answer);
        out.reply(reply).await.map(|()| outcome)
    }

    /// Relays an upstream's SSE answer to a call, event by event, until its response. A
    /// request the upstream sends a stateless client meanwhile holds the call instead (the
    /// client gets an `InputRequiredResult`, see `held`).
    pub(super) async fn stream_answer(
        &self,
        out: &mut Out<'_>,
        mut events: AnswerEvents,
        answering: Answering<'_>,
        how: &Calling<'_>,
    ) -> Result<Served> {
        let Calling {
            spec,
            idle,
            resumable,
            ..
        } = *how;
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
                                        Ok((before, result)) => {
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
                                            Ok(Served::InputRequired)
                                        }
                                        Err(e) => {
                                            let msg = e.response(&f.client_id);
                                            events_out.send(&msg.to_string(), true).await?;
                                            Ok(e.served())
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
                        return Ok(Served::Ok);
                    }
                }
                end => {
                    let why = match end {
                        Some(Err(e)) => e,
                        _ => "the stream ended without a response".into(),
                    };
                    let e = GatewayError::StreamEnded {
                        upstream: f.upstream.clone(),
                        why,
                    };
                    events_out
                        .send(&e.response(&f.client_id).to_string(), true)
                        .await?;
                    return Ok(e.served());
                }
            }
        }
    }
}

/// `events` merged with `side` (what the upstream sends on the GET stream of the call's own
/// session), until `events` ends.
fn with_side_stream(events: AnswerEvents, side: switchboard_upstream::Messages) -> AnswerEvents {
    let side = side.map(|m| Some(m.map(|msg| SseEvent::of_message(&msg))));
    let main = events
        .map(Some)
        .chain(futures::stream::once(async { None }));
    Box::pin(
        futures::stream::select(main, side)
            .take_while(|e| futures::future::ready(e.is_some()))
            .filter_map(futures::future::ready),
    )
}

/// How one call is made: its upstream's entry, the options it is sent with, how long the
/// upstream may stay silent, and the session that may resume its stream (a fingerprint).
#[derive(Clone, Copy)]
pub(super) struct Calling<'a> {
    pub(super) spec: &'a Arc<UpstreamEntry>,
    pub(super) call: &'a CallOptions,
    pub(super) idle: std::time::Duration,
    pub(super) resumable: Option<&'a str>,
}

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

/// The server's MCP upstreams (streamable HTTP) that are not known to be down, with specs.
pub(super) fn mcp_upstreams<'a>(
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

impl Forwarder {
    /// Answers a client's initialize: opens its sessions with every upstream of the server
    /// (in parallel; one that fails is opened on first use instead) and seals them into the
    /// id, so whichever replica gets the next request can use them.
    pub(super) async fn open_session(
        &self,
        Scope {
            routes,
            server,
            client: headers,
        }: Scope<'_>,
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
        Scope { routes, server, .. }: Scope<'_>,
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
        Scope {
            routes,
            server,
            client,
        }: Scope<'_>,
        upstream: &str,
        message: &Value,
        session: &crate::session::Session,
    ) -> Reply {
        let Some(spec) = routes.upstream(upstream) else {
            return GatewayError::AnswerForUnknown(upstream.to_string()).refusal();
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
                GatewayError::AnswerNotRelayed {
                    upstream: upstream.to_string(),
                    source: e,
                }
                .refusal()
            }
        }
    }
}
