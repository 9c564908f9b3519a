//! What an upstream kind must provide, so the gateway can serve it without knowing which
//! kind it is. A kind is a backend with two halves:
//!
//! - [`Discovery`], run by the control plane (and by a data plane for the stdio upstreams it
//!   runs): the catalog of what the upstream offers, a liveness check, and the upstream's own
//!   word that the catalog changed. Catalogs are stored, hashed and pushed the same way
//!   whatever their kind.
//! - [`Caller`], run by the data plane: one JSON-RPC request (a `tools/call`, and whatever
//!   else the kind serves) executed against the upstream, its answer returned as it begins
//!   to arrive ([`Answer`]), so streamed progress is relayed as it comes.
//!
//! Federation, naming, authorization, rate limits, retries, circuit breaking, metrics and
//! relaying sit above these two traits and do not change per kind. MCP over streamable HTTP
//! and over HTTP+SSE is the first backend ([`McpDiscovery`] here; its caller is the data
//! plane's session pool); REST APIs, declared or described by OpenAPI, are the second
//! ([`RestDiscovery`], and `crate::rest::RestCaller`). A new kind implements both traits and is added to
//! [`discovery_for`] and to the data plane's caller registry.

mod mcp;
pub mod rest;

pub use mcp::McpDiscovery;
pub use rest::RestDiscovery;

use crate::client::{McpHttp, UpstreamError};
use crate::credentials::Credentials;
use crate::sse::SseEvent;
use async_trait::async_trait;
use futures::Stream;
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use switchboard_config::kinds::upstream::UpstreamSpec;
use switchboard_config::Catalog;

/// What a listing found.
#[derive(Debug, Clone)]
pub struct Listing {
    pub catalog: Catalog,
    /// The protocol (and version) the upstream speaks, shown in its health.
    pub protocol_version: String,
}

impl Listing {
    /// This listing, if its catalog can be carried in snapshots (see `Catalog::check`); an
    /// upstream whose catalog cannot is failing, and its previous catalog stays.
    pub fn checked(self) -> Result<Listing, UpstreamError> {
        self.catalog
            .check()
            .map_err(|e| UpstreamError::CatalogRefused {
                reason: e.to_string(),
            })?;
        Ok(self)
    }
}

/// What a liveness check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// The upstream answered.
    Alive,
    /// There is nothing to check yet, or the upstream forgot the connection (it restarted):
    /// list again, since its catalog may have changed too.
    Relist,
}

/// Word from an upstream about its catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The catalog changed (what changed, for logs): list again.
    Changed(String),
    /// The upstream gives no such word over this connection (why): only the refresh interval
    /// lists again, and no word is asked for again until the connection changes.
    Unavailable(String),
}

/// The upstream's word that its catalog changed, as it comes; an `Err` or the end of the
/// stream says why no more word can come over this connection.
pub type Changes = Pin<Box<dyn Stream<Item = Result<Change, String>> + Send>>;

/// The control plane's half of a backend: keeping one upstream's catalog and health.
/// Implementations hold their connection between calls; every call may (re)connect.
#[async_trait]
pub trait Discovery: Send + Sync {
    /// Everything the upstream offers now.
    async fn list(&mut self) -> Result<Listing, UpstreamError>;

    /// Whether the upstream is alive, within `limit`.
    async fn check(&mut self, limit: Duration) -> Result<Checked, UpstreamError>;

    /// A new stream of word of catalog changes over the current connection, or `None` when
    /// there is nothing new to follow: no connection, an upstream that gives no such word,
    /// or a stream handed out for this connection that is still followed. Callers ask
    /// after every listing and check, and replace what they follow by what they get. The
    /// stream connects on its first poll, so asking never blocks.
    fn changes(&mut self) -> Option<Changes>;

    /// Drops the current connection after a failure (closing it in the background).
    fn reset(&mut self);
}

