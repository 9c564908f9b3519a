//! Calling REST APIs as MCP tools: a `tools/call` checked against the tool's input schema,
//! turned into an HTTP request ([`request`]), and the HTTP answer turned into a
//! `CallToolResult` ([`answer`]). The data plane compiles each REST upstream's catalog into
//! a [`RestApi`] once per snapshot; [`RestCaller`] is the data plane's `Caller` for the
//! `rest` and `openapi` kinds.

mod answer;
mod request;
mod stream;

use crate::backend::{rpc_error, Answer, CallOptions, Caller};
use crate::body::{read_bounded, within, MAX_ANSWER_BYTES};
use crate::{Credentials, UpstreamError};
use async_trait::async_trait;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use switchboard_config::jq::Filter;
use switchboard_config::kinds::rest::RestCall;
use switchboard_config::schema::Schema;
use switchboard_config::Catalog;

/// JSON-RPC: the method is not served.
const METHOD_NOT_FOUND: i64 = -32601;
/// JSON-RPC: the arguments are wrong.
const INVALID_PARAMS: i64 = -32602;

/// Longest a call may take when neither the tool nor the upstream sets a limit.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// One tool, ready to call.
#[derive(Debug)]
pub struct CompiledCall {
    pub call: RestCall,
    schema: Schema,
    filter: Option<Filter>,
    /// The listing declares an output schema: results must carry `structuredContent`.
    structured: bool,
}

/// A REST upstream's tools, compiled from its catalog.
#[derive(Debug, Default)]
pub struct RestApi {
    base_url: String,
    query_credentials: Vec<String>,
    /// Tool name -> the tool, or why it cannot be called (a schema or filter that does
    /// not compile: the control plane checks both, so only a hand-made catalog has these).
    tools: HashMap<String, Result<Arc<CompiledCall>, String>>,
}

impl RestApi {
    /// Compiles every tool of `catalog` (none when it carries no REST bindings).
    pub fn compile(catalog: &Catalog) -> RestApi {
        let Some(bindings) = &catalog.rest else {
            return RestApi::default();
        };
        let listed: HashMap<&str, &Value> = catalog
            .tools
            .iter()
            .filter_map(|t| Some((t.get("name")?.as_str()?, t)))
            .collect();
        let tools = bindings
            .calls
            .iter()
            .map(|(name, call)| {
                let tool = listed.get(name.as_str());
                let compiled = (|| {
                    let schema = tool
                        .and_then(|t| t.get("inputSchema"))
                        .cloned()
                        .unwrap_or_else(|| json!({"type": "object"}));
                    let schema = Schema::compile(&schema).map_err(|e| e.to_string())?;
                    let filter = call
                        .filter
                        .as_deref()
                        .map(Filter::compile)
                        .transpose()
                        .map_err(|e| e.to_string())?;
                    Ok(Arc::new(CompiledCall {
                        call: call.clone(),
                        schema,
                        filter,
                        structured: tool.is_some_and(|t| t.get("outputSchema").is_some()),
                    }))
                })();
                (name.clone(), compiled)
            })
            .collect();
        RestApi {
            base_url: bindings.base_url.clone(),
            query_credentials: bindings.query_credentials.clone(),
            tools,
        }
    }

    /// The compiled tool `name`.
    pub fn tool(&self, name: &str) -> Option<&Result<Arc<CompiledCall>, String>> {
        self.tools.get(name)
    }
}

/// What came back: a whole answer, or the start of an SSE stream.
enum Sent {
    Whole(reqwest::StatusCode, Option<String>, bytes::Bytes),
    Events(reqwest::Response),
}

/// Executes `tools/call`s against a REST API.
pub struct RestCaller<'a> {
    pub api: &'a RestApi,
    /// The client for the upstream (its TLS settings and connect timeout), or why there
    /// is none.
    pub http: Result<reqwest::Client, UpstreamError>,
    pub creds: &'a Credentials,
}

