//! Every replica's view of discovery: the store's status namespace, decoded, and the part
//! of it snapshots are built from.

use super::records::{
    CatalogRecord, HealthRecord, HealthState, LeaderRecord, RefreshRequest, SignalRecord,
    LEADER_KEY,
};
use crate::replicas::ReplicaRecord;
use crate::store::{StatusMap, Store};
use futures::StreamExt;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use switchboard_config::Discovered;
use tokio::sync::watch;

/// The status namespace, decoded, by upstream name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    pub catalogs: BTreeMap<String, CatalogRecord>,
    pub health: BTreeMap<String, HealthRecord>,
    pub refresh: BTreeMap<String, RefreshRequest>,
    pub signals: BTreeMap<String, SignalRecord>,
    /// Data planes connected to each control-plane replica, by replica id.
    pub replicas: BTreeMap<String, ReplicaRecord>,
    pub leader: Option<LeaderRecord>,
    /// The record of writes, by zero-padded time and sequence (so in order).
    pub writes: BTreeMap<String, crate::audit::WriteEntry>,
    /// Client sessions a DELETE ended, by key (see `crate::ended_sessions`).
    pub ended: BTreeMap<String, crate::ended_sessions::EndedRecord>,
}

impl Status {
    fn decode(map: &StatusMap) -> Status {
        fn put<T: DeserializeOwned>(
            into: &mut BTreeMap<String, T>,
            key: &str,
            name: &str,
            v: &[u8],
        ) {
            match serde_json::from_slice(v) {
                Ok(record) => {
                    into.insert(name.to_string(), record);
                }
                Err(e) => {
                    tracing::error!(%key, error = %e, "undecodable status entry; ignoring it")
                }
            }
        }
        let mut status = Status::default();
        for (key, value) in map.iter() {
            if key == LEADER_KEY {
                status.leader = serde_json::from_slice(value).ok();
                continue;
            }
            let Some((family, name)) = key.split_once('/') else {
                continue;
            };
            match family {
                "catalog" => put(&mut status.catalogs, key, name, value),
                "health" => put(&mut status.health, key, name, value),
                "refresh" => put(&mut status.refresh, key, name, value),
                "signal" => put(&mut status.signals, key, name, value),
                "replicas" => put(&mut status.replicas, key, name, value),
                "writes" => put(&mut status.writes, key, name, value),
                crate::ended_sessions::FAMILY => put(&mut status.ended, key, name, value),
                _ => {}
            }
        }
        status
    }

    /// What snapshots need: catalogs, and the upstreams that are down (with the reason).
    pub fn discovered(&self) -> Discovered {
        Discovered {
            catalogs: self
                .catalogs
                .iter()
                .map(|(name, r)| (name.clone(), r.catalog.clone()))
                .collect(),
            unhealthy: self
                .health
                .iter()
                .filter(|(_, h)| h.state == HealthState::Unhealthy)
                .map(|(name, h)| (name.clone(), h.last_error.clone()))
                .collect(),
            replicas: crate::replicas::count(&self.replicas, crate::dataplanes::now_ms()),
        }
    }
}

/// Follows the status namespace; the receiver sees the whole decoded status after each change.
pub fn follow(store: Arc<dyn Store>) -> watch::Receiver<Arc<Status>> {
    let (tx, rx) = watch::channel(Arc::new(Status::default()));
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            match store.status_follow().await {
                Ok(mut maps) => {
                    while let Some(next) = maps.next().await {
                        match next {
                            Ok(map) => {
                                backoff = Duration::from_millis(100);
                                let status = Status::decode(&map);
                                tx.send_if_modified(|cur| {
                                    let changed = **cur != status;
                                    if changed {
                                        *cur = Arc::new(status);
                                    }
                                    changed
                                });
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "status feed broke; following again");
                                break;
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot follow discovery status"),
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    });
    rx
}

/// The snapshot-relevant part of `status`, published only when it changes (so a health
/// record's timestamps moving does not rebuild snapshots).
pub fn discovered(mut status: watch::Receiver<Arc<Status>>) -> watch::Receiver<Arc<Discovered>> {
    let (tx, rx) = watch::channel(Arc::new(status.borrow_and_update().discovered()));
    tokio::spawn(async move {
        while status.changed().await.is_ok() {
            let next = status.borrow_and_update().discovered();
            tx.send_if_modified(|cur| {
                let changed = **cur != next;
                if changed {
                    *cur = Arc::new(next);
                }
                changed
            });
            if tx.is_closed() {
                return;
            }
        }
    });
    rx
}
