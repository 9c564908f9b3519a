//! The gateway's upstream side: what executing a decided request needs, apart from the edge
//! that admitted, read and decided it (see the pipeline in the module's docs). It owns the
//! upstream sessions and everything that outlives one call: the circuit breakers and passive
//! health signals, held calls of stateless clients, the upstream streams kept for client
//! streams and the questions relayed on them, tasks, and the replay buffers of resumable
//! streams. Its methods are spread by concern: `forward` (calls and streamed answers,
//! sessions opened and fanned out to, answers relayed), `resilience`, `held`, `questions`,
//! `tasks`, `listen` and `subscriptions`.

use super::admission::ClientHeaders;
use super::{held, outstanding, questions, replay, tasks};
use crate::policy::circuit::Breakers;
use crate::routes::{Routes, ServerView};
use crate::signals::Signals;
use crate::upstreams::UpstreamPool;
use arc_swap::ArcSwap;
use std::sync::Arc;

/// See the module docs.
pub(super) struct Forwarder {
    /// The routes in force, for long-lived streams that follow snapshot changes.
    pub(super) routes: Arc<ArcSwap<Routes>>,
    /// Bumped whenever new routes are swapped in (client streams then say what changed).
    pub(super) changes: tokio::sync::watch::Receiver<u64>,
    pub(super) upstreams: Arc<UpstreamPool>,
    pub(super) signals: Arc<Signals>,
    pub(super) breakers: Breakers,
    /// Buffers of resumable SSE streams.
    pub(super) replays: replay::Replays,
    /// Calls waiting for a stateless client's input.
    pub(super) held: Arc<held::HeldCalls>,
    /// Upstream GET streams held here for clients' GET streams (see `questions`).
    pub(super) listening: Arc<questions::Listening>,
    /// Upstream questions relayed to clients and not yet answered (see `outstanding`).
    pub(super) outstanding: Arc<outstanding::Outstanding>,
    /// Tasks of stateless clients (see `tasks`).
    pub(super) tasks: Arc<tasks::Tasks>,
}

/// Where one request is served, the context every forwarder method starts from: the routes
/// in force when it arrived, its virtual server, and the client's headers (upstream calls
/// carry the ones its server forwards).
#[derive(Clone, Copy)]
pub(super) struct Scope<'a> {
    pub(super) routes: &'a Routes,
    pub(super) server: &'a ServerView,
    pub(super) client: &'a ClientHeaders,
}

impl Forwarder {
    /// A forwarder for the routes in `routes`, with nothing open yet.
    pub(super) fn new(routes: Arc<ArcSwap<Routes>>) -> Forwarder {
        Forwarder {
            routes,
            changes: tokio::sync::watch::channel(0).1,
            upstreams: Arc::default(),
            signals: Arc::default(),
            breakers: Breakers::default(),
            replays: replay::Replays::default(),
            held: Arc::default(),
            listening: Arc::default(),
            outstanding: Arc::default(),
            tasks: Arc::default(),
        }
    }
}
