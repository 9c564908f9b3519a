//! Client sessions a DELETE ended, shared by every data plane: a data plane reports the
//! sessions it ended on its discovery stream, the replica it reached writes each into the
//! status namespace (`ended/<key>`), and every replica sends its data planes the whole set
//! when their stream opens and each new entry after. An entry is removed once the session
//! would have expired anyway, so the set stays as small as the sessions still alive.

use crate::store::Store;
use crate::upstreams::follow::Status;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use switchboard_proto::v1::EndedSession;
use tokio::sync::{mpsc, watch};

/// Status key prefix of ended sessions.
pub const FAMILY: &str = "ended";

/// Longest a reported entry is kept, whatever expiry it claims: past any session lifetime
/// a virtual server may set (30 days).
const LONGEST: Duration = Duration::from_secs(31 * 24 * 3600);

/// Most entries one discovery message may report (a data plane ends sessions one DELETE
/// at a time; more is a bug or an attack).
pub const MAX_PER_MESSAGE: usize = 1_000;

/// How often each replica removes entries that expired.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// One ended session, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndedRecord {
    pub expires_unix: i64,
}

/// Every ended session by key: what data planes are sent.
pub type Ended = Arc<BTreeMap<String, i64>>;

fn now_unix() -> i64 {
    crate::dataplanes::now_ms() / 1000
}

/// Whether `key` is what a data plane derives from a session id (32 hex digits).
fn well_formed(key: &str) -> bool {
    key.len() == 32 && key.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Starts the relay that stores what data planes report; send it (reporter, session).
pub fn relay(store: Arc<dyn Store>) -> mpsc::Sender<(String, EndedSession)> {
    let (tx, mut rx) = mpsc::channel::<(String, EndedSession)>(1024);
    tokio::spawn(async move {
        while let Some((reporter, ended)) = rx.recv().await {
            if !well_formed(&ended.key) {
                tracing::warn!(%reporter, "ignored an ended session with a malformed key");
                continue;
            }
            let now = now_unix();
            if ended.expires_unix <= now {
                continue;
            }
            let longest = i64::try_from(LONGEST.as_secs()).unwrap_or(i64::MAX);
            let record = EndedRecord {
                expires_unix: ended.expires_unix.min(now.saturating_add(longest)),
            };
            let key = format!("{FAMILY}/{}", ended.key.to_ascii_lowercase());
            let bytes = serde_json::to_vec(&record).unwrap_or_default();
            if let Err(e) = store.status_put(&key, bytes, None).await {
                tracing::warn!(%reporter, error = %e, "cannot record an ended session; other data planes may still serve it");
            }
        }
    });
    tx
}

/// The ended sessions in `status`, published whenever they change.
pub fn follow(mut status: watch::Receiver<Arc<Status>>) -> watch::Receiver<Ended> {
    let of = |s: &Status| -> Ended {
        Arc::new(
            s.ended
                .iter()
                .map(|(k, r)| (k.clone(), r.expires_unix))
                .collect(),
        )
    };
    let (tx, rx) = watch::channel(of(&status.borrow_and_update()));
    tokio::spawn(async move {
        while status.changed().await.is_ok() {
            let next = of(&status.borrow_and_update());
            tx.send_if_modified(|cur| {
                let changed = **cur != *next;
                if changed {
                    *cur = next;
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

/// Removes expired entries every minute until aborted (every replica does; removing an
/// absent entry is fine).
pub fn prune(store: Arc<dyn Store>, ended: watch::Receiver<Ended>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PRUNE_EVERY);
        loop {
            tick.tick().await;
            let now = now_unix();
            let expired: Vec<String> = ended
                .borrow()
                .iter()
                .filter(|(_, &e)| e <= now)
                .map(|(k, _)| k.clone())
                .collect();
            for key in expired {
                if let Err(e) = store.status_delete(&format!("{FAMILY}/{key}"), None).await {
                    tracing::debug!(error = %e, "cannot remove an expired ended session; next time");
                    break;
                }
            }
        }
    })
}

/// What a stream has yet to send of `all`: entries not in `sent` and not expired (noted in
/// `sent` as they are returned).
pub fn unsent(all: &Ended, sent: &mut std::collections::HashSet<String>) -> Vec<EndedSession> {
    let now = now_unix();
    sent.retain(|k| all.contains_key(k));
    let news: Vec<EndedSession> = all
        .iter()
        .filter(|(k, &e)| e > now && !sent.contains(*k))
        .map(|(k, &e)| EndedSession {
            key: k.clone(),
            expires_unix: e,
        })
        .collect();
    sent.extend(news.iter().map(|e| e.key.clone()));
    news
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_is_sent_each_live_entry_once() {
        let later = now_unix() + 600;
        let mut all: BTreeMap<String, i64> = BTreeMap::new();
        all.insert("a".repeat(32), later);
        all.insert("b".repeat(32), 1);
        let mut sent = std::collections::HashSet::new();
        let first = unsent(&Arc::new(all.clone()), &mut sent);
        assert_eq!(first.len(), 1, "the expired one is not sent");
        all.insert("c".repeat(32), later);
        let second = unsent(&Arc::new(all.clone()), &mut sent);
        assert_eq!(
            second.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(),
            vec!["c".repeat(32)]
        );
        all.remove(&"a".repeat(32));
        assert!(unsent(&Arc::new(all), &mut sent).is_empty());
        assert_eq!(sent.len(), 1, "forgotten entries leave the sent set");
    }

    #[test]
    fn only_well_formed_keys_are_taken() {
        assert!(well_formed(&"0f".repeat(16)));
        assert!(!well_formed("../x"));
        assert!(!well_formed(&"g".repeat(32)));
    }
}
