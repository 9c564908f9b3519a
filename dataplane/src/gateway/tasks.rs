//! Tasks for stateless (2026-07-28) clients, translated from a session-era upstream's
//! tasks (2025-11-25).
//!
//! A stateless client that follows tasks (the `io.modelcontextprotocol/tasks` extension)
//! and calls a tool its upstream runs as a task gets a `CreateTaskResult`: the gateway
//! calls the tool with the session era's task augmentation in an upstream session of the
//! task's own (tasks belong to the session that created them) and seals the upstream, that
//! session and the upstream's task id into the task id it hands out, so `tasks/get`,
//! `tasks/update` and `tasks/cancel` work on any replica. `tasks/get` inlines what the
//! session era fetches separately: a finished task's result (`tasks/result`), and the
//! questions an `input_required` task waits on (read from its `tasks/result` stream, kept
//! on this data plane until `tasks/update` answers them). A tool error is a `completed`
//! task with an `isError` result; only a JSON-RPC error makes a `failed` one. The task's
//! upstream session ends once its time to live is over.

use super::admission::client_headers;
use super::forwarder::{Forwarder, Scope};
use super::out::Out;
use super::DEFAULT_IDLE;
use crate::errors::GatewayError;
use crate::jsonrpc;
use crate::jsonrpc::RpcError;
use crate::mcp::modern;
use crate::metrics::Served;
use crate::routes::{Routes, ServerView, UpstreamEntry};
use crate::session::UpstreamRef;
use crate::transport::{Forward, Reply};
use crate::upstreams::CallOptions;
use futures::StreamExt;
use pingora::Result;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard_upstream::{is_event_stream, json_events, UpstreamError};

/// Prefix of the task ids this gateway hands out.
const TASK_PREFIX: &str = "sbt1.";
/// The time to live asked of the upstream for a task.
const TTL_MS: u64 = 300_000;
/// At most this many task sessions are kept open by one data plane.
const MAX_TASK_SESSIONS: usize = 10_000;
/// A task's session outlives its time to live by this much...
const SESSION_GRACE: Duration = Duration::from_secs(60);
/// ...and lives at most this long (or this long when the task has no time to live).
const MAX_SESSION_LIFE: Duration = Duration::from_secs(3600);
/// How long a `tasks/result` stream is read for the first question it carries...
const FIRST_QUESTION: Duration = Duration::from_secs(2);
/// ...and for more once one came (questions queued together arrive together)...
const MORE_QUESTIONS: Duration = Duration::from_millis(300);
/// ...but never longer than this in all, nor for more than this many questions.
const READ_QUESTIONS_FOR: Duration = Duration::from_secs(5);
const MAX_TASK_QUESTIONS: usize = 64;
/// At most this many tasks' questions are kept here.
const MAX_ASKED: usize = 10_000;
/// How often task sessions are checked for their end.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// What a task id carries (sealed: clients can neither read nor forge it).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TaskRef {
    /// The virtual server the task was created through.
    #[serde(rename = "s")]
    server: String,
    #[serde(rename = "u")]
    upstream: String,
    /// The upstream session the task belongs to.
    #[serde(rename = "r")]
    session: UpstreamRef,
    /// The upstream's own task id.
    #[serde(rename = "t")]
    task: String,
    /// Who created it: only they may follow it.
    #[serde(rename = "c")]
    caller: String,
}

impl TaskRef {
    /// A client session whose only upstream session is the task's.
    fn client_session(&self) -> crate::session::Session {
        crate::session::Session {
            server: self.server.clone(),
            version: crate::mcp::versions::LATEST.to_string(),
            capabilities: Value::Null,
            upstreams: [(self.upstream.clone(), self.session.clone())].into(),
            nonce: 0,
            principal: None,
            expires: 0, // never sealed for a client
        }
    }

    /// The task as this data plane keeps things about it.
    fn key(&self) -> String {
        format!(
            "{}\u{0}{}\u{0}{}",
            self.upstream,
            self.session.id.as_deref().unwrap_or_default(),
            self.task
        )
    }
}

/// Questions of one task by the key `tasks/update` answers them with, and when they were
/// read.
type Questions = (Instant, serde_json::Map<String, Value>);

