//! Which [`Caller`] executes a call to an upstream, by the upstream's kind: the data plane's
//! half of the backend registry (the control plane's is
//! `switchboard_upstream::backend::discovery_for`). The gateway sends every forwarded
//! request (a tool call, a prompt, a resource read, a listing) through the caller found
//! here, so a new kind plugs in with a `Caller` and one arm below, and everything around the
//! call (routing, policies, retries, circuit breaking, relaying, metrics) stays as it is.
//!
//! REST and OpenAPI upstreams are called by `RestCaller`, over the tools compiled from
//! their catalog when the snapshot arrived.
//!
//! MCP is the first kind: its callers use the session pool (`upstreams`), in the client's
//! own upstream session when it has one. What lives in MCP sessions (questions on GET
//! streams, held calls, tasks, subscriptions, answers relayed to an upstream's questions)
//! is layered on top by the gateway for MCP upstreams only, and uses the pool directly.

use crate::routes::UpstreamEntry;
use crate::session::Session;
use crate::upstreams::UpstreamPool;
use async_trait::async_trait;
use serde_json::Value;
use switchboard_config::kinds::upstream::{McpTransport, UpstreamKind};
use switchboard_upstream::a2a::A2aCaller;
use switchboard_upstream::backend::{Answer, CallOptions, Caller};
use switchboard_upstream::body::{read_bounded, MAX_ANSWER_BYTES};
use switchboard_upstream::rest::RestCaller;
use switchboard_upstream::{is_event_stream, json_events, UpstreamError};

/// An upstream of a kind this data plane cannot call (a stdio upstream it does not run, or
/// a kind no backend serves yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", no_caller_message(*.kind))]
pub struct NoCaller {
    /// None for a spec that declares no kind (validation refuses those).
    pub kind: Option<UpstreamKind>,
}

/// What [`NoCaller`] says.
pub fn no_caller_message(kind: Option<UpstreamKind>) -> String {
    match kind {
        Some(UpstreamKind::Stdio) => "a stdio upstream this data plane does not run".into(),
        Some(kind) => format!("of kind `{kind}`, which this data plane cannot call"),
        None => "of no kind this data plane knows".into(),
    }
}

/// The caller for a call to `name` (in `client`'s session, when it has one).
pub fn caller_for<'a>(
    pool: &'a UpstreamPool,
    name: &'a str,
    spec: &'a UpstreamEntry,
    client: Option<&'a Session>,
) -> Result<Box<dyn Caller + 'a>, NoCaller> {
    if spec.spec.a2a.is_some() {
        return Ok(Box::new(A2aCaller {
            bindings: spec.a2a.as_ref(),
            http: pool.http_for(spec),
            creds: &spec.creds,
        }));
    }
    if spec.rest.is_some() || spec.openapi.is_some() {
        return Ok(Box::new(RestCaller {
            api: &spec.rest_api,
            http: pool.http_for(spec),
            creds: &spec.creds,
        }));
    }
    match spec.mcp.as_ref().map(|m| &m.transport) {
        Some(McpTransport::StreamableHttp) => Ok(Box::new(McpStreamable {
            pool,
            name,
            spec,
            client,
        })),
        Some(McpTransport::Sse) => Ok(Box::new(McpLegacy { pool, name, spec })),
        // A stdio upstream this data plane runs has its local bridge as `mcp`.
        None => Err(NoCaller { kind: spec.kind() }),
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
            let bytes = read_bounded(resp, MAX_ANSWER_BYTES).await?;
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
