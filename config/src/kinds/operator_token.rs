//! `OperatorToken`: a bearer token an operator sends to the control plane's admin API, with
//! the role it grants. Only its SHA-256 is stored; `switchboard token create` makes the
//! token, prints it once, and applies this resource; deleting it revokes the token.

use serde::{Deserialize, Serialize};

/// One operator's token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OperatorTokenSpec {
    /// `viewer` (reads), `editor` (also writes), or `admin` (also Secrets and tokens).
    pub role: String,
    /// Hex SHA-256 of the token.
    pub sha256: String,
}

/// The roles a token may grant.
pub const ROLES: [&str; 3] = ["viewer", "editor", "admin"];
