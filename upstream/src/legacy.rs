//! The 2024-11-05 HTTP+SSE transport: one long-lived `GET` event stream per session that
//! first names the endpoint to POST messages to, then carries every message from the
//! server (responses included, matched to requests by id).

use crate::client::{UpstreamError, CLIENT_PROTOCOL_VERSION};
use crate::credentials::Credentials;
use crate::sse::json_events;
use futures::StreamExt;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_config::kinds::upstream::McpUpstream;
use tokio::sync::{broadcast, oneshot, watch};

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Value>>>>;

/// An open HTTP+SSE session; the event stream is read in the background and closed when
/// the session is dropped.
pub struct LegacySession {
    /// The SSE URL the session was opened at.
    pub url: String,
    /// Where messages are POSTed (from the server's `endpoint` event).
    pub endpoint: String,
    pub protocol_version: String,
    pub capabilities: Value,
    creds: Credentials,
    http: reqwest::Client,
    pending: Pending,
    others: broadcast::Sender<Value>,
    closed: watch::Receiver<bool>,
    reader: tokio::task::JoinHandle<()>,
    next_id: AtomicU64,
}

impl Drop for LegacySession {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

fn protocol(url: &str, reason: impl Into<String>) -> UpstreamError {
    UpstreamError::Protocol {
        url: url.into(),
        reason: reason.into(),
    }
}

impl LegacySession {
    /// Opens the event stream, waits for the endpoint, and runs the initialize handshake
    /// offering `capabilities`.
    pub async fn connect(
        http: &reqwest::Client,
        spec: &McpUpstream,
        creds: &Credentials,
        timeout: Duration,
        capabilities: &Value,
    ) -> Result<Arc<LegacySession>, UpstreamError> {
        let url = spec.url.clone();
        let req = http.get(&url).header("accept", "text/event-stream");
        let req = creds.apply(http, req).await?;
        let resp = tokio::time::timeout(timeout, req.send())
            .await
            .map_err(|_| UpstreamError::Timeout {
                url: url.clone(),
                after: timeout,
            })?
            .map_err(|e| UpstreamError::unreachable(&url, &e))?;
        let status = resp.status().as_u16();
        creds.note_status(status);
        if !(200..300).contains(&status) {
            return Err(UpstreamError::Status {
                url,
                status,
                body: crate::body::error_text(resp)
                    .await
                    .chars()
                    .take(500)
                    .collect(),
            });
        }
        let base = reqwest::Url::parse(&url).map_err(|e| protocol(&url, e.to_string()))?;
        let pending: Pending = Arc::default();
        let (others, _) = broadcast::channel(64);
        let (closed_tx, closed) = watch::channel(false);
        let (endpoint_tx, endpoint_rx) = oneshot::channel::<String>();
        let reader = {
            let (pending, others) = (pending.clone(), others.clone());
            let mut events = Box::pin(json_events(resp.bytes_stream()));
            tokio::spawn(async move {
                let mut endpoint_tx = Some(endpoint_tx);
                while let Some(Ok(event)) = events.next().await {
                    if event.event == "endpoint" {
                        if let Some(tx) = endpoint_tx.take() {
                            let _ = tx.send(event.data);
                        }
                        continue;
                    }
                    let Ok(msg) = serde_json::from_str::<Value>(&event.data) else {
                        continue;
                    };
                    let is_response = msg.get("result").is_some() || msg.get("error").is_some();
                    let waiter = msg
                        .get("id")
                        .filter(|_| is_response)
                        .and_then(|id| lock(&pending).remove(&id.to_string()));
                    match waiter {
                        Some(tx) => {
                            let _ = tx.send(msg);
                        }
                        None => {
                            let _ = others.send(msg);
                        }
                    }
                }
                let _ = closed_tx.send(true);
                // Every request still waiting learns the stream is gone.
                lock(&pending).clear();
            })
        };
        let endpoint = match tokio::time::timeout(timeout, endpoint_rx).await {
            Ok(Ok(e)) => {
                let joined = base
                    .join(e.trim())
                    .map_err(|e| protocol(&url, format!("bad endpoint event: {e}")))?;
                if joined.origin() != base.origin() {
                    reader.abort();
                    return Err(protocol(
                        &url,
                        format!("the endpoint event names another origin ({joined}): not used, so credentials stay with this server"),
                    ));
                }
                joined.to_string()
            }
            Ok(Err(_)) => {
                reader.abort();
                return Err(protocol(
                    &url,
                    "the event stream ended before naming its endpoint",
                ));
            }
            Err(_) => {
                reader.abort();
                return Err(UpstreamError::Timeout {
                    url,
                    after: timeout,
                });
            }
        };
        let mut session = LegacySession {
            url,
            endpoint,
            protocol_version: String::new(),
            capabilities: Value::Null,
            creds: creds.clone(),
            http: http.clone(),
            pending,
            others,
            closed,
            reader,
            next_id: AtomicU64::new(1),
        };
        let version = spec
            .protocol_version
            .as_deref()
            .unwrap_or(CLIENT_PROTOCOL_VERSION);
        let result = session
            .request(
                "initialize",
                json!({
                    "protocolVersion": version,
                    "capabilities": capabilities,
                    "clientInfo": {"name": "switchboard", "version": env!("CARGO_PKG_VERSION")},
                }),
                timeout,
            )
            .await?;
        session.protocol_version = result
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or(version)
            .to_string();
        session.capabilities = result.get("capabilities").cloned().unwrap_or(Value::Null);
        session
            .post(
                &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
                timeout,
            )
            .await?;
        Ok(Arc::new(session))
    }

