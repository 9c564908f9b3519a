//! One upstream under the discovery leader: its catalog listed (by its kind's
//! [`Discovery`]) on an interval, when the upstream says it changed and on demand, its
//! health checked, results written (fenced).

use super::records::{
    catalog_key, health_key, refresh_key, signal_key, CatalogRecord, HealthRecord, HealthState,
};
use crate::dataplanes::now_ms;
use crate::store::{Fence, Store, StoreError};
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use switchboard_config::kinds::upstream::UpstreamSpec;
use switchboard_upstream::backend::{Change, Checked, Discovery, Listing};
use switchboard_upstream::UpstreamError;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

/// Time allowed for each discovery request when the upstream sets none.
pub(super) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// First retry after a failed listing or check; doubled each failure up to `MAX_RETRY` (or
/// the health interval, if shorter), so an upstream that comes up after the gateway is found
/// within seconds.
const FIRST_RETRY: Duration = Duration::from_millis(250);
const MAX_RETRY: Duration = Duration::from_secs(5);

/// When to try again after `failures` failures in a row (the health interval once healthy).
fn next_try(failures: u32, every: Duration) -> Instant {
    if failures == 0 {
        return Instant::now() + every;
    }
    let wait = FIRST_RETRY
        .saturating_mul(1u32 << (failures - 1).min(16))
        .min(every)
        .min(MAX_RETRY);
    Instant::now() + wait
}

/// What the supervisor asks of a worker.
#[derive(Debug)]
pub(super) enum Command {
    /// List the catalog now (then clear the pending request).
    Refresh,
    /// Check health now: data planes report failures (then clear the signal).
    Check,
}

/// What the GET-stream listener tells its worker.
enum Note {
    ListChanged(String),
    /// The stream of changes broke (why): check the upstream now.
    Ended(String),
    /// The upstream gives no word of changes on this connection (why).
    Unavailable(String),
}

/// Everything a worker starts from.
pub(super) struct Worker {
    pub name: String,
    pub spec: UpstreamSpec,
    /// How this upstream's kind is listed and checked.
    pub discovery: Box<dyn Discovery>,
    pub store: Arc<dyn Store>,
    pub fence: Fence,
    /// Hash of the catalog stored now, if any.
    pub known_hash: Option<String>,
    /// The health stored now.
    pub health: HealthRecord,
}

struct Running {
    w: Worker,
    listener: Option<tokio::task::JoinHandle<()>>,
    notes_tx: mpsc::Sender<Note>,
}

impl Worker {
    /// Runs until the supervisor drops the command channel or leadership is fenced off.
    pub(super) async fn run(self, mut commands: mpsc::Receiver<Command>) {
        let (notes_tx, mut notes) = mpsc::channel(16);
        let refresh_every = self.spec.discovery.refresh();
        let check_every = self.spec.health.every();
        let mut r = Running {
            w: self,
            listener: None,
            notes_tx,
        };
        let mut next_refresh = Instant::now();
        let mut next_check = Instant::now() + check_every;
        let outcome: Result<(), StoreError> = async {
            loop {
                tokio::select! {
                    _ = sleep_until(next_refresh) => {
                        r.refresh().await?;
                        next_refresh = Instant::now() + refresh_every;
                        next_check = next_try(r.w.health.consecutive_failures, check_every);
                    }
                    _ = sleep_until(next_check) => {
                        r.check().await?;
                        next_check = next_try(r.w.health.consecutive_failures, check_every);
                    }
                    cmd = commands.recv() => match cmd {
                        None => return Ok(()),
                        Some(Command::Refresh) => {
                            r.refresh().await?;
                            next_refresh = Instant::now() + refresh_every;
                            r.w.store.status_delete(&refresh_key(&r.w.name), Some(&r.w.fence)).await?;
                        }
                        Some(Command::Check) => {
                            r.check().await?;
                            next_check = next_try(r.w.health.consecutive_failures, check_every);
                            r.w.store.status_delete(&signal_key(&r.w.name), Some(&r.w.fence)).await?;
                        }
                    },
                    Some(note) = notes.recv() => match note {
                        Note::ListChanged(method) => {
                            // Several notifications in a burst need one listing.
                            while notes.try_recv().is_ok() {}
                            tracing::info!(upstream = %r.w.name, %method, "upstream says its list changed; refreshing");
                            r.refresh().await?;
                            next_refresh = Instant::now() + refresh_every;
                        }
                        Note::Unavailable(why) => {
                            tracing::debug!(upstream = %r.w.name, %why, "upstream gives no word of changes; listing on the interval");
                            r.listener_ended().await?;
                        }
                        Note::Ended(why) => {
                            tracing::debug!(upstream = %r.w.name, %why, "upstream notification stream ended");
                            r.listener_ended().await?;
                            // Find out now whether the upstream itself is gone.
                            next_check = Instant::now();
                        }
                    },
                }
            }
        }
        .await;
        if let Some(l) = r.listener.take() {
            l.abort();
        }
        if let Err(e) = outcome {
            tracing::info!(upstream = %r.w.name, error = %e, "discovery worker stopped");
        }
    }
}

