//! This data plane's sessions with upstream MCP servers. A client session gets its own
//! upstream sessions (opened at its initialize, carried in its sealed id, so any replica can
//! use them); stateless clients share one per upstream, opened on first use. Either kind is
//! re-opened transparently when an upstream forgets it.

use crate::session::{Session, UpstreamRef};

use crate::routes::UpstreamEntry;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_config::kinds::upstream::McpUpstream;
use switchboard_upstream::{
    Credentials, LegacySession, McpHttp, StreamCursor, UpstreamError, UpstreamSession,
};

/// Time allowed until an upstream's first response byte when its resource sets none.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Time allowed to connect when the resource sets none.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest wait for an upstream while a client initializes: a slow upstream must not hold
/// up the session (its session is then opened on first use instead).
pub const INITIALIZE_TIMEOUT: Duration = Duration::from_secs(10);

/// Most replaced client upstream sessions remembered (beyond it the memory starts over, and a
/// request with an old id just opens another session).
const MAX_REPLACED: usize = 10_000;

pub use switchboard_upstream::backend::CallOptions;

/// A call's time limit until the first byte: its own, else its upstream's, else the default.
fn timeout_for(call: &CallOptions, spec: &UpstreamEntry) -> Duration {
    call.timeout
        .or(spec.timeouts.request)
        .unwrap_or(DEFAULT_REQUEST_TIMEOUT)
}

/// `base` with a call's extra headers over it.
fn creds_for(call: &CallOptions, base: &Credentials) -> Credentials {
    let mut creds = base.clone();
    for (k, v) in &call.headers {
        creds.headers.insert(k.clone(), v.clone());
    }
    creds
}

/// Most shared sessions (MCP or legacy) kept; past it the map starts over (the sessions
/// left are ended by their upstreams in time).
const MAX_SHARED: usize = 1_000;

/// What tells apart the shared sessions of clients that pass their own credentials on
/// (`auth.passthrough`, `forwardToken`): a digest of the call's extra headers; empty for
/// calls that carry none (the gateway's own credentials).
fn credentials_key(call: &CallOptions) -> String {
    use sha2::Digest;
    if call.headers.is_empty() {
        return String::new();
    }
    let mut headers: Vec<_> = call.headers.iter().collect();
    headers.sort();
    let mut hash = sha2::Sha256::new();
    for (k, v) in headers {
        hash.update(k.as_bytes());
        hash.update([0]);
        hash.update(v.as_bytes());
        hash.update([0]);
    }
    hex::encode(&hash.finalize()[..16])
}

/// `session` carrying a call's extra headers.
fn dress(call: &CallOptions, session: Arc<UpstreamSession>) -> Arc<UpstreamSession> {
    if call.headers.is_empty() {
        return session;
    }
    let mut dressed = (*session).clone();
    dressed.creds = creds_for(call, &session.creds);
    Arc::new(dressed)
}

/// The client's own session with `name`, if it has one at the upstream's current URL.
fn own_ref<'a>(
    name: &str,
    spec: &UpstreamEntry,
    client: Option<&'a Session>,
) -> Option<&'a UpstreamRef> {
    let url = &spec.mcp.as_ref()?.url;
    client?.upstreams.get(name).filter(|r| &r.url == url)
}

/// Whether a call from `client` to `name` goes in the client's own upstream session (where
/// the client's request ids can be used as they are) rather than a shared one.
pub fn uses_own_session(name: &str, spec: &UpstreamEntry, client: Option<&Session>) -> bool {
    own_ref(name, spec, client).is_some()
}

/// Whether `spec` is a stdio upstream with a child per client session.
pub fn isolates_sessions(spec: &UpstreamEntry) -> bool {
    spec.stdio.as_ref().is_some_and(|s| {
        s.isolation == switchboard_config::kinds::upstream::StdioIsolation::PerSession
    })
}

/// Upstream sessions that end (DELETE, in the background) when this is dropped.
pub struct SessionsToEnd {
    sessions: Vec<(McpHttp, UpstreamSession)>,
    /// Sessions the upstream forgot and what replaced them: looked up when they end, since
    /// a session may be replaced while in use.
    replaced: Arc<Mutex<HashMap<String, Arc<UpstreamSession>>>>,
}

