//! Keeping a way open for upstream questions (sampling, elicitation, roots) to session-era
//! clients.
//!
//! Many servers ask without naming the call they ask for, so the question goes on their
//! session's standalone GET stream, and a server with no GET stream open drops it. A client's
//! own GET stream reaches its upstream sessions' GET streams only when (and while) the client
//! has one open, which races the client's first call. So a call from a client that can be
//! asked opens the upstream session's GET stream itself before it is sent, unless this data
//! plane already holds it for the client's GET stream, and reads it alongside the answer;
//! the client's GET stream, meanwhile refused (an upstream allows one GET stream per
//! session), tries again until it has it. Either way the upstream always has a stream that
//! reaches the client while a call may ask something.

use super::forward::ClientLeft;
use super::forwarder::Forwarder;
use super::outstanding::{self, Carrier};
use crate::metrics::metrics;
use crate::routes::{Routes, ServerView, UpstreamEntry};
use crate::transport::Forward;
use crate::upstreams::{CallOptions, UpstreamPool};
use futures::StreamExt;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_config::kinds::upstream::McpTransport;

/// How long a client's GET stream waits before trying an upstream's stream again, doubled
/// up to [`MAX_REOPEN`] while it keeps failing.
pub(super) const FIRST_REOPEN: std::time::Duration = std::time::Duration::from_millis(100);
const MAX_REOPEN: std::time::Duration = std::time::Duration::from_secs(2);

/// The wait after `wait` for a stream that failed again.
pub(super) fn next_reopen(wait: std::time::Duration) -> std::time::Duration {
    (wait * 2).min(MAX_REOPEN)
}

/// Upstream sessions whose GET stream this data plane holds for a client's GET stream.
#[derive(Default)]
pub(super) struct Listening {
    held: Mutex<HashMap<(String, String), usize>>,
}

/// One hold; released when dropped (with the stream it came with).
pub(super) struct Holding {
    listening: Arc<Listening>,
    key: (String, String),
}

impl Drop for Holding {
    fn drop(&mut self) {
        let mut held = self.listening.lock();
        if let Some(n) = held.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.key);
            }
        }
    }
}

impl Listening {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), usize>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes that the GET stream of `upstream`'s session `id` is held here.
    pub(super) fn hold(self: &Arc<Self>, upstream: &str, id: &str) -> Holding {
        let key = (upstream.to_string(), id.to_string());
        *self.lock().entry(key.clone()).or_default() += 1;
        Holding {
            listening: self.clone(),
            key,
        }
    }

    /// Whether this data plane holds that stream now.
    pub(super) fn is_held(&self, upstream: &str, id: &str) -> bool {
        self.lock()
            .contains_key(&(upstream.to_string(), id.to_string()))
    }
}

/// Whether a client says it can be asked things an upstream may ask.
pub(super) fn askable(capabilities: &Value) -> bool {
    ["elicitation", "roots", "sampling"]
        .iter()
        .any(|c| capabilities.get(c).is_some())
}

/// The id of the client's own session with `upstream`, where calls keep its capabilities.
pub(super) fn own_session_id(
    upstream: &str,
    spec: &UpstreamEntry,
    client: &crate::session::Session,
) -> Option<String> {
    if !crate::upstreams::uses_own_session(upstream, spec, Some(client)) {
        return None;
    }
    client.upstreams.get(upstream)?.id.clone()
}

/// How long a question from `upstream` may wait for a client stream (see `outstanding`):
/// the upstream's request timeout, or a minute.
pub(super) fn patience(server: &ServerView, spec: &UpstreamEntry, upstream: &str) -> Duration {
    server
        .timeouts(spec, upstream)
        .request
        .unwrap_or(DEFAULT_PATIENCE)
}

/// How long a question may wait for a client stream when the upstream sets no timeout.
const DEFAULT_PATIENCE: Duration = Duration::from_secs(60);

impl Forwarder {
    /// A carrier for the questions one client stream relays; starts the sweeper that tells
    /// upstreams about questions no stream took in time.
    pub(super) fn question_carrier(&self) -> Carrier {
        if !self.outstanding.sweeping.swap(true, Ordering::SeqCst) {
            let outstanding = Arc::downgrade(&self.outstanding);
            let upstreams = self.upstreams.clone();
            let routes = self.routes.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(outstanding::SWEEP_EVERY).await;
                    let Some(store) = outstanding.upgrade() else {
                        return;
                    };
                    let late = store.expired();
                    drop(store);
                    for q in late {
                        undelivered(&upstreams, &routes.load(), q).await;
                    }
                }
            });
        }
        self.outstanding.carrier()
    }

    /// The GET stream of the client's own session with the call's upstream, opened before
    /// the call is sent so that questions asked on it are not dropped, and reopened (where
    /// it left off, for an upstream that keeps its events) whenever it ends or was refused
    /// while the call lives; with it, the questions of that session that wait for a stream
    /// (see `outstanding`). None when the client cannot be asked. While this data plane's
    /// client GET stream holds the upstream's stream it is not opened here: that stream
    /// carries the questions.
    pub(super) async fn question_stream(
        &self,
        f: &Forward,
        server: &ServerView,
        spec: &Arc<UpstreamEntry>,
    ) -> Option<(switchboard_upstream::Messages, ClientLeft)> {
        let client = f.session.as_ref()?;
        if f.stateless || !askable(&client.capabilities) {
            return None;
        }
        if spec.mcp.as_ref()?.transport != McpTransport::StreamableHttp {
            return None;
        }
        let id = own_session_id(&f.upstream, spec, client)?;
        let mut asking = Asking {
            upstreams: self.upstreams.clone(),
            listening: self.listening.clone(),
            carrier: self.question_carrier(),
            waiting: self.outstanding.subscribe(),
            key: (f.upstream.clone(), id),
            spec: spec.clone(),
            client: client.clone(),
            call: CallOptions {
                headers: f.headers.clone(),
                ..CallOptions::default()
            },
            patience: patience(server, spec, &f.upstream),
            open: None,
            offered: true,
            wait: FIRST_REOPEN,
            queue: Default::default(),
            left: ClientLeft::default(),
        };
        let left = asking.left.clone();
        asking.try_open().await;
        let stream = futures::stream::unfold(asking, |mut a| async move {
            let next = a.next().await;
            Some((next, a))
        });
        Some((Box::pin(stream), left))
    }
}

