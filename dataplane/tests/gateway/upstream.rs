//! An MCP server written with the official Rust SDK (`rmcp`), served over streamable HTTP
//! (with sessions, as servers of the 2025 protocol versions keep them) inside the test
//! process: the upstream the gateway tests call. Its tools: `echo`; `progress`, which reports
//! three steps before its result; `ask`, which asks the client for a word (elicitation) and
//! returns it; `announce`, which afterwards logs a message on the session's own stream.

#![allow(deprecated)] // logging, used by `announce`, is still part of the 2025 versions served here

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ElicitRequestParams, ElicitResult,
    ListToolsResult, LoggingMessageNotificationParam, PaginatedRequestParams,
    ProgressNotificationParam, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The SDK's types from their JSON form (the shapes the spec gives).
fn shaped<T: DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("a shape the SDK reads")
}

fn text_result(text: &str) -> CallToolResponse {
    let result: CallToolResult = shaped(json!({"content": [{"type": "text", "text": text}]}));
    result.into()
}

#[derive(Clone, Default)]
struct Tools;

impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        let capabilities: ServerCapabilities = shaped(json!({"tools": {}, "logging": {}}));
        ServerConfig::new(capabilities)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let tool = |name: &str, about: &str| json!({"name": name, "description": about, "inputSchema": {"type": "object"}});
        Ok(shaped(json!({"tools": [
            tool("echo", "Returns its `text` argument"),
            tool("progress", "Reports three steps, then finishes"),
            tool("ask", "Asks the client for a word and returns it"),
            tool("announce", "Logs a message on the session's own stream after answering"),
        ]})))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args = Value::Object(request.arguments.clone().unwrap_or_default());
        match request.name.as_ref() {
            "echo" => Ok(text_result(args["text"].as_str().unwrap_or_default())),
            "progress" => {
                let token = context.meta.get_progress_token();
                for step in 1..=3 {
                    if let Some(token) = &token {
                        let param: ProgressNotificationParam =
                            shaped(json!({"progressToken": token, "progress": step, "total": 3}));
                        context
                            .peer
                            .notify_progress(param)
                            .await
                            .map_err(internal)?;
                    }
                }
                Ok(text_result("three steps done"))
            }
            "ask" => {
                let params: ElicitRequestParams = shaped(json!({
                    "message": "Which word?",
                    "requestedSchema": {"type": "object",
                        "properties": {"word": {"type": "string"}}, "required": ["word"]}
                }));
                let answer: ElicitResult = context
                    .peer
                    .create_elicitation(params)
                    .await
                    .map_err(internal)?;
                let answer = serde_json::to_value(answer).map_err(internal)?;
                let word = answer["content"]["word"].as_str().unwrap_or("(none)");
                Ok(text_result(&format!("the client said {word}")))
            }
            "announce" => {
                let peer = context.peer.clone();
                let said = args["text"].as_str().unwrap_or("announced").to_string();
                tokio::spawn(async move {
                    let param: LoggingMessageNotificationParam =
                        shaped(json!({"level": "info", "logger": "upstream", "data": said}));
                    let _ = peer.notify_logging_message(param).await;
                });
                Ok(text_result("announcing"))
            }
            other => Err(ErrorData::invalid_params(
                format!("no tool named {other}"),
                None,
            )),
        }
    }
}

fn internal(e: impl std::fmt::Display) -> ErrorData {
    ErrorData::internal_error(e.to_string(), None)
}

/// The Rust SDK's server on a loopback port of its own; stopped when dropped.
pub struct RustUpstream {
    pub url: String,
    stop: CancellationToken,
    serving: Option<tokio::task::JoinHandle<()>>,
}

impl RustUpstream {
    pub async fn start() -> RustUpstream {
        let stop = CancellationToken::new();
        let mut config = StreamableHttpServerConfig::default();
        config.legacy_session_mode = true;
        config.sse_keep_alive = None;
        config.cancellation_token = stop.child_token();
        let service = StreamableHttpService::new(
            || Ok(Tools),
            Arc::new(LocalSessionManager::default()),
            config,
        );
        let router = axum::Router::new().nest_service("/mcp", service);
        // Bound before its address is handed out: nothing can take the port in between.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let addr = listener.local_addr().expect("its address");
        let stopped = stop.clone();
        let serving = tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move { stopped.cancelled_owned().await })
                .await;
        });
        RustUpstream {
            url: format!("http://{addr}/mcp"),
            stop,
            serving: Some(serving),
        }
    }

    /// Stops the server and returns once its port is closed and its connections are gone.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(serving) = self.serving.take() {
            tokio::time::timeout(crate::harness::WAIT, serving)
                .await
                .expect("the upstream stops")
                .expect("it stopped cleanly");
        }
    }
}

impl Drop for RustUpstream {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
