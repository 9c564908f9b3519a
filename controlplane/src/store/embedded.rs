//! The embedded single-node store: a redb file holding the records, a change log (for
//! watches from a revision) and the revision counter, all updated in one transaction.

use super::record::StoredValue;
use super::{
    parse_record_key, record_key, Change, Event, EventStream, Fence, Leadership, Listing, Record,
    Revision, StatusMap, StatusStream, Store, StoreError, Write,
};
use futures::StreamExt;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::{Arc, Mutex};
use switchboard_config::Kind;
use tokio::sync::{broadcast, mpsc};

const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("records");
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const SECRETS: TableDefinition<&str, &[u8]> = TableDefinition::new("secrets");
const STATUS: TableDefinition<&str, &[u8]> = TableDefinition::new("status");
const REVISION: &str = "revision";
const COMPACTED: &str = "compacted";

/// History kept for watchers that fall behind; older entries are compacted on write.
const KEEP_LOG: u64 = 10_000;

/// A stored record value: etcd keeps mod_revision for us, here we keep it ourselves.
#[derive(Serialize, Deserialize)]
struct EmbeddedValue {
    mod_revision: Revision,
    value: serde_json::Value,
}

/// One log entry: what a committed write changed.
#[derive(Serialize, Deserialize)]
enum LoggedChange {
    Put {
        key: String,
        generation: u64,
        resource: serde_json::Value,
    },
    Delete {
        key: String,
    },
}

/// A store in one local file, for `switchboard up` and single-node control planes.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    /// Serialises write + publish so watchers see batches in revision order.
    write_lock: Mutex<()>,
    changes: broadcast::Sender<Arc<Vec<Event>>>,
    /// The status table, mirrored in memory and published on every change.
    status: tokio::sync::watch::Sender<StatusMap>,
}

/// A counter from the meta table (0 when never written).
fn counter(meta: &impl ReadableTable<&'static str, u64>, key: &str) -> Result<u64, StoreError> {
    Ok(meta.get(key).map_err(io)?.map(|v| v.value()).unwrap_or(0))
}

fn io(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("embedded store: {e}"))
}

