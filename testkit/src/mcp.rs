//! Real MCP peers we did not write, and a minimal JSON-RPC client to poke them in smoke
//! tests (end-to-end tests use the official SDK clients instead).

use crate::deps::{node_bin, npm_module_dir, venv_bin};
use crate::ports::{free_port, wait_for_tcp};
use crate::process::ManagedProcess;
use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

/// The protocol version the smoke client asks for.
pub const SMOKE_PROTOCOL_VERSION: &str = "2025-06-18";

/// npm `@modelcontextprotocol/server-everything` in streamable-HTTP or SSE mode.
pub struct ServerEverything {
    process: ManagedProcess,
    port: u16,
}

impl ServerEverything {
    /// Streamable HTTP at `/mcp`, ready when it answers `initialize`.
    pub async fn start() -> anyhow::Result<ServerEverything> {
        Self::start_on(free_port()).await
    }

    /// The same on `port` (reserved with [`free_port`]), e.g. for an upstream that comes
    /// up after the gateway that was told its URL.
    pub async fn start_on(port: u16) -> anyhow::Result<ServerEverything> {
        let server = Self::launch_on("streamableHttp", port).await?;
        let mut client = McpHttpClient::new(server.url());
        client.initialize().await.with_context(|| {
            format!(
                "server-everything never answered initialize\n{}",
                server.log_tail(20)
            )
        })?;
        Ok(server)
    }

    /// The legacy HTTP+SSE transport (`GET /sse`, `POST /message`).
    pub async fn start_sse() -> anyhow::Result<ServerEverything> {
        Self::launch("sse").await
    }

    async fn launch(mode: &str) -> anyhow::Result<ServerEverything> {
        Self::launch_on(mode, free_port()).await
    }

    async fn launch_on(mode: &str, port: u16) -> anyhow::Result<ServerEverything> {
        let dir = npm_module_dir("@modelcontextprotocol/server-everything")?;
        let mut cmd = Command::new(node_bin()?);
        cmd.arg(dir.join("dist/index.js"))
            .arg(mode)
            .env("PORT", port.to_string());
        let process = ManagedProcess::spawn(cmd)?;
        if let Err(e) = wait_for_tcp(&format!("127.0.0.1:{port}"), Duration::from_secs(30)).await {
            bail!(
                "server-everything ({mode}) did not start: {e}\n{}",
                process.log_tail(20)
            );
        }
        Ok(ServerEverything { process, port })
    }

