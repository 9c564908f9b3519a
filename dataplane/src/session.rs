//! Gateway session ids. A session must keep working when consecutive requests land on
//! different data-plane replicas, so the id carries what a replica needs (today: the virtual
//! server and the negotiated protocol version) instead of living in one process's memory.
//!
//! Not yet sealed: the id holds nothing secret today. It gets sealed with a key from the
//! snapshot when upstream session ids move into it (issue #4, upstream sessions).

use base64::Engine;
use serde::{Deserialize, Serialize};

/// What a session id carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Virtual server the session belongs to.
    #[serde(rename = "s")]
    pub server: String,
    /// Protocol version negotiated at initialize.
    #[serde(rename = "v")]
    pub version: String,
    /// Makes every id unique.
    #[serde(rename = "n")]
    pub nonce: u64,
}

/// Prefix of every id this build mints (lets a future format coexist).
const PREFIX: &str = "sb1.";

impl Session {
    /// A new session for `server` at `version`.
    pub fn new(server: &str, version: &str) -> Session {
        Session {
            server: server.to_string(),
            version: version.to_string(),
            nonce: fastrand::u64(..),
        }
    }

    /// The `Mcp-Session-Id` header value (visible ASCII, as the spec requires).
    pub fn to_id(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
        )
    }

    /// Reads an id back; None for anything this gateway did not mint.
    pub fn from_id(id: &str) -> Option<Session> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(id.strip_prefix(PREFIX)?)
            .ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let s = Session::new("demo", "2025-06-18");
        let id = s.to_id();
        assert!(id.bytes().all(|b| (0x21..=0x7e).contains(&b)));
        assert_eq!(Session::from_id(&id), Some(s));
        assert_eq!(Session::from_id("nope"), None);
        assert_eq!(Session::from_id("sb1.!!!"), None);
    }
}
