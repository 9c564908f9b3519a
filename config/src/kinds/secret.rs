//! `Secret`: credentials that other resources reference by name and key (an Upstream's
//! bearer token, basic password, custom header or OAuth2 client secret). Users write plain
//! values under `data`; the control plane seals them (`sealed`) before they reach the store
//! and never prints either.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A named set of secret values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecretSpec {
    /// Plain values by key, as applied (the store never holds these).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
    /// Values by key, encrypted by the control plane with its secret key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sealed: BTreeMap<String, String>,
    /// Data planes placed here receive the whole Secret in their snapshot, for a TLS
    /// listener certificate (`tls.crt` and `tls.key`, served with `--tls-secret NAME`).
    /// No other data plane ever receives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_by: Option<super::virtual_server::Placement>,
}

impl SecretSpec {
    /// Whether the secret holds a value under `key`, sealed or not.
    pub fn has_key(&self, key: &str) -> bool {
        self.data.contains_key(key) || self.sealed.contains_key(key)
    }
}

/// A reference to one value of a `Secret`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecretRef {
    /// Name of the `Secret`.
    pub secret: String,
    /// Key inside it.
    pub key: String,
}
