//! What requests to an upstream carry to authenticate: fixed headers (the Upstream's
//! `headers` plus bearer, basic or secret headers resolved from Secrets) and, for OAuth2
//! client credentials, a token fetched from the token endpoint and renewed before it
//! expires. Tokens are cached per grant for the whole process, so a new snapshot does not
//! fetch them again.

use crate::client::UpstreamError;
use crate::tls::TlsSettings;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use switchboard_config::kinds::upstream::{OAuth2Grant, ResolvedAuth};

/// Renew a token this long before the token endpoint said it expires.
const RENEW_EARLY: Duration = Duration::from_secs(30);

/// Assumed lifetime when the token endpoint gives none.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);

/// Longest a token is kept, whatever the token endpoint says (an `expires_in` of any size
/// must not overflow the clock).
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// When a token issued at `now` with the token response `parsed` is fetched again: a little
/// before its `expires_in` (bounded), and not sooner than a second from now.
fn renew_at(now: Instant, parsed: &serde_json::Value) -> Instant {
    let lifetime = parsed
        .get("expires_in")
        .and_then(serde_json::Value::as_u64)
        .map_or(DEFAULT_LIFETIME, |secs| {
            Duration::from_secs(secs.min(MAX_LIFETIME.as_secs()))
        });
    now + lifetime
        .saturating_sub(RENEW_EARLY)
        .max(Duration::from_secs(1))
}

/// Headers and an optional OAuth2 grant; `Debug` never shows values.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// Header name -> value, sent as-is.
    pub headers: BTreeMap<String, String>,
    pub oauth2: Option<OAuth2Grant>,
    /// How https connections are checked and which client certificate they present
    /// (`None`: the platform's roots, no client certificate).
    pub tls: Option<TlsSettings>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("oauth2", &self.oauth2.as_ref().map(|o| &o.token_url))
            .field("tls", &self.tls)
            .finish()
    }
}

type TokenKey = (String, String, String, String, Vec<String>, Option<String>);

fn cache() -> &'static Mutex<HashMap<TokenKey, (String, Instant)>> {
    static CACHE: OnceLock<Mutex<HashMap<TokenKey, (String, Instant)>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

fn key_of(g: &OAuth2Grant) -> TokenKey {
    (
        g.token_url.clone(),
        g.client_id.clone(),
        g.client_secret.clone(),
        String::new(),
        g.scopes.clone(),
        g.audience.clone(),
    )
}

impl Credentials {
    /// Plain headers only (no secrets involved).
    pub fn from_headers(headers: &BTreeMap<String, String>) -> Credentials {
        Credentials {
            headers: headers.clone(),
            oauth2: None,
            tls: None,
        }
    }

