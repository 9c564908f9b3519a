//! One stdio server process, initialized by the bridge and used by one or more HTTP
//! sessions. Requests get bridge-unique ids (and progress tokens) on the way in, so answers
//! and progress find their way back to the HTTP request that asked; everything else the
//! server says goes to every open GET stream of its sessions, except its questions: those
//! go to its one session, or are answered by the bridge when it is shared. Its stderr goes
//! to the log.

use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child as Process, ChildStdin, Command};
use tokio::sync::{broadcast, mpsc, watch};

/// The session-based version the bridge asks the stdio server for.
pub const CHILD_PROTOCOL_VERSION: &str = "2025-11-25";

/// How long the stdio server may take to answer `initialize`.
const INITIALIZE_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest stderr line logged as it is (the rest is cut).
const MAX_LOG_LINE: usize = 2_000;

/// Variables a child started with [`Environment::Minimal`] takes from ours.
pub const MINIMAL_ENV: [&str; 6] = ["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR"];

/// Which of the bridge's own environment variables a child sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Environment {
    /// All of them except these (e.g. the variable holding the bridge's bearer token).
    InheritExcept(Vec<String>),
    /// Only [`MINIMAL_ENV`]: a data plane's secrets never reach a child.
    Minimal,
}

/// How to start the stdio server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildSpec {
    pub command: String,
    pub args: Vec<String>,
    /// Set on top of what [`Environment`] lets through.
    pub env: Vec<(String, String)>,
    pub environment: Environment,
    pub cwd: Option<PathBuf>,
    /// Names the server in logs (an upstream's name, or the command).
    pub label: String,
}

impl ChildSpec {
    /// `command args`, inheriting the environment: what `switchboard bridge` runs.
    pub fn command(command: &str, args: &[String]) -> ChildSpec {
        ChildSpec {
            command: command.to_string(),
            args: args.to_vec(),
            env: Vec::new(),
            environment: Environment::InheritExcept(Vec::new()),
            cwd: None,
            label: command.to_string(),
        }
    }

    fn build(&self) -> Command {
        let mut cmd = Command::new(&self.command);
        cmd.args(&self.args);
        match &self.environment {
            Environment::InheritExcept(names) => {
                for name in names {
                    cmd.env_remove(name);
                }
            }
            Environment::Minimal => {
                cmd.env_clear();
                for name in MINIMAL_ENV {
                    if let Some(v) = std::env::var_os(name) {
                        cmd.env(name, v);
                    }
                }
            }
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        // The child dies with the bridge, even one killed outright (it leads a process
        // group of its own, so a signal to ours would not reach it).
        // SAFETY: the closure runs between fork and exec and only makes one system call.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd
    }
}

/// Where `command` is: itself when it names a path, else the first match on `PATH`; an error
/// naming it when there is none (so a typo is reported before any start is tried).
pub fn find_program(command: &str) -> Result<PathBuf, ChildError> {
    use std::os::unix::fs::PermissionsExt;
    let runnable = |p: &std::path::Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    let missing = |why: &str| ChildError::Spawn {
        command: command.to_string(),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, why.to_string()),
    };
    if command.contains('/') {
        let p = PathBuf::from(command);
        return if runnable(&p) {
            Ok(p)
        } else {
            Err(missing("no such executable file"))
        };
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(command))
        .find(|p| runnable(p))
        .ok_or_else(|| missing("not found on PATH"))
}

/// The `initialize` params the bridge sends a child on its own behalf: no client
/// capabilities, since a shared child's questions would have no one client to go to.
pub fn bridge_initialize_params() -> Value {
    json!({
        "protocolVersion": CHILD_PROTOCOL_VERSION,
        "capabilities": {},
        "clientInfo": {"name": "switchboard-bridge", "version": env!("CARGO_PKG_VERSION")},
    })
}

/// Who answers the requests a child sends its client (elicitation, sampling, roots, ping).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answerer {
    /// The bridge: the child serves every session, so no one client may see or answer its
    /// questions. `ping` gets an empty result, anything else an error naming why.
    Bridge,
    /// The one session the child serves: questions go to its GET stream, and only answers
    /// to questions asked are passed back.
    Session,
}

/// Most questions a child may have waiting for answers; beyond it the bridge refuses more.
const MAX_OPEN_QUESTIONS: usize = 1024;

/// What can go wrong with the stdio server.
#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    #[error("cannot start `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("the stdio server exited: {0}")]
    Exited(String),
    #[error("the stdio server did not answer initialize within {0:?}")]
    InitializeTimeout(Duration),
    #[error("the stdio server refused initialize: {0}")]
    Initialize(String),
    #[error("cannot write to the stdio server: {0}")]
    Write(std::io::Error),
    #[error("the stdio server asked this session no question with id {0}")]
    NotAsked(String),
}

