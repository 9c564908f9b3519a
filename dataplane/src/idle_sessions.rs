//! Client upstream sessions this data plane opened or used, ended (DELETE upstream) when they
//! go unused for [`IDLE`] here or when the client session they belong to expires. Without it
//! a client that initializes and walks away leaves a session open on every upstream of the
//! server until the upstream itself gives up, and `initialize` in a loop fills upstreams with
//! sessions.
//!
//! Idleness is per data plane: a session a client moved to another replica may be ended here
//! while that replica still uses it; the upstream then answers 404 there, and that replica
//! opens a new session transparently, as after an upstream restart.
//!
//! What a session costs here is its id and three numbers: what is needed to end it (the
//! client, URL, version and credentials) is kept once per upstream.

use crate::session::unix_now;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use switchboard_upstream::{McpHttp, UpstreamSession};

/// How long a client upstream session may go unused here before it is ended.
pub const IDLE: Duration = Duration::from_secs(3600);

/// How often idle sessions are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Most sessions followed; past it the longest idle are ended first.
pub const MAX_FOLLOWED: usize = 100_000;

/// How long one DELETE may take.
const END_TIMEOUT: Duration = Duration::from_secs(5);

/// One followed session.
struct Followed {
    last_used: Instant,
    /// Open GET streams on it: a session listened to is not idle.
    streams: usize,
    /// When the client session it belongs to expires (Unix seconds).
    expires: u64,
}

/// One upstream's followed sessions, and how to end them (its latest session as a
/// template: the same URL, version and credentials, another id).
struct Upstream {
    mcp: McpHttp,
    template: Arc<UpstreamSession>,
    sessions: HashMap<String, Followed>,
}

/// Sessions by upstream, then by session id (looked up without allocating on every call).
type Map = Mutex<HashMap<String, Upstream>>;

/// A session to end: how, and which.
type Ending = (McpHttp, Arc<UpstreamSession>, String);

/// The client upstream sessions followed for idleness.
#[derive(Default)]
pub struct IdleSessions {
    map: Arc<Map>,
    sweeping: std::sync::OnceLock<()>,
}

fn lock(m: &Map) -> std::sync::MutexGuard<'_, HashMap<String, Upstream>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How many sessions `map` follows.
fn count(map: &HashMap<String, Upstream>) -> usize {
    map.values().map(|u| u.sessions.len()).sum()
}

impl IdleSessions {
    /// Notes that `session` of `upstream` (of a client session expiring at `expires`) was
    /// used now; `mcp` (the client that ends it) is asked for only when it is new here.
    pub fn used(
        &self,
        upstream: &str,
        session: &UpstreamSession,
        mcp: impl FnOnce() -> McpHttp,
        expires: u64,
    ) {
        let Some(id) = &session.session_id else {
            return; // a stateless upstream keeps nothing to end
        };
        if expires <= unix_now() {
            return;
        }
        self.start_sweeping();
        let evicted = {
            let mut map = lock(&self.map);
            if let Some(f) = map
                .get_mut(upstream)
                .and_then(|u| u.sessions.get_mut(id.as_str()))
            {
                f.last_used = Instant::now();
                return;
            }
            let evicted = if count(&map) >= MAX_FOLLOWED {
                longest_idle(&mut map)
            } else {
                None
            };
            // A session new here (the rare path): now the client that ends it is needed.
            let mcp = mcp();
            let entry = map.entry(upstream.to_string()).or_insert_with(|| Upstream {
                mcp: mcp.clone(),
                template: Arc::new(session.clone()),
                sessions: HashMap::new(),
            });
            if entry.template.url != session.url || entry.template.creds != session.creds {
                entry.mcp = mcp;
                entry.template = Arc::new(session.clone());
            }
            entry.sessions.insert(
                id.clone(),
                Followed {
                    last_used: Instant::now(),
                    streams: 0,
                    expires,
                },
            );
            evicted
        };
        if let Some(e) = evicted {
            end(vec![e]);
        }
    }

