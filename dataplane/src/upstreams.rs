//! This data plane's sessions with upstream MCP servers: opened on first use, reused, and
//! re-opened transparently when an upstream forgets one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_config::kinds::upstream::UpstreamSpec;
use switchboard_upstream::{McpHttp, UpstreamError, UpstreamSession};

/// Time allowed until an upstream's first response byte when its resource sets none.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Time allowed to connect when the resource sets none.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Upstream sessions by upstream name (and URL, so a changed URL gets a new session).
pub struct UpstreamPool {
    mcp: McpHttp,
    sessions: Mutex<HashMap<(String, String), Arc<UpstreamSession>>>,
}

impl Default for UpstreamPool {
    fn default() -> Self {
        UpstreamPool {
            mcp: McpHttp::new(DEFAULT_CONNECT_TIMEOUT),
            sessions: Mutex::new(HashMap::new()),
        }
    }
}

impl UpstreamPool {
    /// A fresh id for a request sent upstream.
    pub fn next_id(&self) -> u64 {
        self.mcp.next_id()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Arc<UpstreamSession>>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn session(
        &self,
        name: &str,
        spec: &UpstreamSpec,
    ) -> Result<Arc<UpstreamSession>, UpstreamError> {
        let mcp = spec.mcp.as_ref().ok_or_else(|| UpstreamError::Protocol {
            url: name.to_string(),
            reason: "only MCP-over-HTTP upstreams are forwarded by this build".into(),
        })?;
        let key = (name.to_string(), mcp.url.clone());
        if let Some(s) = self.lock().get(&key) {
            return Ok(s.clone());
        }
        let timeout = spec.timeouts.request.unwrap_or(DEFAULT_REQUEST_TIMEOUT);
        let session = Arc::new(self.mcp.initialize(mcp, &spec.headers, timeout).await?);
        tracing::debug!(upstream = %name, session = ?session.session_id, version = %session.protocol_version, "upstream session opened");
        self.lock().insert(key, session.clone());
        Ok(session)
    }

    fn forget(&self, name: &str, url: &str) {
        self.lock().remove(&(name.to_string(), url.to_string()));
    }

    /// Sends one message to `name`; an expired session is re-opened once.
    pub async fn send(
        &self,
        name: &str,
        spec: &UpstreamSpec,
        body: &serde_json::Value,
    ) -> Result<reqwest::Response, UpstreamError> {
        let timeout = spec.timeouts.request.unwrap_or(DEFAULT_REQUEST_TIMEOUT);
        let mut attempt = 0;
        loop {
            let session = self.session(name, spec).await?;
            match self.mcp.send(&session, body, timeout).await {
                Err(UpstreamError::SessionExpired { .. }) if attempt == 0 => {
                    tracing::info!(upstream = %name, "upstream session expired; opening a new one");
                    self.forget(name, &session.url);
                    attempt += 1;
                }
                Err(e @ (UpstreamError::Unreachable { .. } | UpstreamError::Timeout { .. })) => {
                    // The upstream may have restarted: do not reuse the session blindly.
                    self.forget(name, &session.url);
                    return Err(e);
                }
                other => return other,
            }
        }
    }
}
