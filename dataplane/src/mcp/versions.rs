//! Protocol versions spoken to clients.

/// Session-based versions the gateway serves (initialize handshake), newest first.
pub const SUPPORTED: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// Stateless versions the gateway serves (per-request envelope, `server/discover`).
pub const MODERN: [&str; 1] = ["2026-07-28"];

/// The newest session-based version the gateway serves.
pub const LATEST: &str = SUPPORTED[0];

/// The version to answer `initialize` with: the client's if we speak it, else our newest
/// (the client then decides whether it can continue).
pub fn negotiate(requested: Option<&str>) -> &'static str {
    requested
        .and_then(|r| SUPPORTED.iter().find(|v| **v == r).copied())
        .unwrap_or(LATEST)
}

/// Whether a version is one of the session-based ones we serve.
pub fn is_supported(version: &str) -> bool {
    SUPPORTED.contains(&version)
}

/// Whether a version is one of the stateless ones we serve.
pub fn is_modern(version: &str) -> bool {
    MODERN.contains(&version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        assert_eq!(negotiate(Some("2025-06-18")), "2025-06-18");
        assert_eq!(negotiate(Some("1999-01-01")), LATEST);
        assert_eq!(negotiate(Some("2026-07-28")), LATEST);
        assert_eq!(negotiate(None), LATEST);
        assert!(is_modern("2026-07-28") && !is_supported("2026-07-28"));
    }
}
