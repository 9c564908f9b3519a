//! How many data planes each group has, across every control-plane replica: each replica
//! writes the data planes connected to it into the status namespace (on every change, and
//! every few seconds as a heartbeat), and every replica counts the distinct node ids of the
//! records that are fresh. Snapshots carry the count, so cluster-wide rate limits are split
//! into per-replica shares, and split again when replicas come and go.

use crate::dataplanes::{now_ms, DataPlanes};
use crate::store::Store;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// How often a replica rewrites its record though nothing changed.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// A record older than this belongs to a replica that is gone.
pub const STALE_AFTER_MS: i64 = 20_000;
/// Connects and disconnects within this window are written once.
const DEBOUNCE: Duration = Duration::from_millis(100);

/// Key of a replica's record.
pub fn replicas_key(control_plane_id: &str) -> String {
    format!("replicas/{control_plane_id}")
}

/// The data planes connected to one control-plane replica: node id -> group label.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaRecord {
    pub updated_unix_ms: i64,
    pub nodes: BTreeMap<String, String>,
}

/// Distinct connected data planes per group label over the records still fresh at `now_ms`
/// (a data plane that failed over is counted once, whichever replicas list it).
pub fn count(records: &BTreeMap<String, ReplicaRecord>, now_ms: i64) -> BTreeMap<String, u32> {
    let mut nodes: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for record in records.values() {
        if now_ms.saturating_sub(record.updated_unix_ms) > STALE_AFTER_MS {
            continue;
        }
        for (node, group) in &record.nodes {
            nodes.entry(group).or_default().insert(node);
        }
    }
    nodes
        .into_iter()
        .map(|(group, set)| {
            let n = u32::try_from(set.len()).unwrap_or(u32::MAX);
            (group.to_string(), n)
        })
        .collect()
}

/// Keeps this replica's record up to date until the task is aborted.
pub fn publish(
    store: Arc<dyn Store>,
    dataplanes: Arc<DataPlanes>,
    control_plane_id: String,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let key = replicas_key(&control_plane_id);
        let mut events = dataplanes.subscribe();
        let mut written: Option<BTreeMap<String, String>> = None;
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        loop {
            tokio::select! {
                ev = events.recv() => match ev {
                    Ok(e) if e.event != "connected" && e.event != "disconnected" => continue,
                    Err(RecvError::Closed) => return,
                    _ => tokio::time::sleep(DEBOUNCE).await,
                },
                _ = heartbeat.tick() => {}
            }
            let nodes: BTreeMap<String, String> = dataplanes
                .list()
                .into_iter()
                .filter_map(|s| Some((s.node?.id, s.group)))
                .collect();
            if written.is_none() && nodes.is_empty() {
                // Nothing to announce yet (and nothing stale of ours to overwrite).
                written = Some(nodes);
                continue;
            }
            let record = ReplicaRecord {
                updated_unix_ms: now_ms(),
                nodes: nodes.clone(),
            };
            let bytes = serde_json::to_vec(&record).unwrap_or_default();
            match store.status_put(&key, bytes, None).await {
                Ok(()) => written = Some(nodes),
                Err(e) => tracing::warn!(error = %e, "cannot record connected data planes"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_distinct_fresh_nodes_per_group() {
        let rec = |at: i64, nodes: &[(&str, &str)]| ReplicaRecord {
            updated_unix_ms: at,
            nodes: nodes
                .iter()
                .map(|(n, g)| (n.to_string(), g.to_string()))
                .collect(),
        };
        let mut records = BTreeMap::new();
        records.insert("a".into(), rec(1_000, &[("dp1", "g"), ("dp2", "g")]));
        // dp2 failed over to b; b also has dp3 in another group.
        records.insert("b".into(), rec(1_000, &[("dp2", "g"), ("dp3", "h")]));
        records.insert(
            "gone".into(),
            rec(1_000 - STALE_AFTER_MS - 1, &[("dp9", "g")]),
        );
        let counts = count(&records, 1_000);
        assert_eq!(counts.get("g"), Some(&2));
        assert_eq!(counts.get("h"), Some(&1));
    }
}
