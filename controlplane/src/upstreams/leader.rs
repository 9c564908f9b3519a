//! The discovery leader: campaigns for the store's lease, then runs one worker per MCP
//! upstream until the lease is lost, reconciling workers with the registry and passing on
//! refresh requests and passive signals.

use super::follow::Status;
use super::records::{catalog_key, health_key, refresh_key, signal_key, LeaderRecord, LEADER_KEY};
use super::worker::{Command, Worker, DEFAULT_TIMEOUT};
use crate::dataplanes::now_ms;
use crate::secrets::SecretBox;
use crate::state::RegistryState;
use crate::store::{Fence, Leadership, Store, StoreError};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use switchboard_config::kinds::upstream::UpstreamSpec;
use switchboard_config::{Kind, Resource};
use switchboard_upstream::backend::discovery_for;
use switchboard_upstream::{Credentials, McpHttp};
use tokio::sync::{mpsc, watch};

/// Connect timeout for discovery sessions.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Campaigns for discovery leadership as `holder` for as long as the replica runs.
pub fn spawn(
    store: Arc<dyn Store>,
    registry: watch::Receiver<Arc<RegistryState>>,
    status: watch::Receiver<Arc<Status>>,
    holder: String,
    secret_box: Option<Arc<SecretBox>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let mut leadership = match store.campaign(&holder).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot campaign for discovery leadership; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            tracing::info!(%holder, "this replica now leads upstream discovery");
            let mut lead = Lead {
                store: store.clone(),
                fence: leadership.fence.clone(),
                mcp: McpHttp::new(CONNECT_TIMEOUT),
                workers: BTreeMap::new(),
                secret_box: secret_box.clone(),
                handled_refresh: BTreeMap::new(),
                handled_signal: BTreeMap::new(),
                reported: BTreeSet::new(),
            };
            lead.run(&mut leadership, registry.clone(), status.clone())
                .await;
            tracing::warn!(%holder, "lost upstream discovery leadership");
            if registry.has_changed().is_err() {
                return; // the replica is shutting down
            }
        }
    })
}

struct Handle {
    spec: UpstreamSpec,
    creds: Credentials,
    commands: mpsc::Sender<Command>,
    task: tokio::task::JoinHandle<()>,
}

struct Lead {
    store: Arc<dyn Store>,
    fence: Fence,
    mcp: McpHttp,
    secret_box: Option<Arc<SecretBox>>,
    workers: BTreeMap<String, Handle>,
    /// The refresh request / signal time last passed on, per upstream.
    handled_refresh: BTreeMap<String, i64>,
    handled_signal: BTreeMap<String, i64>,
    /// Name clashes already logged (each is logged once, when a refresh or apply causes it).
    reported: BTreeSet<String>,
}

impl Drop for Lead {
    fn drop(&mut self) {
        for (_, h) in std::mem::take(&mut self.workers) {
            h.task.abort();
        }
    }
}