/// The discovery of `spec`'s kind, or `None` for kinds the control plane does not list
/// (stdio upstreams are listed by the data planes that run them). `http` is the shared
/// HTTP client (connect timeout, TLS and credentials per upstream) that every HTTP-based
/// kind builds on.
pub fn discovery_for(
    spec: &UpstreamSpec,
    creds: Credentials,
    http: &McpHttp,
    timeout: Duration,
) -> Option<Box<dyn Discovery>> {
    if let Some(mcp) = &spec.mcp {
        return Some(Box::new(McpDiscovery::new(
            http.clone(),
            mcp.clone(),
            creds,
            timeout,
        )));
    }
    if let Some(agent) = &spec.a2a {
        return Some(Box::new(crate::a2a::A2aDiscovery::new(
            http.clone(),
            agent.clone(),
            creds,
            timeout,
        )));
    }
    let described = match (&spec.rest, &spec.openapi) {
        (Some(rest), _) => rest::Described::Declared(rest.clone()),
        (None, Some(api)) => rest::Described::OpenApi(api.clone()),
        (None, None) => return None,
    };
    Some(Box::new(RestDiscovery::new(
        http.clone(),
        described,
        creds,
        timeout,
    )))
}

/// How one call goes out: its time limit until the first byte, and extra headers (a
/// forwarded client token, trace context) over the upstream's own credentials.
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    pub timeout: Option<Duration>,
    pub headers: Vec<(String, String)>,
}

/// Why a JSON answer could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    #[error("invalid JSON: {0}")]
    InvalidJson(#[from] serde_json::Error),
    #[error("{0}")]
    BrokeOff(String),
    #[error("the answer is larger than {max} bytes")]
    TooLarge { max: usize },
}

impl From<crate::body::BodyError> for AnswerError {
    fn from(e: crate::body::BodyError) -> AnswerError {
        match e {
            crate::body::BodyError::TooLarge { max } => AnswerError::TooLarge { max },
            crate::body::BodyError::Broken(why) => AnswerError::BrokeOff(why),
        }
    }
}

/// A JSON answer still being read.
pub type AnswerBody = Pin<Box<dyn Future<Output = Result<Value, AnswerError>> + Send>>;

/// A streamed answer: events whose data are JSON-RPC messages (notifications and requests
/// first, the response last); an `Err` says why the stream broke off.
pub type AnswerEvents = Pin<Box<dyn Stream<Item = Result<SseEvent, String>> + Send>>;

/// A call's answer as it begins to arrive. The caller bounds how long it may take.
pub enum Answer {
    /// The JSON-RPC response, complete.
    Ready(Value),
    /// One JSON-RPC response, still to be read.
    Body(AnswerBody),
    /// A stream of messages ending with the response.
    Events(AnswerEvents),
}

/// A JSON-RPC error answer to `request` from the backend itself (a call it refuses before
/// anything is sent: an unknown tool, arguments that break the schema).
pub fn rpc_error(request: &Value, code: i64, message: String) -> Answer {
    Answer::Ready(serde_json::json!({
        "jsonrpc": "2.0",
        "id": request.get("id").cloned().unwrap_or(Value::Null),
        "error": {"code": code, "message": message},
    }))
}

/// The data plane's half of a backend: executing one request against an upstream. Requests
/// and answers are JSON-RPC messages in MCP's shapes (a `tools/call` in, its progress
/// notifications and `CallToolResult` out), whatever the upstream speaks: a backend for
/// another protocol translates both ways, so federation, policies and relaying above it
/// stay the same. Failures are [`UpstreamError`]s, whose kinds (unreachable, timed out, an
/// HTTP status, a protocol error) decide retries and the circuit breaker for every kind.
#[async_trait]
pub trait Caller: Send + Sync {
    /// Sends `request` (a JSON-RPC request whose id the answer must carry) and returns the
    /// answer as it begins: the error is for a call that got no answer at all (retries and
    /// the circuit breaker count these).
    async fn call(&self, request: &Value, options: &CallOptions) -> Result<Answer, UpstreamError>;
}
