//! Calls that wait for a stateless (2026-07-28) client's input. Upstreams speak the session
//! era, where a server asks the client things mid-call (`sampling/createMessage`,
//! `elicitation/create`, `roots/list`). A stateless client cannot be asked mid-call: the
//! gateway holds the upstream call open, answers the client with an `InputRequiredResult`
//! (the question under `inputRequests`, and an opaque `requestState`), and when the client
//! retries with `inputResponses` and that state, hands the answers to the upstream as
//! JSON-RPC responses and goes on relaying the same call. A held call lives on the data
//! plane that started it, for a few minutes.

use super::forward::{Answering, Calling};
use crate::errors::GatewayError;
use switchboard_upstream::backend::AnswerEvents;

use super::forwarder::Forwarder;
use super::out::Out;
use crate::metrics::Served;
use crate::routes::UpstreamEntry;
use crate::transport::Forward;
use crate::upstreams::{CallOptions, SessionsToEnd};
use crate::{jsonrpc, transport};
use futures::StreamExt;
use pingora::Result;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard_config::kinds::upstream::McpTransport;
use switchboard_upstream::UpstreamError;

/// How long a held call waits for its client's retry.
const WAIT_FOR_CLIENT: Duration = Duration::from_secs(300);
/// Most calls one data plane holds at once.
const MAX_HELD: usize = 10_000;
/// How long questions an upstream asks together may lie apart.
const GATHER: Duration = Duration::from_millis(20);
/// How often calls nobody continued are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(30);
/// What `requestState`s the gateway hands out start with.
const STATE_PREFIX: &str = "sbh1.";

/// A call waiting for its client.
pub(super) struct Held {
    events: AnswerEvents,
    /// The id the upstream knows the call by.
    gateway_id: Value,
    upstream: String,
    method: String,
    /// The tool, prompt or resource it is about (a retry must name the same).
    target: Value,
    /// The upstream's requests it waits on: the key the client answers under, and the
    /// upstream's own request id.
    pending: Vec<(String, Value)>,
    /// The upstream session the call runs in (its own, see `call_session`), if not shared,
    /// and what ends it when the call is done with or dropped.
    session: Option<crate::session::Session>,
    ender: Option<SessionsToEnd>,
    /// Who may continue it: the caller, on this virtual server.
    caller: String,
    server: String,
    since: Instant,
    /// Its place under the data plane's cap (and its caller's share of it).
    slot: Option<super::slots::Slot>,
}

/// The calls this data plane holds, by `requestState`. Calls nobody continues are dropped
/// after a while (and their upstream sessions end with them).
pub(super) struct HeldCalls {
    calls: Mutex<HashMap<String, Held>>,
    /// Places for held calls: [`MAX_HELD`], a share of them per client.
    slots: Arc<super::slots::Slots>,
    /// Whether the sweeper runs.
    sweeping: std::sync::atomic::AtomicBool,
}

impl Default for HeldCalls {
    fn default() -> Self {
        HeldCalls {
            calls: Mutex::default(),
            slots: super::slots::Slots::new(MAX_HELD, "held calls", || GatewayError::TooManyHeld),
            sweeping: Default::default(),
        }
    }
}

impl HeldCalls {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `client`'s `held`; its `requestState`, or why not: this data plane holds too
    /// many, or this client its share of them.
    fn put(self: &Arc<Self>, mut held: Held, client: String) -> Result<String, GatewayError> {
        use ring::rand::SecureRandom;
        use std::sync::atomic::Ordering;
        let mut bytes = [0u8; 16];
        ring::rand::SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| GatewayError::TooManyHeld)?;
        let state = format!("{STATE_PREFIX}{}", hex::encode(bytes));
        if !self.sweeping.swap(true, Ordering::SeqCst) {
            let calls = Arc::downgrade(self);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(SWEEP_EVERY).await;
                    let Some(calls) = calls.upgrade() else {
                        return;
                    };
                    calls.sweep();
                }
            });
        }
        self.sweep();
        held.slot = Some(self.slots.take(client)?);
        self.lock().insert(state.clone(), held);
        Ok(state)
    }

    /// Drops the calls that waited too long (outside the lock: their sessions end then).
    fn sweep(&self) {
        let stale: Vec<Held> = {
            let mut calls = self.lock();
            let keys: Vec<String> = calls
                .iter()
                .filter(|(_, h)| h.since.elapsed() >= WAIT_FOR_CLIENT)
                .map(|(k, _)| k.clone())
                .collect();
            keys.iter().filter_map(|k| calls.remove(k)).collect()
        };
        if !stale.is_empty() {
            tracing::debug!(
                calls = stale.len(),
                "dropping held calls no client continued"
            );
        }
    }

    fn take(&self, state: &str) -> Option<Held> {
        self.lock()
            .remove(state)
            .filter(|h| h.since.elapsed() < WAIT_FOR_CLIENT)
    }

    fn put_back(&self, state: String, held: Held) {
        self.lock().insert(state, held);
    }
}

