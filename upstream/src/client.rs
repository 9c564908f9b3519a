//! Streamable-HTTP MCP client for upstreams.

use crate::credentials::Credentials;
use crate::sse::json_events;
use futures::StreamExt;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_config::kinds::upstream::McpUpstream;

/// The version the gateway asks upstreams for (they may answer with an older one).
pub const CLIENT_PROTOCOL_VERSION: &str = "2025-11-25";

/// Why talking to an upstream failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot reach {url}: {reason}")]
    Unreachable {
        url: String,
        reason: String,
        /// The connection was never made, so the request never left (safe to retry).
        connect: bool,
    },
    #[error("{url} did not answer within {after:?}")]
    Timeout { url: String, after: Duration },
    #[error("{url} answered HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    /// The upstream forgot our session (HTTP 404): open a new one and retry.
    #[error("{url} no longer knows our session")]
    SessionExpired { url: String },
    #[error("{url} sent something that is not MCP: {reason}")]
    Protocol { url: String, reason: String },
    /// A REST API's answer or OpenAPI document that cannot be used (too large, broken off,
    /// unreadable).
    #[error("{url}: {reason}")]
    Unusable { url: String, reason: String },
    /// What the upstream offers cannot be carried in snapshots (see `Catalog::check`).
    #[error("catalog refused: {reason}")]
    CatalogRefused { reason: String },
    #[error("{url} answered with JSON-RPC error {code}: {message}")]
    Rpc {
        url: String,
        code: i64,
        message: String,
    },
}

impl UpstreamError {
    /// A request that failed in the HTTP client.
    pub fn unreachable(url: &str, e: &reqwest::Error) -> UpstreamError {
        UpstreamError::Unreachable {
            url: url.into(),
            reason: describe(e),
            connect: e.is_connect(),
        }
    }
}

/// An error with its causes: reqwest says only "error sending request", and the reason
/// (refused, a certificate from an unknown issuer, a name that does not match) is in the
/// source chain. Causes that repeat the previous text are left out.
pub fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut last = out.clone();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !last.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        last = text;
        source = s.source();
    }
    out
}

