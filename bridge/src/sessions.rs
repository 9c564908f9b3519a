//! Which child serves which HTTP session, and keeping children alive.
//!
//! `Shared`: one child for every session, restarted with backoff when it dies. Sessions are
//! bound to the child they started on: when it dies they are gone (404), so a client
//! initializes again and learns that the server's state was lost, rather than talking to a
//! new process as if it were the old one.
//!
//! `PerSession`: each `initialize` starts a child of its own (initialized with the client's
//! own params, so it may ask that client questions), up to a cap. The child stops when its
//! session ends (DELETE), when it has been idle too long, or on its own (then the session is
//! gone, as above).

use crate::child::{bridge_initialize_params, Answerer, Child, ChildError, ChildSpec};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// First wait before restarting a shared child that died; doubled each time, up to
/// [`MAX_RESTART_BACKOFF`], and reset once a child has run for [`STABLE_AFTER`].
const FIRST_RESTART_BACKOFF: Duration = Duration::from_millis(250);
const MAX_RESTART_BACKOFF: Duration = Duration::from_secs(30);
const STABLE_AFTER: Duration = Duration::from_secs(60);

/// How long an `initialize` waits for a shared child that is (re)starting.
const READY_WAIT: Duration = Duration::from_secs(15);

/// Shared-mode sessions idle this long are forgotten (their client went away silently).
const SHARED_SESSION_IDLE: Duration = Duration::from_secs(3600);

/// Most sessions a shared child keeps; the oldest idle ones go first beyond it.
const MAX_SHARED_SESSIONS: usize = 10_000;

/// Who shares a child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// One child for every session.
    Shared,
    /// One child per session, at most `max` at once, stopped after `idle` without requests.
    PerSession { max: usize, idle: Duration },
}

/// Why a session could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("the stdio server is not running: {0}")]
    Unavailable(String),
    #[error("the stdio server is at its cap of {0} sessions (isolation: perSession); try again when one ends")]
    AtCapacity(usize),
    #[error(transparent)]
    Child(#[from] ChildError),
}

/// The shared child's state.
#[derive(Clone)]
enum Shared {
    Starting { last_error: Option<String> },
    Ready(Arc<Child>),
}

struct Entry {
    child: Arc<Child>,
    last_used: Mutex<Instant>,
    /// Open GET streams (at most one) and calls in flight: a session using either is not
    /// idle.
    streams: AtomicUsize,
    calls: AtomicUsize,
}

impl Entry {
    fn busy(&self) -> bool {
        self.streams.load(Ordering::Relaxed) > 0 || self.calls.load(Ordering::Relaxed) > 0
    }
}

/// Counts a session's GET stream or call for as long as it lives.
pub struct Busy {
    entry: Arc<Entry>,
    stream: bool,
}

impl Drop for Busy {
    fn drop(&mut self) {
        let counter = if self.stream {
            &self.entry.streams
        } else {
            &self.entry.calls
        };
        counter.fetch_sub(1, Ordering::SeqCst);
        *lock(&self.entry.last_used) = Instant::now();
    }
}

/// Gives back a `perSession` start's place under the cap, however the start ends.
struct Starting<'a>(&'a AtomicUsize);

impl Drop for Starting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Every session of one bridge and the children behind them.
pub struct Sessions {
    spec: ChildSpec,
    isolation: Isolation,
    shared: watch::Sender<Shared>,
    sessions: Mutex<HashMap<String, Arc<Entry>>>,
    /// Children starting for `perSession` initializes, counted against the cap.
    starting: AtomicUsize,
}

impl Sessions {
    /// Sessions over children started from `spec`; for `Shared`, the child is started (and
    /// kept running) by a task that ends when `stop` resolves.
    pub fn start(
        spec: ChildSpec,
        isolation: Isolation,
        stop: watch::Receiver<bool>,
    ) -> Arc<Sessions> {
        let (shared, _) = watch::channel(Shared::Starting { last_error: None });
        let sessions = Arc::new(Sessions {
            spec,
            isolation,
            shared,
            sessions: Mutex::new(HashMap::new()),
            starting: AtomicUsize::new(0),
        });
        if isolation == Isolation::Shared {
            tokio::spawn(sessions.clone().supervise(stop.clone()));
        }
        tokio::spawn(sessions.clone().sweep(stop));
        sessions
    }

