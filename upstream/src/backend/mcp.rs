//! Discovery of an MCP upstream (streamable HTTP or HTTP+SSE): a session kept open between
//! listings, pings as the liveness check, and `notifications/*/list_changed` on the
//! session's own stream as word of changes.

use super::{Change, Changes, Checked, Discovery, Listing};
use crate::client::{McpHttp, UpstreamError};
use crate::connection::{discovery_reply, is_list_changed, Connection, Messages};
use crate::credentials::Credentials;
use async_trait::async_trait;
use futures::StreamExt;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;
use switchboard_config::kinds::upstream::McpUpstream;

/// Time allowed to end a dropped session.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// One MCP upstream's discovery session.
pub struct McpDiscovery {
    http: McpHttp,
    spec: McpUpstream,
    creds: Credentials,
    /// Time allowed for each request.
    timeout: Duration,
    session: Option<Connection>,
    /// The stream of changes handed out for this session, if any (see [`Watched`]).
    watched: Option<Arc<AtomicU8>>,
}

/// Where the stream of changes handed out for a session is.
const WATCH_ENDED: u8 = 0;
const WATCH_LIVE: u8 = 1;
const WATCH_UNAVAILABLE: u8 = 2;

/// Held by a stream of changes: marks it ended when dropped, unless the upstream said it
/// gives no word (then none is asked for again on this session).
struct Watched(Arc<AtomicU8>);

impl Drop for Watched {
    fn drop(&mut self) {
        let _ =
            self.0
                .compare_exchange(WATCH_LIVE, WATCH_ENDED, Ordering::SeqCst, Ordering::SeqCst);
    }
}

impl McpDiscovery {
    /// Discovery of the upstream at `spec`, each request allowed `timeout`.
    pub fn new(
        http: McpHttp,
        spec: McpUpstream,
        creds: Credentials,
        timeout: Duration,
    ) -> McpDiscovery {
        McpDiscovery {
            http,
            spec,
            creds,
            timeout,
            session: None,
            watched: None,
        }
    }

    async fn open(&mut self) -> Result<Connection, UpstreamError> {
        if let Some(s) = &self.session {
            return Ok(s.clone());
        }
        let session = self
            .http
            .open(&self.spec, &self.creds, self.timeout)
            .await?;
        self.session = Some(session.clone());
        self.watched = None;
        Ok(session)
    }

    async fn list_once(&mut self) -> Result<Listing, UpstreamError> {
        let session = self.open().await?;
        let catalog = self.http.catalog(&session, self.timeout).await?;
        Ok(Listing {
            catalog,
            protocol_version: session.protocol_version().to_string(),
        })
    }
}

#[async_trait]
impl Discovery for McpDiscovery {
    async fn list(&mut self) -> Result<Listing, UpstreamError> {
        match self.list_once().await {
            // A restarted upstream forgot the session: once more in a new one.
            Err(UpstreamError::SessionExpired { .. }) => {
                self.reset();
                self.list_once().await
            }
            listed => listed,
        }
    }

    async fn check(&mut self, limit: Duration) -> Result<Checked, UpstreamError> {
        let Some(session) = self.session.clone() else {
            return Ok(Checked::Relist);
        };
        match self
            .http
            .request_on(&session, "ping", json!({}), limit)
            .await
        {
            Ok(_) => Ok(Checked::Alive),
            Err(UpstreamError::SessionExpired { .. }) => {
                self.reset();
                Ok(Checked::Relist)
            }
            Err(e) => Err(e),
        }
    }

    fn changes(&mut self) -> Option<Changes> {
        let session = self.session.clone()?;
        if !session.announces_list_changes() {
            return None;
        }
        if self
            .watched
            .as_ref()
            .is_some_and(|w| w.load(Ordering::SeqCst) != WATCH_ENDED)
        {
            return None; // still followed, or the upstream gives no word on this session
        }
        let state = Arc::new(AtomicU8::new(WATCH_LIVE));
        self.watched = Some(state.clone());
        let (http, timeout) = (self.http.clone(), self.timeout);
        let watched = Arc::new(Watched(state));
        Some(Box::pin(
            futures::stream::unfold(Watch::Opening, move |step| {
                let (http, session, watched) = (http.clone(), session.clone(), watched.clone());
                async move { watch_step(&http, &session, timeout, step, &watched).await }
            })
            .fuse(),
        ))
    }

    fn reset(&mut self) {
        self.watched = None;
        if let Some(s) = self.session.take() {
            let http = self.http.clone();
            tokio::spawn(async move { http.close(&s, CLOSE_TIMEOUT).await });
        }
    }
}

/// Where the stream of changes is.
enum Watch {
    Opening,
    Open(Messages),
    Ended,
}

/// The next word of change: the session's stream is opened first; pings and `roots/list`
/// on it are answered, other requests refused (discovery never calls tools, so nothing
/// should ask it to sample or elicit), other notifications passed over.
async fn watch_step(
    http: &McpHttp,
    session: &Connection,
    timeout: Duration,
    state: Watch,
    watched: &Watched,
) -> Option<(Result<Change, String>, Watch)> {
    let mut messages = match state {
        Watch::Ended => return None,
        Watch::Open(m) => m,
        Watch::Opening => match http.messages(session, timeout).await {
            Ok(Some(m)) => m,
            Ok(None) => {
                watched.0.store(WATCH_UNAVAILABLE, Ordering::SeqCst);
                let why = "the upstream offers no notification stream".to_string();
                return Some((Ok(Change::Unavailable(why)), Watch::Ended));
            }
            Err(e) => return Some((Err(e.to_string()), Watch::Ended)),
        },
    };
    loop {
        match messages.next().await {
            Some(Ok(msg)) => {
                let method = msg.get("method").and_then(Value::as_str).unwrap_or("");
                if is_list_changed(method) {
                    let change = Change::Changed(method.to_string());
                    return Some((Ok(change), Watch::Open(messages)));
                }
                if let Some(reply) = discovery_reply(&msg) {
                    let _ = http.reply(session, &reply, timeout).await;
                }
            }
            Some(Err(e)) => return Some((Err(e), Watch::Ended)),
            None => {
                let why = "the upstream closed it".to_string();
                return Some((Err(why), Watch::Ended));
            }
        }
    }
}