impl SessionsToEnd {
    /// Keeps the sessions open after all: something else ends them now.
    pub fn disarm(mut self) {
        self.sessions.clear();
    }

    /// Ends `other`'s sessions along with these.
    pub fn absorb(&mut self, mut other: SessionsToEnd) {
        self.sessions.append(&mut other.sessions);
    }
}

impl Drop for SessionsToEnd {
    fn drop(&mut self) {
        if self.sessions.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // shutting down: the upstreams forget them on their own
        };
        let sessions: Vec<(McpHttp, Arc<UpstreamSession>)> = std::mem::take(&mut self.sessions)
            .into_iter()
            .map(|(mcp, s)| {
                let now = s
                    .session_id
                    .as_ref()
                    .and_then(|id| lock(&self.replaced).get(id).cloned());
                (mcp, now.unwrap_or_else(|| Arc::new(s)))
            })
            .collect();
        runtime.spawn(async move {
            for (mcp, s) in sessions {
                mcp.terminate(&s, DEFAULT_CONNECT_TIMEOUT).await;
            }
        });
    }
}

/// Upstream sessions by upstream name (and URL, so a changed URL gets a new session).
pub struct UpstreamPool {
    mcp: McpHttp,
    /// Clients for upstreams that set their own connect timeout, by that timeout.
    by_connect_timeout: Mutex<HashMap<Duration, McpHttp>>,
    /// Shared sessions by upstream, URL and the client credentials they were opened with
    /// (see [`credentials_key`]): a client's token never rides in a session another opened.
    sessions: Mutex<HashMap<(String, String, String), Arc<UpstreamSession>>>,
    /// Client upstream sessions the upstream forgot, by old id, and what replaced them.
    replaced: Arc<Mutex<HashMap<String, Arc<UpstreamSession>>>>,
    /// HTTP+SSE sessions per legacy upstream (and URL, and client credentials), shared by
    /// every client that presents the same (or none).
    legacy: Mutex<HashMap<(String, String, String), Arc<LegacySession>>>,
    /// Where each client upstream session's GET stream left off, by upstream and session
    /// id, so a stream that drops reopens with `Last-Event-ID` (see [`Cursors`]).
    cursors: Cursors,
    /// Client upstream sessions, ended when idle or when their client session expires.
    idle: crate::idle_sessions::IdleSessions,
}

/// The last event id read from each client upstream session's GET stream. Bounded: past
/// [`MAX_CURSORS`], cursors unused for [`CURSOR_IDLE`] go, and if that is not enough, all.
#[derive(Default)]
struct Cursors(Mutex<HashMap<(String, String), (StreamCursor, std::time::Instant)>>);

const MAX_CURSORS: usize = 10_000;
const CURSOR_IDLE: Duration = Duration::from_secs(600);

impl Cursors {
    fn get(&self, upstream: &str, session: &str) -> StreamCursor {
        let mut map = lock(&self.0);
        let key = (upstream.to_string(), session.to_string());
        if !map.contains_key(&key) && map.len() >= MAX_CURSORS {
            map.retain(|_, (_, used)| used.elapsed() < CURSOR_IDLE);
            if map.len() >= MAX_CURSORS {
                map.clear();
            }
        }
        let (cursor, used) = map
            .entry(key)
            .or_insert_with(|| (StreamCursor::default(), std::time::Instant::now()));
        *used = std::time::Instant::now();
        cursor.clone()
    }

    fn forget(&self, upstream: &str, session: &str) {
        lock(&self.0).remove(&(upstream.to_string(), session.to_string()));
    }
}

