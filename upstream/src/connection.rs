//! One session with an upstream in whichever HTTP transport it speaks, for callers (such
//! as discovery) that need requests, listings and server-sent messages from either.

use crate::client::{McpHttp, UpstreamError, UpstreamSession};
use crate::credentials::Credentials;
use crate::legacy::LegacySession;
use futures::{Stream, StreamExt};
use serde_json::{json, Value};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use switchboard_config::kinds::upstream::{McpTransport, McpUpstream};
use switchboard_config::Catalog;

/// Most pages followed when listing, so a looping cursor cannot hang discovery.
const MAX_PAGES: usize = 100;

/// Messages an upstream sends on its own; ends (with the reason) when the stream does.
pub type Messages = Pin<Box<dyn Stream<Item = Result<Value, String>> + Send>>;

/// An open session over streamable HTTP or the legacy HTTP+SSE transport.
#[derive(Clone)]
pub enum Connection {
    Streamable(Box<UpstreamSession>),
    Legacy(Arc<LegacySession>),
}

impl Connection {
    /// The protocol version the upstream agreed to.
    pub fn protocol_version(&self) -> &str {
        match self {
            Connection::Streamable(s) => &s.protocol_version,
            Connection::Legacy(s) => &s.protocol_version,
        }
    }

    /// The upstream's capabilities from initialize.
    pub fn capabilities(&self) -> &Value {
        match self {
            Connection::Streamable(s) => &s.capabilities,
            Connection::Legacy(s) => &s.capabilities,
        }
    }

    /// Whether the upstream announces list changes for any of its lists.
    pub fn announces_list_changes(&self) -> bool {
        ["tools", "prompts", "resources"].iter().any(|cap| {
            self.capabilities()
                .get(cap)
                .and_then(|c| c.get("listChanged"))
                .and_then(Value::as_bool)
                .unwrap_or(false)
        })
    }
}

/// Whether `method` is one of the `notifications/*/list_changed` an upstream sends when a
/// listing changed.
pub fn is_list_changed(method: &str) -> bool {
    method.starts_with("notifications/") && method.ends_with("/list_changed")
}

/// The answer a discovery session (one that lists, never calls) gives a request the
/// upstream sends it: pings and `roots/list` (it offers roots but has none) are answered,
/// anything else refused. None for what is not a request.
pub fn discovery_reply(msg: &Value) -> Option<Value> {
    let id = msg.get("id")?;
    let method = msg.get("method").and_then(Value::as_str)?;
    Some(match method {
        "ping" => json!({"jsonrpc": "2.0", "id": id, "result": {}}),
        "roots/list" => json!({"jsonrpc": "2.0", "id": id, "result": {"roots": []}}),
        _ => json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601,
            "message": format!("discovery sessions do not serve {method}")}}),
    })
}

/// What discovery sessions offer upstreams (see [`McpHttp::open`]).
pub fn discovery_capabilities() -> serde_json::Value {
    json!({"roots": {"listChanged": true}, "sampling": {}, "elicitation": {}})
}

impl McpHttp {
    /// Opens a discovery session in the transport `spec` names. It offers every client
    /// capability (roots, sampling, elicitation), so the catalog includes the tools an
    /// upstream registers only for clients that have them; the session itself never calls
    /// a tool, so it is never asked to sample or elicit.
    pub async fn open(
        &self,
        spec: &McpUpstream,
        creds: &Credentials,
        timeout: Duration,
    ) -> Result<Connection, UpstreamError> {
        let capabilities = discovery_capabilities();
        Ok(match spec.transport {
            McpTransport::StreamableHttp => Connection::Streamable(Box::new(
                self.initialize_as(spec, creds, timeout, &capabilities)
                    .await?,
            )),
            McpTransport::Sse => Connection::Legacy(
                LegacySession::connect(&self.http_for(creds)?, spec, creds, timeout, &capabilities)
                    .await?,
            ),
        })
    }

    /// Ends a session (best effort).
    pub async fn close(&self, conn: &Connection, timeout: Duration) {
        match conn {
            Connection::Streamable(s) => self.terminate(s, timeout).await,
            Connection::Legacy(_) => {} // dropping the last handle closes its stream
        }
    }

