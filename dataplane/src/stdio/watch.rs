//! Follows one locally run stdio upstream through MCP discovery (see
//! `switchboard_upstream::backend`): keeps a session with its bridge, lists the catalog
//! (again on list_changed, on an interval, and whenever the child restarts), checks health,
//! and records what it finds for the routes and the control plane.

use super::{lock, InstanceKey, LocalEndpoint, LocalStatus};
use futures::StreamExt;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_config::kinds::upstream::{McpTransport, McpUpstream, UpstreamSpec};
use switchboard_upstream::backend::{Change, Changes, Checked, Discovery, Listing, McpDiscovery};
use switchboard_upstream::{Credentials, McpHttp};
use tokio::sync::watch;

/// First retry after a failure; doubled up to `MAX_RETRY` (or the health interval).
const FIRST_RETRY: Duration = Duration::from_millis(250);
const MAX_RETRY: Duration = Duration::from_secs(5);

/// Time allowed for each request (the bridge itself waits up to 15 s for a starting child).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What follows one instance.
pub(super) struct Watcher {
    pub key: InstanceKey,
    pub spec: UpstreamSpec,
    pub endpoint: LocalEndpoint,
    pub status: Arc<Mutex<HashMap<InstanceKey, LocalStatus>>>,
    pub changes: watch::Sender<u64>,
    /// True once the instance is retired: nothing is recorded for it after that.
    pub stopped: watch::Receiver<bool>,
}

/// Why the watcher lists again.
enum Next {
    Relist,
    Reopen(String),
}

impl Watcher {
    /// Runs until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        tokio::select! {
            _ = self.follow() => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    }

    async fn follow(&self) {
        let spec = McpUpstream {
            url: self.endpoint.url.clone(),
            transport: McpTransport::StreamableHttp,
            protocol_version: None,
        };
        let creds = Credentials::from_headers(&BTreeMap::from([(
            "authorization".to_string(),
            format!("Bearer {}", self.endpoint.bearer),
        )]));
        let http = McpHttp::new(Duration::from_secs(3));
        let mut discovery = McpDiscovery::new(http, spec, creds, REQUEST_TIMEOUT);
        let check_every = self.spec.health.every();
        let refresh_every = self.spec.discovery.refresh();
        let threshold = self.spec.health.threshold();
        let mut failures: u32 = 0;
        loop {
            let why = self
                .serve(&mut discovery, check_every, refresh_every, &mut failures)
                .await;
            discovery.reset();
            failures = failures.saturating_add(1);
            self.record(|s| {
                s.listening = false;
                if failures >= threshold || !s.healthy {
                    s.healthy = false;
                    s.error = why.clone();
                }
            });
            tracing::debug!(upstream = %self.key.0, error = %why, failures, "stdio upstream check failed");
            let wait = FIRST_RETRY
                .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
                .min(check_every)
                .min(MAX_RETRY);
            tokio::time::sleep(wait).await;
        }
    }

    /// Lists and follows one session until it fails; returns why.
    async fn serve(
        &self,
        discovery: &mut McpDiscovery,
        check_every: Duration,
        refresh_every: Duration,
        failures: &mut u32,
    ) -> String {
        // Followed across listings: a new stream comes only with a new session.
        let mut changes: Option<Changes> = None;
        loop {
            let Listing {
                catalog,
                protocol_version,
            } = match discovery.list().await.and_then(Listing::checked) {
                Ok(l) => l,
                Err(e) => return e.to_string(),
            };
            *failures = 0;
            if let Some(new) = discovery.changes() {
                changes = Some(new);
            }
            let listening = changes.is_some();
            let tools = catalog.tools.len();
            let fresh = self.record(|s| {
                s.catalog = Some(catalog);
                s.healthy = true;
                s.error.clear();
                s.protocol_version = protocol_version;
                s.listening = listening;
                s.refreshed_unix_ms = crate::metrics::now_ms();
            });
            if fresh {
                tracing::info!(upstream = %self.key.0, tools, "stdio upstream listed");
            }
            match self
                .wait(discovery, &mut changes, check_every, refresh_every)
                .await
            {
                Next::Relist => continue,
                Next::Reopen(why) => return why,
            }
        }
    }

    /// Waits for a reason to list again: word of a change, the refresh interval, or a
    /// failed health check / ended stream (then the session is opened anew).
    async fn wait(
        &self,
        discovery: &mut McpDiscovery,
        changes: &mut Option<Changes>,
        check_every: Duration,
        refresh_every: Duration,
    ) -> Next {
        let refresh_at = tokio::time::Instant::now() + refresh_every;
        loop {
            let change = async {
                match changes.as_mut() {
                    Some(c) => c.next().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                c = change => match c {
                    Some(Ok(Change::Changed(_))) => return Next::Relist,
                    Some(Ok(Change::Unavailable(_))) => {
                        // Only the interval lists again on this session.
                        *changes = None;
                        self.record(|s| s.listening = false);
                    }
                    Some(Err(e)) => return Next::Reopen(e),
                    None => return Next::Reopen("the stdio server's stream ended (did it restart?)".into()),
                },
                _ = tokio::time::sleep(check_every) => {
                    match discovery.check(self.spec.health.time_limit()).await {
                        Ok(Checked::Alive) => {}
                        Ok(Checked::Relist) => {
                            return Next::Reopen("the stdio server restarted".into())
                        }
                        Err(e) => return Next::Reopen(e.to_string()),
                    }
                }
                _ = tokio::time::sleep_until(refresh_at) => return Next::Relist,
            }
        }
    }

    /// Updates this instance's status with `change`; true (and a tick of `changes`) when
    /// anything but the refresh time differs.
    fn record(&self, change: impl FnOnce(&mut LocalStatus)) -> bool {
        let differs = {
            let mut all = lock(&self.status);
            // Checked under the lock `retire` removes the entry under, so a retired
            // instance's status cannot come back.
            if *self.stopped.borrow() {
                return false;
            }
            let s = all.entry(self.key.clone()).or_default();
            let before = LocalStatus {
                refreshed_unix_ms: 0,
                ..s.clone()
            };
            change(s);
            let after = LocalStatus {
                refreshed_unix_ms: 0,
                ..s.clone()
            };
            before != after
        };
        if differs {
            self.changes.send_modify(|n| *n += 1);
        }
        differs
    }
}
