//! Secret values at rest: the control plane seals every `Secret` value with a key from its
//! environment (`SWITCHBOARD_SECRET_KEY`, base64 of 32 bytes, the same on every replica)
//! before writing it to the store, and opens them only to build snapshots and to
//! authenticate discovery.
//!
//! ChaCha20-Poly1305 with a nonce derived from the value (HMAC-SHA256 over secret name,
//! key and value): sealing the same value twice gives the same text, so re-applying an
//! unchanged Secret changes nothing; the secret name and key are bound as associated data,
//! so a sealed value cannot be moved to another key.

use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::hmac;
use std::collections::BTreeMap;

/// Environment variable holding the key.
pub const KEY_ENV: &str = "SWITCHBOARD_SECRET_KEY";

/// Prefix of sealed values (format version 1).
/// What every sealed value starts with.
pub const SEALED_PREFIX: &str = "sb1:";
const PREFIX: &str = SEALED_PREFIX;

/// Why a value could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{KEY_ENV} is not set: the control plane needs it to store Secrets encrypted (make one with `openssl rand -base64 32`; every replica needs the same)")]
    NoKey,
    #[error("{KEY_ENV} must be base64 of exactly 32 bytes")]
    BadKey,
    #[error("Secret `{secret}` key `{key}` does not open with this control plane's {KEY_ENV} (sealed with another key, or altered)")]
    WontOpen { secret: String, key: String },
}

/// The sealing key.
pub struct SecretBox {
    aead: LessSafeKey,
    nonces: hmac::Key,
}

fn aad(secret: &str, key: &str) -> Vec<u8> {
    format!("{secret}\0{key}").into_bytes()
}

impl SecretBox {
    /// A box from base64 key material.
    pub fn from_base64(text: &str) -> Result<SecretBox, SecretError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| SecretError::BadKey)?;
        if bytes.len() != 32 {
            return Err(SecretError::BadKey);
        }
        let aead = LessSafeKey::new(
            UnboundKey::new(&CHACHA20_POLY1305, &bytes).map_err(|_| SecretError::BadKey)?,
        );
        Ok(SecretBox {
            aead,
            nonces: hmac::Key::new(hmac::HMAC_SHA256, &bytes),
        })
    }

    /// The box from `SWITCHBOARD_SECRET_KEY`, or `None` when it is unset.
    pub fn from_env() -> Result<Option<SecretBox>, SecretError> {
        match std::env::var(KEY_ENV) {
            Ok(v) if !v.trim().is_empty() => Self::from_base64(&v).map(Some),
            _ => Ok(None),
        }
    }

    /// Seals `value` stored under `secret`/`key`.
    pub fn seal(&self, secret: &str, key: &str, value: &str) -> String {
        let ad = aad(secret, key);
        let mut mac_input = ad.clone();
        mac_input.push(0);
        mac_input.extend_from_slice(value.as_bytes());
        let tag = hmac::sign(&self.nonces, &mac_input);
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&tag.as_ref()[..NONCE_LEN]);
        let mut buf = value.as_bytes().to_vec();
        // Sealing in place cannot fail for inputs this small.
        let _ = self.aead.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(ad),
            &mut buf,
        );
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(out)
        )
    }

    /// Opens a value sealed by [`SecretBox::seal`] under the same `secret`/`key`.
    pub fn open(&self, secret: &str, key: &str, sealed: &str) -> Result<String, SecretError> {
        let wont = || SecretError::WontOpen {
            secret: secret.to_string(),
            key: key.to_string(),
        };
        let raw = sealed
            .strip_prefix(PREFIX)
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .ok_or_else(wont)?;
        if raw.len() < NONCE_LEN {
            return Err(wont());
        }
        let (nonce, rest) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| wont())?;
        let mut buf = rest.to_vec();
        let plain = self
            .aead
            .open_in_place(nonce, Aad::from(aad(secret, key)), &mut buf)
            .map_err(|_| wont())?;
        String::from_utf8(plain.to_vec()).map_err(|_| wont())
    }

    /// Every value of a sealed `Secret`, opened.
    pub fn open_all(
        &self,
        secret: &str,
        sealed: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, SecretError> {
        sealed
            .iter()
            .map(|(k, v)| Ok((k.clone(), self.open(secret, k, v)?)))
            .collect()
    }
}

/// Secret name -> key -> plain value.
pub type Opened = BTreeMap<String, BTreeMap<String, String>>;

/// Every `Secret` in `set`, opened. A value that does not open is logged and left out (the
/// upstreams that need it then fail to authenticate with a clear error).
pub fn open_set(set: &switchboard_config::ResourceSet, secret_box: Option<&SecretBox>) -> Opened {
    let mut out = Opened::new();
    for item in set.of_kind(switchboard_config::Kind::Secret) {
        let switchboard_config::Resource::Secret(s) = &item.resource else {
            continue;
        };
        let name = &s.metadata.name;
        let mut values = s.spec.data.clone();
        match secret_box {
            Some(b) => {
                for (k, v) in &s.spec.sealed {
                    match b.open(name, k, v) {
                        Ok(plain) => {
                            values.insert(k.clone(), plain);
                        }
                        Err(e) => tracing::error!(error = %e, "cannot open a stored secret"),
                    }
                }
            }
            None if !s.spec.sealed.is_empty() => {
                tracing::error!(secret = %name, "{}", SecretError::NoKey);
            }
            None => {}
        }
        out.insert(name.clone(), values);
    }
    out
}

/// An Upstream's credentials with its secrets filled in from `opened`.
pub fn resolve(
    spec: &switchboard_config::kinds::upstream::UpstreamSpec,
    opened: &Opened,
) -> Result<switchboard_upstream::Credentials, String> {
    let lookup = |r: &switchboard_config::kinds::secret::SecretRef| {
        opened.get(&r.secret).and_then(|s| s.get(&r.key)).cloned()
    };
    let auth = spec.auth.resolve(&lookup)?;
    let tls = switchboard_upstream::TlsSettings::for_upstream(spec, &lookup)?;
    Ok(switchboard_upstream::Credentials::new(&spec.headers, auth).with_tls(tls))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SecretBox {
        SecretBox::from_base64(&base64::engine::general_purpose::STANDARD.encode([7u8; 32]))
            .expect("key")
    }

    #[test]
    fn seals_deterministically_and_binds_the_key_name() {
        let b = key();
        let sealed = b.seal("gh", "token", "ghp_secret");
        assert!(sealed.starts_with("sb1:") && !sealed.contains("ghp_secret"));
        assert_eq!(sealed, b.seal("gh", "token", "ghp_secret"));
        assert_ne!(sealed, b.seal("gh", "token", "other"));
        assert_eq!(b.open("gh", "token", &sealed).expect("opens"), "ghp_secret");
        assert!(b.open("gh", "other-key", &sealed).is_err());
        let other =
            SecretBox::from_base64(&base64::engine::general_purpose::STANDARD.encode([8u8; 32]))
                .expect("key");
        assert!(other.open("gh", "token", &sealed).is_err());
        assert!(matches!(
            SecretBox::from_base64("c2hvcnQ="),
            Err(SecretError::BadKey)
        ));
    }
}
