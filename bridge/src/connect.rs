//! `switchboard connect URL`: a stdio MCP server that forwards everything to a gateway's
//! streamable-HTTP endpoint, for desktop clients that only launch stdio servers. Messages
//! from stdin are POSTed (concurrently, so a client can answer a server's request while a
//! call is still streaming); JSON and SSE answers, and the session's GET stream, go to
//! stdout one message per line. The session is ended when stdin closes.

use futures::StreamExt;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_upstream::json_events;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// Where to forward, and what every request carries (credentials, say).
#[derive(Debug, Clone)]
pub struct ConnectConfig {
    pub url: String,
    pub headers: Vec<(String, String)>,
}

/// Why forwarding stopped.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("reading standard input: {0}")]
    Stdin(std::io::Error),
    #[error("writing standard output: {0}")]
    Stdout(std::io::Error),
}

/// How long to wait before resuming a stream whose server named no `retry`.
const RESUME_AFTER: Duration = Duration::from_secs(1);
/// The longest `retry` a server may make us wait.
const MAX_RESUME_AFTER: Duration = Duration::from_secs(30);
/// How many times one answer's stream is resumed before giving up.
const MAX_RESUMES: u32 = 5;

/// `_meta` key naming a stateless-era request's protocol version.
const VERSION_KEY: &str = "io.modelcontextprotocol/protocolVersion";

/// The session the gateway gave, and the version it agreed to.
#[derive(Default)]
struct State {
    session: Option<String>,
    version: Option<String>,
    listening: bool,
}

#[derive(Clone)]
struct Forwarder {
    config: Arc<ConnectConfig>,
    http: reqwest::Client,
    state: Arc<Mutex<State>>,
    out: mpsc::Sender<String>,
}

fn error_for(id: &Value, message: String) -> String {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32603, "message": message}}).to_string()
}

