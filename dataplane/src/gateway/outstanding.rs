//! Upstream questions (sampling, elicitation, roots) on their way to session-era clients,
//! kept until the client answers them.
//!
//! A question is written to whichever client stream reads its upstream session (a GET
//! stream, a WebSocket, a legacy SSE stream, or the stream of a call), and a stream can end
//! before the client answers: the client closed it, or the write went into a connection
//! that was already gone. So each question stays here, carried by the stream that took it,
//! until the client's answer passes through this data plane. When its stream ends first,
//! the question waits for the next stream of the same upstream session (the client's next
//! GET stream, or a call it makes meanwhile) and goes out again. One that waits longer than
//! the upstream's request timeout is answered to the upstream with an error naming it, so
//! the call that asked ends with a clear error instead of hanging. Nothing is dropped
//! silently; the store is bounded in count and bytes (past the bounds a question still goes
//! out, it is only not kept).

use crate::session::Session;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An upstream session: the upstream's name and its session id.
pub(super) type Key = (String, String);

/// At most this many questions are kept on one data plane...
const MAX_QUESTIONS: usize = 10_000;
/// ...holding at most this many bytes of messages...
const MAX_BYTES: usize = 16 << 20;
/// ...and at most this many per upstream session.
const MAX_PER_SESSION: usize = 64;
/// How often waiting questions are checked against their time.
pub(super) const SWEEP_EVERY: Duration = Duration::from_millis(250);

/// The questions this data plane relayed and has not seen answered.
pub(super) struct Outstanding {
    state: Mutex<State>,
    /// Bumped whenever a question starts waiting for a stream.
    waiting: tokio::sync::watch::Sender<u64>,
    carriers: AtomicU64,
    /// Whether the sweeper runs.
    pub(super) sweeping: AtomicBool,
}

impl Default for Outstanding {
    fn default() -> Self {
        Outstanding {
            state: Mutex::default(),
            waiting: tokio::sync::watch::channel(0).0,
            carriers: AtomicU64::new(0),
            sweeping: AtomicBool::new(false),
        }
    }
}

#[derive(Default)]
struct State {
    /// By upstream session and the id the client sees (see `mcp::relay::wrap`), as JSON
    /// text (upstreams number their requests per session, so ids alone collide).
    questions: HashMap<(Key, String), Question>,
    bytes: usize,
}

/// One question on its way to a client.
#[derive(Debug, Clone)]
pub(super) struct Question {
    /// The upstream session that asked.
    pub(super) key: Key,
    /// The message as the upstream sent it (with its own id).
    pub(super) message: Value,
    /// The client's session, in which the upstream is answered.
    pub(super) session: Session,
    /// The stream carrying it now; None while it waits for one.
    carrier: Option<u64>,
    /// When it last started waiting (or was first kept).
    since: Instant,
    /// How long it may wait for a stream.
    patience: Duration,
    bytes: usize,
}

impl Question {
    /// The request's method, for messages that name what went undelivered.
    pub(super) fn method(&self) -> &str {
        self.message
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or("request")
    }

    /// How long it waited for a stream.
    pub(super) fn waited(&self) -> Duration {
        self.since.elapsed()
    }
}

/// Where a question is kept.
fn slot(key: &Key, message: &Value) -> Option<(Key, String)> {
    let id = message.get("id")?;
    Some((key.clone(), crate::mcp::relay::wrap(&key.0, id).to_string()))
}

impl Outstanding {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A carrier for one client stream; what it carries waits again when it is dropped.
    pub(super) fn carrier(self: &Arc<Self>) -> Carrier {
        Carrier {
            outstanding: self.clone(),
            id: self.carriers.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Told whenever a question starts waiting for a stream.
    pub(super) fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.waiting.subscribe()
    }

    /// The client answered the question of the upstream session `key` that it knows as
    /// `id`: it is no longer kept. Whether it was kept here.
    pub(super) fn answered(&self, key: &Key, id: &Value) -> bool {
        let mut state = self.lock();
        match state.questions.remove(&(key.clone(), id.to_string())) {
            Some(q) => {
                state.bytes -= q.bytes;
                true
            }
            None => false,
        }
    }

    /// Forgets every question of these upstream sessions (their client session ended).
    pub(super) fn forget(&self, keys: &[Key]) {
        let mut state = self.lock();
        let gone: Vec<(Key, String)> = state
            .questions
            .iter()
            .filter(|(_, q)| keys.contains(&q.key))
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            if let Some(q) = state.questions.remove(&id) {
                state.bytes -= q.bytes;
            }
        }
    }