/// What this data plane keeps about tasks.
#[derive(Default)]
pub(super) struct Tasks {
    /// Questions read from a task's `tasks/result` stream and not answered yet, by task.
    asked: Mutex<HashMap<String, Questions>>,
    /// Upstream sessions opened for tasks here, and when they end.
    sessions: Mutex<Vec<(Instant, crate::session::Session)>>,
    /// Whether the sweeper runs.
    sweeping: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A task as the tasks extension shows it (`taskId` the gateway's), from the session
/// era's `Task`.
fn shown(task_id: &str, task: &Value) -> Value {
    let mut out = json!({
        "taskId": task_id,
        "status": task.get("status").cloned().unwrap_or_else(|| json!("working")),
        "createdAt": task.get("createdAt").cloned().unwrap_or(Value::Null),
        "lastUpdatedAt": task
            .get("lastUpdatedAt")
            .or_else(|| task.get("createdAt"))
            .cloned()
            .unwrap_or(Value::Null),
        "ttlMs": task.get("ttl").cloned().unwrap_or(Value::Null),
    });
    if let Some(m) = task.get("statusMessage") {
        out["statusMessage"] = m.clone();
    }
    if let Some(p) = task.get("pollInterval") {
        out["pollIntervalMs"] = p.clone();
    }
    out
}

/// A result with the session era's related-task marker taken out.
fn without_related_task(mut result: Value) -> Value {
    if let Some(meta) = result.get_mut("_meta").and_then(Value::as_object_mut) {
        meta.remove("io.modelcontextprotocol/related-task");
        if meta.is_empty() {
            if let Some(r) = result.as_object_mut() {
                r.remove("_meta");
            }
        }
    }
    result
}

/// When a task's session may end: its time to live and a grace, bounded.
fn session_end(task: &Value) -> Instant {
    let life = task
        .get("ttl")
        .and_then(Value::as_u64)
        .map(|ms| Duration::from_millis(ms) + SESSION_GRACE)
        .unwrap_or(MAX_SESSION_LIFE)
        .min(MAX_SESSION_LIFE);
    Instant::now() + life
}

impl Forwarder {
    /// Calls a tool as a task for a stateless client that follows tasks: the upstream's
    /// `CreateTaskResult` as the tasks extension shapes it (or the tool's plain result, if
    /// the upstream ran it at once).
    pub(super) async fn create_task(
        &self,
        out: &mut Out<'_>,
        at: Scope<'_>,
        f: Forward,
    ) -> Result<Served> {
        let (reply, outcome) = self.created(at.routes, at.server, &f).await;
        out.reply(reply).await.map(|()| outcome)
    }

    /// The answer to a task-creating call, and how metrics count it.
    async fn created(&self, routes: &Routes, server: &ServerView, f: &Forward) -> (Reply, Served) {
        // Task requests come from stateless clients only.
        let fail = |e: GatewayError| (e.reply(&f.client_id, true), e.served());
        let answered = |reply: Reply| {
            let outcome = reply.outcome();
            (reply, outcome)
        };
        let Some(spec) = routes.upstream(&f.upstream) else {
            return fail(GatewayError::NotServed(f.upstream.clone()));
        };
        if let Some(why) = routes.unhealthy(&f.upstream) {
            return fail(GatewayError::Unhealthy {
                upstream: f.upstream.clone(),
                why: why.to_string(),
            });
        }
        if spec.mcp.is_none() {
            // Tasks live in an MCP session of their own: only MCP upstreams run them.
            return fail(GatewayError::KindNotCalled {
                upstream: f.upstream.clone(),
                kind: spec.kind(),
            });
        }
        if lock(&self.tasks.sessions).len() >= MAX_TASK_SESSIONS {
            return fail(GatewayError::TooManyTasks);
        }
        // The task's own upstream session, offering what the client can answer.
        let timeouts = server.timeouts(&spec, &f.upstream);
        let call = CallOptions {
            timeout: timeouts.request,
            headers: f.headers.clone(),
        };
        let own = match self.own_session(f, &spec, &call).await {
            Ok(own) => own,
            Err(source) => {
                return fail(GatewayError::Failed {
                    upstream: f.upstream.clone(),
                    source,
                })
            }
        };
        let Some(session) = own.upstreams.get(&f.upstream).cloned() else {
            return fail(GatewayError::NoSessionOpened(f.upstream.clone()));
        };
        // Ended unless a task was created in it.
        let ender = self.call_session_ender(&own, &spec);
        let mut params = f.params.clone();
        params["task"] = json!({"ttl": TTL_MS});
        let idle = timeouts.idle.unwrap_or(DEFAULT_IDLE);
        let answer = self
            .ask_upstream(
                &Asked {
                    upstream: &f.upstream,
                    spec: &spec,
                    session: &own,
                    call: &call,
                    idle,
                },
                "tools/call",
                params,
            )
            .await;
        let result = match answer {
            Ok(result) => result,
            Err(e) => return answered(error_reply(&f.client_id, &e)),
        };
        let Some(task) = result.get("task") else {
            // Run at once after all: its plain result.
            let mut result = result;
            modern::shape_result(&f.method, &mut result, &f.server);
            let reply = Reply::json(200, &jsonrpc::result_response(&f.client_id, result));
            return answered(reply);
        };
        let Some(upstream_task) = task.get("taskId").and_then(Value::as_str) else {
            return fail(GatewayError::TaskWithoutId(f.upstream.clone()));
        };
        let task_ref = TaskRef {
            server: f.server.clone(),
            upstream: f.upstream.clone(),
            session,
            task: upstream_task.to_string(),
            caller: f.caller.clone(),
        };
        let task_id = server.sealer.seal_as(TASK_PREFIX, &task_ref);
        ender.disarm();
        self.keep_task_session(own, session_end(task));
        tracing::debug!(upstream = %f.upstream, tool = %f.params["name"], "a stateless call runs as a task");
        let mut created = shown(&task_id, task);
        created["resultType"] = json!("task");
        answered(Reply::json(
            200,
            &jsonrpc::result_response(&f.client_id, created),
        ))
    }

    /// Keeps a task's upstream session open until `until`, then ends it.
    fn keep_task_session(&self, session: crate::session::Session, until: Instant) {
        lock(&self.tasks.sessions).push((until, session));
        if self.tasks.sweeping.swap(true, Ordering::SeqCst) {
            return;
        }
        let tasks = Arc::downgrade(&self.tasks);
        let upstreams = self.upstreams.clone();
        let routes = self.routes.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(SWEEP_EVERY).await;
                let Some(tasks) = tasks.upgrade() else {
                    return;
                };
                let now = Instant::now();
                let over: Vec<crate::session::Session> = {
                    let mut sessions = lock(&tasks.sessions);
                    let (over, kept) = std::mem::take(&mut *sessions)
                        .into_iter()
                        .partition(|(until, _)| *until <= now);
                    *sessions = kept;
                    over.into_iter().map(|(_, s)| s).collect()
                };
                let routes = routes.load();
                for session in over {
                    upstreams.close_for(&session, &|name| routes.upstream(name));
                }
            }
        });
    }

    /// Answers a stateless client's `tasks/get`, `tasks/update` or `tasks/cancel`.
    pub(super) async fn task_request(
        &self,
        Scope {
            routes,
            server,
            client,
        }: Scope<'_>,
        caller: &str,
        (id, method, params): (Value, String, Value),
    ) -> Reply {
        let fail = |e: GatewayError| e.reply(&id, true);
        let Some(task_id) = params.get("taskId").and_then(Value::as_str) else {
            return fail(GatewayError::MissingParam("params.taskId (a string)"));
        };
        let task = server
            .sealer
            .open_as::<TaskRef>(TASK_PREFIX, task_id)
            .filter(|t| t.server == server.name && t.caller == caller);
        let Some(task) = task else {
            return fail(GatewayError::UnknownTask(task_id.to_string()));
        };
        let Some(spec) = routes.upstream(&task.upstream) else {
            return fail(GatewayError::TaskUpstreamGone {
                task: task_id.to_string(),
                upstream: task.upstream.clone(),
            });
        };
        let timeouts = server.timeouts(&spec, &task.upstream);
        let call = CallOptions {
            timeout: timeouts.request,
            headers: client_headers(client, server, &spec),
        };
        let on = TaskCall {
            task: &task,
            spec: &spec,
            session: task.client_session(),
            call,
            idle: timeouts.idle.unwrap_or(DEFAULT_IDLE),
        };
        let answered = match method.as_str() {
            "tasks/get" => self.task_get(&on, task_id).await,
            "tasks/update" => self.task_update(&on, &params).await,
            _ => self.task_cancel(&on).await,
        };
        match answered {
            Ok(mut result) => {
                result["resultType"] = json!("complete");
                Reply::json(200, &jsonrpc::result_response(&id, result))
            }
            Err(e) => error_reply(&id, &e),
        }
    }

    async fn task_get(
        &self,
        on: &TaskCall<'_>,
        task_id: &str,
    ) -> std::result::Result<Value, RpcError> {
        let task = on.ask(self, "tasks/get").await?;
        let mut shown = shown(task_id, &task);
        match task.get("status").and_then(Value::as_str) {
            Some("input_required") => {
                shown["inputRequests"] = Value::Object(self.task_questions(on).await?);
            }
            Some("completed" | "failed") => match on.ask(self, "tasks/result").await {
                // A tool error is a completed task (its result says isError)...
                Ok(result) => {
                    shown["status"] = json!("completed");
                    shown["result"] = without_related_task(result);
                }
                // ...a JSON-RPC error a failed one.
                Err(e) => {
                    shown["status"] = json!("failed");
                    shown["error"] = json!({"code": e.code, "message": e.message});
                    if let Some(data) = e.data {
                        shown["error"]["data"] = data;
                    }
                }
            },
            _ => {}
        }
        Ok(shown)
    }

    /// The questions an `input_required` task waits on, keyed as `tasks/update` answers
    /// them: those this data plane already read, or what the task's `tasks/result` stream
    /// carries now.
    async fn task_questions(
        &self,
        on: &TaskCall<'_>,
    ) -> std::result::Result<serde_json::Map<String, Value>, RpcError> {
        let key = on.task.key();
        if let Some((_, asked)) = lock(&self.tasks.asked).get(&key) {
            if !asked.is_empty() {
                return Ok(asked.clone());
            }
        }
        let body = json!({
            "jsonrpc": "2.0",
            "id": self.upstreams.internal_id(),
            "method": "tasks/result",
            "params": {"taskId": on.task.task},
        });
        let resp = self
            .upstreams
            .send(
                &on.task.upstream,
                on.spec,
                &body,
                Some(&on.session),
                &on.call,
            )
            .await
            .map_err(|e| upstream_failed(&on.task.upstream, e))?;
        let mut asked = serde_json::Map::new();
        if is_event_stream(&resp) {
            let mut events = json_events(resp.bytes_stream());
            let until = tokio::time::Instant::now() + READ_QUESTIONS_FOR;
            while asked.len() < MAX_TASK_QUESTIONS {
                let wait = if asked.is_empty() {
                    FIRST_QUESTION
                } else {
                    MORE_QUESTIONS
                };
                let by = until.min(tokio::time::Instant::now() + wait);
                let Ok(Some(Ok(event))) = tokio::time::timeout_at(by, events.next()).await else {
                    break;
                };
                let Ok(msg) = serde_json::from_str::<Value>(&event.data) else {
                    continue; // a priming event
                };
                if msg.get("id") == Some(&body["id"]) {
                    break; // the task ended meanwhile: the next poll sees it
                }
                if crate::mcp::relay::is_request(&msg) {
                    let key = crate::mcp::relay::wrap(&on.task.upstream, &msg["id"]);
                    asked.insert(
                        key.as_str().unwrap_or_default().to_string(),
                        json!({
                            "method": msg["method"],
                            "params": msg.get("params").cloned().unwrap_or_else(|| json!({})),
                        }),
                    );
                }
            }
        }
        let mut kept = lock(&self.tasks.asked);
        if kept.len() >= MAX_ASKED {
            kept.retain(|_, (since, _)| since.elapsed() < MAX_SESSION_LIFE);
            if kept.len() >= MAX_ASKED {
                kept.clear();
            }
        }
        kept.insert(key, (Instant::now(), asked.clone()));
        Ok(asked)
    }

    /// Hands the client's answers to the questions they are keyed by to the upstream; keys
    /// that name no outstanding question are ignored, as the extension says.
    async fn task_update(
        &self,
        on: &TaskCall<'_>,
        params: &Value,
    ) -> std::result::Result<Value, RpcError> {
        let Some(responses) = params.get("inputResponses").and_then(Value::as_object) else {
            return Err(GatewayError::MissingParam("params.inputResponses (an object)").rpc());
        };
        let key = on.task.key();
        for (k, response) in responses {
            let Some((upstream, upstream_id)) =
                crate::mcp::relay::unwrap(&Value::String(k.clone()))
            else {
                continue;
            };
            let known = lock(&self.tasks.asked)
                .get(&key)
                .map(|(_, asked)| asked.contains_key(k));
            if upstream != on.task.upstream || known == Some(false) {
                continue;
            }
            let answer = json!({"jsonrpc": "2.0", "id": upstream_id, "result": response});
            let sent = self
                .upstreams
                .send(&upstream, on.spec, &answer, Some(&on.session), &on.call)
                .await
                .map_err(|e| upstream_failed(&upstream, e))?;
            drop(sent.bytes().await);
            if let Some((_, asked)) = lock(&self.tasks.asked).get_mut(&key) {
                asked.remove(k);
            }
        }
        Ok(json!({}))
    }

    /// Asks the upstream to cancel the task; a task that already ended is acknowledged
    /// all the same (cancelling is idempotent).
    async fn task_cancel(&self, on: &TaskCall<'_>) -> std::result::Result<Value, RpcError> {
        match on.ask(self, "tasks/cancel").await {
            Ok(_) => Ok(json!({})),
            Err(e) if e.code == jsonrpc::INVALID_PARAMS => {
                // Unknown, or over already: only a task the upstream still knows is acked.
                on.ask(self, "tasks/get").await.map(|_| json!({}))
            }
            Err(e) => Err(e),
        }
    }

    /// Answers a session-era client's `tasks/list`: the tasks of each upstream of its
    /// session that runs tools as tasks (their first pages), with the ids it knows them
    /// by. An upstream that fails is left out and logged.
    pub(super) async fn list_tasks(
        &self,
        Scope {
            routes,
            server,
            client,
        }: Scope<'_>,
        id: Value,
        session: &crate::session::Session,
    ) -> Reply {
        let tasking: std::collections::BTreeSet<&str> = server
            .tool_routes
            .values()
            .filter(|r| r.task_support != crate::routes::TaskSupport::Forbidden)
            .map(|r| r.upstream.as_str())
            .filter(|u| session.upstreams.contains_key(*u))
            .collect();
        let mut tasks = Vec::new();
        for upstream in tasking {
            let Some(spec) = routes.upstream(upstream) else {
                continue;
            };
            let timeouts = server.timeouts(&spec, upstream);
            let call = CallOptions {
                timeout: timeouts.request,
                headers: client_headers(client, server, &spec),
            };
            let idle = timeouts.idle.unwrap_or(DEFAULT_IDLE);
            match self
                .ask_upstream(
                    &Asked {
                        upstream,
                        spec: &spec,
                        session,
                        call: &call,
                        idle,
                    },
                    "tasks/list",
                    json!({}),
                )
                .await
            {
                Ok(listed) => {
                    let mut msg = json!({"result": listed});
                    crate::mcp::relay::task_ids_out(upstream, &mut msg, true);
                    if let Some(listed) = msg["result"]["tasks"].as_array() {
                        tasks.extend(listed.iter().cloned());
                    }
                }
                Err(e) => {
                    tracing::warn!(%upstream, error = %e.message, "an upstream did not list its tasks")
                }
            }
        }
        Reply::json(200, &jsonrpc::result_response(&id, json!({"tasks": tasks})))
    }

    /// Sends `method` with `params` to `upstream` in `session` and returns the result of
    /// its answer (read from an SSE stream if it streams), or the error it gave.
    async fn ask_upstream(
        &self,
        to: &Asked<'_>,
        method: &str,
        params: Value,
    ) -> std::result::Result<Value, RpcError> {
        let Asked {
            upstream,
            spec,
            session,
            call,
            idle,
        } = *to;
        let id = self.upstreams.internal_id();
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let resp = self
            .upstreams
            .send(upstream, spec, &body, Some(session), call)
            .await
            .map_err(|e| upstream_failed(upstream, e))?;
        // The upstream crate reads the response wherever it is (a JSON body, or an SSE
        // stream after the notifications and requests before it), within `idle`.
        let url = session
            .upstreams
            .get(upstream)
            .map_or(upstream, |r| r.url.as_str());
        let read = switchboard_upstream::McpHttp::response_for(url, resp, &id);
        let msg = match tokio::time::timeout(idle, read).await {
            Ok(Ok(msg)) => msg,
            Ok(Err(source)) => return Err(upstream_failed(upstream, source)),
            Err(_) => {
                let e = GatewayError::Silent {
                    upstream: upstream.to_string(),
                    idle,
                };
                return Err(e.rpc());
            }
        };
        if let Some(result) = msg.get("result") {
            return Ok(result.clone());
        }
        let Some(error) = msg.get("error").cloned() else {
            return Err(GatewayError::NeitherResultNorError(upstream.to_string()).rpc());
        };
        // The upstream's own error, passed on.
        Err(RpcError {
            code: error
                .get("code")
                .and_then(Value::as_i64)
                .unwrap_or(jsonrpc::INTERNAL_ERROR),
            message: error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            data: error.get("data").cloned(),
        })
    }
}