impl Forwarder {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn request(&self, method: reqwest::Method, msg: Option<&Value>) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .request(method, &self.config.url)
            .header("accept", "application/json, text/event-stream");
        for (k, v) in &self.config.headers {
            req = req.header(k, v);
        }
        let (session, version) = {
            let s = self.lock();
            (s.session.clone(), s.version.clone())
        };
        if let Some(s) = session {
            req = req.header("mcp-session-id", s);
        }
        let stateless = msg
            .and_then(|m| m.pointer("/params/_meta"))
            .and_then(|m| m.get(VERSION_KEY))
            .and_then(Value::as_str);
        if let Some(v) = stateless {
            // The stateless era's routing headers, from the body.
            req = req.header("mcp-protocol-version", v);
            if let Some(method) = msg.and_then(|m| m.get("method")).and_then(Value::as_str) {
                req = req.header("mcp-method", method);
            }
            let name = msg
                .and_then(|m| {
                    m.pointer("/params/name")
                        .or_else(|| m.pointer("/params/uri"))
                })
                .and_then(Value::as_str);
            if let Some(name) = name {
                req = req.header("mcp-name", name);
            }
        } else if let Some(v) = version {
            req = req.header("mcp-protocol-version", v);
        }
        if let Some(m) = msg {
            req = req
                .header("content-type", "application/json")
                .body(m.to_string());
        }
        req
    }

    async fn emit(&self, line: String) {
        let _ = self.out.send(line).await;
    }

    /// POSTs one message and writes whatever comes back.
    async fn post(&self, msg: Value) {
        let id = msg
            .get("id")
            .cloned()
            .filter(|_| msg.get("method").is_some());
        let is_initialize = msg.get("method").and_then(Value::as_str) == Some("initialize");
        let resp = match self.request(reqwest::Method::POST, Some(&msg)).send().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot reach the gateway");
                if let Some(id) = &id {
                    self.emit(error_for(
                        id,
                        format!("cannot reach {}: {e}", self.config.url),
                    ))
                    .await;
                }
                return;
            }
        };
        let status = resp.status();
        if is_initialize {
            if let Some(s) = resp
                .headers()
                .get("mcp-session-id")
                .and_then(|v| v.to_str().ok())
            {
                self.lock().session = Some(s.to_string());
            }
        }
        let sse = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if sse {
            self.relay_answer(resp, id.as_ref(), is_initialize).await;
            return;
        }
        let body = resp.text().await.unwrap_or_default();
        if status.as_u16() == 202 || body.trim().is_empty() && status.is_success() {
            return;
        }
        match serde_json::from_str::<Value>(&body) {
            // A JSON-RPC answer (errors included): pass it on, with the request's id.
            Ok(mut answer) if answer.get("result").is_some() || answer.get("error").is_some() => {
                if let Some(id) = &id {
                    if answer.get("id").is_none_or(Value::is_null) {
                        answer["id"] = id.clone();
                    }
                }
                let line = answer.to_string();
                self.note(&line, is_initialize);
                self.emit(line).await;
            }
            _ => {
                if let Some(id) = &id {
                    self.emit(error_for(
                        id,
                        format!("the gateway answered HTTP {status}: {body}"),
                    ))
                    .await;
                }
            }
        }
    }

    /// Relays a POST's SSE answer. A stream that ends (or breaks) before the answer after
    /// it gave event ids is resumed with `GET` and `Last-Event-ID` after the server's
    /// `retry` (SEP-1699), a few times at most.
    async fn relay_answer(&self, resp: reqwest::Response, id: Option<&Value>, is_initialize: bool) {
        let mut events = Box::pin(json_events(resp.bytes_stream()));
        let mut last_id: Option<String> = None;
        let mut retry = RESUME_AFTER;
        let mut resumed = 0;
        loop {
            let mut broke = None;
            while let Some(event) = events.next().await {
                let ev = match event {
                    Ok(ev) => ev,
                    Err(e) => {
                        broke = Some(e);
                        break;
                    }
                };
                if !ev.id.is_empty() {
                    last_id = Some(ev.id.clone());
                }
                if let Some(r) = ev.retry {
                    retry = r.min(MAX_RESUME_AFTER);
                }
                if ev.data.trim().is_empty() {
                    continue; // a priming event: its id is what counts
                }
                let answers = id.is_some_and(|id| {
                    serde_json::from_str::<Value>(&ev.data).is_ok_and(|m| {
                        m.get("id") == Some(id)
                            && (m.get("result").is_some() || m.get("error").is_some())
                    })
                });
                self.note(&ev.data, is_initialize);
                self.emit(ev.data).await;
                if answers {
                    return;
                }
            }
            let Some(id) = id else {
                return; // nothing waits for this stream
            };
            let why = broke.unwrap_or_else(|| "it ended before the answer".into());
            let Some(last) = last_id.clone().filter(|_| resumed < MAX_RESUMES) else {
                self.emit(error_for(id, format!("the gateway's stream broke: {why}")))
                    .await;
                return;
            };
            resumed += 1;
            tracing::debug!(%why, last_event_id = %last, "resuming an answer stream");
            tokio::time::sleep(retry).await;
            let resumed_stream = self
                .request(reqwest::Method::GET, None)
                .header("last-event-id", last)
                .send()
                .await;
            match resumed_stream {
                Ok(r) if r.status().is_success() => {
                    events = Box::pin(json_events(r.bytes_stream()));
                }
                Ok(r) => {
                    let status = r.status();
                    let body = r.text().await.unwrap_or_default();
                    self.emit(error_for(
                        id,
                        format!("the gateway's stream broke ({why}) and could not be resumed: HTTP {status} {body}"),
                    ))
                    .await;
                    return;
                }
                Err(e) => {
                    self.emit(error_for(
                        id,
                        format!("the gateway's stream broke ({why}) and could not be resumed: {e}"),
                    ))
                    .await;
                    return;
                }
            }
        }
    }

    /// Remembers the protocol version an initialize result agreed to.
    fn note(&self, line: &str, is_initialize: bool) {
        if !is_initialize {
            return;
        }
        if let Ok(msg) = serde_json::from_str::<Value>(line) {
            if let Some(v) = msg
                .pointer("/result/protocolVersion")
                .and_then(Value::as_str)
            {
                self.lock().version = Some(v.to_string());
            }
        }
    }

    /// Relays the session's GET stream until the gateway says it offers none.
    async fn listen(self) {
        let mut backoff = Duration::from_millis(500);
        let mut last_id: Option<String> = None;
        loop {
            let mut req = self.request(reqwest::Method::GET, None);
            if let Some(last) = &last_id {
                req = req.header("last-event-id", last); // pick up where it broke
            }
            match req.send().await {
                Ok(r) if r.status().as_u16() == 405 => return,
                Ok(r) if r.status().is_success() => {
                    backoff = Duration::from_millis(500);
                    let mut events = Box::pin(json_events(r.bytes_stream()));
                    while let Some(Ok(ev)) = events.next().await {
                        if !ev.id.is_empty() {
                            last_id = Some(ev.id.clone());
                        }
                        if let Some(r) = ev.retry {
                            backoff = r.min(MAX_RESUME_AFTER);
                        }
                        if !ev.data.trim().is_empty() {
                            self.emit(ev.data).await;
                        }
                    }
                }
                Ok(r) if last_id.is_some() => {
                    // The stream cannot be resumed: start a fresh one.
                    tracing::debug!(status = %r.status(), "the gateway could not resume the session stream");
                    last_id = None;
                    continue;
                }
                Ok(r) => {
                    tracing::debug!(status = %r.status(), "the gateway refused the session stream")
                }
                Err(e) => tracing::debug!(error = %e, "session stream failed"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }

    /// Ends the gateway session (best effort).
    async fn close(&self) {
        if self.lock().session.is_none() {
            return;
        }
        let req = self.request(reqwest::Method::DELETE, None);
        let _ = tokio::time::timeout(Duration::from_secs(5), req.send()).await;
    }
}

/// Forwards `stdin` to the gateway and its answers to `stdout` until `stdin` ends.
pub async fn run<R, W>(config: ConnectConfig, stdin: R, mut stdout: W) -> Result<(), ConnectError>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (out, mut lines_out) = mpsc::channel::<String>(256);
    let writer = tokio::spawn(async move {
        while let Some(line) = lines_out.recv().await {
            stdout.write_all(line.as_bytes()).await?;
            stdout.write_all(b"\n").await?;
            stdout.flush().await?;
        }
        Ok::<(), std::io::Error>(())
    });
    let f = Forwarder {
        config: Arc::new(config),
        // https to the gateway is checked against the platform's roots (SSL_CERT_FILE
        // adds a private CA).
        http: switchboard_upstream::tls::default_http_client(),
        state: Arc::default(),
        out,
    };
    let mut lines = stdin.lines();
    let mut calls = tokio::task::JoinSet::new();
    let mut listener = None;
    while let Some(line) = lines.next_line().await.map_err(ConnectError::Stdin)? {
        if line.trim().is_empty() {
            continue;
        }
        let msg: Value = match serde_json::from_str(&line) {
            Ok(m) => m,
            Err(e) => {
                let err = json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": format!("parse error: {e}")}});
                f.emit(err.to_string()).await;
                continue;
            }
        };
        let method = msg.get("method").and_then(Value::as_str).unwrap_or("");
        if method == "initialize" {
            // Everything after depends on its session; clients wait for it anyway.
            f.post(msg).await;
            continue;
        }
        let start_listening = method == "notifications/initialized" && {
            let mut s = f.lock();
            !std::mem::replace(&mut s.listening, true)
        };
        let task = f.clone();
        calls.spawn(async move { task.post(msg).await });
        if start_listening {
            listener = Some(tokio::spawn(f.clone().listen()));
        }
    }
    while calls.join_next().await.is_some() {}
    if let Some(l) = listener {
        l.abort();
        let _ = l.await;
    }
    f.close().await;
    drop(f);
    match writer.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(ConnectError::Stdout(e)),
        Err(_) => Ok(()),
    }
}
