//! The etcd side of [`super::status`]: status entries under `{prefix}/status/`, the
//! discovery lease on `{prefix}/leader/discovery`, and writes fenced by the leader key's
//! value.

use super::etcd::{unavailable, EtcdStore};
use super::{Fence, Leadership, StatusStream, StoreError};
use etcd_client::{
    Compare, CompareOp, EventType, GetOptions, PutOptions, Txn, TxnOp, WatchOptions,
};
use futures::StreamExt;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, watch};

/// Lease time-to-live: a dead leader's lease lapses within this, and another replica
/// takes over.
const LEASE_TTL_SECS: i64 = 3;

/// How often a standby checks whether the leader key is free.
const STANDBY_POLL: Duration = Duration::from_millis(500);

impl EtcdStore {
    /// Runs `op` alone, or only while `fence` still holds the leader key.
    pub(super) async fn fenced(&self, op: TxnOp, fence: Option<&Fence>) -> Result<(), StoreError> {
        let mut client = self.client.clone();
        let txn = match fence {
            None => Txn::new().and_then([op]),
            Some(f) => Txn::new()
                .when([Compare::value(
                    f.key.clone(),
                    CompareOp::Equal,
                    f.holder.clone(),
                )])
                .and_then([op]),
        };
        let resp = client.txn(txn).await.map_err(unavailable)?;
        if resp.succeeded() {
            Ok(())
        } else {
            Err(StoreError::Fenced)
        }
    }

    /// Lists the status prefix, then follows it with a watch from the listed revision.
    pub(super) async fn follow_status(&self) -> Result<StatusStream, StoreError> {
        let mut client = self.client.clone();
        let listed = client
            .get(self.status.as_str(), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(unavailable)?;
        let revision = listed.header().map(|h| h.revision()).unwrap_or(0);
        let prefix = self.status.clone();
        let strip = move |key: &[u8]| -> Option<String> {
            String::from_utf8_lossy(key)
                .strip_prefix(prefix.as_str())
                .map(str::to_string)
        };
        let mut map = BTreeMap::new();
        for kv in listed.kvs() {
            if let Some(k) = strip(kv.key()) {
                map.insert(k, kv.value().to_vec());
            }
        }
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1);
        let stream = client
            .watch(self.status.as_str(), Some(options))
            .await
            .map_err(unavailable)?;
        // The request half must stay alive for the watch to stay open.
        let (sender, responses) = stream.split();
        let first = futures::stream::once(futures::future::ready(Ok(Arc::new(map.clone()))));
        let rest = futures::stream::unfold(
            (responses, sender, map, false),
            move |(mut responses, sender, mut map, done)| {
                let strip = strip.clone();
                async move {
                    if done {
                        return None;
                    }
                    loop {
                        let msg = match responses.message().await {
                            Ok(Some(msg)) => msg,
                            Ok(None) => {
                                let e = StoreError::Unavailable("etcd closed the watch".into());
                                return Some((Err(e), (responses, sender, map, true)));
                            }
                            Err(e) => {
                                return Some((Err(unavailable(e)), (responses, sender, map, true)))
                            }
                        };
                        if msg.canceled() || msg.compact_revision() != 0 {
                            let e = StoreError::Unavailable(format!(
                                "status watch ended: {}",
                                msg.cancel_reason()
                            ));
                            return Some((Err(e), (responses, sender, map, true)));
                        }
                        if msg.events().is_empty() {
                            continue;
                        }
                        for ev in msg.events() {
                            let Some(kv) = ev.kv() else { continue };
                            let Some(key) = strip(kv.key()) else { continue };
                            match ev.event_type() {
                                EventType::Put => {
                                    map.insert(key, kv.value().to_vec());
                                }
                                EventType::Delete => {
                                    map.remove(&key);
                                }
                            }
                        }
                        let snapshot = Arc::new(map.clone());
                        return Some((Ok(snapshot), (responses, sender, map, false)));
                    }
                }
            },
        );
        Ok(first.chain(rest).boxed())
    }

    /// Takes the leader key under a fresh lease once it is free, then keeps the lease alive.
    pub(super) async fn campaign_for(&self, holder: &str) -> Result<Leadership, StoreError> {
        let mut client = self.client.clone();
        loop {
            let free = client
                .get(self.leader.as_str(), None)
                .await
                .map_err(unavailable)?
                .kvs()
                .is_empty();
            if free {
                let lease = client
                    .lease_grant(LEASE_TTL_SECS, None)
                    .await
                    .map_err(unavailable)?
                    .id();
                let txn = Txn::new()
                    .when([Compare::create_revision(
                        self.leader.clone(),
                        CompareOp::Equal,
                        0,
                    )])
                    .and_then([TxnOp::put(
                        self.leader.clone(),
                        holder,
                        Some(PutOptions::new().with_lease(lease)),
                    )]);
                let won = client.txn(txn).await.map_err(unavailable)?.succeeded();
                if won {
                    return self.keep(lease, holder).await;
                }
                // Someone else won the race; our lease would only lapse.
                let _ = client.lease_revoke(lease).await;
            }
            tokio::time::sleep(STANDBY_POLL).await;
        }
    }

    /// Keeps `lease` alive until it lapses or the [`Leadership`] is dropped (then revokes it).
    async fn keep(&self, lease: i64, holder: &str) -> Result<Leadership, StoreError> {
        let mut client = self.client.clone();
        let (mut keeper, mut acks) = client.lease_keep_alive(lease).await.map_err(unavailable)?;
        let (lost_tx, lost_rx) = watch::channel(false);
        let (resign_tx, mut resign_rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let period =
                Duration::from_millis(u64::try_from(LEASE_TTL_SECS * 1000 / 3).unwrap_or(1000));
            let mut tick = tokio::time::interval(period);
            // Counted from the last good answer: past the TTL the lease is gone for sure.
            let mut alive_until =
                tokio::time::Instant::now() + Duration::from_secs(LEASE_TTL_SECS as u64);
            loop {
                tokio::select! {
                    _ = &mut resign_rx => {
                        let _ = client.lease_revoke(lease).await;
                        let _ = lost_tx.send(true);
                        return;
                    }
                    _ = tick.tick() => {
                        if tokio::time::Instant::now() >= alive_until {
                            tracing::warn!("discovery lease lapsed");
                            let _ = lost_tx.send(true);
                            return;
                        }
                        let sent = tokio::time::timeout(period, keeper.keep_alive()).await;
                        if !matches!(sent, Ok(Ok(()))) {
                            continue; // try again next tick, until the lease is surely gone
                        }
                        match tokio::time::timeout(period, acks.message()).await {
                            Ok(Ok(Some(resp))) if resp.ttl() > 0 => {
                                // At most what was granted, whatever the answer claims.
                                let ttl = resp.ttl().min(LEASE_TTL_SECS);
                                alive_until = tokio::time::Instant::now()
                                    + Duration::from_secs(u64::try_from(ttl).unwrap_or(0));
                            }
                            Ok(Ok(Some(_))) => {
                                tracing::warn!("discovery lease expired");
                                let _ = lost_tx.send(true);
                                return;
                            }
                            _ => {}
                        }
                    }
                }
            }
        });
        Ok(Leadership::new(
            Fence {
                key: self.leader.clone(),
                holder: holder.to_string(),
            },
            lost_rx,
            resign_tx,
        ))
    }
}