/// What a call is about: the tool or prompt name, or the resource URI.
fn target_of(params: &Value) -> Value {
    params
        .get("name")
        .or_else(|| params.get("uri"))
        .cloned()
        .unwrap_or(Value::Null)
}

impl Forwarder {
    /// An upstream session of its own for a stateless client's call, when the client can
    /// be asked things: it offers the client's capabilities, so the upstream asks only what
    /// the client can answer, keeps per-session state (roots) for this client alone, and may
    /// ask on the session's GET stream, which the call then reads too. None for other
    /// clients (they share the gateway's session), or when it cannot be opened.
    pub(super) async fn call_session(
        &self,
        f: &Forward,
        spec: &UpstreamEntry,
    ) -> Option<crate::session::Session> {
        // An upstream that isolates sessions never shares one, so every stateless call gets
        // its own there too.
        let isolated = crate::upstreams::isolates_sessions(spec);
        if !(super::questions::askable(&f.client_capabilities) || isolated)
            || spec.mcp.as_ref()?.transport != McpTransport::StreamableHttp
        {
            return None;
        }
        let call = CallOptions {
            headers: f.headers.clone(),
            ..CallOptions::default()
        };
        match self.own_session(f, spec, &call).await {
            Ok(own) => Some(own),
            Err(e) => {
                tracing::warn!(upstream = %f.upstream, error = %e, "could not open an upstream session for a stateless call; using the shared one");
                None
            }
        }
    }

    /// A new upstream session with `f`'s upstream for `f` alone, offering the client's
    /// capabilities (so the upstream asks only what the client can answer).
    pub(super) async fn own_session(
        &self,
        f: &Forward,
        spec: &UpstreamEntry,
        call: &CallOptions,
    ) -> std::result::Result<crate::session::Session, UpstreamError> {
        let mut own = crate::session::Session {
            server: f.server.clone(),
            version: crate::mcp::versions::LATEST.to_string(),
            capabilities: f.client_capabilities.clone(),
            upstreams: Default::default(),
            nonce: 0,
            principal: None,
            expires: 0, // never sealed for a client
        };
        let opened = self
            .upstreams
            .open_for(&f.upstream, spec, &own, call)
            .await?;
        own.upstreams.insert(f.upstream.clone(), opened);
        Ok(own)
    }

    /// What ends a call's own upstream session when dropped.
    pub(super) fn call_session_ender(
        &self,
        session: &crate::session::Session,
        spec: &Arc<UpstreamEntry>,
    ) -> SessionsToEnd {
        self.upstreams.ender_for(session, &|_| Some(spec.clone()))
    }

    /// The GET stream of a call's own upstream session, if the upstream offers one.
    pub(super) async fn session_stream(
        &self,
        f: &Forward,
        spec: &UpstreamEntry,
        own: &crate::session::Session,
    ) -> Option<switchboard_upstream::Messages> {
        let call = CallOptions {
            headers: f.headers.clone(),
            ..CallOptions::default()
        };
        match self.upstreams.listen(&f.upstream, spec, own, &call).await {
            Ok(stream) => stream,
            Err(e) => {
                tracing::debug!(upstream = %f.upstream, error = %e, "no GET stream for a stateless call's session");
                None
            }
        }
    }