/// Tells `q`'s upstream that no client stream took its question in time, so the call
/// that asked ends with an error naming it.
async fn undelivered(upstreams: &UpstreamPool, routes: &Routes, q: outstanding::Question) {
    let upstream = &q.key.0;
    tracing::warn!(%upstream, method = %q.method(), waited = ?q.waited(), "an upstream question found no client stream in time; answering the upstream with an error");
    metrics()
        .undelivered_questions
        .with_label_values(&[upstream.as_str()])
        .inc();
    let Some(spec) = routes.upstream(upstream) else {
        return;
    };
    let error = outstanding::undelivered_error(&q);
    let sent = upstreams
        .send(
            upstream,
            &spec,
            &error,
            Some(&q.session),
            &CallOptions::default(),
        )
        .await;
    match sent {
        Ok(resp) => drop(resp.bytes().await),
        Err(e) => {
            tracing::warn!(%upstream, error = %e, "could not tell the upstream its question went undelivered")
        }
    }
}

/// A call's way for questions from its upstream session (see
/// [`Gateway::question_stream`]).
struct Asking {
    upstreams: Arc<UpstreamPool>,
    listening: Arc<Listening>,
    carrier: Carrier,
    waiting: tokio::sync::watch::Receiver<u64>,
    key: outstanding::Key,
    spec: Arc<UpstreamEntry>,
    client: crate::session::Session,
    call: CallOptions,
    patience: Duration,
    /// The upstream session's GET stream, while this call holds it.
    open: Option<switchboard_upstream::Messages>,
    /// Whether the upstream offers a GET stream at all.
    offered: bool,
    /// The wait before trying the stream again.
    wait: Duration,
    /// Questions taken from the store, to go out next.
    queue: std::collections::VecDeque<Value>,
    /// Set when the client left the call's (resumable) stream: the call then carries no
    /// more questions, and those it carried wait for another stream.
    left: ClientLeft,
}

impl Asking {
    /// Opens the GET stream unless this data plane's client GET stream holds it.
    async fn try_open(&mut self) {
        let (upstream, id) = &self.key;
        if !self.offered || self.listening.is_held(upstream, id) {
            return;
        }
        match self
            .upstreams
            .listen(upstream, &self.spec, &self.client, &self.call)
            .await
        {
            Ok(Some(stream)) => self.open = Some(stream),
            Ok(None) => self.offered = false,
            Err(e) => {
                tracing::debug!(%upstream, error = %e, "the call cannot read its upstream session's stream now (another holds it); trying again");
                self.wait = next_reopen(self.wait);
            }
        }
    }

    /// The next message for the call: a question that waited, or what the stream brings.
    async fn next(&mut self) -> std::result::Result<Value, String> {
        loop {
            if self.left.is_set() {
                self.open = None;
                self.queue.clear();
                // What the old carrier holds waits for another stream.
                self.carrier = self.carrier.successor();
                futures::future::pending::<()>().await;
            }
            if let Some(m) = self.queue.pop_front() {
                return Ok(m);
            }
            let taken = self.carrier.take_waiting(std::slice::from_ref(&self.key));
            if !taken.is_empty() {
                self.queue.extend(taken.into_iter().map(|(_, m)| m));
                continue;
            }
            match &mut self.open {
                Some(stream) => tokio::select! {
                    next = stream.next() => match next {
                        Some(Ok(msg)) => {
                            let method = msg.get("method").and_then(Value::as_str).unwrap_or("");
                            if switchboard_upstream::is_list_changed(method) {
                                continue; // the gateway says when its listings change
                            }
                            if crate::mcp::relay::is_request(&msg) {
                                self.carrier.carry(&self.key, &msg, &self.client, self.patience);
                            }
                            self.wait = FIRST_REOPEN; // a stream that carries something
                            return Ok(msg);
                        }
                        Some(Err(e)) => {
                            tracing::debug!(upstream = %self.key.0, error = %e, "a call's upstream stream broke; reopening it");
                            self.open = None;
                        }
                        // One that keeps ending at once is tried less and less often.
                        None => {
                            self.open = None;
                            self.wait = next_reopen(self.wait);
                        }
                    },
                    changed = self.waiting.changed() => if changed.is_err() {
                        futures::future::pending::<()>().await;
                    },
                    () = self.left.wait() => {}
                },
                None => {
                    tokio::select! {
                        () = tokio::time::sleep(self.wait) => self.try_open().await,
                        changed = self.waiting.changed() => if changed.is_err() {
                            futures::future::pending::<()>().await;
                        },
                        () = self.left.wait() => {}
                    }
                }
            }
        }
    }
}
