//! Gateway session ids. A session must keep working when consecutive requests land on
//! different data-plane replicas and across restarts, so the id carries everything a replica
//! needs (the virtual server, the negotiated version, the client's capabilities and the
//! upstream sessions opened for it) instead of living in one process's memory. It is sealed
//! (ChaCha20-Poly1305) with the key the snapshot carries, so clients can neither read the
//! upstream session ids nor forge a session. It is no bearer token for ever: it names the
//! principal that opened it (only they may use it) and when it expires, and the key that
//! seals it rotates (the snapshot carries the previous key too, to open ids sealed before).

use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// What a session id carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// Virtual server the session belongs to.
    #[serde(rename = "s")]
    pub server: String,
    /// Protocol version negotiated at initialize.
    #[serde(rename = "v")]
    pub version: String,
    /// The client's capabilities, offered to upstreams on its behalf.
    #[serde(rename = "c", default, skip_serializing_if = "Value::is_null")]
    pub capabilities: Value,
    /// Upstream sessions opened for this client, by upstream name.
    #[serde(rename = "u", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub upstreams: BTreeMap<String, UpstreamRef>,
    /// Makes every id unique.
    #[serde(rename = "n")]
    pub nonce: u64,
    /// Who opened it (see [`principal_tag`]); None for an anonymous client.
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// When it ends (Unix seconds); 0, as in ids sealed before expiry existed: ended.
    #[serde(rename = "x", default)]
    pub expires: u64,
}

/// One upstream session as the gateway session remembers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamRef {
    /// The upstream's `Mcp-Session-Id` (absent for stateless upstreams).
    #[serde(rename = "i", default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The version negotiated with the upstream.
    #[serde(rename = "v")]
    pub version: String,
    /// The upstream URL the session belongs to (a changed URL means a new session).
    #[serde(rename = "u")]
    pub url: String,
}

impl Session {
    /// A new session for `server` at `version`.
    pub fn new(server: &str, version: &str) -> Session {
        Session {
            server: server.to_string(),
            version: version.to_string(),
            capabilities: Value::Null,
            upstreams: BTreeMap::new(),
            nonce: fastrand::u64(..),
            principal: None,
            expires: 0,
        }
    }

    /// The same session, usable only by `subject` (empty: anonymous) until `lifetime` from
    /// now.
    pub fn bound(mut self, subject: &str, lifetime: std::time::Duration) -> Session {
        self.principal = principal_tag(subject);
        self.expires = unix_now().saturating_add(lifetime.as_secs());
        self
    }

    /// Whether `subject` may use the session now (it is theirs and has not expired); the
    /// reason when not.
    pub fn usable_by(&self, subject: &str) -> Result<(), Unusable> {
        if self.expires <= unix_now() {
            return Err(Unusable::Expired);
        }
        if self.principal != principal_tag(subject) {
            return Err(Unusable::OtherPrincipal);
        }
        Ok(())
    }
}

/// Why a sealed session cannot be used by this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unusable {
    /// Its lifetime is over.
    Expired,
    /// Someone else opened it.
    OtherPrincipal,
}

/// What a session keeps of its principal: a digest of the subject (the id is sealed, but
/// need not carry an e-mail address around); None for anonymous callers.
pub fn principal_tag(subject: &str) -> Option<String> {
    (!subject.is_empty()).then(|| digest(subject))
}

/// Seconds since the Unix epoch (the clock of [`crate::metrics::now_ms`]).
pub fn unix_now() -> u64 {
    u64::try_from(crate::metrics::now_ms() / 1000).unwrap_or(0)
}

/// Prefix of every id this build mints (lets a future format coexist). `sb2.` ids, which
/// named no principal and had no expiry, no longer open.
const PREFIX: &str = "sb3.";

/// Seals session ids with one key and opens them with it or the keys before it.
pub struct Sealer {
    /// The sealing key first, then older keys that still open.
    keys: Vec<LessSafeKey>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Default for Sealer {
    /// A sealer with this process's ephemeral key.
    fn default() -> Self {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(Sealer::ephemeral())
            .unwrap_or_default();
        // A 32-byte key is the only thing UnboundKey::new checks; ours always is one.
        Sealer::from_bytes(&bytes).expect("a freshly generated 32-byte key")
    }
}

/// Why a session key cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("session key must be 32 bytes of base64 (got {0})")]
pub struct BadKey(String);

impl Sealer {
    /// A sealer from a base64 key as snapshots carry it.
    pub fn from_base64(key: &str) -> Result<Sealer, BadKey> {
        Sealer::from_keys(key, &[])
    }

    /// A sealer that seals with `current` and also opens what `previous` keys sealed (all
    /// base64): a key rotation's overlap.
    pub fn from_keys(current: &str, previous: &[String]) -> Result<Sealer, BadKey> {
        let mut keys = Vec::with_capacity(1 + previous.len());
        for key in std::iter::once(current).chain(previous.iter().map(String::as_str)) {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(key.trim())
                .map_err(|e| BadKey(e.to_string()))?;
            keys.push(aead_key(&bytes)?);
        }
        Ok(Sealer { keys })
    }

    fn from_bytes(bytes: &[u8]) -> Result<Sealer, BadKey> {
        Ok(Sealer {
            keys: vec![aead_key(bytes)?],
        })
    }

    /// This process's own key, for snapshots that carry none (a standalone data plane):
    /// its sessions end with the process.
    pub fn ephemeral() -> &'static str {
        static KEY: OnceLock<String> = OnceLock::new();
        KEY.get_or_init(new_key)
    }