/// Where a request goes: the upstream, in which of its sessions, with which options, and
/// how long it may stay silent.
#[derive(Clone, Copy)]
struct Asked<'a> {
    upstream: &'a str,
    spec: &'a UpstreamEntry,
    session: &'a crate::session::Session,
    call: &'a CallOptions,
    idle: std::time::Duration,
}

/// One task request on its way upstream.
struct TaskCall<'a> {
    task: &'a TaskRef,
    spec: &'a UpstreamEntry,
    session: crate::session::Session,
    call: CallOptions,
    idle: std::time::Duration,
}

impl TaskCall<'_> {
    /// `method` for this task (its only parameter the upstream's task id).
    async fn ask(&self, gateway: &Forwarder, method: &str) -> std::result::Result<Value, RpcError> {
        gateway
            .ask_upstream(
                &Asked {
                    upstream: &self.task.upstream,
                    spec: self.spec,
                    session: &self.session,
                    call: &self.call,
                    idle: self.idle,
                },
                method,
                json!({"taskId": self.task.task}),
            )
            .await
    }
}

/// An error answered to a stateless client's task request: the upstream's own, passed on,
/// or the gateway's (see `errors`), with the HTTP status the era gives its code.
fn error_reply(id: &Value, e: &RpcError) -> Reply {
    Reply::json(modern::http_status(e.code), &jsonrpc::error_response(id, e))
}