#[async_trait]
impl Caller for RestCaller<'_> {
    async fn call(&self, request: &Value, options: &CallOptions) -> Result<Answer, UpstreamError> {
        let method = request.get("method").and_then(Value::as_str).unwrap_or("");
        if method != "tools/call" {
            return Ok(rpc_error(
                request,
                METHOD_NOT_FOUND,
                format!("a REST upstream serves tools/call only, not {method}"),
            ));
        }
        let params = request.get("params");
        let name = params
            .and_then(|p| p.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let tool = match self.api.tool(name) {
            Some(Ok(tool)) => tool,
            Some(Err(why)) => {
                return Ok(rpc_error(
                    request,
                    INVALID_PARAMS,
                    format!("tool `{name}` cannot be called: {why}"),
                ))
            }
            None => {
                return Ok(rpc_error(
                    request,
                    INVALID_PARAMS,
                    format!("unknown tool `{name}`"),
                ))
            }
        };
        let empty = Value::Object(serde_json::Map::new());
        let args = params.and_then(|p| p.get("arguments")).unwrap_or(&empty);
        // Nothing leaves the gateway for arguments the tool's schema refuses.
        if let Err(why) = tool.schema.check(args) {
            return Ok(rpc_error(
                request,
                INVALID_PARAMS,
                format!("invalid arguments: {why}"),
            ));
        }
        let Some(args) = args.as_object() else {
            return Ok(rpc_error(
                request,
                INVALID_PARAMS,
                "the arguments must be an object".to_string(),
            ));
        };
        let built = match request::build(&self.api.base_url, &tool.call, args) {
            Ok(b) => b,
            Err(why) => {
                return Ok(rpc_error(
                    request,
                    INVALID_PARAMS,
                    format!("invalid arguments: {why}"),
                ))
            }
        };
        let url = built.url.to_string();
        let http = self.http.clone()?;
        let limit = tool
            .call
            .timeout
            .or(options.timeout)
            .unwrap_or(DEFAULT_CALL_TIMEOUT);
        let sending = async {
            let req = request::prepare(
                &http,
                built,
                self.creds,
                &self.api.query_credentials,
                options,
            )
            .await?;
            // The error without its URL: an API key may ride in the query.
            let resp = req
                .send()
                .await
                .map_err(|e| UpstreamError::unreachable(&url, &e.without_url()))?;
            let status = resp.status();
            self.creds.note_status(status.as_u16());
            if (502..=504).contains(&status.as_u16()) {
                // The API is not there right now: retried when the tool is safe to repeat,
                // and counted by the circuit breaker, as for every kind.
                return Err(UpstreamError::Status {
                    url: url.clone(),
                    status: status.as_u16(),
                    body: crate::body::error_text(resp).await,
                });
            }
            let content_type = resp
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            if status.is_success() && crate::is_event_stream(&resp) {
                return Ok(Sent::Events(resp));
            }
            let body = read_bounded(resp, MAX_ANSWER_BYTES).await.map_err(|e| {
                UpstreamError::Unusable {
                    url: url.clone(),
                    reason: e.to_string(),
                }
            })?;
            Ok(Sent::Whole(status, content_type, body))
        };
        let (status, content_type, body) = match within(&url, limit, sending).await? {
            Sent::Whole(status, content_type, body) => (status, content_type, body),
            Sent::Events(resp) => {
                // Streamed: relayed event by event (the gateway bounds the silences).
                let token = params
                    .and_then(|p| p.pointer("/_meta/progressToken"))
                    .cloned();
                let id = request.get("id").cloned().unwrap_or(Value::Null);
                return Ok(Answer::Events(stream::relay(
                    resp.bytes_stream(),
                    id,
                    token,
                )));
            }
        };
        let result = answer::result(
            &answer::Http {
                url: &url,
                status,
                content_type: content_type.as_deref(),
                body: &body,
            },
            tool.filter.as_ref(),
            tool.structured,
        );
        Ok(Answer::Ready(json!({
            "jsonrpc": "2.0",
            "id": request.get("id").cloned().unwrap_or(Value::Null),
            "result": result,
        })))
    }
}