impl Default for UpstreamPool {
    fn default() -> Self {
        UpstreamPool {
            mcp: McpHttp::new(DEFAULT_CONNECT_TIMEOUT),
            by_connect_timeout: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            replaced: Arc::default(),
            legacy: Mutex::new(HashMap::new()),
            cursors: Cursors::default(),
            idle: Default::default(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn mcp_of<'a>(name: &str, spec: &'a UpstreamEntry) -> Result<&'a McpUpstream, UpstreamError> {
    spec.mcp.as_ref().ok_or_else(|| UpstreamError::Protocol {
        url: name.to_string(),
        reason: "only MCP-over-HTTP upstreams are forwarded by this build".into(),
    })
}

impl UpstreamPool {
    /// The client for calls to `spec`: its `timeouts.connect`, or the default.
    fn mcp_for(&self, spec: &UpstreamEntry) -> McpHttp {
        match spec.timeouts.connect {
            None => self.mcp.clone(),
            Some(t) if t == DEFAULT_CONNECT_TIMEOUT => self.mcp.clone(),
            Some(t) => lock(&self.by_connect_timeout)
                .entry(t)
                .or_insert_with(|| self.mcp.with_connect_timeout(t))
                .clone(),
        }
    }

    /// The HTTP client for requests to `spec` outside MCP sessions (a pass-through
    /// server's OAuth2 token): its connect timeout and its TLS settings.
    pub fn http_for(&self, spec: &UpstreamEntry) -> Result<reqwest::Client, UpstreamError> {
        self.mcp_for(spec).http_for(&spec.creds)
    }

    /// A fresh id for a request the gateway itself sends upstream: a string no client's
    /// usual integer ids can equal, since client ids pass through in clients' own sessions.
    pub fn internal_id(&self) -> serde_json::Value {
        serde_json::Value::String(format!("sb-{}", self.mcp.next_id()))
    }

    /// How many shared sessions (for clients without their own) this pool holds.
    pub fn shared_sessions(&self) -> usize {
        lock(&self.sessions).len()
    }

    /// Opens an upstream session for a client (offering the client's capabilities).
    pub async fn open_for(
        &self,
        name: &str,
        spec: &UpstreamEntry,
        client: &Session,
        call: &CallOptions,
    ) -> Result<UpstreamRef, UpstreamError> {
        let mcp = mcp_of(name, spec)?;
        let timeout = timeout_for(call, spec).min(INITIALIZE_TIMEOUT);
        let s = self
            .mcp_for(spec)
            .initialize_as(
                mcp,
                &creds_for(call, &spec.creds),
                timeout,
                &client.capabilities,
            )
            .await?;
        let opened = UpstreamRef {
            id: s.session_id,
            version: s.protocol_version,
            url: s.url,
        };
        self.used(name, spec, &self.client_session(spec, &opened), client);
        Ok(opened)
    }

    /// Notes a client's own upstream session as used now (see [`crate::idle_sessions`]).
    /// Sessions the gateway opens for itself (a held call's, a subscription's) carry no
    /// expiry and are ended by whoever opened them.
    fn used(&self, name: &str, spec: &UpstreamEntry, session: &UpstreamSession, client: &Session) {
        if client.expires != 0 {
            self.idle
                .used(name, session, || self.mcp_for(spec), client.expires);
        }
    }

    /// How many client upstream sessions this pool follows for idleness.
    pub fn followed_sessions(&self) -> usize {
        self.idle.len()
    }

    /// Ends the client upstream sessions unused for `idle` (the periodic sweep uses
    /// [`crate::idle_sessions::IDLE`]); how many.
    pub fn end_idle(&self, idle: Duration) -> usize {
        self.idle.sweep(idle)
    }

    /// Ends a client's upstream sessions (best effort, in the background).
    pub fn close_for(&self, client: &Session, specs: &dyn Fn(&str) -> Option<Arc<UpstreamEntry>>) {
        for (name, r) in &client.upstreams {
            if let Some(id) = &r.id {
                self.cursors.forget(name, id);
                self.idle.forget(name, id);
            }
        }
        drop(self.ender_for(client, specs));
    }

    /// What ends a client's upstream sessions when dropped: however the code that opened
    /// them stops (returns, fails, or is cancelled), they do not outlive it.
    pub fn ender_for(
        &self,
        client: &Session,
        specs: &dyn Fn(&str) -> Option<Arc<UpstreamEntry>>,
    ) -> SessionsToEnd {
        let mut sessions = Vec::new();
        for (name, r) in &client.upstreams {
            if let Some(spec) = specs(name) {
                sessions.push((self.mcp_for(&spec), self.client_session(&spec, r)));
            }
        }
        SessionsToEnd {
            sessions,
            replaced: self.replaced.clone(),
        }
    }

    fn client_session(&self, spec: &UpstreamEntry, r: &UpstreamRef) -> UpstreamSession {
        UpstreamSession {
            url: r.url.clone(),
            session_id: r.id.clone(),
            protocol_version: r.version.clone(),
            capabilities: serde_json::Value::Null,
            creds: spec.creds.clone(),
        }
    }

    /// What replaced a client upstream session the upstream forgot, if anything.
    fn current(&self, s: &UpstreamSession) -> Option<Arc<UpstreamSession>> {
        let id = s.session_id.as_ref()?;
        lock(&self.replaced).get(id).cloned()
    }

    async fn shared(
        &self,
        name: &str,
        spec: &UpstreamEntry,
        call: &CallOptions,
    ) -> Result<Arc<UpstreamSession>, UpstreamError> {
        let mcp = mcp_of(name, spec)?;
        let key = (name.to_string(), mcp.url.clone(), credentials_key(call));
        if let Some(s) = lock(&self.sessions).get(&key) {
            if s.creds == spec.creds {
                return Ok(s.clone());
            }
            // Credentials changed (a rotated secret): open a session with the new ones.
        }
        let timeout = spec.timeouts.request.unwrap_or(DEFAULT_REQUEST_TIMEOUT);
        // Opened with the credentials its calls carry: an upstream that binds sessions to
        // who opened them sees the same caller throughout.
        let mut session = self
            .mcp_for(spec)
            .initialize(mcp, &creds_for(call, &spec.creds), timeout)
            .await?;
        session.creds = spec.creds.clone(); // each call dresses it with its own headers
        let session = Arc::new(session);
        tracing::debug!(upstream = %name, session = ?session.session_id.as_deref().map(crate::session::fingerprint), version = %session.protocol_version, "upstream session opened");
        let mut sessions = lock(&self.sessions);
        if sessions.len() >= MAX_SHARED {
            sessions.clear();
        }
        sessions.insert(key, session.clone());
        Ok(session)
    }

    /// The session to use: the client's own (or what replaced it) when it has one for this
    /// upstream at its current URL, else the shared one (never for an upstream that
    /// isolates sessions: that would put clients in one child).
    async fn session(
        &self,
        name: &str,
        spec: &UpstreamEntry,
        client: Option<&Session>,
        call: &CallOptions,
    ) -> Result<(Arc<UpstreamSession>, bool), UpstreamError> {
        if let Some(r) = own_ref(name, spec, client) {
            let s = self.client_session(spec, r);
            return Ok((self.current(&s).unwrap_or_else(|| Arc::new(s)), true));
        }
        if isolates_sessions(spec) {
            return Err(UpstreamError::Protocol {
                url: name.to_string(),
                reason: "this stdio upstream gives every client session a server of its own \
                         (isolation: perSession), and this session has none on this data plane \
                         (it was opened on another replica, before the server was restarted \
                         with a new configuration, or while the upstream was at its \
                         maxSessions cap): start a new session"
                    .into(),
            });
        }
        Ok((self.shared(name, spec, call).await?, false))
    }

    /// Drops the shared session with `name` at `url` for `call`'s credentials, so the next
    /// call opens a new one.
    fn forget_shared(&self, name: &str, url: &str, call: &CallOptions) {
        lock(&self.sessions).remove(&(name.to_string(), url.to_string(), credentials_key(call)));
    }

    /// Replaces a client's own session the upstream forgot.
    async fn reopen(
        &self,
        name: &str,
        spec: &UpstreamEntry,
        client: &Session,
        call: &CallOptions,
    ) -> Result<(), UpstreamError> {
        let opened = self.open_for(name, spec, client, call).await?;
        let fresh = Arc::new(self.client_session(spec, &opened));
        // Key by the id the client's session carries, so every later request finds it.
        if let Some(original) = client.upstreams.get(name).and_then(|r| r.id.clone()) {
            let mut replaced = lock(&self.replaced);
            if replaced.len() >= MAX_REPLACED {
                replaced.clear();
            }
            replaced.insert(original, fresh);
        }
        Ok(())
    }

    /// Sends one message to `name` in `client`'s upstream session (or the shared one); a
    /// session the upstream forgot is re-opened once.
    pub async fn send(
        &self,
        name: &str,
        spec: &UpstreamEntry,
        body: &serde_json::Value,
        client: Option<&Session>,
        call: &CallOptions,
    ) -> Result<reqwest::Response, UpstreamError> {
        let timeout = timeout_for(call, spec);
        let mut attempt = 0;
        loop {
            let (session, own) = self.session(name, spec, client, call).await?;
            // Only a client's own session comes with a client.
            let own = client.filter(|_| own);
            match self
                .mcp_for(spec)
                .send(&dress(call, session.clone()), body, timeout)
                .await
            {
                Err(UpstreamError::SessionExpired { .. }) if attempt == 0 => {
                    tracing::info!(upstream = %name, "upstream session expired; opening a new one");
                    if let Some(id) = &session.session_id {
                        self.idle.forget(name, id);
                    }
                    match own {
                        Some(client) => self.reopen(name, spec, client, call).await?,
                        None => self.forget_shared(name, &session.url, call),
                    }
                    attempt += 1;
                }
                Err(e @ (UpstreamError::Unreachable { .. } | UpstreamError::Timeout { .. })) => {
                    // The upstream may have restarted: do not reuse the shared session blindly.
                    if own.is_none() {
                        self.forget_shared(name, &session.url, call);
                    }
                    return Err(e);
                }
                other => {
                    if let (Ok(_), Some(client)) = (&other, own) {
                        self.used(name, spec, &session, client);
                    }
                    return other;
                }
            }
        }
    }

    /// Opens the GET stream of `client`'s own session with `name` (None when it has none
    /// there, or the upstream offers no stream).
    pub async fn listen(
        &self,
        name: &str,
        spec: &UpstreamEntry,
        client: &Session,
        call: &CallOptions,
    ) -> Result<Option<switchboard_upstream::Messages>, UpstreamError> {
        let (session, own) = self.session(name, spec, Some(client), call).await?;
        if !own {
            return Ok(None); // a shared session's stream belongs to no one client
        }
        self.used(name, spec, &session, client);
        let listening = self.idle.listening(name, &session);
        let cursor = session
            .session_id
            .as_deref()
            .map(|id| self.cursors.get(name, id));
        let session = dress(call, session);
        Ok(self
            .mcp_for(spec)
            .listen(
                &session,
                timeout_for(call, spec).min(INITIALIZE_TIMEOUT),
                cursor,
            )
            .await?
            .map(|m| {
                // The session is not idle while its stream is open.
                let m = futures::StreamExt::map(m, move |item| {
                    let _open = &listening;
                    item
                });
                Box::pin(m) as switchboard_upstream::Messages
            }))
    }

    /// Sends a request to a legacy HTTP+SSE upstream over this pool's shared session for the
    /// call's credentials (opened on first use, with the client's own credentials when it
    /// passes them on; re-opened once when its event stream is gone) and returns the
    /// response message. Progress notifications of such upstreams are not relayed.
    pub async fn call_legacy(
        &self,
        name: &str,
        spec: &UpstreamEntry,
        body: &serde_json::Value,
        call: &CallOptions,
    ) -> Result<serde_json::Value, UpstreamError> {
        let mcp = mcp_of(name, spec)?;
        let key = (name.to_string(), mcp.url.clone(), credentials_key(call));
        let timeout = timeout_for(call, spec);
        let creds = creds_for(call, &spec.creds);
        let mut attempt = 0;
        loop {
            let existing = lock(&self.legacy)
                .get(&key)
                .filter(|s| !s.is_closed())
                .cloned();
            let session = match existing {
                Some(s) => s,
                None => {
                    // With the client's credentials when it passes its own on: the
                    // session's every POST carries them.
                    let opened = LegacySession::connect(
                        &self.mcp_for(spec).http_for(&creds)?,
                        mcp,
                        &creds,
                        timeout.min(INITIALIZE_TIMEOUT),
                        &serde_json::json!({}),
                    )
                    .await?;
                    let mut legacy = lock(&self.legacy);
                    if legacy.len() >= MAX_SHARED {
                        legacy.retain(|_, s| !s.is_closed());
                        if legacy.len() >= MAX_SHARED {
                            legacy.clear();
                        }
                    }
                    legacy.insert(key.clone(), opened.clone());
                    opened
                }
            };
            match session.call(body, timeout).await {
                Err(UpstreamError::SessionExpired { .. }) if attempt == 0 => {
                    lock(&self.legacy).remove(&key);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}
