//! Which [`Caller`] executes a call to an upstream, by the upstream's kind: the data plane's
//! half of the backend registry (the control plane's is
//! `switchboard_upstream::backend::discovery_for`). The gateway forwards every call through
//! the caller found here, so a new kind plugs in with a `Caller` and one arm below, and
//! everything around the call (routing, policies, retries, circuit breaking, relaying,
//! metrics) stays as it is.
//!
//! MCP is the first kind: its callers use the session pool (`upstreams`), in the client's
//! own upstream session when it has one. MCP-only features (questions on GET streams, held
//! calls, tasks, subscriptions) are layered on top by the gateway for MCP upstreams only.

use crate::routes::UpstreamEntry;
use crate::session::Session;
use crate::upstreams::UpstreamPool;
use async_trait::async_trait;
use serde_json::Value;
use switchboard_config::kinds::upstream::McpTransport;
use switchboard_upstream::backend::{Answer, AnswerError, CallOptions, Caller};
use switchboard_upstream::{is_event_stream, json_events, UpstreamError};

/// An upstream of a kind this data plane cannot call (named by the kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this data plane cannot call upstreams of kind `{kind}`")]
pub struct NoCaller {
    pub kind: &'static str,
}

/// The caller for a call to `name` (in `client`'s session, when it has one).
pub fn caller_for<'a>(
    pool: &'a UpstreamPool,
    name: &'a str,
    spec: &'a UpstreamEntry,
    client: Option<&'a Session>,
) -> Result<Box<dyn Caller + 'a>, NoCaller> {
    match spec.mcp.as_ref().map(|m| &m.transport) {
        Some(McpTransport::StreamableHttp) => Ok(Box::new(McpStreamable {
            pool,
            name,
            spec,
            client,
        })),
        Some(McpTransport::Sse) => Ok(Box::new(McpLegacy { pool, name, spec })),
        None => Err(NoCaller {
            kind: kind_of(spec),
        }),
    }
}

/// The kind an upstream declares, for errors.
fn kind_of(spec: &UpstreamEntry) -> &'static str {
    if spec.openapi.is_some() {
        "openapi"
    } else if spec.a2a.is_some() {
        "a2a"
    } else if spec.grpc.is_some() {
        "grpc"
    } else if spec.stdio.is_some() {
        "stdio"
    } else {
        "unknown"
    }
}

/// A call to an MCP upstream over streamable HTTP: its answer is one JSON body or an SSE
/// stream, relayed event by event.
struct McpStreamable<'a> {
    pool: &'a UpstreamPool,
    name: &'a str,
    spec: &'a UpstreamEntry,
    client: Option<&'a Session>,
}

#[async_trait]
impl Caller for McpStreamable<'_> {
    async fn call(&self, request: &Value, options: &CallOptions) -> Result<Answer, UpstreamError> {
        let resp = self
            .pool
            .send(self.name, self.spec, request, self.client, options)
            .await?;
        if is_event_stream(&resp) {
            return Ok(Answer::Events(Box::pin(json_events(resp.bytes_stream()))));
        }
        Ok(Answer::Body(Box::pin(async move {
            let bytes = resp
                .bytes()
                .await
                .map_err(|e| AnswerError::BrokeOff(e.to_string()))?;
            Ok(serde_json::from_slice(&bytes)?)
        })))
    }
}

/// A call to an MCP upstream over the legacy HTTP+SSE transport: the pool's shared session
/// waits for the response on its event stream (progress is not relayed).
struct McpLegacy<'a> {
    pool: &'a UpstreamPool,
    name: &'a str,
    spec: &'a UpstreamEntry,
}

#[async_trait]
impl Caller for McpLegacy<'_> {
    async fn call(&self, request: &Value, options: &CallOptions) -> Result<Answer, UpstreamError> {
        let msg = self
            .pool
            .call_legacy(self.name, self.spec, request, options)
            .await?;
        Ok(Answer::Ready(msg))
    }
}