    /// An Upstream's static `headers` plus its resolved `auth` (which wins on conflicts).
    pub fn new(headers: &BTreeMap<String, String>, auth: ResolvedAuth) -> Credentials {
        let mut all: BTreeMap<String, String> = headers
            .iter()
            .filter(|(k, _)| !auth.headers.contains_key(&k.to_ascii_lowercase()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        all.extend(auth.headers);
        Credentials {
            headers: all,
            oauth2: auth.oauth2,
            tls: None,
        }
    }

    /// The same credentials presenting `tls` on https connections.
    pub fn with_tls(mut self, tls: Option<TlsSettings>) -> Credentials {
        self.tls = tls;
        self
    }

    /// Every header to send now, fetching or renewing the OAuth2 token if needed.
    pub async fn current(
        &self,
        http: &reqwest::Client,
    ) -> Result<BTreeMap<String, String>, UpstreamError> {
        let mut out = self.headers.clone();
        if let Some(grant) = &self.oauth2 {
            let token = token(http, grant).await?;
            out.insert("authorization".into(), format!("Bearer {token}"));
        }
        Ok(out)
    }

    /// `req` with every header added.
    pub async fn apply(
        &self,
        http: &reqwest::Client,
        mut req: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, UpstreamError> {
        for (k, v) in self.current(http).await? {
            req = req.header(k, v);
        }
        Ok(req)
    }

    /// Notes the status an upstream answered with these credentials: a token it refuses
    /// (401: revoked, rotated) is dropped, so the next request fetches a new one.
    pub fn note_status(&self, status: u16) {
        if status == 401 {
            self.forget_token();
        }
    }

    /// Drops a cached OAuth2 token the upstream refused, so the next request fetches a new one.
    pub fn forget_token(&self) {
        if let Some(g) = &self.oauth2 {
            lock().remove(&key_of(g));
        }
    }
}

fn lock() -> std::sync::MutexGuard<'static, HashMap<TokenKey, (String, Instant)>> {
    cache().lock().unwrap_or_else(|e| e.into_inner())
}

/// One fetch at a time per grant: requests that find no valid token wait for the fetch
/// already under way instead of each asking the token endpoint.
fn fetch_lock(key: &TokenKey) -> std::sync::Arc<tokio::sync::Mutex<()>> {
    type Locks = Mutex<HashMap<TokenKey, std::sync::Arc<tokio::sync::Mutex<()>>>>;
    static LOCKS: OnceLock<Locks> = OnceLock::new();
    let mut locks = LOCKS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    locks.entry(key.clone()).or_default().clone()
}

/// The cached token for `key`, while it is valid.
fn cached(key: &TokenKey) -> Option<String> {
    lock()
        .get(key)
        .filter(|(_, until)| Instant::now() < *until)
        .map(|(token, _)| token.clone())
}

/// A cached token for `grant`, or a fresh one from its token endpoint.
async fn token(http: &reqwest::Client, grant: &OAuth2Grant) -> Result<String, UpstreamError> {
    let key = key_of(grant);
    if let Some(token) = cached(&key) {
        return Ok(token);
    }
    let fetching = fetch_lock(&key);
    let _one = fetching.lock().await;
    // Whoever held the lock before may have fetched it.
    if let Some(token) = cached(&key) {
        return Ok(token);
    }
    let url = grant.token_url.clone();
    let mut form = vec![("grant_type", "client_credentials".to_string())];
    if !grant.scopes.is_empty() {
        form.push(("scope", grant.scopes.join(" ")));
    }
    if let Some(a) = &grant.audience {
        form.push(("audience", a.clone()));
    }
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form.iter())
        .finish();
    let resp = http
        .post(&url)
        .basic_auth(&grant.client_id, Some(&grant.client_secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .body(body)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| UpstreamError::Unreachable {
            url: url.clone(),
            reason: format!("OAuth2 token endpoint: {e}"),
            connect: false,
        })?;
    let status = resp.status().as_u16();
    // A token response is small: more than this is not one.
    let read = crate::body::read_bounded(resp, 64 << 10).await;
    let text = read
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    if !(200..300).contains(&status) {
        return Err(UpstreamError::Status {
            url,
            status,
            body: format!(
                "OAuth2 token request refused: {}",
                text.chars().take(300).collect::<String>()
            ),
        });
    }
    let parsed: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| UpstreamError::Protocol {
            url: url.clone(),
            reason: format!("OAuth2 token response is not JSON: {e}"),
        })?;
    let token = parsed
        .get("access_token")
        .and_then(|t| t.as_str())
        .ok_or_else(|| UpstreamError::Protocol {
            url: url.clone(),
            reason: "OAuth2 token response has no access_token".into(),
        })?
        .to_string();
    let until = renew_at(Instant::now(), &parsed);
    lock().insert(key, (token.clone(), until));
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn any_expires_in_gives_a_renewal_time_without_overflow() {
        let now = Instant::now();
        let at = |v| renew_at(now, &v) - now;
        assert_eq!(at(json!({"expires_in": 3600})), Duration::from_secs(3570));
        assert_eq!(at(json!({})), Duration::from_secs(270));
        assert_eq!(at(json!({"expires_in": 0})), Duration::from_secs(1));
        // Once enough to panic adding it to the clock.
        assert_eq!(
            at(json!({"expires_in": u64::MAX})),
            MAX_LIFETIME - RENEW_EARLY
        );
        assert_eq!(at(json!({"expires_in": -5})), Duration::from_secs(270));
    }
}