    /// Keeps the shared child running until `stop`.
    async fn supervise(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut backoff = FIRST_RESTART_BACKOFF;
        loop {
            let started = Instant::now();
            let attempt = tokio::select! {
                r = Child::start(&self.spec, bridge_initialize_params(), Answerer::Bridge) => r,
                _ = stop.wait_for(|s| *s) => return,
            };
            let why = match attempt {
                Ok(child) => {
                    tracing::info!(server = %self.spec.label, "stdio server started");
                    self.shared.send_replace(Shared::Ready(child.clone()));
                    let exited = tokio::select! {
                        why = child.wait_exit() => Some(why),
                        _ = stop.wait_for(|s| *s) => None,
                    };
                    child.kill();
                    match exited {
                        Some(why) => format!("the stdio server exited: {why}"),
                        None => return,
                    }
                }
                Err(e) => e.to_string(),
            };
            if started.elapsed() >= STABLE_AFTER {
                backoff = FIRST_RESTART_BACKOFF;
            }
            tracing::warn!(server = %self.spec.label, error = %why, retry_in = ?backoff, "stdio server down; restarting");
            self.shared.send_replace(Shared::Starting {
                last_error: Some(why),
            });
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            backoff = (backoff * 2).min(MAX_RESTART_BACKOFF);
        }
    }