/// Whether an upstream answered with an SSE stream (rather than one JSON message).
pub fn is_event_stream(resp: &reqwest::Response) -> bool {
    resp.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

/// An open session with one upstream.
#[derive(Debug, Clone)]
pub struct UpstreamSession {
    pub url: String,
    /// `Mcp-Session-Id` the upstream gave us (stateless upstreams give none).
    pub session_id: Option<String>,
    pub protocol_version: String,
    /// The upstream's capabilities from initialize.
    pub capabilities: Value,
    /// Headers and credentials every request carries.
    pub creds: Credentials,
}

/// Most clients kept for upstreams with TLS settings of their own, per [`McpHttp`]; past it
/// the cache starts over (settings change rarely: a certificate rotation makes one more).
const MAX_TLS_CLIENTS: usize = 256;

/// A pooled HTTP client speaking MCP.
#[derive(Clone)]
pub struct McpHttp {
    http: reqwest::Client,
    connect_timeout: Duration,
    /// Clients for upstreams with TLS settings of their own, by the settings' fingerprint.
    tls_clients: Arc<Mutex<HashMap<[u8; 32], reqwest::Client>>>,
    next_id: Arc<std::sync::atomic::AtomicU64>,
}

impl McpHttp {
    /// A client whose connections time out after `connect_timeout`.
    pub fn new(connect_timeout: Duration) -> Self {
        McpHttp {
            http: crate::tls::http_client(Some(connect_timeout), None)
                .unwrap_or_else(|_| crate::tls::default_http_client()),
            connect_timeout,
            tls_clients: Arc::default(),
            next_id: Default::default(),
        }
    }

    /// The same client (its ids included) with connections that time out after
    /// `connect_timeout`, over a connection pool of its own.
    pub fn with_connect_timeout(&self, connect_timeout: Duration) -> Self {
        McpHttp {
            next_id: self.next_id.clone(),
            ..McpHttp::new(connect_timeout)
        }
    }

    /// The HTTP client for requests carrying `creds`: the shared one, or one built for
    /// their TLS settings (kept, so its connections are reused).
    pub fn http_for(&self, creds: &Credentials) -> Result<reqwest::Client, UpstreamError> {
        let Some(tls) = &creds.tls else {
            return Ok(self.http.clone());
        };
        let mut clients = self.tls_clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(&tls.fingerprint()) {
            return Ok(c.clone());
        }
        let client =
            crate::tls::http_client(Some(self.connect_timeout), Some(tls)).map_err(|e| {
                UpstreamError::Unreachable {
                    url: String::new(),
                    reason: format!("cannot use the upstream's TLS settings: {e}"),
                    connect: false,
                }
            })?;
        if clients.len() >= MAX_TLS_CLIENTS {
            clients.clear();
        }
        clients.insert(tls.fingerprint(), client.clone());
        Ok(client)
    }

    /// A request id unique within this process.
    pub fn next_id(&self) -> u64 {
        self.next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1
    }

    async fn post(
        &self,
        url: &str,
        session: Option<&UpstreamSession>,
        body: &Value,
    ) -> Result<reqwest::RequestBuilder, UpstreamError> {
        let http = match session {
            Some(s) => self.http_for(&s.creds)?,
            None => self.http.clone(),
        };
        let mut req = http
            .post(url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        if let Some(s) = session {
            if body.get("method").and_then(Value::as_str) != Some("initialize") {
                req = req.header("mcp-protocol-version", &s.protocol_version);
            }
            if let Some(id) = &s.session_id {
                req = req.header("mcp-session-id", id);
            }
            req = s.creds.apply(&http, req).await?;
        }
        Ok(req.body(body.to_string()))
    }

    /// Sends one message and returns the raw response (2xx only), for streaming it on.
    pub async fn send(
        &self,
        session: &UpstreamSession,
        body: &Value,
        timeout: Duration,
    ) -> Result<reqwest::Response, UpstreamError> {
        self.send_to(&session.url, Some(session), body, timeout)
            .await
    }

    async fn send_to(
        &self,
        url: &str,
        session: Option<&UpstreamSession>,
        body: &Value,
        timeout: Duration,
    ) -> Result<reqwest::Response, UpstreamError> {
        let request = self.post(url, session, body).await?;
        let sent = tokio::time::timeout(timeout, request.send()).await;
        let resp = match sent {
            Err(_) => {
                return Err(UpstreamError::Timeout {
                    url: url.into(),
                    after: timeout,
                })
            }
            Ok(Err(e)) => return Err(UpstreamError::unreachable(url, &e)),
            Ok(Ok(r)) => r,
        };
        let status = resp.status().as_u16();
        if let Some(s) = session {
            s.creds.note_status(status);
        }
        let in_session = session.is_some_and(|s| s.session_id.is_some());
        if status == 404 && in_session {
            return Err(UpstreamError::SessionExpired { url: url.into() });
        }
        if !(200..300).contains(&status) {
            let body = crate::body::error_text(resp).await;
            // Some servers (the TypeScript SDK's) answer a session they no longer know with
            // 400 "No valid session ID provided" instead of the spec's 404.
            if status == 400 && in_session && body.to_ascii_lowercase().contains("session") {
                return Err(UpstreamError::SessionExpired { url: url.into() });
            }
            return Err(UpstreamError::Status {
                url: url.into(),
                status,
                body: body.chars().take(500).collect(),
            });
        }
        Ok(resp)
    }

    /// The JSON-RPC response with `id` inside a JSON or SSE body (what else an SSE body
    /// carries first, notifications and requests, is passed over).
    pub async fn response_for(
        url: &str,
        resp: reqwest::Response,
        id: &Value,
    ) -> Result<Value, UpstreamError> {
        let protocol = |reason: String| UpstreamError::Protocol {
            url: url.into(),
            reason,
        };
        if !is_event_stream(&resp) {
            let bytes = crate::body::read_bounded(resp, crate::body::MAX_ANSWER_BYTES)
                .await
                .map_err(|e| protocol(e.to_string()))?;
            return serde_json::from_slice(&bytes)
                .map_err(|e| protocol(format!("invalid JSON: {e}")));
        }
        let mut events = Box::pin(json_events(resp.bytes_stream()));
        while let Some(event) = events.next().await {
            let event = event.map_err(protocol)?;
            if let Ok(msg) = serde_json::from_str::<Value>(&event.data) {
                if msg.get("id") == Some(id)
                    && (msg.get("result").is_some() || msg.get("error").is_some())
                {
                    return Ok(msg);
                }
            }
        }
        Err(protocol(format!(
            "the stream ended without a response to request {id}"
        )))
    }

    fn result_of(url: &str, msg: Value) -> Result<Value, UpstreamError> {
        result_of(url, msg)
    }
}

/// The result of a response message, or its error as [`UpstreamError::Rpc`].
pub(crate) fn result_of(url: &str, msg: Value) -> Result<Value, UpstreamError> {
    if let Some(err) = msg.get("error") {
        return Err(UpstreamError::Rpc {
            url: url.into(),
            code: err.get("code").and_then(Value::as_i64).unwrap_or(0),
            message: err
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        });
    }
    msg.get("result")
        .cloned()
        .ok_or_else(|| UpstreamError::Protocol {
            url: url.into(),
            reason: "response without result".into(),
        })
}

impl McpHttp {
    /// Opens a session: initialize, then notifications/initialized.
    pub async fn initialize(
        &self,
        spec: &McpUpstream,
        creds: &Credentials,
        timeout: Duration,
    ) -> Result<UpstreamSession, UpstreamError> {
        self.initialize_as(spec, creds, timeout, &json!({})).await
    }

    /// Ends a session the upstream keeps (best effort: DELETE with its id).
    pub async fn terminate(&self, session: &UpstreamSession, timeout: Duration) {
        let Some(id) = &session.session_id else {
            return;
        };
        let Ok(http) = self.http_for(&session.creds) else {
            return;
        };
        let req = http
            .delete(&session.url)
            .header("mcp-session-id", id)
            .header("mcp-protocol-version", &session.protocol_version);
        if let Ok(req) = session.creds.apply(&http, req).await {
            let _ = tokio::time::timeout(timeout, req.send()).await;
        }
    }

    /// Opens a session on behalf of a client with `capabilities`, so the upstream may use
    /// what that client offers (sampling, roots, elicitation).
    pub async fn initialize_as(
        &self,
        spec: &McpUpstream,
        creds: &Credentials,
        timeout: Duration,
        capabilities: &Value,
    ) -> Result<UpstreamSession, UpstreamError> {
        let url = spec.url.clone();
        let id = json!(self.next_id());
        let version = spec
            .protocol_version
            .as_deref()
            .unwrap_or(CLIENT_PROTOCOL_VERSION);
        let body = json!({
            "jsonrpc": "2.0", "id": id, "method": "initialize",
            "params": {
                "protocolVersion": version,
                "capabilities": capabilities,
                "clientInfo": {"name": "switchboard", "version": env!("CARGO_PKG_VERSION")},
            },
        });
        let pre = UpstreamSession {
            url: url.clone(),
            session_id: None,
            protocol_version: version.to_string(),
            capabilities: Value::Null,
            creds: creds.clone(),
        };
        let resp = self.send_to(&url, Some(&pre), &body, timeout).await?;
        let session_id = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let result = Self::result_of(&url, Self::response_for(&url, resp, &id).await?)?;
        let session = UpstreamSession {
            session_id,
            protocol_version: result
                .get("protocolVersion")
                .and_then(Value::as_str)
                .unwrap_or(version)
                .to_string(),
            capabilities: result.get("capabilities").cloned().unwrap_or(Value::Null),
            ..pre
        };
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        self.send(&session, &note, timeout).await?;
        Ok(session)
    }

    /// Sends a request and returns its result.
    pub async fn request(
        &self,
        session: &UpstreamSession,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, UpstreamError> {
        let id = json!(self.next_id());
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let resp = self.send(session, &body, timeout).await?;
        let msg = tokio::time::timeout(timeout, Self::response_for(&session.url, resp, &id))
            .await
            .map_err(|_| UpstreamError::Timeout {
                url: session.url.clone(),
                after: timeout,
            })??;
        Self::result_of(&session.url, msg)
    }

    /// Opens the session's GET stream for messages the upstream sends on its own
    /// (notifications such as list_changed, and requests). `None` when the upstream offers
    /// no such stream (HTTP 405, or a stateless upstream).
    ///
    /// With a `cursor`, the stream starts after the event it names (`Last-Event-ID`, for
    /// an upstream that keeps its events) and the cursor follows every event id read, so a
    /// stream that drops can be reopened where it left off.
    pub async fn listen(
        &self,
        session: &UpstreamSession,
        timeout: Duration,
        cursor: Option<StreamCursor>,
    ) -> Result<Option<impl futures::Stream<Item = Result<Value, String>>>, UpstreamError> {
        let Some(id) = &session.session_id else {
            return Ok(None);
        };
        let http = self.http_for(&session.creds)?;
        let mut req = http
            .get(&session.url)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", id)
            .header("mcp-protocol-version", &session.protocol_version);
        if let Some(last) = cursor.as_ref().and_then(StreamCursor::get) {
            req = req.header("last-event-id", last);
        }
        let req = session.creds.apply(&http, req).await?;
        let url = session.url.clone();
        let resp = tokio::time::timeout(timeout, req.send())
            .await
            .map_err(|_| UpstreamError::Timeout {
                url: url.clone(),
                after: timeout,
            })?
            .map_err(|e| UpstreamError::unreachable(&url, &e))?;
        let status = resp.status().as_u16();
        session.creds.note_status(status);
        match status {
            405 => return Ok(None),
            404 => return Err(UpstreamError::SessionExpired { url }),
            s if !(200..300).contains(&s) => {
                return Err(UpstreamError::Status {
                    url,
                    status: s,
                    body: crate::body::error_text(resp).await,
                })
            }
            _ => {}
        }
        if !is_event_stream(&resp) {
            return Ok(None);
        }
        Ok(Some(json_events(resp.bytes_stream()).filter_map(
            move |ev| {
                if let (Ok(ev), Some(cursor)) = (&ev, &cursor) {
                    if !ev.id.is_empty() {
                        cursor.set(&ev.id);
                    }
                }
                async move {
                    match ev {
                        Ok(ev) if ev.data.trim().is_empty() => None,
                        Ok(ev) => {
                            Some(serde_json::from_str::<Value>(&ev.data).map_err(|e| e.to_string()))
                        }
                        Err(e) => Some(Err(e)),
                    }
                }
            },
        )))
    }
}

/// The id of the last event read from an upstream's GET stream, shared by whoever reopens
/// the stream (see [`McpHttp::listen`]).
#[derive(Clone, Debug, Default)]
pub struct StreamCursor(std::sync::Arc<std::sync::Mutex<Option<String>>>);

impl StreamCursor {
    /// The last event id read, if any.
    pub fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Notes `id` as the last event read.
    pub fn set(&self, id: &str) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(id.to_string());
    }
}
