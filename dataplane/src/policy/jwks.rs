//! JWKS documents, fetched on first use and cached for the whole process (a new snapshot
//! does not fetch them again): re-fetched after the provider's refresh interval, and at once
//! (at most once a second) when a token names a `kid` the cached set lacks, so key rotation
//! needs no restart. A failed fetch keeps serving the keys it had, and while one request
//! refreshes a set, the others go on with the keys there are instead of queueing behind it
//! (only a request for a `kid` the set lacks, or the very first fetch, waits for it).

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard_upstream::TlsSettings;

/// Least time between two fetches of one document for unknown `kid`s.
const MIN_REFETCH: Duration = Duration::from_secs(1);
/// Time allowed for one fetch.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The usable keys of one JWKS document.
#[derive(Default)]
pub struct KeySet {
    keys: Vec<(Option<String>, DecodingKey)>,
}

impl KeySet {
    /// Parses a JWKS document, skipping keys this build cannot use.
    pub fn parse(doc: &Value) -> Result<KeySet, String> {
        let keys = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("not a JWKS document (no `keys` array)")?;
        let mut out = KeySet::default();
        for k in keys {
            let parsed = serde_json::from_value::<Jwk>(k.clone())
                .map_err(|e| e.to_string())
                .and_then(|jwk| {
                    let key = DecodingKey::from_jwk(&jwk).map_err(|e| e.to_string())?;
                    Ok((jwk.common.key_id.clone(), key))
                });
            match parsed {
                Ok(entry) => out.keys.push(entry),
                Err(e) => tracing::debug!(error = %e, "skipping a JWKS key"),
            }
        }
        Ok(out)
    }

    fn has(&self, kid: &str) -> bool {
        self.keys.iter().any(|(k, _)| k.as_deref() == Some(kid))
    }

    /// The keys that could have signed a token with this `kid` and `alg`.
    pub fn matching(&self, kid: Option<&str>, alg: Algorithm) -> Vec<DecodingKey> {
        self.keys
            .iter()
            .filter(|(k, key)| {
                key.family() == alg.family() && (kid.is_none() || k.as_deref() == kid)
            })
            .map(|(_, key)| key.clone())
            .collect()
    }
}

struct Fetched {
    /// Last fetch attempt.
    at: Instant,
    /// When to fetch again regardless of `kid`s.
    due: Instant,
    set: Arc<KeySet>,
}

#[derive(Default)]
struct Entry {
    state: Mutex<Option<Fetched>>,
    /// One fetch at a time per document.
    fetching: tokio::sync::Mutex<()>,
}

impl Entry {
    fn current(&self) -> Option<(Instant, Instant, Arc<KeySet>)> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.as_ref().map(|f| (f.at, f.due, f.set.clone()))
    }

    fn store(&self, set: Arc<KeySet>, due_in: Duration) {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        *state = Some(Fetched {
            at: now,
            due: now + due_in,
            set,
        });
    }
}

/// TLS settings by fingerprint (`None`: the platform's roots).
type TlsKey = Option<[u8; 32]>;

/// Every JWKS document this data plane uses, by URL (and TLS settings).
#[derive(Default)]
pub struct JwksCache {
    /// HTTP clients by TLS settings.
    http: Mutex<HashMap<TlsKey, reqwest::Client>>,
    entries: Mutex<HashMap<(String, TlsKey), Arc<Entry>>>,
}