    /// Holds a call whose upstream just sent `request` to a stateless client: what to send
    /// the client before the call's answer (notifications that came along), and that
    /// answer, an `InputRequiredResult`; why not when no more calls (or none more of this
    /// client's) can be held. Questions the upstream asks together are gathered into one
    /// result.
    pub(super) async fn hold(
        &self,
        mut events: AnswerEvents,
        answering: Answering<'_>,
        request: Value,
        spec: &Arc<UpstreamEntry>,
    ) -> Result<(Vec<String>, Value), GatewayError> {
        let f = answering.f;
        let mut questions = vec![request];
        let mut before = Vec::new();
        let mut later = Vec::new();
        while let Ok(Some(next)) = tokio::time::timeout(GATHER, events.next()).await {
            let Ok(event) = next else {
                later.push(next); // the stream broke: the retry will say so
                break;
            };
            match serde_json::from_str::<Value>(&event.data) {
                Ok(msg) if crate::mcp::relay::is_request(&msg) && msg["method"] == "ping" => {
                    self.pong(f, spec, &msg).await;
                }
                Ok(msg) if crate::mcp::relay::is_request(&msg) => questions.push(msg),
                Ok(msg) if msg.get("id").is_none() => {
                    before.push(answering.restore(msg).to_string());
                }
                _ => later.push(Ok(event)),
            }
        }
        let mut asked = serde_json::Map::new();
        let mut pending = Vec::new();
        for q in questions {
            let key = crate::mcp::relay::wrap(&f.upstream, &q["id"])
                .as_str()
                .unwrap_or("input")
                .to_string();
            let question = json!({
                "method": q["method"],
                "params": q.get("params").cloned().unwrap_or_else(|| json!({})),
            });
            asked.insert(key.clone(), question);
            pending.push((key, q["id"].clone()));
        }
        if !later.is_empty() {
            events = Box::pin(futures::stream::iter(later).chain(events));
        }
        let held = Held {
            events,
            gateway_id: answering.gateway_id.clone(),
            upstream: f.upstream.clone(),
            method: f.method.clone(),
            target: target_of(&f.params),
            pending,
            session: f.session.clone(),
            ender: f.session.as_ref().map(|s| self.call_session_ender(s, spec)),
            caller: f.caller.clone(),
            server: f.server.clone(),
            since: Instant::now(),
            slot: None,
        };
        let state = self
            .held
            .put(held, super::slots::client_key(&f.caller, &f.client_ip))?;
        tracing::debug!(upstream = %f.upstream, method = %f.method, questions = asked.len(), "holding a call for a stateless client's input");
        let mut result = json!({
            "resultType": "input_required",
            "inputRequests": asked,
            "requestState": state,
        });
        crate::mcp::modern::shape_result(&f.method, &mut result, &f.server);
        Ok((before, jsonrpc::result_response(&f.client_id, result)))
    }

    /// Drops the call an undelivered `InputRequiredResult` response names (its upstream
    /// session ends with it).
    pub(super) fn drop_held(&self, response: &Value) {
        if let Some(state) = response
            .pointer("/result/requestState")
            .and_then(Value::as_str)
        {
            drop(self.held.take(state));
        }
    }

    /// Answers an upstream's `ping` to a stateless client (the gateway stands in for it).
    pub(super) async fn pong(&self, f: &Forward, spec: &UpstreamEntry, ping: &Value) {
        let pong = json!({"jsonrpc": "2.0", "id": ping["id"], "result": {}});
        let call = CallOptions {
            headers: f.headers.clone(),
            ..CallOptions::default()
        };
        if let Err(e) = self
            .answer_upstream(&f.upstream, spec, f.session.as_ref(), &pong, &call)
            .await
        {
            tracing::debug!(upstream = %f.upstream, error = %e, "could not answer an upstream's ping");
        }
    }

