//! Each control-plane replica's view of the registry: a list of the store, kept current by a
//! watch from the listed revision. When the watch breaks (disconnect, or history compacted
//! away) the follower re-lists, so it never misses or double-applies a change.

use crate::store::{Change, Record, Revision, Store};
use futures::StreamExt;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use switchboard_config::{Kind, Resource, ResourceSet};
use tokio::sync::watch;

/// The registry as of one store revision.
#[derive(Debug, Clone, Default)]
pub struct RegistryState {
    pub revision: Revision,
    pub records: BTreeMap<(Kind, String), Record>,
}

impl RegistryState {
    /// The records as resources (undecodable records are logged and left out).
    pub fn resource_set(&self) -> ResourceSet {
        let mut set = ResourceSet::new();
        for record in self.records.values() {
            match decode(record) {
                Some(resource) => {
                    set.insert_resource(resource);
                }
                None => tracing::error!(
                    kind = %record.kind,
                    name = %record.name,
                    "stored resource does not decode; leaving it out of snapshots"
                ),
            }
        }
        set
    }

    fn apply(&mut self, change: Change) {
        match change {
            Change::Put(r) => {
                self.records.insert((r.kind, r.name.clone()), r);
            }
            Change::Delete { kind, name } => {
                self.records.remove(&(kind, name));
            }
        }
    }
}

/// Decodes a record's JSON into a resource.
pub fn decode(record: &Record) -> Option<Resource> {
    let value = serde_json::from_str(&record.json).ok()?;
    Resource::from_json(value).ok()
}

/// Follows the store and publishes every new state; returns the receiver side.
///
/// The first state is published after the first successful list; until then receivers see
/// an empty state at revision 0.
pub fn follow(store: Arc<dyn Store>) -> watch::Receiver<Arc<RegistryState>> {
    let (tx, rx) = watch::channel(Arc::new(RegistryState::default()));
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            match follow_once(store.as_ref(), &tx).await {
                Ok(()) => return, // every receiver is gone
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "registry watch broke; re-listing");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
            if tx.is_closed() {
                return;
            }
        }
    });
    rx
}

async fn follow_once(
    store: &dyn Store,
    tx: &watch::Sender<Arc<RegistryState>>,
) -> Result<(), crate::store::StoreError> {
    let listing = store.list().await?;
    let mut state = RegistryState {
        revision: listing.revision,
        records: listing
            .records
            .into_iter()
            .map(|r| ((r.kind, r.name.clone()), r))
            .collect(),
    };
    tracing::debug!(
        revision = state.revision,
        records = state.records.len(),
        "registry listed"
    );
    tx.send_replace(Arc::new(state.clone()));
    let mut events = store.watch(state.revision).await?;
    while let Some(batch) = events.next().await {
        let batch = batch?;
        // One write can produce several events at one revision: compare with the revision
        // before this batch, not with one advanced by its first event.
        let known = state.revision;
        for event in batch {
            if event.revision <= known {
                continue; // already part of the listed state
            }
            state.revision = state.revision.max(event.revision);
            state.apply(event.change);
        }
        tracing::debug!(
            revision = state.revision,
            records = state.records.len(),
            "registry updated"
        );
        if tx.send(Arc::new(state.clone())).is_err() {
            return Ok(());
        }
    }
    Err(crate::store::StoreError::Unavailable("watch ended".into()))
}

/// Waits until the follower has caught up to at least `revision`.
pub async fn wait_for_revision(
    rx: &mut watch::Receiver<Arc<RegistryState>>,
    revision: Revision,
) -> Arc<RegistryState> {
    loop {
        let current = rx.borrow_and_update().clone();
        if current.revision >= revision {
            return current;
        }
        if rx.changed().await.is_err() {
            return current;
        }
    }
}