impl Running {
    /// Lists the catalog and records the result. A catalog no snapshot could carry is a
    /// failure of this upstream: its previous catalog stays.
    async fn refresh(&mut self) -> Result<(), StoreError> {
        let listed = self.w.discovery.list().await.and_then(Listing::checked);
        self.count("refresh", listed.is_ok());
        match listed {
            Ok(Listing {
                catalog,
                protocol_version,
            }) => {
                let hash = catalog.content_hash();
                if self.w.known_hash.as_deref() != Some(hash.as_str()) {
                    let record = CatalogRecord {
                        hash: hash.clone(),
                        catalog,
                        discovered_unix_ms: now_ms(),
                    };
                    let bytes = serde_json::to_vec(&record).unwrap_or_default();
                    self.w
                        .store
                        .status_put(&catalog_key(&self.w.name), bytes, Some(&self.w.fence))
                        .await?;
                    tracing::info!(upstream = %self.w.name, %hash, tools = record.catalog.tools.len(), "catalog changed");
                    self.w.known_hash = Some(hash);
                }
                self.w.health.protocol_version = protocol_version;
                self.w.health.last_refresh_unix_ms = now_ms();
                self.listen();
                self.succeeded(true).await
            }
            Err(e) => self.failed(e).await,
        }
    }

    /// A liveness check (a fresh listing when there is nothing to check, or the upstream
    /// forgot us).
    async fn check(&mut self) -> Result<(), StoreError> {
        let limit = self.w.spec.health.time_limit();
        let checked = self.w.discovery.check(limit).await;
        if !matches!(checked, Ok(Checked::Relist)) {
            self.count("check", checked.is_ok());
        }
        match checked {
            Ok(Checked::Alive) => {
                self.listen();
                self.succeeded(false).await
            }
            Ok(Checked::Relist) => {
                self.stop_listening();
                self.refresh().await
            }
            Err(e) => self.failed(e).await,
        }
    }

    fn count(&self, kind: &str, ok: bool) {
        crate::metrics::metrics()
            .discovery
            .with_label_values(&[self.w.name.as_str(), kind, if ok { "ok" } else { "error" }])
            .inc();
    }

    async fn succeeded(&mut self, refreshed: bool) -> Result<(), StoreError> {
        let h = &mut self.w.health;
        let recovered = h.state != HealthState::Healthy;
        if recovered {
            tracing::info!(upstream = %self.w.name, "upstream healthy");
            h.state = HealthState::Healthy;
            h.since_unix_ms = now_ms();
        }
        let changed = recovered || h.consecutive_failures != 0 || !h.last_error.is_empty();
        h.consecutive_failures = 0;
        // LAST ERROR tells what is wrong now; the time of the last failure stays.
        h.last_error.clear();
        if changed || refreshed {
            self.write_health().await?;
        }
        Ok(())
    }

    async fn failed(&mut self, e: UpstreamError) -> Result<(), StoreError> {
        self.drop_session();
        let threshold = self.w.spec.health.threshold();
        let h = &mut self.w.health;
        h.consecutive_failures = h.consecutive_failures.saturating_add(1);
        h.last_error = e.to_string();
        h.last_error_unix_ms = now_ms();
        if h.consecutive_failures >= threshold && h.state != HealthState::Unhealthy {
            tracing::warn!(upstream = %self.w.name, error = %e, failures = h.consecutive_failures, "upstream unhealthy");
            h.state = HealthState::Unhealthy;
            h.since_unix_ms = now_ms();
        } else {
            tracing::debug!(upstream = %self.w.name, error = %e, failures = h.consecutive_failures, "upstream check failed");
        }
        self.write_health().await
    }

    async fn write_health(&self) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(&self.w.health).unwrap_or_default();
        self.w
            .store
            .status_put(&health_key(&self.w.name), bytes, Some(&self.w.fence))
            .await
    }

    fn drop_session(&mut self) {
        self.stop_listening();
        self.w.discovery.reset();
    }

    /// The stream of changes ended on its own: health says nothing follows it now.
    async fn listener_ended(&mut self) -> Result<(), StoreError> {
        self.listener = None;
        if self.w.health.listening {
            self.w.health.listening = false;
            self.write_health().await?;
        }
        Ok(())
    }

    fn stop_listening(&mut self) {
        if let Some(l) = self.listener.take() {
            l.abort();
        }
        self.w.health.listening = false;
    }

    /// Follows the upstream's word of catalog changes when its discovery has a new stream
    /// of it (a new connection, or the last stream ended), in place of the one followed.
    fn listen(&mut self) {
        let Some(mut changes) = self.w.discovery.changes() else {
            return;
        };
        if let Some(old) = self.listener.take() {
            old.abort();
        }
        self.w.health.listening = true;
        let notes = self.notes_tx.clone();
        self.listener = Some(tokio::spawn(async move {
            let last = loop {
                match changes.next().await {
                    Some(Ok(Change::Changed(what))) => {
                        let _ = notes.send(Note::ListChanged(what)).await;
                    }
                    Some(Ok(Change::Unavailable(why))) => break Note::Unavailable(why),
                    Some(Err(why)) => break Note::Ended(why),
                    None => break Note::Ended("the upstream closed it".to_string()),
                }
            };
            let _ = notes.send(last).await;
        }));
    }
}