    /// Goes on with a held call: hands the client's answers to the upstream, then relays
    /// the rest of the call's answer (or its next question).
    pub(super) async fn resume_held(
        &self,
        out: &mut Out<'_>,
        f: &Forward,
        c: &transport::Continuation,
        how: &Calling<'_>,
    ) -> Result<Served> {
        let Calling { spec, call, .. } = *how;
        let refuse = |why: String| GatewayError::NoHeldCall(why).reply(&f.client_id, true);
        let Some(held) = self.held.take(&c.request_state) else {
            let why = if c.request_state.starts_with(STATE_PREFIX) {
                format!(
                    "requestState names no call waiting on this data plane: it waited over {}s, or another replica holds it",
                    WAIT_FOR_CLIENT.as_secs()
                )
            } else {
                "requestState is not one this gateway handed out".to_string()
            };
            return out.reply(refuse(why)).await.map(|()| Served::Error);
        };
        if held.caller != f.caller || held.server != f.server {
            // Not theirs: as if it did not exist (and it stays for its owner).
            self.held.put_back(c.request_state.clone(), held);
            let why = "requestState names no call waiting for this caller on this server";
            return out.reply(refuse(why.into())).await.map(|()| Served::Error);
        }
        if held.upstream != f.upstream
            || held.method != f.method
            || held.target != target_of(&f.params)
        {
            let why = "requestState belongs to another request: retry the same call with it";
            self.held.put_back(c.request_state.clone(), held);
            return out.reply(refuse(why.into())).await.map(|()| Served::Error);
        }
        let missing = held
            .pending
            .iter()
            .find(|(key, _)| c.input_responses.get(key).is_none())
            .map(|(key, _)| key.clone());
        if let Some(key) = missing {
            self.held.put_back(c.request_state.clone(), held);
            let why = format!("inputResponses has no answer under `{key}`");
            return out.reply(refuse(why)).await.map(|()| Served::Error);
        }
        let mut held = held;
        let ender = held.ender.take();
        for (key, upstream_id) in &held.pending {
            let answer =
                json!({"jsonrpc": "2.0", "id": upstream_id, "result": c.input_responses[key]});
            let sent = self
                .answer_upstream(&f.upstream, spec, held.session.as_ref(), &answer, call)
                .await;
            if let Err(source) = sent {
                let e = GatewayError::AnswerNotDelivered {
                    upstream: f.upstream.clone(),
                    source,
                };
                return out
                    .reply(e.reply(&f.client_id, false))
                    .await
                    .map(|()| e.served());
            }
        }
        // The retry goes on in the held call's upstream session.
        let f = Forward {
            session: held.session.clone(),
            ..f.clone()
        };
        let answering = Answering {
            f: &f,
            gateway_id: held.gateway_id.clone(),
            left: None,
        };
        let events = std::mem::replace(&mut held.events, Box::pin(futures::stream::empty()));
        let outcome = self.stream_answer(out, events, answering, how).await;
        if let (Some(ender), Ok(Served::InputRequired)) = (ender, &outcome) {
            ender.disarm(); // held again: the new hold ends it
        }
        outcome
    }

    /// Sends a response to a request the upstream made, in the session the call used.
    async fn answer_upstream(
        &self,
        upstream: &str,
        spec: &UpstreamEntry,
        session: Option<&crate::session::Session>,
        answer: &Value,
        call: &CallOptions,
    ) -> std::result::Result<(), UpstreamError> {
        let resp = self
            .upstreams
            .send(upstream, spec, answer, session, call)
            .await?;
        tracing::trace!(%upstream, status = %resp.status(), "answered an upstream's request");
        let _ = resp.bytes().await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_clients_that_can_be_asked_get_a_session_of_their_own() {
        use super::super::questions::askable;
        assert!(askable(&json!({"sampling": {}})));
        assert!(askable(&json!({"roots": {"listChanged": true}})));
        assert!(!askable(&json!({"experimental": {}})));
        assert!(!askable(&Value::Null));
    }

    fn held(caller: &str, waited: Duration) -> Held {
        Held {
            events: Box::pin(futures::stream::empty()),
            gateway_id: json!(1),
            upstream: "u".into(),
            method: "tools/call".into(),
            target: json!("t"),
            pending: Vec::new(),
            session: None,
            ender: None,
            caller: caller.into(),
            server: "demo".into(),
            since: Instant::now() - waited,
            slot: None,
        }
    }

    #[tokio::test]
    async fn calls_nobody_continues_are_dropped() {
        let calls = Arc::new(HeldCalls::default());
        let fresh = calls
            .put(held("alice", Duration::ZERO), "alice".into())
            .expect("room");
        let stale = calls
            .put(
                held("bob", WAIT_FOR_CLIENT + Duration::from_secs(1)),
                "bob".into(),
            )
            .expect("room");
        assert!(calls.take(&stale).is_none(), "waited too long");
        calls.sweep();
        assert_eq!(calls.lock().len(), 1);
        let kept = calls.take(&fresh).expect("still waiting");
        assert_eq!(kept.caller, "alice");
        assert!(calls.take(&fresh).is_none(), "continued once");
    }

    #[test]
    fn a_retry_names_the_call_it_continues() {
        assert_eq!(target_of(&json!({"name": "echo"})), json!("echo"));
        assert_eq!(target_of(&json!({"uri": "docs://a"})), json!("docs://a"));
        let mut params =
            json!({"name": "t", "requestState": "sbh1.ab", "inputResponses": {"k": {}}});
        let c = crate::mcp::modern::take_continuation(&mut params).expect("a retry");
        assert_eq!(c.request_state, "sbh1.ab");
        assert_eq!(c.input_responses, json!({"k": {}}));
        assert_eq!(params, json!({"name": "t"}), "the upstream never sees them");
        assert!(crate::mcp::modern::take_continuation(&mut json!({"name": "t"})).is_none());
    }
}