impl JwksCache {
    /// The keys at `url`, fetched when missing, older than `every`, or lacking `kid`.
    pub async fn keys(
        &self,
        url: &str,
        tls: Option<&TlsSettings>,
        every: Duration,
        kid: Option<&str>,
    ) -> Result<Arc<KeySet>, String> {
        let fingerprint = tls.map(TlsSettings::fingerprint);
        let entry = {
            let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            entries
                .entry((url.to_string(), fingerprint))
                .or_default()
                .clone()
        };
        let needs_fetch = |current: &Option<(Instant, Instant, Arc<KeySet>)>| match current {
            None => true,
            Some((at, due, set)) => {
                Instant::now() >= *due
                    || (kid.is_some_and(|k| !set.has(k)) && at.elapsed() >= MIN_REFETCH)
            }
        };
        let current = entry.current();
        if !needs_fetch(&current) {
            return current.map(|(_, _, s)| s).ok_or_else(|| "no keys".into());
        }
        let _one = match (&current, entry.fetching.try_lock()) {
            (_, Ok(guard)) => guard,
            // A refresh is under way: the keys there are still verify what they verified,
            // unless this token needs a key they lack.
            (Some((_, _, set)), Err(_)) if kid.is_none_or(|k| set.has(k)) => {
                return Ok(set.clone());
            }
            (_, Err(_)) => entry.fetching.lock().await,
        };
        // Someone else may have fetched while we waited.
        let current = entry.current();
        if !needs_fetch(&current) {
            return current.map(|(_, _, s)| s).ok_or_else(|| "no keys".into());
        }
        match self.fetch(url, tls).await {
            Ok(set) => {
                let set = Arc::new(set);
                entry.store(set.clone(), every);
                tracing::info!(%url, keys = set.keys.len(), "JWKS fetched");
                Ok(set)
            }
            Err(e) => {
                tracing::warn!(%url, error = %e, "cannot fetch JWKS");
                match current {
                    // Keep verifying with the keys we had; try again soon.
                    Some((_, _, set)) => {
                        entry.store(set.clone(), MIN_REFETCH);
                        Ok(set)
                    }
                    None => Err(format!("JWKS at {url}: {e}")),
                }
            }
        }
    }

    /// The client for `tls` (kept, so its connections are reused).
    fn http(&self, tls: Option<&TlsSettings>) -> Result<reqwest::Client, String> {
        let key = tls.map(TlsSettings::fingerprint);
        let mut clients = self.http.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let client = switchboard_upstream::tls::http_client(Some(FETCH_TIMEOUT), tls)
            .map_err(|e| e.to_string())?;
        clients.insert(key, client.clone());
        Ok(client)
    }

    async fn fetch(&self, url: &str, tls: Option<&TlsSettings>) -> Result<KeySet, String> {
        let http = self.http(tls)?;
        let resp = tokio::time::timeout(FETCH_TIMEOUT, http.get(url).send())
            .await
            .map_err(|_| format!("no answer within {FETCH_TIMEOUT:?}"))?
            .map_err(|e| switchboard_upstream::describe(&e))?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status().as_u16()));
        }
        let doc: Value = tokio::time::timeout(FETCH_TIMEOUT, resp.json())
            .await
            .map_err(|_| format!("no answer within {FETCH_TIMEOUT:?}"))?
            .map_err(|e| format!("not JSON: {e}"))?;
        KeySet::parse(&doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_refresh_holds_up_one_request_not_all() {
        // The provider answers the first fetch at once and holds every later one until told.
        let served = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(tokio::sync::Notify::new());
        let (count, held) = (served.clone(), release.clone());
        let app = axum::Router::new().route(
            "/jwks",
            get(move || {
                let n = count.fetch_add(1, Ordering::SeqCst);
                let held = held.clone();
                async move {
                    if n > 0 {
                        held.notified().await;
                    }
                    axum::Json(serde_json::json!({"keys": []}))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/jwks", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let cache = Arc::new(JwksCache::default());
        // Refreshed on every use from now on.
        cache
            .keys(&url, None, Duration::ZERO, None)
            .await
            .expect("first fetch");
        let (done, mut finished) = tokio::sync::mpsc::unbounded_channel();
        for _ in 0..10 {
            let (cache, url, done) = (cache.clone(), url.clone(), done.clone());
            tokio::spawn(async move {
                let got = cache.keys(&url, None, Duration::ZERO, None).await;
                let _ = done.send(got.is_ok());
            });
        }
        // Nine answer with the keys there are while the tenth waits for the provider.
        for _ in 0..9 {
            let ok = tokio::time::timeout(Duration::from_secs(10), finished.recv())
                .await
                .expect("not queued behind the refresh");
            assert_eq!(ok, Some(true));
        }
        assert!(finished.try_recv().is_err(), "the refreshing one waits");
        release.notify_one();
        let last = tokio::time::timeout(Duration::from_secs(10), finished.recv())
            .await
            .expect("the refresh ends once the provider answers");
        assert_eq!(last, Some(true));
        assert_eq!(
            served.load(Ordering::SeqCst),
            2,
            "one refresh for ten requests"
        );
    }
}
