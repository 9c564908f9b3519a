//! The record of writes: every apply and delete that changed the registry, with who made
//! it, kept in the store's status namespace (so every replica reads the same record) and
//! bounded to the most recent [`KEEP`] entries.

use crate::store::Store;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};

/// How many writes are kept.
pub const KEEP: usize = 500;

/// Status key prefix of the record.
const PREFIX: &str = "writes/";

/// One write, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WriteEntry {
    pub unix_ms: i64,
    pub actor: String,
    pub kind: String,
    pub name: String,
    pub action: String,
    pub generation: u64,
    pub revision: u64,
}

/// Makes keys unique within one process when two writes share a millisecond.
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// Records `entries` (all of one commit) and forgets the oldest beyond [`KEEP`], given the
/// keys recorded so far (`known`, oldest first); returns the last key written (without the
/// prefix). A record that cannot be written is logged: the write itself already happened.
pub async fn record(
    store: &dyn Store,
    entries: &[WriteEntry],
    known: Vec<String>,
) -> Option<String> {
    let mut last = None;
    for entry in entries {
        let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let key = format!(
            "{PREFIX}{:016}-{:020}-{seq:08}",
            entry.unix_ms.max(0),
            entry.revision
        );
        let bytes = serde_json::to_vec(entry).unwrap_or_default();
        match store.status_put(&key, bytes, None).await {
            Ok(()) => last = key.strip_prefix(PREFIX).map(str::to_string),
            Err(e) => tracing::warn!(error = %e, "cannot record a write"),
        }
    }
    let excess = (known.len() + entries.len()).saturating_sub(KEEP);
    for old in known.into_iter().take(excess) {
        let _ = store.status_delete(&format!("{PREFIX}{old}"), None).await;
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn entry(n: u64) -> WriteEntry {
        WriteEntry {
            unix_ms: 1_700_000_000_000,
            actor: "ed (editor)".into(),
            kind: "Upstream".into(),
            name: format!("u{n}"),
            action: "created".into(),
            generation: 1,
            revision: n,
        }
    }

    #[tokio::test]
    async fn the_record_keeps_the_most_recent_writes_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::store::embedded::EmbeddedStore::open(dir.path()).expect("store");
        let mut known = Vec::new();
        for n in 0..(KEEP as u64 + 3) {
            let last = record(&store, &[entry(n)], known.clone())
                .await
                .expect("recorded");
            known.push(last);
            if known.len() > KEEP {
                known.remove(0);
            }
        }
        let map = store
            .status_follow()
            .await
            .expect("follow")
            .next()
            .await
            .expect("a map")
            .expect("no error");
        let kept: Vec<&String> = map.keys().filter(|k| k.starts_with(PREFIX)).collect();
        assert_eq!(kept.len(), KEEP);
        // The three oldest are gone and the newest is there, in order.
        let newest: WriteEntry =
            serde_json::from_slice(&map[*kept.last().expect("one")]).expect("entry");
        assert_eq!(newest.revision, KEEP as u64 + 2);
        let oldest: WriteEntry =
            serde_json::from_slice(&map[*kept.first().expect("one")]).expect("entry");
        assert_eq!(oldest.revision, 3);
    }
}