    /// Counts a GET stream on `upstream`'s session (noted [`IdleSessions::used`] first)
    /// until the guard drops: the session is not idle meanwhile.
    pub fn listening(&self, upstream: &str, session: &UpstreamSession) -> Option<Listening> {
        let id = session.session_id.clone()?;
        lock(&self.map)
            .get_mut(upstream)?
            .sessions
            .get_mut(&id)?
            .streams += 1;
        Some(Listening {
            map: Arc::downgrade(&self.map),
            key: (upstream.to_string(), id),
        })
    }

    /// Stops following `upstream`'s session `id` (it is being ended some other way).
    pub fn forget(&self, upstream: &str, id: &str) {
        let mut map = lock(&self.map);
        if let Some(u) = map.get_mut(upstream) {
            u.sessions.remove(id);
            if u.sessions.is_empty() {
                map.remove(upstream);
            }
        }
    }

    /// How many sessions are followed.
    pub fn len(&self) -> usize {
        count(&lock(&self.map))
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ends the sessions idle for `idle` or whose client session expired; how many.
    pub fn sweep(&self, idle: Duration) -> usize {
        sweep(&self.map, idle)
    }

    fn start_sweeping(&self) {
        self.sweeping.get_or_init(|| {
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                return;
            };
            let map: Weak<Map> = Arc::downgrade(&self.map);
            runtime.spawn(async move {
                let mut tick = tokio::time::interval(SWEEP_EVERY);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let Some(map) = map.upgrade() else {
                        return; // the pool is gone
                    };
                    sweep(&map, IDLE);
                }
            });
        });
    }
}

/// Takes the session unused the longest out of `map` (to end it).
fn longest_idle(map: &mut HashMap<String, Upstream>) -> Option<Ending> {
    let (upstream, id) = map
        .iter()
        .flat_map(|(u, up)| up.sessions.iter().map(move |(i, f)| (u, i, f.last_used)))
        .min_by_key(|(_, _, used)| *used)
        .map(|(u, i, _)| (u.clone(), i.clone()))?;
    let up = map.get_mut(&upstream)?;
    up.sessions.remove(&id)?;
    Some((up.mcp.clone(), up.template.clone(), id))
}

fn sweep(map: &Map, idle: Duration) -> usize {
    let now = unix_now();
    let gone: Vec<Ending> = {
        let mut map = lock(map);
        let mut gone = Vec::new();
        for up in map.values_mut() {
            let stale: Vec<String> = up
                .sessions
                .iter()
                .filter(|(_, f)| {
                    (f.streams == 0 && f.last_used.elapsed() >= idle) || f.expires <= now
                })
                .map(|(id, _)| id.clone())
                .collect();
            for id in stale {
                up.sessions.remove(&id);
                gone.push((up.mcp.clone(), up.template.clone(), id));
            }
        }
        map.retain(|_, up| !up.sessions.is_empty());
        gone
    };
    let n = gone.len();
    if n > 0 {
        tracing::debug!(sessions = n, "ending idle upstream sessions");
        end(gone);
    }
    n
}

/// A GET stream on a followed session, counted while it lives.
pub struct Listening {
    map: Weak<Map>,
    key: (String, String),
}

impl Drop for Listening {
    fn drop(&mut self) {
        if let Some(map) = self.map.upgrade() {
            let (upstream, id) = &self.key;
            if let Some(f) = lock(&map)
                .get_mut(upstream)
                .and_then(|u| u.sessions.get_mut(id))
            {
                f.streams = f.streams.saturating_sub(1);
                f.last_used = Instant::now();
            }
        }
    }
}

/// Ends `sessions` upstream, in the background.
fn end(sessions: Vec<Ending>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        for (mcp, template, id) in sessions {
            let mut session = (*template).clone();
            session.session_id = Some(id);
            mcp.terminate(&session, END_TIMEOUT).await;
        }
    });
}