    /// The `Mcp-Session-Id` header value (visible ASCII, as the spec requires).
    pub fn seal(&self, session: &Session) -> String {
        self.seal_as(PREFIX, session)
    }

    /// Reads an id back; None for anything this key did not seal.
    pub fn open(&self, id: &str) -> Option<Session> {
        self.open_as(PREFIX, id)
    }

    /// Seals `value` into an opaque id starting with `prefix` (which also binds the id to
    /// its kind: an id of one kind never opens as another).
    pub fn seal_as<T: Serialize>(&self, prefix: &str, value: &T) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        // The system RNG does not fail on supported platforms; a zero nonce would still be
        // unique per (key, fresh session nonce) in practice, so do not panic over it.
        let _ = SystemRandom::new().fill(&mut nonce);
        let mut data = serde_json::to_vec(value).unwrap_or_default();
        let Some(key) = self.keys.first() else {
            return String::new();
        };
        if key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(prefix),
                &mut data,
            )
            .is_err()
        {
            return String::new();
        }
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        format!(
            "{prefix}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out)
        )
    }

    /// Reads back what [`Sealer::seal_as`] sealed with `prefix`; None for anything else.
    pub fn open_as<T: serde::de::DeserializeOwned>(&self, prefix: &str, id: &str) -> Option<T> {
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(id.strip_prefix(prefix)?)
            .ok()?;
        if raw.len() < NONCE_LEN {
            return None;
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        self.keys.iter().find_map(|key| {
            let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
            let mut sealed = sealed.to_vec();
            let plain = key
                .open_in_place(nonce, Aad::from(prefix), &mut sealed)
                .ok()?;
            serde_json::from_slice(plain).ok()
        })
    }
}

fn aead_key(bytes: &[u8]) -> Result<LessSafeKey, BadKey> {
    let unbound = UnboundKey::new(&CHACHA20_POLY1305, bytes)
        .map_err(|_| BadKey(format!("{} bytes", bytes.len())))?;
    Ok(LessSafeKey::new(unbound))
}

/// A fresh random key, base64 as snapshots carry it.
pub fn new_key() -> String {
    let mut key = [0u8; 32];
    let _ = SystemRandom::new().fill(&mut key);
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// A stand-in for a session id (or a principal) that no other shares (128 bits of its
/// SHA-256): what state kept for a session (replay buffers, ended sessions) is keyed by.
pub fn digest(id: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(id.as_bytes())[..16])
}

/// A short, stable stand-in for a session id in logs (the id itself is a credential).
pub fn fingerprint(id: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(id.as_bytes())[..6])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_round_trip_and_forgeries() {
        let sealer = Sealer::from_base64(&new_key()).expect("key");
        let mut s = Session::new("demo", "2025-06-18");
        s.upstreams.insert(
            "everything".into(),
            UpstreamRef {
                id: Some("abc".into()),
                version: "2025-06-18".into(),
                url: "http://127.0.0.1:1/mcp".into(),
            },
        );
        let id = sealer.seal(&s);
        assert!(id.bytes().all(|b| (0x21..=0x7e).contains(&b)));
        assert!(!id.contains("abc"), "upstream ids are not readable");
        assert_eq!(sealer.open(&id), Some(s));
        // Another key, garbage, or a flipped byte: not a session.
        let other = Sealer::from_base64(&new_key()).expect("key");
        assert_eq!(other.open(&id), None);
        assert_eq!(sealer.open("nope"), None);
        assert_eq!(sealer.open("sb2.!!!"), None);
        let mut tampered = id.into_bytes();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            sealer.open(&String::from_utf8(tampered).expect("ascii")),
            None
        );
        assert!(Sealer::from_base64("c2hvcnQ=").is_err());
    }

    #[test]
    fn a_rotated_key_still_opens_what_the_previous_one_sealed_but_no_older() {
        let (old, older, new) = (new_key(), new_key(), new_key());
        let before = Sealer::from_base64(&old).expect("key");
        let ancient = Sealer::from_base64(&older).expect("key");
        let after = Sealer::from_keys(&new, std::slice::from_ref(&old)).expect("keys");
        let s = Session::new("demo", "2025-06-18");
        assert_eq!(after.open(&before.seal(&s)), Some(s.clone()));
        assert_eq!(after.open(&ancient.seal(&s)), None);
        // New ids are sealed with the new key: the old one alone cannot open them.
        assert_eq!(before.open(&after.seal(&s)), None);
        assert_eq!(
            Sealer::from_base64(&new)
                .expect("key")
                .open(&after.seal(&s)),
            Some(s)
        );
    }

    #[test]
    fn a_session_is_its_principals_until_it_expires() {
        let s =
            Session::new("demo", "2025-06-18").bound("alice", std::time::Duration::from_secs(60));
        assert_eq!(s.usable_by("alice"), Ok(()));
        assert_eq!(s.usable_by("mallory"), Err(Unusable::OtherPrincipal));
        assert_eq!(s.usable_by(""), Err(Unusable::OtherPrincipal));
        let anonymous =
            Session::new("demo", "2025-06-18").bound("", std::time::Duration::from_secs(60));
        assert_eq!(anonymous.usable_by(""), Ok(()));
        assert_eq!(anonymous.usable_by("alice"), Err(Unusable::OtherPrincipal));
        let spent = Session::new("demo", "2025-06-18").bound("alice", std::time::Duration::ZERO);
        assert_eq!(spent.usable_by("alice"), Err(Unusable::Expired));
        // An id from before expiry existed carries none: it is over.
        assert_eq!(
            Session::new("demo", "2025-06-18").usable_by(""),
            Err(Unusable::Expired)
        );
    }
}
