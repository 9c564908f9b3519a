//! Passive health signals: failures data planes report on their discovery streams, relayed
//! into the status namespace (whichever replica they reach) where the discovery leader
//! answers each with an immediate check. At most one write per upstream per second.

use super::records::{signal_key, SignalRecord};
use crate::dataplanes::now_ms;
use crate::store::Store;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_proto::v1::UpstreamSignal;
use tokio::sync::mpsc;

/// Least time between two relayed signals about one upstream.
const MIN_GAP: Duration = Duration::from_secs(1);

/// Starts the relay; send it (node id, signal) pairs.
pub fn relay(store: Arc<dyn Store>) -> mpsc::Sender<(String, UpstreamSignal)> {
    let (tx, mut rx) = mpsc::channel::<(String, UpstreamSignal)>(256);
    tokio::spawn(async move {
        let mut last: HashMap<String, Instant> = HashMap::new();
        while let Some((node, signal)) = rx.recv().await {
            if signal.failures == 0 || signal.upstream.is_empty() {
                continue;
            }
            if last
                .get(&signal.upstream)
                .is_some_and(|at| at.elapsed() < MIN_GAP)
            {
                continue;
            }
            last.insert(signal.upstream.clone(), Instant::now());
            let record = SignalRecord {
                failures: signal.failures,
                last_error: signal.last_error,
                at_unix_ms: now_ms(),
                node,
            };
            let bytes = serde_json::to_vec(&record).unwrap_or_default();
            if let Err(e) = store
                .status_put(&signal_key(&signal.upstream), bytes, None)
                .await
            {
                tracing::warn!(upstream = %signal.upstream, error = %e, "cannot relay a health signal");
            }
        }
    });
    tx
}