    /// The streamable-HTTP endpoint, `http://127.0.0.1:PORT/mcp`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    /// The SSE endpoint, `http://127.0.0.1:PORT/sse`.
    pub fn sse_url(&self) -> String {
        format!("http://127.0.0.1:{}/sse", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process, e.g. to kill it in a failure test.
    pub fn process(&mut self) -> &mut ManagedProcess {
        &mut self.process
    }

    /// The last lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }
}

/// The `data:` payloads of an SSE body, one per event.
pub fn parse_sse_events(body: &str) -> Vec<String> {
    let mut events = Vec::new();
    let mut data = Vec::new();
    for line in body.lines() {
        if line.is_empty() {
            if !data.is_empty() {
                events.push(data.join("\n"));
                data.clear();
            }
        } else if let Some(rest) = line.strip_prefix("data:") {
            data.push(rest.strip_prefix(' ').unwrap_or(rest).to_string());
        }
    }
    if !data.is_empty() {
        events.push(data.join("\n"));
    }
    events
}

/// A bare streamable-HTTP JSON-RPC client: enough to check a peer works.
pub struct McpHttpClient {
    url: String,
    http: reqwest::Client,
    session: Option<String>,
    next_id: u64,
    headers: Vec<(String, String)>,
}

impl McpHttpClient {
    /// A client for `url` (no request sent yet).
    pub fn new(url: impl Into<String>) -> Self {
        McpHttpClient {
            url: url.into(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap_or_default(),
            session: None,
            next_id: 1,
            headers: Vec::new(),
        }
    }

    /// Sends `name: value` with every request (credentials, say).
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Points the client (and its session) at another endpoint, e.g. another gateway
    /// replica behind the same load balancer.
    pub fn set_url(&mut self, url: impl Into<String>) {
        self.url = url.into();
    }

    /// The session id the server gave, if any.
    pub fn session_id(&self) -> Option<&str> {
        self.session.as_deref()
    }

    /// `initialize` + `notifications/initialized`; returns the initialize result.
    pub async fn initialize(&mut self) -> anyhow::Result<Value> {
        let result = self
            .request(
                "initialize",
                json!({
                    "protocolVersion": SMOKE_PROTOCOL_VERSION,
                    "capabilities": {},
                    "clientInfo": {"name": "switchboard-testkit", "version": "0"},
                }),
            )
            .await?;
        self.notify("notifications/initialized", json!({})).await?;
        Ok(result)
    }

    fn post(&self, body: &Value) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", SMOKE_PROTOCOL_VERSION)
            .json(body);
        if let Some(s) = &self.session {
            req = req.header("mcp-session-id", s);
        }
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        req
    }

    /// Sends a notification (expects 202).
    pub async fn notify(&mut self, method: &str, params: Value) -> anyhow::Result<()> {
        let body = json!({"jsonrpc": "2.0", "method": method, "params": params});
        let resp = self.post(&body).send().await?;
        if !resp.status().is_success() {
            bail!("{method} -> HTTP {}", resp.status());
        }
        Ok(())
    }

    /// Sends a request and returns its `result` (an `error` becomes Err).
    pub async fn request(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let resp = self
            .post(&body)
            .send()
            .await
            .with_context(|| format!("POST {method}"))?;
        if let Some(s) = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
        {
            self.session = Some(s.to_string());
        }
        let status = resp.status();
        let is_sse = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("{method} -> HTTP {status}: {text}");
        }
        let messages: Vec<Value> = if is_sse {
            parse_sse_events(&text)
                .iter()
                .filter_map(|e| serde_json::from_str(e).ok())
                .collect()
        } else {
            vec![serde_json::from_str(&text)
                .with_context(|| format!("{method}: not JSON: {text}"))?]
        };
        let reply = messages
            .into_iter()
            .find(|m| m.get("id") == Some(&json!(id)))
            .with_context(|| format!("{method}: no response with id {id} in: {text}"))?;
        response_result(method, reply)
    }
}

fn response_result(method: &str, reply: Value) -> anyhow::Result<Value> {
    if let Some(err) = reply.get("error") {
        bail!("{method} -> JSON-RPC error {err}");
    }
    reply
        .get("result")
        .cloned()
        .with_context(|| format!("{method}: response without result: {reply}"))
}

/// A stdio MCP server: newline-delimited JSON-RPC on stdin/stdout, killed on drop.
pub struct StdioMcpPeer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    next_id: u64,
}

impl StdioMcpPeer {
    /// Starts `program args...` with piped stdio.
    pub fn spawn(program: &std::path::Path, args: &[&str]) -> anyhow::Result<StdioMcpPeer> {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let stdin = child.stdin.take().context("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("no stdout")?);
        Ok(StdioMcpPeer {
            child,
            stdin,
            stdout,
            next_id: 1,
        })
    }

    /// PyPI `mcp-server-time` from the venv.
    pub fn mcp_server_time() -> anyhow::Result<StdioMcpPeer> {
        Self::spawn(&venv_bin("mcp-server-time")?, &["--local-timezone", "UTC"])
    }

    fn send(&mut self, message: &Value) -> anyhow::Result<()> {
        writeln!(self.stdin, "{message}")?;
        self.stdin.flush()?;
        Ok(())
    }

    /// `initialize` + `notifications/initialized`.
    pub fn initialize(&mut self) -> anyhow::Result<Value> {
        let result = self.request(
            "initialize",
            json!({
                "protocolVersion": SMOKE_PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "switchboard-testkit", "version": "0"},
            }),
        )?;
        self.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))?;
        Ok(result)
    }

    /// Sends a request and reads lines until its response (blocking; bounded by the peer).
    pub fn request(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))?;
        let mut line = String::new();
        loop {
            line.clear();
            if self.stdout.read_line(&mut line)? == 0 {
                bail!("{method}: the stdio peer closed its output");
            }
            let Ok(msg) = serde_json::from_str::<Value>(line.trim()) else {
                continue;
            };
            if msg.get("id") == Some(&json!(id)) {
                return response_result(method, msg);
            }
        }
    }
}

impl Drop for StdioMcpPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