    /// Sends a request on `conn` and returns its result.
    pub async fn request_on(
        &self,
        conn: &Connection,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, UpstreamError> {
        match conn {
            Connection::Streamable(s) => self.request(s, method, params, timeout).await,
            Connection::Legacy(s) => s.request(method, params, timeout).await,
        }
    }

    /// Every item of a paginated listing (`tools/list` -> `tools`, ...).
    pub async fn list_all(
        &self,
        conn: &Connection,
        method: &str,
        key: &str,
        timeout: Duration,
    ) -> Result<Vec<Value>, UpstreamError> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let params = match &cursor {
                Some(c) => json!({"cursor": c}),
                None => json!({}),
            };
            let page = self.request_on(conn, method, params, timeout).await?;
            if let Some(list) = page.get(key).and_then(Value::as_array) {
                items.extend(list.iter().cloned());
            }
            cursor = page
                .get("nextCursor")
                .and_then(Value::as_str)
                .map(str::to_string);
            if cursor.is_none() {
                return Ok(items);
            }
        }
        Err(UpstreamError::Protocol {
            url: match conn {
                Connection::Streamable(s) => s.url.clone(),
                Connection::Legacy(s) => s.url.clone(),
            },
            reason: format!("{method} still had more pages after {MAX_PAGES}"),
        })
    }

    /// Everything the upstream offers over an open session, following every cursor.
    pub async fn catalog(
        &self,
        conn: &Connection,
        timeout: Duration,
    ) -> Result<Catalog, UpstreamError> {
        let has = |cap: &str| conn.capabilities().get(cap).is_some();
        let mut catalog = Catalog {
            protocol_version: conn.protocol_version().to_string(),
            ..Catalog::default()
        };
        if has("tools") {
            catalog.tools = self.list_all(conn, "tools/list", "tools", timeout).await?;
        }
        if has("prompts") {
            catalog.prompts = self
                .list_all(conn, "prompts/list", "prompts", timeout)
                .await?;
        }
        if has("resources") {
            catalog.resources = self
                .list_all(conn, "resources/list", "resources", timeout)
                .await?;
            catalog.resource_templates = self
                .list_all(
                    conn,
                    "resources/templates/list",
                    "resourceTemplates",
                    timeout,
                )
                .await?;
        }
        Ok(catalog)
    }

    /// Everything the upstream offers, following every cursor; the session is closed after.
    pub async fn discover(
        &self,
        spec: &McpUpstream,
        creds: &Credentials,
        timeout: Duration,
    ) -> Result<Catalog, UpstreamError> {
        let conn = self.open(spec, creds, timeout).await?;
        let catalog = self.catalog(&conn, timeout).await;
        self.close(&conn, timeout).await;
        catalog
    }

    /// The messages the upstream sends on its own over `conn` (for streamable HTTP, its
    /// GET stream). `None` when it offers none.
    pub async fn messages(
        &self,
        conn: &Connection,
        timeout: Duration,
    ) -> Result<Option<Messages>, UpstreamError> {
        match conn {
            Connection::Streamable(s) => Ok(self
                .listen(s, timeout, None)
                .await?
                .map(|m| Box::pin(m) as Messages)),
            Connection::Legacy(s) => {
                let rx = s.messages();
                let session = s.clone();
                let live = tokio_stream::wrappers::BroadcastStream::new(rx)
                    .filter_map(|m| async move { m.ok().map(Ok) });
                // End when the session's stream does.
                let ended = futures::stream::once(async move {
                    session.closed().await;
                    Err("the upstream closed its event stream".to_string())
                });
                Ok(Some(Box::pin(futures::stream::select(live, ended))))
            }
        }
    }

    /// Answers a request the upstream sent over `conn`.
    pub async fn reply(
        &self,
        conn: &Connection,
        body: &Value,
        timeout: Duration,
    ) -> Result<(), UpstreamError> {
        match conn {
            Connection::Streamable(s) => self.send(s, body, timeout).await.map(|_| ()),
            Connection::Legacy(s) => s.reply(body, timeout).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_sessions_answer_pings_and_roots_and_refuse_the_rest() {
        let ask = |m: &str| json!({"jsonrpc": "2.0", "id": 3, "method": m});
        assert_eq!(discovery_reply(&ask("ping")).unwrap()["result"], json!({}));
        assert_eq!(
            discovery_reply(&ask("roots/list")).unwrap()["result"],
            json!({"roots": []})
        );
        assert_eq!(
            discovery_reply(&ask("sampling/createMessage")).unwrap()["error"]["code"],
            -32601
        );
        assert_eq!(
            discovery_reply(&json!({"method": "notifications/message"})),
            None
        );
        assert!(is_list_changed("notifications/tools/list_changed"));
        assert!(!is_list_changed("notifications/message"));
    }
}