    /// Forgets idle sessions (stopping their `perSession` children) until `stop`.
    async fn sweep(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let idle = match self.isolation {
            Isolation::Shared => SHARED_SESSION_IDLE,
            Isolation::PerSession { idle, .. } => idle,
        };
        let every = (idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(30));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            let gone: Vec<Arc<Entry>> = {
                let mut sessions = lock(&self.sessions);
                let stale: Vec<String> = sessions
                    .iter()
                    .filter(|(_, e)| {
                        e.child.exit_reason().is_some()
                            || (!e.busy() && lock(&e.last_used).elapsed() >= idle)
                    })
                    .map(|(id, _)| id.clone())
                    .collect();
                stale.iter().filter_map(|id| sessions.remove(id)).collect()
            };
            if !gone.is_empty() {
                tracing::debug!(server = %self.spec.label, sessions = gone.len(), "idle stdio sessions ended");
            }
            self.release(gone);
        }
        let all: Vec<Arc<Entry>> = lock(&self.sessions).drain().map(|(_, e)| e).collect();
        self.release(all);
        if let Shared::Ready(child) = &*self.shared.borrow() {
            child.kill();
        }
    }

    /// Stops the children of ended `perSession` sessions.
    fn release(&self, ended: Vec<Arc<Entry>>) {
        if matches!(self.isolation, Isolation::PerSession { .. }) {
            for e in ended {
                e.child.kill();
            }
        }
    }

    /// Opens a session for an `initialize` with `params`: its id and the child behind it.
    pub async fn open(&self, params: &Value) -> Result<(String, Arc<Child>), OpenError> {
        let id = new_session_id().map_err(OpenError::Unavailable)?;
        let entry = |child: Arc<Child>| {
            Arc::new(Entry {
                child,
                last_used: Mutex::new(Instant::now()),
                streams: AtomicUsize::new(0),
                calls: AtomicUsize::new(0),
            })
        };
        let child = match self.isolation {
            Isolation::Shared => {
                let child = self.shared_child().await?;
                let evicted = {
                    let mut sessions = lock(&self.sessions);
                    let evicted = if sessions.len() >= MAX_SHARED_SESSIONS {
                        oldest_idle(&sessions).and_then(|old| sessions.remove(&old))
                    } else {
                        None
                    };
                    sessions.insert(id.clone(), entry(child.clone()));
                    evicted
                };
                drop(evicted);
                child
            }
            Isolation::PerSession { max, .. } => {
                let live = lock(&self.sessions)
                    .values()
                    .filter(|e| e.child.exit_reason().is_none())
                    .count();
                if live + self.starting.fetch_add(1, Ordering::SeqCst) >= max {
                    self.starting.fetch_sub(1, Ordering::SeqCst);
                    return Err(OpenError::AtCapacity(max));
                }
                let starting = Starting(&self.starting);
                let child = Child::start(&self.spec, params.clone(), Answerer::Session).await?;
                // Counted as a session before it stops counting as a start.
                lock(&self.sessions).insert(id.clone(), entry(child.clone()));
                drop(starting);
                child
            }
        };
        Ok((id, child))
    }

    async fn shared_child(&self) -> Result<Arc<Child>, OpenError> {
        let mut rx = self.shared.subscribe();
        let ready = tokio::time::timeout(READY_WAIT, async {
            loop {
                if let Shared::Ready(c) = &*rx.borrow_and_update() {
                    if c.exit_reason().is_none() {
                        return Some(c.clone());
                    }
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        })
        .await;
        match ready {
            Ok(Some(child)) => Ok(child),
            _ => Err(OpenError::Unavailable(match &*self.shared.borrow() {
                Shared::Starting {
                    last_error: Some(e),
                } => e.clone(),
                _ => format!("it did not start within {READY_WAIT:?}"),
            })),
        }
    }

    /// The child serving session `id`, marking the session used; None for a session that
    /// never was, ended, or whose child died (the client must initialize again).
    pub fn child(&self, id: &str) -> Option<Arc<Child>> {
        let mut sessions = lock(&self.sessions);
        let entry = sessions.get(id)?;
        if entry.child.exit_reason().is_some() {
            let gone = sessions.remove(id);
            drop(sessions);
            self.release(gone.into_iter().collect());
            return None;
        }
        *lock(&entry.last_used) = Instant::now();
        Some(entry.child.clone())
    }

    /// Counts the GET stream of session `id` while the guard lives; None when the session
    /// is unknown or already has one (one stream per session, as servers allow, so a message
    /// is never delivered twice).
    pub fn stream(&self, id: &str) -> Option<Busy> {
        let entry = lock(&self.sessions).get(id)?.clone();
        if entry.streams.fetch_add(1, Ordering::SeqCst) > 0 {
            entry.streams.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Busy {
            entry,
            stream: true,
        })
    }

    /// Counts a call in flight in session `id` (so its child is not stopped as idle).
    pub fn call(&self, id: &str) -> Option<Busy> {
        let entry = lock(&self.sessions).get(id)?.clone();
        entry.calls.fetch_add(1, Ordering::SeqCst);
        Some(Busy {
            entry,
            stream: false,
        })
    }

    /// Ends session `id`; false when there was none.
    pub fn close(&self, id: &str) -> bool {
        let gone = lock(&self.sessions).remove(id);
        let found = gone.is_some();
        self.release(gone.into_iter().collect());
        found
    }

    /// Whether one child serves every session (it was initialized by the bridge, not by
    /// a client).
    pub fn shares_child(&self) -> bool {
        self.isolation == Isolation::Shared
    }

    /// Ok while a new session could be served now; the reason otherwise.
    pub fn health(&self) -> Result<(), String> {
        match self.isolation {
            Isolation::PerSession { .. } => Ok(()),
            Isolation::Shared => match &*self.shared.borrow() {
                Shared::Ready(c) => match c.exit_reason() {
                    None => Ok(()),
                    Some(why) => Err(format!("the stdio server exited: {why}")),
                },
                Shared::Starting { last_error } => Err(last_error
                    .clone()
                    .unwrap_or_else(|| "the stdio server is starting".into())),
            },
        }
    }
}

fn oldest_idle(sessions: &HashMap<String, Arc<Entry>>) -> Option<String> {
    sessions
        .iter()
        .filter(|(_, e)| !e.busy())
        .min_by_key(|(_, e)| *lock(&e.last_used))
        .map(|(id, _)| id.clone())
}

/// 128 random bits from the system's generator, as hex: ids no one can guess.
fn new_session_id() -> Result<String, String> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "no system randomness for a session id".to_string())?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
