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

use super::*;
use std::collections::HashMap;
use std::sync::Mutex;

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

impl Gateway {
    /// The GET stream of the client's own session with the call's upstream, opened before
    /// the call is sent so that questions asked on it are not dropped; None when the client
    /// cannot be asked, this data plane's client GET stream already holds it, or the
    /// upstream refuses (one stream per session: someone else, e.g. the client's GET stream
    /// on another replica, holds it and carries the questions).
    pub(super) async fn question_stream(
        &self,
        f: &Forward,
        spec: &UpstreamEntry,
    ) -> Option<switchboard_upstream::Messages> {
        let client = f.session.as_ref()?;
        if f.stateless || !askable(&client.capabilities) {
            return None;
        }
        if spec.mcp.as_ref()?.transport != McpTransport::StreamableHttp {
            return None;
        }
        let id = own_session_id(&f.upstream, spec, client)?;
        if self.listening.is_held(&f.upstream, &id) {
            return None;
        }
        let call = CallOptions {
            headers: f.headers.clone(),
            ..CallOptions::default()
        };
        match self
            .upstreams
            .listen(&f.upstream, spec, client, &call)
            .await
        {
            Ok(Some(stream)) => Some(Box::pin(stream.filter(|m| {
                // The gateway says when its own listings change (see `listen`).
                let list_changed = m
                    .as_ref()
                    .ok()
                    .and_then(|m| m.get("method"))
                    .and_then(Value::as_str)
                    .is_some_and(switchboard_upstream::is_list_changed);
                futures::future::ready(!list_changed)
            }))),
            Ok(None) => None,
            Err(e) => {
                tracing::debug!(upstream = %f.upstream, error = %e, "the call reads no GET stream of its own (another holds it, or there is none)");
                None
            }
        }
    }
}