/// A request waiting for its answer.
struct Pending {
    tx: mpsc::UnboundedSender<Value>,
    client_id: Value,
    session: String,
    /// The client's progress token and the bridge's stand-in for it.
    progress: Option<(Value, String)>,
}

/// The running stdio server.
pub struct Child {
    stdin: tokio::sync::Mutex<ChildStdin>,
    pending: Mutex<HashMap<u64, Pending>>,
    /// Bridge progress token -> bridge request id.
    progress: Mutex<HashMap<String, u64>>,
    /// Messages for GET streams: notifications and requests not tied to one call.
    broadcast: broadcast::Sender<Value>,
    next_id: AtomicU64,
    initialized: OnceLock<Value>,
    /// Why the process ended, once it has.
    exited: watch::Sender<Option<String>>,
    process: Mutex<Option<Process>>,
    /// Its process group (it and whatever it started), killed with it.
    group: Option<i32>,
    /// Set once the child is reaped: from then on its id may belong to someone else.
    reaped: std::sync::atomic::AtomicBool,
    label: String,
    answerer: Answerer,
    /// Ids (as JSON text) of the questions relayed to the session and not yet answered.
    questions: Mutex<std::collections::HashSet<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Child {
    /// Starts the server and completes the MCP handshake with it, initializing with
    /// `params` (see [`bridge_initialize_params`]); its questions go to `answerer`.
    pub async fn start(
        spec: &ChildSpec,
        params: Value,
        answerer: Answerer,
    ) -> Result<Arc<Child>, ChildError> {
        let mut process = spec
            .build()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| ChildError::Spawn {
                command: spec.command.clone(),
                source,
            })?;
        let group = process.id().and_then(|id| i32::try_from(id).ok());
        let (Some(stdin), Some(stdout)) = (process.stdin.take(), process.stdout.take()) else {
            return Err(ChildError::Exited("no stdio pipes".into()));
        };
        if let Some(stderr) = process.stderr.take() {
            let label = spec.label.clone();
            tokio::spawn(async move {
                // Bytes, not text: a line that is not UTF-8 is logged lossily, and reading
                // goes on (a closed pipe would make the child's next write fail).
                let mut reader = BufReader::new(stderr);
                let mut line = Vec::new();
                loop {
                    line.clear();
                    match (&mut reader)
                        .take(MAX_LOG_LINE as u64)
                        .read_until(b'\n', &mut line)
                        .await
                    {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            let text = String::from_utf8_lossy(&line);
                            let text = text.trim_end_matches(['\r', '\n']);
                            tracing::info!(target: "switchboard::stdio", server = %label, "{text}");
                        }
                    }
                }
            });
        }
        let (broadcast, _) = broadcast::channel(256);
        let (exited, _) = watch::channel(None);
        let child = Arc::new(Child {
            stdin: tokio::sync::Mutex::new(stdin),
            pending: Mutex::new(HashMap::new()),
            progress: Mutex::new(HashMap::new()),
            broadcast,
            next_id: AtomicU64::new(1),
            initialized: OnceLock::new(),
            exited,
            process: Mutex::new(Some(process)),
            group,
            reaped: std::sync::atomic::AtomicBool::new(false),
            label: spec.label.clone(),
            answerer,
            questions: Mutex::new(std::collections::HashSet::new()),
        });
        let reader = child.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            loop {
                match lines.next_line().await {
                    Ok(Some(line)) => {
                        if let Some(reply) = reader.route(&line) {
                            // Written by a task of its own: the child may be blocked writing
                            // to us while its stdin is full.
                            let writer = reader.clone();
                            tokio::spawn(async move { writer.write(&reply).await });
                        }
                    }
                    Ok(None) => break reader.ended("its stdout closed".into()),
                    Err(e) => break reader.ended(format!("reading its stdout failed: {e}")),
                }
            }
        });
        // Killed however the start ends early: a failed handshake, or a caller that stops
        // waiting (the reader task's handle would otherwise keep it alive).
        let guard = KillUnlessStarted(Some(child.clone()));
        child.handshake(params).await?;
        guard.disarm();
        Ok(child)
    }

    async fn handshake(&self, params: Value) -> Result<(), ChildError> {
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": params});
        let mut rx = self.call("", init).await?;
        let answer = tokio::time::timeout(INITIALIZE_TIMEOUT, rx.recv())
            .await
            .map_err(|_| ChildError::InitializeTimeout(INITIALIZE_TIMEOUT))?
            .ok_or_else(|| ChildError::Exited("before answering initialize".into()))?;
        let Some(result) = answer.get("result") else {
            return Err(ChildError::Initialize(answer["error"].to_string()));
        };
        if !result.is_object() {
            return Err(ChildError::Initialize(format!(
                "its initialize result is not an object: {}",
                result.to_string().chars().take(200).collect::<String>()
            )));
        }
        let _ = self.initialized.set(result.clone());
        self.write(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await
    }

    /// The server's answer to the bridge's initialize.
    pub fn initialize_result(&self) -> Value {
        self.initialized.get().cloned().unwrap_or(Value::Null)
    }

    /// Why the server stopped, if it has.
    pub fn exit_reason(&self) -> Option<String> {
        self.exited.borrow().clone()
    }

    /// Resolves when the server stops.
    pub async fn wait_exit(&self) -> String {
        let mut rx = self.exited.subscribe();
        loop {
            if let Some(why) = rx.borrow_and_update().clone() {
                return why;
            }
            if rx.changed().await.is_err() {
                return "the bridge is shutting down".into();
            }
        }
    }

    /// A receiver of everything the server says outside of calls.
    pub fn subscribe(&self) -> broadcast::Receiver<Value> {
        self.broadcast.subscribe()
    }

    async fn write(&self, msg: &Value) -> Result<(), ChildError> {
        if let Some(why) = self.exit_reason() {
            return Err(ChildError::Exited(why));
        }
        let mut line = msg.to_string();
        line.push('\n');
        let mut stdin = self.stdin.lock().await;
        stdin
            .write_all(line.as_bytes())
            .await
            .map_err(ChildError::Write)?;
        stdin.flush().await.map_err(ChildError::Write)
    }

    /// Sends a request for `session`; the receiver yields its progress notifications, then
    /// its response (ids and tokens as the client sent them), then closes.
    pub async fn call(
        &self,
        session: &str,
        mut msg: Value,
    ) -> Result<mpsc::UnboundedReceiver<Value>, ChildError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let client_id = msg.get("id").cloned().unwrap_or(Value::Null);
        let mut progress = None;
        if let Some(token) = msg.pointer_mut("/params/_meta/progressToken") {
            let stand_in = format!("sbb-{id}");
            progress = Some((token.clone(), stand_in.clone()));
            *token = Value::String(stand_in.clone());
            lock(&self.progress).insert(stand_in, id);
        }
        msg["id"] = json!(id);
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.pending).insert(
            id,
            Pending {
                tx,
                client_id,
                session: session.to_string(),
                progress,
            },
        );
        if let Err(e) = self.write(&msg).await {
            self.forget(id);
            return Err(e);
        }
        Ok(rx)
    }

    fn forget(&self, id: u64) -> Option<Pending> {
        let p = lock(&self.pending).remove(&id)?;
        if let Some((_, stand_in)) = &p.progress {
            lock(&self.progress).remove(stand_in);
        }
        Some(p)
    }

    /// Passes on a client notification or response; cancellations name the bridge's id, and
    /// a response must answer a question the child asked this session.
    pub async fn notify(&self, session: &str, mut msg: Value) -> Result<(), ChildError> {
        match msg.get("method").and_then(Value::as_str) {
            None => {
                let id = msg.get("id").map(Value::to_string).unwrap_or_default();
                let asked = self.answerer == Answerer::Session && lock(&self.questions).remove(&id);
                if !asked {
                    return Err(ChildError::NotAsked(id));
                }
            }
            // The bridge already told the server it is initialized.
            Some("notifications/initialized") => return Ok(()),
            Some("notifications/cancelled") => {
                let Some(wanted) = msg.pointer("/params/requestId").cloned() else {
                    return Ok(());
                };
                let found = lock(&self.pending)
                    .iter()
                    .find(|(_, p)| p.session == session && p.client_id == wanted)
                    .map(|(id, _)| *id);
                let Some(id) = found else {
                    return Ok(()); // already answered
                };
                msg["params"]["requestId"] = json!(id);
            }
            _ => {}
        }
        self.write(&msg).await
    }

    /// Delivers one line the server wrote; what the bridge must write back itself (its
    /// answer to a question no client may see), if anything.
    fn route(&self, line: &str) -> Option<Value> {
        let Ok(mut msg) = serde_json::from_str::<Value>(line) else {
            if !line.trim().is_empty() {
                tracing::warn!(line = %line.chars().take(200).collect::<String>(), "stdio server wrote a line that is not JSON");
            }
            return None;
        };
        let is_response = msg.get("method").is_none()
            && (msg.get("result").is_some() || msg.get("error").is_some());
        if is_response {
            let Some(p) = msg
                .get("id")
                .and_then(Value::as_u64)
                .and_then(|id| self.forget(id))
            else {
                tracing::warn!(id = %msg["id"], "stdio server answered a request nobody is waiting for");
                return None;
            };
            msg["id"] = p.client_id;
            let _ = p.tx.send(msg);
            return None;
        }
        if let (Some(method), Some(id)) = (msg.get("method").and_then(Value::as_str), msg.get("id"))
        {
            return self.ask(method, id, msg.clone());
        }
        if msg.get("method").and_then(Value::as_str) == Some("notifications/progress") {
            let stand_in = msg
                .pointer("/params/progressToken")
                .and_then(Value::as_str)
                .map(str::to_string);
            let owner = stand_in.and_then(|t| lock(&self.progress).get(&t).copied());
            if let Some(id) = owner {
                if let Some(p) = lock(&self.pending).get(&id) {
                    if let Some((token, _)) = &p.progress {
                        msg["params"]["progressToken"] = token.clone();
                    }
                    let _ = p.tx.send(msg);
                    return None;
                }
            }
        }
        // Logging, list_changed and the like: for the GET streams.
        let _ = self.broadcast.send(msg);
        None
    }

    /// A question of the child's: relayed to its session's GET stream, or answered by the
    /// bridge (returned) when no client may or can answer it.
    fn ask(&self, method: &str, id: &Value, msg: Value) -> Option<Value> {
        let refuse = |code: i64, message: String| {
            Some(json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}))
        };
        if method == "ping" {
            return Some(json!({"jsonrpc": "2.0", "id": id, "result": {}}));
        }
        if self.answerer == Answerer::Bridge {
            tracing::warn!(server = %self.label, %method, "a shared stdio server asked a question; refused (no single client may answer it)");
            return refuse(-32601, format!("`{method}` cannot be answered: this server is shared by every session of the bridge (isolation: shared), so no one client may be asked; use isolation: perSession"));
        }
        let key = id.to_string();
        {
            let mut questions = lock(&self.questions);
            if questions.len() >= MAX_OPEN_QUESTIONS {
                return refuse(-32603, format!("`{method}` refused: {MAX_OPEN_QUESTIONS} questions are already waiting for the client"));
            }
            questions.insert(key.clone());
        }
        if self.broadcast.send(msg).is_err() {
            lock(&self.questions).remove(&key);
            return refuse(-32603, format!("`{method}` cannot be answered: the client has no GET stream open to be asked on"));
        }
        None
    }

    fn ended(&self, why: String) {
        // Whatever it started goes with it: signal the group before the leader is reaped.
        self.kill_group();
        let why = match lock(&self.process)
            .as_mut()
            .and_then(|p| p.try_wait().ok().flatten())
            .inspect(|_| self.reaped.store(true, Ordering::SeqCst))
        {
            Some(status) => format!("{why} ({status})"),
            None => why,
        };
        tracing::warn!(server = %self.label, reason = %why, "stdio server ended");
        let _ = self.exited.send(Some(why.clone()));
        let pending: Vec<Pending> = lock(&self.pending).drain().map(|(_, p)| p).collect();
        lock(&self.progress).clear();
        for p in pending {
            let _ =
                p.tx.send(json!({"jsonrpc": "2.0", "id": p.client_id, "error": {
                "code": -32603, "message": format!("the stdio server exited: {why}")}}));
        }
    }

    /// Stops the server process and everything it started.
    pub fn kill(&self) {
        self.kill_group();
        let Some(mut p) = lock(&self.process).take() else {
            return;
        };
        let _ = p.start_kill();
        // Reap it in the background so it does not linger as a zombie.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = p.wait().await;
            });
        }
    }

    /// Kills the child's process group while the child is not reaped: until then its id
    /// (and so its group's) cannot belong to anyone else.
    fn kill_group(&self) {
        let held = lock(&self.process).is_some();
        if let (Some(group), true, false) = (self.group, held, self.reaped.load(Ordering::SeqCst)) {
            // SAFETY: kill(2) on the process group our unreaped child leads.
            unsafe {
                libc::kill(-group, libc::SIGKILL);
            }
        }
    }
}

/// Kills a child whose start did not complete, when dropped.
struct KillUnlessStarted(Option<Arc<Child>>);

impl KillUnlessStarted {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for KillUnlessStarted {
    fn drop(&mut self) {
        if let Some(child) = self.0.take() {
            child.kill();
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // kill_on_drop ends the child itself (and tokio reaps it); this ends its group.
        self.kill_group();
    }
}
