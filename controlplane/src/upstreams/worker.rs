//! One upstream under the discovery leader: a session kept open, its catalog listed on an
//! interval, on list_changed and on demand, its health checked, results written (fenced).

use super::records::{
    catalog_key, health_key, refresh_key, signal_key, CatalogRecord, HealthRecord, HealthState,
};
use crate::dataplanes::now_ms;
use crate::store::{Fence, Store, StoreError};
use futures::StreamExt;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use switchboard_config::kinds::upstream::{McpUpstream, UpstreamSpec};
use switchboard_upstream::{
    discovery_reply, is_list_changed, Connection, Credentials, McpHttp, UpstreamError,
};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

/// Time allowed for each discovery request when the upstream sets none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

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
    Ended(String),
}

/// Everything a worker starts from.
pub(super) struct Worker {
    pub name: String,
    pub spec: UpstreamSpec,
    pub mcp_spec: McpUpstream,
    /// Headers and credentials for every request.
    pub creds: Credentials,
    pub store: Arc<dyn Store>,
    pub fence: Fence,
    pub mcp: McpHttp,
    /// Hash of the catalog stored now, if any.
    pub known_hash: Option<String>,
    /// The health stored now.
    pub health: HealthRecord,
}

struct Running {
    w: Worker,
    session: Option<Connection>,
    listener: Option<tokio::task::JoinHandle<()>>,
    notes_tx: mpsc::Sender<Note>,
    timeout: Duration,
}

impl Worker {
    /// Runs until the supervisor drops the command channel or leadership is fenced off.
    pub(super) async fn run(self, mut commands: mpsc::Receiver<Command>) {
        let (notes_tx, mut notes) = mpsc::channel(16);
        let timeout = self.spec.timeouts.request.unwrap_or(DEFAULT_TIMEOUT);
        let refresh_every = self.spec.discovery.refresh();
        let check_every = self.spec.health.every();
        let mut r = Running {
            w: self,
            session: None,
            listener: None,
            notes_tx,
            timeout,
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
                        Note::Ended(why) => {
                            tracing::debug!(upstream = %r.w.name, %why, "upstream notification stream ended");
                            r.listener = None;
                            if r.w.health.listening {
                                r.w.health.listening = false;
                                r.write_health().await?;
                            }
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
    async fn open(&mut self) -> Result<Connection, UpstreamError> {
        if let Some(s) = &self.session {
            return Ok(s.clone());
        }
        let session = self
            .w
            .mcp
            .open(&self.w.mcp_spec, &self.w.creds, self.timeout)
            .await?;
        self.session = Some(session.clone());
        Ok(session)
    }

    /// Lists the catalog (re-opening a session the upstream forgot) and records the result.
    async fn refresh(&mut self) -> Result<(), StoreError> {
        let mut listed = self.list().await;
        if matches!(listed, Err(UpstreamError::SessionExpired { .. })) {
            self.drop_session();
            listed = self.list().await;
        }
        self.count("refresh", listed.is_ok());
        match listed {
            Ok((catalog, session)) => {
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
                self.w.health.protocol_version = session.protocol_version().to_string();
                self.w.health.last_refresh_unix_ms = now_ms();
                self.listen(&session);
                self.succeeded(true).await
            }
            Err(e) => self.failed(e).await,
        }
    }

    async fn list(&mut self) -> Result<(switchboard_config::Catalog, Connection), UpstreamError> {
        let session = self.open().await?;
        let catalog = self.w.mcp.catalog(&session, self.timeout).await?;
        Ok((catalog, session))
    }

    /// A ping on the open session (a fresh listing when there is none).
    async fn check(&mut self) -> Result<(), StoreError> {
        let Some(session) = self.session.clone() else {
            return self.refresh().await;
        };
        let limit = self.w.spec.health.time_limit();
        let pinged = self
            .w
            .mcp
            .request_on(&session, "ping", json!({}), limit)
            .await;
        if !matches!(pinged, Err(UpstreamError::SessionExpired { .. })) {
            self.count("check", pinged.is_ok());
        }
        match pinged {
            Ok(_) => {
                self.listen(&session);
                self.succeeded(false).await
            }
            Err(UpstreamError::SessionExpired { .. }) => {
                // Restarted upstream: a new session, and a catalog that may have changed.
                self.drop_session();
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
        if let Some(l) = self.listener.take() {
            l.abort();
        }
        self.w.health.listening = false;
        if let Some(s) = self.session.take() {
            let mcp = self.w.mcp.clone();
            tokio::spawn(async move { mcp.close(&s, Duration::from_secs(2)).await });
        }
    }

    /// Opens the session's notification stream if the upstream announces list changes and
    /// none is open.
    fn listen(&mut self, session: &Connection) {
        if !session.announces_list_changes()
            || self.listener.as_ref().is_some_and(|l| !l.is_finished())
        {
            return;
        }
        self.w.health.listening = true;
        let (mcp, session, notes, timeout) = (
            self.w.mcp.clone(),
            session.clone(),
            self.notes_tx.clone(),
            self.timeout,
        );
        self.listener = Some(tokio::spawn(async move {
            let why = match mcp.messages(&session, timeout).await {
                Ok(Some(mut stream)) => loop {
                    match stream.next().await {
                        Some(Ok(msg)) => on_message(&mcp, &session, &notes, msg, timeout).await,
                        Some(Err(e)) => break e,
                        None => break "the upstream closed it".to_string(),
                    }
                },
                Ok(None) => "the upstream offers no notification stream".to_string(),
                Err(e) => e.to_string(),
            };
            let _ = notes.send(Note::Ended(why)).await;
        }));
    }
}

/// Handles one message from the notification stream: list changes go to the worker, pings
/// and roots/list are answered, other requests refused (discovery never calls tools, so
/// nothing should ask it to sample or elicit).
async fn on_message(
    mcp: &McpHttp,
    session: &Connection,
    notes: &mpsc::Sender<Note>,
    msg: Value,
    timeout: Duration,
) {
    let method = msg.get("method").and_then(Value::as_str).unwrap_or("");
    if is_list_changed(method) {
        let _ = notes.send(Note::ListChanged(method.to_string())).await;
        return;
    }
    if let Some(reply) = discovery_reply(&msg) {
        let _ = mcp.reply(session, &reply, timeout).await;
    }
}