    /// Whether the event stream has ended (the session is then unusable).
    pub fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    /// Messages the server sends on its own (notifications, requests).
    pub fn messages(&self) -> broadcast::Receiver<Value> {
        self.others.subscribe()
    }

    /// Resolves when the event stream ends.
    pub async fn closed(&self) {
        let mut rx = self.closed.clone();
        let _ = rx.wait_for(|c| *c).await;
    }

    async fn post(&self, body: &Value, timeout: Duration) -> Result<(), UpstreamError> {
        let req = self
            .http
            .post(&self.endpoint)
            .header("content-type", "application/json");
        let req = self.creds.apply(&self.http, req).await?;
        let resp = tokio::time::timeout(timeout, req.body(body.to_string()).send())
            .await
            .map_err(|_| UpstreamError::Timeout {
                url: self.endpoint.clone(),
                after: timeout,
            })?
            .map_err(|e| UpstreamError::unreachable(&self.endpoint, &e))?;
        let status = resp.status().as_u16();
        if status == 404 {
            return Err(UpstreamError::SessionExpired {
                url: self.url.clone(),
            });
        }
        if !(200..300).contains(&status) {
            return Err(UpstreamError::Status {
                url: self.endpoint.clone(),
                status,
                body: resp
                    .text()
                    .await
                    .unwrap_or_default()
                    .chars()
                    .take(500)
                    .collect(),
            });
        }
        Ok(())
    }

    /// Sends `body` (a request carrying an `id`) and returns the response message as the
    /// server sent it.
    pub async fn call(&self, body: &Value, timeout: Duration) -> Result<Value, UpstreamError> {
        if self.is_closed() {
            return Err(UpstreamError::SessionExpired {
                url: self.url.clone(),
            });
        }
        let key = body.get("id").map(Value::to_string).unwrap_or_default();
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(key.clone(), tx);
        if let Err(e) = self.post(body, timeout).await {
            lock(&self.pending).remove(&key);
            return Err(e);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(msg)) => Ok(msg),
            Ok(Err(_)) => Err(UpstreamError::SessionExpired {
                url: self.url.clone(),
            }),
            Err(_) => {
                lock(&self.pending).remove(&key);
                Err(UpstreamError::Timeout {
                    url: self.url.clone(),
                    after: timeout,
                })
            }
        }
    }

    /// Sends a request and returns its result.
    pub async fn request(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, UpstreamError> {
        let id = format!("sb-{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let msg = self.call(&body, timeout).await?;
        crate::client::result_of(&self.url, msg)
    }

    /// Answers a request the server sent on the event stream.
    pub async fn reply(&self, body: &Value, timeout: Duration) -> Result<(), UpstreamError> {
        self.post(body, timeout).await
    }
}

fn lock(p: &Pending) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<Value>>> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}
