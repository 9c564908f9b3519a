//! The etcd store: records under `{prefix}/resources/Kind/name`, writes as transactions
//! guarded by each key's mod_revision, watches resumed from a revision.

use super::record::StoredValue;
use super::{
    parse_record_key, record_key, Change, Event, EventStream, Expect, Fence, Leadership, Listing,
    Record, Revision, StatusStream, Store, StoreError, Write,
};
use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, KeyValue, Txn, TxnOp, WatchOptions,
};
use futures::StreamExt;
use switchboard_config::Kind;

/// A store backed by an etcd cluster (v3 API).
#[derive(Clone)]
pub struct EtcdStore {
    pub(super) client: Client,
    /// `{prefix}/resources/`, with exactly one slash between the parts.
    resources: String,
    /// `{prefix}/secrets/`: registry-wide secrets such as the session key.
    secrets: String,
    /// `{prefix}/status/`: discovery status (see [`super::status`]).
    pub(super) status: String,
    /// `{prefix}/leader/discovery`: held under a lease by the discovery leader.
    pub(super) leader: String,
}

pub(super) fn unavailable(e: etcd_client::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn to_i64(rev: Revision) -> i64 {
    i64::try_from(rev).unwrap_or(i64::MAX)
}

fn to_rev(rev: i64) -> Revision {
    u64::try_from(rev).unwrap_or(0)
}

/// How the control plane reaches etcd: TLS (its CA, and a client certificate when etcd
/// asks for one) and an etcd user. Debug output never shows the key or the password.
#[derive(Clone, Default)]
pub struct EtcdAccess {
    pub ca_pem: Option<String>,
    pub identity: Option<(String, String)>,
    /// User name and password.
    pub user: Option<(String, String)>,
}

impl std::fmt::Debug for EtcdAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdAccess")
            .field("tls", &self.ca_pem.is_some())
            .field("client_certificate", &self.identity.is_some())
            .field("user", &self.user.as_ref().map(|(u, _)| u))
            .finish()
    }
}

impl EtcdStore {
    /// Connects to `endpoints` (e.g. `http://127.0.0.1:2379`); keys live under `prefix`.
    pub async fn connect(endpoints: &[String], prefix: &str) -> Result<Self, StoreError> {
        Self::connect_with(endpoints, prefix, &EtcdAccess::default()).await
    }

    /// The same, over TLS and as an etcd user when `access` says so.
    pub async fn connect_with(
        endpoints: &[String],
        prefix: &str,
        access: &EtcdAccess,
    ) -> Result<Self, StoreError> {
        let mut options = etcd_client::ConnectOptions::new();
        if let Some(ca) = &access.ca_pem {
            let mut tls = etcd_client::TlsOptions::new()
                .ca_certificate(etcd_client::Certificate::from_pem(ca));
            if let Some((cert, key)) = &access.identity {
                tls = tls.identity(etcd_client::Identity::from_pem(cert, key));
            }
            options = options.with_tls(tls);
        }
        if let Some((user, password)) = &access.user {
            options = options.with_user(user, password);
        }
        let options = options
            .with_connect_timeout(std::time::Duration::from_secs(5))
            .with_timeout(std::time::Duration::from_secs(10))
            .with_keep_alive(
                std::time::Duration::from_secs(10),
                std::time::Duration::from_secs(5),
            );
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(unavailable)?;
        let resources = format!("{}/resources/", prefix.trim_end_matches('/'));
        let root = prefix.trim_end_matches('/');
        Ok(EtcdStore {
            client,
            resources,
            secrets: format!("{root}/secrets/"),
            status: format!("{root}/status/"),
            leader: format!("{root}/leader/discovery"),
        })
    }

    fn key(&self, kind: Kind, name: &str) -> String {
        format!("{}{}", self.resources, record_key(kind, name))
    }