    /// Takes the questions that waited for a stream past their patience.
    pub(super) fn expired(&self) -> Vec<Question> {
        let mut state = self.lock();
        let late: Vec<(Key, String)> = state
            .questions
            .iter()
            .filter(|(_, q)| q.carrier.is_none() && q.since.elapsed() >= q.patience)
            .map(|(id, _)| id.clone())
            .collect();
        let mut out = Vec::with_capacity(late.len());
        for id in late {
            if let Some(q) = state.questions.remove(&id) {
                state.bytes -= q.bytes;
                out.push(q);
            }
        }
        out
    }

    /// How many questions are kept (carried or waiting).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().questions.len()
    }

    fn release(&self, carrier: u64) {
        let mut released = false;
        {
            let mut state = self.lock();
            for q in state.questions.values_mut() {
                if q.carrier == Some(carrier) {
                    q.carrier = None;
                    q.since = Instant::now();
                    released = true;
                }
            }
        }
        if released {
            self.waiting.send_modify(|n| *n += 1);
        }
    }
}

/// One client stream's hold on the questions it carries.
pub(super) struct Carrier {
    outstanding: Arc<Outstanding>,
    id: u64,
}

impl Drop for Carrier {
    fn drop(&mut self) {
        self.outstanding.release(self.id);
    }
}

impl Carrier {
    /// A new carrier on the same store (replacing this one releases what it carries).
    pub(super) fn successor(&self) -> Carrier {
        self.outstanding.carrier()
    }

    /// Keeps `message`, a question from the upstream session `key` about to go out on this
    /// stream, until the client answers; it may wait `patience` for a stream if this one
    /// ends first. False when it is not kept (the store is full, or the message has no id);
    /// it goes out all the same.
    pub(super) fn carry(
        &self,
        key: &Key,
        message: &Value,
        session: &Session,
        patience: Duration,
    ) -> bool {
        let Some(id) = slot(key, message) else {
            return false;
        };
        let mut state = self.outstanding.lock();
        if let Some(q) = state.questions.get_mut(&id) {
            q.carrier = Some(self.id);
            return true;
        }
        let bytes = message.to_string().len() + id.1.len();
        let per_session = state.questions.values().filter(|q| &q.key == key).count();
        if state.questions.len() >= MAX_QUESTIONS
            || state.bytes + bytes > MAX_BYTES
            || per_session >= MAX_PER_SESSION
        {
            tracing::warn!(upstream = %key.0, "too many unanswered upstream questions on this data plane; this one is relayed but not kept for a second delivery");
            return false;
        }
        state.bytes += bytes;
        state.questions.insert(
            id,
            Question {
                key: key.clone(),
                message: message.clone(),
                session: session.clone(),
                carrier: Some(self.id),
                since: Instant::now(),
                patience,
                bytes,
            },
        );
        true
    }

    /// Claims a question of the upstream session `key` this stream carries again (a
    /// resumed stream replays it): it no longer waits for another.
    pub(super) fn claim(&self, key: &Key, id: &Value) {
        let slot = (key.clone(), id.to_string());
        if let Some(q) = self.outstanding.lock().questions.get_mut(&slot) {
            q.carrier = Some(self.id);
        }
    }

