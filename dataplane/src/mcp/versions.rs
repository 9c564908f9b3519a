//! Protocol versions spoken to clients.

/// Session-based versions the gateway serves, newest first.
pub const SUPPORTED: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// The newest version the gateway serves.
pub const LATEST: &str = SUPPORTED[0];

/// The version to answer `initialize` with: the client's if we speak it, else our newest
/// (the client then decides whether it can continue).
pub fn negotiate(requested: Option<&str>) -> &'static str {
    requested
        .and_then(|r| SUPPORTED.iter().find(|v| **v == r).copied())
        .unwrap_or(LATEST)
}

/// Whether an `MCP-Protocol-Version` header names a version we serve.
pub fn is_supported(version: &str) -> bool {
    SUPPORTED.contains(&version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        assert_eq!(negotiate(Some("2025-06-18")), "2025-06-18");
        assert_eq!(negotiate(Some("1999-01-01")), LATEST);
        assert_eq!(negotiate(None), LATEST);
    }
}