fn corrupt(key: impl Into<String>, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        key: key.into(),
        reason: e.to_string(),
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir` (file `registry.redb`).
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        use std::os::unix::fs::PermissionsExt;
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(io)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
        }
        let file = dir.join("registry.redb");
        let db = Database::create(&file).map_err(io)?;
        // Resources, sealed Secrets and the session key: for this user's eyes only.
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        let txn = db.begin_write().map_err(io)?;
        {
            txn.open_table(RECORDS).map_err(io)?;
            txn.open_table(LOG).map_err(io)?;
            txn.open_table(META).map_err(io)?;
            txn.open_table(SECRETS).map_err(io)?;
            txn.open_table(STATUS).map_err(io)?;
        }
        txn.commit().map_err(io)?;
        let mut status = std::collections::BTreeMap::new();
        {
            let txn = db.begin_read().map_err(io)?;
            let table = txn.open_table(STATUS).map_err(io)?;
            for entry in table.iter().map_err(io)? {
                let (k, v) = entry.map_err(io)?;
                status.insert(k.value().to_string(), v.value().to_vec());
            }
        }
        let (status, _) = tokio::sync::watch::channel(Arc::new(status));
        let (changes, _) = broadcast::channel(1024);
        Ok(EmbeddedStore {
            inner: Arc::new(Inner {
                db,
                write_lock: Mutex::new(()),
                changes,
                status,
            }),
        })
    }

    fn decode_record(key: &str, bytes: &[u8]) -> Result<Record, StoreError> {
        let (kind, name) = parse_record_key(key).ok_or_else(|| corrupt(key, "bad key"))?;
        let v: EmbeddedValue = serde_json::from_slice(bytes).map_err(|e| corrupt(key, e))?;
        let raw = serde_json::to_vec(&v.value).map_err(|e| corrupt(key, e))?;
        let (generation, json) = StoredValue::decode(&raw).map_err(|e| corrupt(key, e))?;
        Ok(Record {
            kind,
            name,
            generation,
            mod_revision: v.mod_revision,
            json,
        })
    }

    /// Holds the write lock (writes and compactions go one at a time, in revision order).
    fn serialize_writes(&self) -> Result<std::sync::MutexGuard<'_, ()>, StoreError> {
        self.inner
            .write_lock
            .lock()
            .map_err(|_| io("a writer panicked"))
    }

    fn list_blocking(&self) -> Result<Listing, StoreError> {
        let txn = self.inner.db.begin_read().map_err(io)?;
        let meta = txn.open_table(META).map_err(io)?;
        let revision = counter(&meta, REVISION)?;
        let table = txn.open_table(RECORDS).map_err(io)?;
        let mut records = Vec::new();
        for entry in table.iter().map_err(io)? {
            let (k, v) = entry.map_err(io)?;
            records.push(Self::decode_record(k.value(), v.value())?);
        }
        Ok(Listing { records, revision })
    }

    fn write_blocking(&self, writes: Vec<Write>) -> Result<Revision, StoreError> {
        let _serial = self.serialize_writes()?;
        let txn = self.inner.db.begin_write().map_err(io)?;
        let revision;
        let mut events = Vec::new();
        {
            let mut meta = txn.open_table(META).map_err(io)?;
            let mut records = txn.open_table(RECORDS).map_err(io)?;
            let mut log = txn.open_table(LOG).map_err(io)?;
            revision = counter(&meta, REVISION)? + 1;
            let mut logged = Vec::new();
            for w in &writes {
                let (kind, name) = w.target();
                let key = record_key(kind, name);
                let current = records
                    .get(key.as_str())
                    .map_err(io)?
                    .map(|v| Self::decode_record(&key, v.value()))
                    .transpose()?;
                if !w.expect().holds(current.as_ref()) {
                    return Err(StoreError::Conflict {
                        kind,
                        name: name.to_string(),
                    });
                }
                match w {
                    Write::Put {
                        generation, json, ..
                    } => {
                        let stored =
                            StoredValue::encode(*generation, json).map_err(|e| corrupt(&key, e))?;
                        let value: serde_json::Value =
                            serde_json::from_slice(&stored).map_err(|e| corrupt(&key, e))?;
                        let bytes = serde_json::to_vec(&EmbeddedValue {
                            mod_revision: revision,
                            value,
                        })
                        .map_err(|e| corrupt(&key, e))?;
                        records.insert(key.as_str(), bytes.as_slice()).map_err(io)?;
                        let resource: serde_json::Value =
                            serde_json::from_str(json).map_err(|e| corrupt(&key, e))?;
                        logged.push(LoggedChange::Put {
                            key: key.clone(),
                            generation: *generation,
                            resource,
                        });
                        events.push(Event {
                            revision,
                            change: Change::Put(Record {
                                kind,
                                name: name.to_string(),
                                generation: *generation,
                                mod_revision: revision,
                                json: json.clone(),
                            }),
                        });
                    }
                    Write::Delete { .. } => {
                        if current.is_some() {
                            records.remove(key.as_str()).map_err(io)?;
                            logged.push(LoggedChange::Delete { key: key.clone() });
                            events.push(Event {
                                revision,
                                change: Change::Delete {
                                    kind,
                                    name: name.to_string(),
                                },
                            });
                        }
                    }
                }
            }
            let entry = serde_json::to_vec(&logged).map_err(|e| corrupt("log", e))?;
            log.insert(revision, entry.as_slice()).map_err(io)?;
            meta.insert(REVISION, revision).map_err(io)?;
            if revision > KEEP_LOG && revision % 1000 == 0 {
                let upto = revision - KEEP_LOG;
                log.retain(|rev, _| rev > upto).map_err(io)?;
                meta.insert(COMPACTED, upto).map_err(io)?;
            }
        }
        txn.commit().map_err(io)?;
        // Nobody listening is fine.
        let _ = self.inner.changes.send(Arc::new(events));
        Ok(revision)
    }

    /// Logged batches after `after`, or `Compacted` when history no longer reaches back.
    fn history_blocking(&self, after: Revision) -> Result<Vec<Vec<Event>>, StoreError> {
        let txn = self.inner.db.begin_read().map_err(io)?;
        let meta = txn.open_table(META).map_err(io)?;
        let compacted = counter(&meta, COMPACTED)?;
        if after < compacted {
            return Err(StoreError::Compacted {
                requested: after + 1,
                compacted,
            });
        }
        let log = txn.open_table(LOG).map_err(io)?;
        let mut batches = Vec::new();
        for entry in log.range((after + 1)..).map_err(io)? {
            let (rev, bytes) = entry.map_err(io)?;
            let revision = rev.value();
            let logged: Vec<LoggedChange> =
                serde_json::from_slice(bytes.value()).map_err(|e| corrupt("log", e))?;
            let mut batch = Vec::new();
            for change in logged {
                batch.push(match change {
                    LoggedChange::Put {
                        key,
                        generation,
                        resource,
                    } => {
                        let (kind, name) =
                            parse_record_key(&key).ok_or_else(|| corrupt(&key, "bad key"))?;
                        Event {
                            revision,
                            change: Change::Put(Record {
                                kind,
                                name,
                                generation,
                                mod_revision: revision,
                                json: serde_json::to_string(&resource)
                                    .map_err(|e| corrupt(&key, e))?,
                            }),
                        }
                    }
                    LoggedChange::Delete { key } => {
                        let (kind, name) =
                            parse_record_key(&key).ok_or_else(|| corrupt(&key, "bad key"))?;
                        Event {
                            revision,
                            change: Change::Delete { kind, name },
                        }
                    }
                });
            }
            if !batch.is_empty() {
                batches.push(batch);
            }
        }
        Ok(batches)
    }

    fn compact_blocking(&self, revision: Revision) -> Result<(), StoreError> {
        let _serial = self.serialize_writes()?;
        let txn = self.inner.db.begin_write().map_err(io)?;
        {
            let mut log = txn.open_table(LOG).map_err(io)?;
            log.retain(|rev, _| rev > revision).map_err(io)?;
            let mut meta = txn.open_table(META).map_err(io)?;
            let current = counter(&meta, COMPACTED)?;
            meta.insert(COMPACTED, current.max(revision)).map_err(io)?;
        }
        txn.commit().map_err(io)
    }

    /// Sets (`Some`) or removes (`None`) a status entry, on disk and in the published map.
    fn status_blocking(&self, key: &str, value: Option<Vec<u8>>) -> Result<(), StoreError> {
        let _serial = self.serialize_writes()?;
        let txn = self.inner.db.begin_write().map_err(io)?;
        {
            let mut table = txn.open_table(STATUS).map_err(io)?;
            match &value {
                Some(v) => {
                    table.insert(key, v.as_slice()).map_err(io)?;
                }
                None => {
                    table.remove(key).map_err(io)?;
                }
            }
        }
        txn.commit().map_err(io)?;
        self.inner.status.send_modify(|map| {
            let map = Arc::make_mut(map);
            match value {
                Some(v) => map.insert(key.to_string(), v),
                None => map.remove(key),
            };
        });
        Ok(())
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(EmbeddedStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || f(this))
            .await
            .map_err(|e| io(format!("store task failed: {e}")))?
    }
}

#[async_trait::async_trait]
impl Store for EmbeddedStore {
    async fn list(&self) -> Result<Listing, StoreError> {
        self.blocking(|s| s.list_blocking()).await
    }

    async fn get(&self, kind: Kind, name: &str) -> Result<Option<Record>, StoreError> {
        let key = record_key(kind, name);
        self.blocking(move |s| {
            let txn = s.inner.db.begin_read().map_err(io)?;
            let table = txn.open_table(RECORDS).map_err(io)?;
            let value = table.get(key.as_str()).map_err(io)?;
            value
                .map(|v| Self::decode_record(&key, v.value()))
                .transpose()
        })
        .await
    }

    async fn write(&self, writes: Vec<Write>) -> Result<Revision, StoreError> {
        self.blocking(move |s| s.write_blocking(writes)).await
    }

    async fn secret(&self, name: &str, fresh: &[u8]) -> Result<Vec<u8>, StoreError> {
        let (name, fresh) = (name.to_string(), fresh.to_vec());
        self.blocking(move |s| {
            let _guard = s.serialize_writes()?;
            let txn = s.inner.db.begin_write().map_err(io)?;
            let value = {
                let mut table = txn.open_table(SECRETS).map_err(io)?;
                let existing = table
                    .get(name.as_str())
                    .map_err(io)?
                    .map(|v| v.value().to_vec());
                match existing {
                    Some(v) => v,
                    None => {
                        table.insert(name.as_str(), fresh.as_slice()).map_err(io)?;
                        fresh
                    }
                }
            };
            txn.commit().map_err(io)?;
            Ok(value)
        })
        .await
    }

    async fn watch(&self, after: Revision) -> Result<EventStream, StoreError> {
        // Subscribe before reading history so nothing committed in between is missed;
        // revisions already delivered from history are skipped when they come live.
        let mut live = self.inner.changes.subscribe();
        let history = self.blocking(move |s| s.history_blocking(after)).await?;
        let (tx, rx) = mpsc::channel::<Result<Vec<Event>, StoreError>>(64);
        let this = self.clone();
        tokio::spawn(async move {
            let mut last = after;
            for batch in history {
                last = batch.last().map(|e| e.revision).unwrap_or(last);
                if tx.send(Ok(batch)).await.is_err() {
                    return;
                }
            }
            loop {
                match live.recv().await {
                    Ok(batch) => {
                        let Some(rev) = batch.first().map(|e| e.revision) else {
                            continue;
                        };
                        if rev <= last {
                            continue;
                        }
                        last = rev;
                        if tx.send(Ok(batch.as_ref().clone())).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Too slow for the live feed: catch up from the log.
                        let from = last;
                        match this.blocking(move |s| s.history_blocking(from)).await {
                            Ok(batches) => {
                                for batch in batches {
                                    last = batch.last().map(|e| e.revision).unwrap_or(last);
                                    if tx.send(Ok(batch)).await.is_err() {
                                        return;
                                    }
                                }
                            }
                            Err(e) => {
                                let _ = tx.send(Err(e)).await;
                                return;
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(tokio_stream::wrappers::ReceiverStream::new(rx).boxed())
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.blocking(move |s| s.compact_blocking(revision)).await
    }

    async fn status_put(
        &self,
        key: &str,
        value: Vec<u8>,
        _fence: Option<&Fence>,
    ) -> Result<(), StoreError> {
        // One process owns the file (redb locks it), so it is always the leader.
        let key = key.to_string();
        self.blocking(move |s| s.status_blocking(&key, Some(value)))
            .await
    }

    async fn status_delete(&self, key: &str, _fence: Option<&Fence>) -> Result<(), StoreError> {
        let key = key.to_string();
        self.blocking(move |s| s.status_blocking(&key, None)).await
    }

    async fn status_follow(&self) -> Result<StatusStream, StoreError> {
        let rx = self.inner.status.subscribe();
        Ok(tokio_stream::wrappers::WatchStream::new(rx).map(Ok).boxed())
    }

    async fn campaign(&self, holder: &str) -> Result<Leadership, StoreError> {
        // The only process with this file open leads, until it drops the leadership.
        let (lost_tx, lost_rx) = tokio::sync::watch::channel(false);
        let (resign, resigned) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = resigned.await;
            let _ = lost_tx.send(true);
        });
        Ok(Leadership::new(
            Fence {
                key: "embedded".into(),
                holder: holder.to_string(),
            },
            lost_rx,
            resign,
        ))
    }
}