    fn record(&self, kv: &KeyValue) -> Result<Record, StoreError> {
        let key = String::from_utf8_lossy(kv.key()).into_owned();
        let corrupt = |reason: String| StoreError::Corrupt {
            key: key.clone(),
            reason,
        };
        let (kind, name) = key
            .strip_prefix(&self.resources)
            .and_then(parse_record_key)
            .ok_or_else(|| corrupt("not a resource key".into()))?;
        let (generation, json) =
            StoredValue::decode(kv.value()).map_err(|e| corrupt(e.to_string()))?;
        Ok(Record {
            kind,
            name,
            generation,
            mod_revision: to_rev(kv.mod_revision()),
            json,
        })
    }

    fn compare(&self, w: &Write) -> Option<Compare> {
        let (kind, name) = w.target();
        let key = self.key(kind, name);
        match w.expect() {
            Expect::Any => None,
            // A key that does not exist has create_revision 0.
            Expect::Absent => Some(Compare::create_revision(key, CompareOp::Equal, 0)),
            Expect::ModRevision(r) => Some(Compare::mod_revision(key, CompareOp::Equal, to_i64(r))),
        }
    }
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    async fn list(&self) -> Result<Listing, StoreError> {
        let mut client = self.client.clone();
        let resp = client
            .get(
                self.resources.as_str(),
                Some(GetOptions::new().with_prefix()),
            )
            .await
            .map_err(unavailable)?;
        let revision = resp.header().map(|h| to_rev(h.revision())).unwrap_or(0);
        let records = resp
            .kvs()
            .iter()
            .map(|kv| self.record(kv))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Listing { records, revision })
    }

    async fn secret(&self, name: &str, fresh: &[u8]) -> Result<Vec<u8>, StoreError> {
        let key = format!("{}{name}", self.secrets);
        // Create if absent, then read whichever value won, in one transaction.
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.clone(), fresh, None)])
            .or_else([TxnOp::get(key.clone(), None)]);
        let mut client = self.client.clone();
        let resp = client.txn(txn).await.map_err(unavailable)?;
        if resp.succeeded() {
            return Ok(fresh.to_vec());
        }
        for op in resp.op_responses() {
            if let etcd_client::TxnOpResponse::Get(get) = op {
                if let Some(kv) = get.kvs().first() {
                    return Ok(kv.value().to_vec());
                }
            }
        }
        Err(StoreError::Corrupt {
            key,
            reason: "secret vanished while being read".into(),
        })
    }

    async fn get(&self, kind: Kind, name: &str) -> Result<Option<Record>, StoreError> {
        let mut client = self.client.clone();
        let resp = client
            .get(self.key(kind, name), None)
            .await
            .map_err(unavailable)?;
        resp.kvs().first().map(|kv| self.record(kv)).transpose()
    }

    async fn write(&self, writes: Vec<Write>) -> Result<Revision, StoreError> {
        let mut compares = Vec::new();
        let mut ops = Vec::new();
        for w in &writes {
            compares.extend(self.compare(w));
            match w {
                Write::Put {
                    kind,
                    name,
                    generation,
                    json,
                    ..
                } => {
                    let value = StoredValue::encode(*generation, json).map_err(|e| {
                        StoreError::Corrupt {
                            key: record_key(*kind, name),
                            reason: format!("resource JSON does not encode: {e}"),
                        }
                    })?;
                    ops.push(TxnOp::put(self.key(*kind, name), value, None));
                }
                Write::Delete { kind, name, .. } => {
                    ops.push(TxnOp::delete(self.key(*kind, name), None));
                }
            }
        }
        let txn = Txn::new().when(compares).and_then(ops);
        let mut client = self.client.clone();
        let resp = client.txn(txn).await.map_err(unavailable)?;
        if !resp.succeeded() {
            // Name the first record whose expectation no longer holds.
            for w in &writes {
                let (kind, name) = w.target();
                let current = self.get(kind, name).await?;
                if !w.expect().holds(current.as_ref()) {
                    return Err(StoreError::Conflict {
                        kind,
                        name: name.to_string(),
                    });
                }
            }
            let (kind, name) = writes
                .first()
                .map(|w| (w.target().0, w.target().1.to_string()))
                .unwrap_or((Kind::Upstream, String::new()));
            return Err(StoreError::Conflict { kind, name });
        }
        Ok(resp.header().map(|h| to_rev(h.revision())).unwrap_or(0))
    }

    async fn watch(&self, after: Revision) -> Result<EventStream, StoreError> {
        let mut client = self.client.clone();
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(to_i64(after + 1));
        let stream = client
            .watch(self.resources.as_str(), Some(options))
            .await
            .map_err(unavailable)?;
        let this = self.clone();
        // The request half must stay alive for the watch to stay open: keep it in the state.
        let (sender, responses) = stream.split();
        let events = futures::stream::unfold(
            (responses, sender, this, after, false),
            |(mut responses, sender, this, after, done)| async move {
                if done {
                    return None;
                }
                loop {
                    let msg = match responses.message().await {
                        Ok(Some(msg)) => msg,
                        Ok(None) => {
                            let e = StoreError::Unavailable("etcd closed the watch".into());
                            return Some((Err(e), (responses, sender, this, after, true)));
                        }
                        Err(e) => {
                            return Some((
                                Err(unavailable(e)),
                                (responses, sender, this, after, true),
                            ))
                        }
                    };
                    if msg.compact_revision() != 0 {
                        let e = StoreError::Compacted {
                            requested: after + 1,
                            compacted: to_rev(msg.compact_revision()),
                        };
                        return Some((Err(e), (responses, sender, this, after, true)));
                    }
                    if msg.canceled() {
                        let e = StoreError::Unavailable(format!(
                            "etcd cancelled the watch: {}",
                            msg.cancel_reason()
                        ));
                        return Some((Err(e), (responses, sender, this, after, true)));
                    }
                    if msg.events().is_empty() {
                        continue; // created / progress notifications
                    }
                    let batch = msg
                        .events()
                        .iter()
                        .filter_map(|ev| {
                            let kv = ev.kv()?;
                            let revision = to_rev(kv.mod_revision());
                            Some(match ev.event_type() {
                                EventType::Put => this.record(kv).map(|r| Event {
                                    revision,
                                    change: Change::Put(r),
                                }),
                                EventType::Delete => {
                                    let key = String::from_utf8_lossy(kv.key()).into_owned();
                                    key.strip_prefix(&this.resources)
                                        .and_then(parse_record_key)
                                        .map(|(kind, name)| Event {
                                            revision,
                                            change: Change::Delete { kind, name },
                                        })
                                        .ok_or(StoreError::Corrupt {
                                            key,
                                            reason: "not a resource key".into(),
                                        })
                                }
                            })
                        })
                        .collect::<Result<Vec<_>, _>>();
                    let last = batch
                        .as_ref()
                        .ok()
                        .and_then(|b| b.last().map(|e| e.revision))
                        .unwrap_or(after);
                    return Some((batch, (responses, sender, this, last, false)));
                }
            },
        );
        Ok(events.boxed())
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let mut client = self.client.clone();
        client
            .compact(to_i64(revision), None)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn status_put(
        &self,
        key: &str,
        value: Vec<u8>,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError> {
        let op = TxnOp::put(format!("{}{key}", self.status), value, None);
        self.fenced(op, fence).await
    }

    async fn status_delete(&self, key: &str, fence: Option<&Fence>) -> Result<(), StoreError> {
        let op = TxnOp::delete(format!("{}{key}", self.status), None);
        self.fenced(op, fence).await
    }

    async fn status_follow(&self) -> Result<StatusStream, StoreError> {
        self.follow_status().await
    }

    async fn campaign(&self, holder: &str) -> Result<Leadership, StoreError> {
        self.campaign_for(holder).await
    }
}