impl Lead {
    async fn run(
        &mut self,
        leadership: &mut Leadership,
        mut registry: watch::Receiver<Arc<RegistryState>>,
        mut status: watch::Receiver<Arc<Status>>,
    ) {
        let me = LeaderRecord {
            holder: self.fence.holder.clone(),
            since_unix_ms: now_ms(),
        };
        let bytes = serde_json::to_vec(&me).unwrap_or_default();
        if let Err(e) = self
            .store
            .status_put(LEADER_KEY, bytes, Some(&self.fence))
            .await
        {
            tracing::warn!(error = %e, "cannot record discovery leadership");
        }
        loop {
            let state = registry.borrow_and_update().clone();
            let current = status.borrow_and_update().clone();
            match self.reconcile(&state, &current).await {
                Err(StoreError::Fenced) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "discovery reconcile failed; retrying on the next change")
                }
                Ok(()) => {}
            }
            tokio::select! {
                _ = leadership.lost() => return,
                changed = registry.changed() => if changed.is_err() { return },
                changed = status.changed() => if changed.is_err() { return },
            }
        }
    }

    async fn reconcile(
        &mut self,
        state: &RegistryState,
        status: &Status,
    ) -> Result<(), StoreError> {
        let set = state.resource_set();
        let opened = crate::secrets::open_set(&set, self.secret_box.as_deref());
        let wanted: BTreeMap<String, (UpstreamSpec, Credentials)> = set
            .of_kind(Kind::Upstream)
            .filter_map(|item| match &item.resource {
                // Every kind the control plane lists (stdio upstreams are listed by the data
                // planes that run them; kinds without a backend are skipped below).
                Resource::Upstream(u) if u.spec.stdio.is_none() => {
                    let creds = crate::secrets::resolve(&u.spec, &opened).unwrap_or_else(|e| {
                        tracing::error!(upstream = %u.metadata.name, error = %e, "cannot resolve upstream credentials");
                        Credentials::from_headers(&u.spec.headers)
                    });
                    Some((u.metadata.name.clone(), (u.spec.clone(), creds)))
                }
                _ => None,
            })
            .collect();
        // Stop workers whose upstream is gone or changed (credentials included), or that
        // stopped on their own.
        let stale: Vec<String> = self
            .workers
            .iter()
            .filter(|(name, h)| {
                wanted
                    .get(*name)
                    .is_none_or(|(spec, creds)| spec != &h.spec || creds != &h.creds)
                    || h.task.is_finished()
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            if let Some(h) = self.workers.remove(&name) {
                h.task.abort();
            }
        }
        // Forget what discovery stored about upstreams that no longer exist (or are no
        // longer MCP upstreams).
        let recorded: BTreeSet<&String> = status
            .catalogs
            .keys()
            .chain(status.health.keys())
            .chain(status.refresh.keys())
            .chain(status.signals.keys())
            .collect();
        // Stdio upstreams' records come from the data planes that run them: keep those.
        let reported: BTreeSet<&str> = set
            .of_kind(Kind::Upstream)
            .filter(
                |item| matches!(&item.resource, Resource::Upstream(u) if u.spec.stdio.is_some()),
            )
            .map(|item| item.resource.name())
            .collect();
        for name in recorded {
            if !wanted.contains_key(name) && !reported.contains(name.as_str()) && state.revision > 0
            {
                for key in [
                    catalog_key(name),
                    health_key(name),
                    refresh_key(name),
                    signal_key(name),
                ] {
                    self.store.status_delete(&key, Some(&self.fence)).await?;
                }
            }
        }
        for (name, (spec, creds)) in &wanted {
            if self.workers.contains_key(name) {
                continue;
            }
            let timeout = spec.timeouts.request.unwrap_or(DEFAULT_TIMEOUT);
            let Some(discovery) = discovery_for(spec, creds.clone(), &self.mcp, timeout) else {
                continue;
            };
            let (tx, rx) = mpsc::channel(8);
            let worker = Worker {
                name: name.clone(),
                spec: spec.clone(),
                discovery,
                store: self.store.clone(),
                fence: self.fence.clone(),
                known_hash: status.catalogs.get(name).map(|c| c.hash.clone()),
                health: status.health.get(name).cloned().unwrap_or_default(),
            };
            self.workers.insert(
                name.clone(),
                Handle {
                    spec: spec.clone(),
                    creds: creds.clone(),
                    commands: tx,
                    task: tokio::spawn(worker.run(rx)),
                },
            );
        }
        let clashes: BTreeSet<String> = super::report::all_clashes(&set, status)
            .iter()
            .map(ToString::to_string)
            .collect();
        for clash in clashes.difference(&self.reported) {
            tracing::warn!("{clash}");
        }
        self.reported = clashes;
        for (name, req) in &status.refresh {
            let handled = self.handled_refresh.entry(name.clone()).or_default();
            if req.requested_unix_ms > *handled {
                *handled = req.requested_unix_ms;
                self.send(name, Command::Refresh);
            }
        }
        for (name, sig) in &status.signals {
            let handled = self.handled_signal.entry(name.clone()).or_default();
            if sig.at_unix_ms > *handled {
                *handled = sig.at_unix_ms;
                self.send(name, Command::Check);
            }
        }
        Ok(())
    }

    fn send(&self, name: &str, command: Command) {
        if let Some(h) = self.workers.get(name) {
            // A full queue already holds a request that will do the same.
            let _ = h.commands.try_send(command);
        }
    }
}