    /// Takes the waiting questions of these upstream sessions for this stream to carry,
    /// oldest first: (upstream, message as the upstream sent it).
    pub(super) fn take_waiting(&self, keys: &[Key]) -> Vec<(String, Value)> {
        let mut state = self.outstanding.lock();
        let mut taken: Vec<(Instant, String, Value)> = state
            .questions
            .values_mut()
            .filter(|q| q.carrier.is_none() && keys.contains(&q.key))
            .map(|q| {
                q.carrier = Some(self.id);
                (q.since, q.key.0.clone(), q.message.clone())
            })
            .collect();
        taken.sort_by_key(|(since, _, _)| *since);
        taken.into_iter().map(|(_, u, m)| (u, m)).collect()
    }
}

/// The error an upstream gets for a question no client stream took in time.
pub(super) fn undelivered_error(q: &Question) -> Value {
    let id = q.message.get("id").cloned().unwrap_or(Value::Null);
    serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {
            "code": crate::jsonrpc::INTERNAL_ERROR,
            "message": format!(
                "switchboard: `{}` was not delivered: the client had no open stream to receive it for {:.0}s",
                q.method(),
                q.waited().as_secs_f64()
            ),
            "data": {"undelivered": q.method()},
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(s: &str) -> Key {
        ("up".to_string(), s.to_string())
    }

    fn question(id: u64) -> Value {
        json!({"jsonrpc": "2.0", "id": id, "method": "elicitation/create", "params": {}})
    }

    #[test]
    fn a_question_waits_when_its_stream_ends_and_goes_out_on_the_next() {
        let store = Arc::new(Outstanding::default());
        let session = Session::new("s", "2025-11-25");
        let mut told = store.subscribe();
        let first = store.carrier();
        assert!(first.carry(&key("a"), &question(1), &session, Duration::from_secs(60)));
        let next = store.carrier();
        assert!(next.take_waiting(&[key("a")]).is_empty(), "still carried");
        drop(first);
        assert!(told.has_changed().unwrap_or(false));
        told.borrow_and_update();
        assert!(
            next.take_waiting(&[key("b")]).is_empty(),
            "another session's"
        );
        let taken = next.take_waiting(&[key("a")]);
        assert_eq!(taken, vec![("up".to_string(), question(1))]);
        assert!(next.take_waiting(&[key("a")]).is_empty(), "taken once");
        assert!(store.answered(&key("a"), &crate::mcp::relay::wrap("up", &json!(1))));
        drop(next);
        assert_eq!(store.len(), 0);
        assert!(!told.has_changed().unwrap_or(true), "nothing waits");
    }

    #[test]
    fn only_waiting_questions_expire_and_the_upstream_is_told_which() {
        let store = Arc::new(Outstanding::default());
        let session = Session::new("s", "2025-11-25");
        let carried = store.carrier();
        carried.carry(&key("a"), &question(1), &session, Duration::ZERO);
        assert!(
            store.expired().is_empty(),
            "a carried question does not expire"
        );
        let gone = store.carrier();
        gone.carry(&key("a"), &question(2), &session, Duration::ZERO);
        drop(gone);
        let late = store.expired();
        assert_eq!(late.len(), 1);
        let err = undelivered_error(&late[0]);
        assert_eq!(err["id"], 2);
        assert!(err["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("`elicitation/create` was not delivered")));
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn the_store_is_bounded_per_session_and_forgets_ended_sessions() {
        let store = Arc::new(Outstanding::default());
        let session = Session::new("s", "2025-11-25");
        let c = store.carrier();
        for i in 0..MAX_PER_SESSION as u64 {
            assert!(c.carry(&key("a"), &question(i), &session, Duration::from_secs(1)));
        }
        assert!(!c.carry(&key("a"), &question(9999), &session, Duration::from_secs(1)));
        assert!(c.carry(&key("b"), &question(1), &session, Duration::from_secs(1)));
        assert!(!c.carry(&key("b"), &json!({"method": "x"}), &session, Duration::ZERO));
        store.forget(&[key("a")]);
        assert_eq!(store.len(), 1);
        assert!(store.lock().bytes > 0);
        store.forget(&[key("b")]);
        assert_eq!(store.lock().bytes, 0);
    }
}