/// The error for an upstream that could not be asked.
fn upstream_failed(upstream: &str, source: UpstreamError) -> RpcError {
    GatewayError::Failed {
        upstream: upstream.to_string(),
        source,
    }
    .rpc()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_era_tasks_show_as_the_extension_shapes_them() {
        let task = json!({"taskId": "up-1", "status": "working", "createdAt": "2026-01-01T00:00:00Z",
                          "ttl": 60000, "pollInterval": 500, "statusMessage": "busy"});
        let shown = shown("sbt1.x", &task);
        assert_eq!(shown["taskId"], "sbt1.x");
        assert_eq!(shown["lastUpdatedAt"], "2026-01-01T00:00:00Z");
        assert_eq!(shown["ttlMs"], 60000);
        assert_eq!(shown["pollIntervalMs"], 500);
        assert_eq!(shown["statusMessage"], "busy");
        assert!(shown.get("ttl").is_none() && shown.get("task").is_none());
        let result = json!({"content": [], "_meta": {"io.modelcontextprotocol/related-task": {"taskId": "up-1"}}});
        assert_eq!(without_related_task(result), json!({"content": []}));
    }

    #[test]
    fn task_ids_open_only_with_their_key_and_kind() {
        let sealer = crate::session::Sealer::default();
        let task = TaskRef {
            server: "demo".into(),
            upstream: "up".into(),
            session: UpstreamRef {
                id: Some("s1".into()),
                version: "2025-11-25".into(),
                url: "http://127.0.0.1:1/mcp".into(),
            },
            task: "t1".into(),
            caller: "alice".into(),
        };
        let id = sealer.seal_as(TASK_PREFIX, &task);
        let back: TaskRef = sealer.open_as(TASK_PREFIX, &id).expect("opens");
        assert_eq!(back.task, "t1");
        assert!(sealer.open(&id).is_none(), "a task id is not a session id");
        let other = crate::session::Sealer::from_base64(&crate::session::new_key()).expect("key");
        assert!(other.open_as::<TaskRef>(TASK_PREFIX, &id).is_none());
        let mut forged = id.clone();
        forged.push('A');
        assert!(sealer.open_as::<TaskRef>(TASK_PREFIX, &forged).is_none());
    }
}
