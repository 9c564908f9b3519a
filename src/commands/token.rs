//! The control token: without TLS a control plane lets in only callers that show it (data
//! planes and the CLI, as `Authorization: Bearer`), so it is never open to anyone, even on
//! loopback. It comes from `SWITCHBOARD_CONTROL_TOKEN`, or is made once and kept in the data
//! directory (readable by its owner only), where the CLI finds it.

use anyhow::Context;
use std::path::{Path, PathBuf};

/// Where callers and control planes look for the token first.
pub const TOKEN_ENV: &str = "SWITCHBOARD_CONTROL_TOKEN";

/// The token's file in a data directory.
pub const TOKEN_FILE: &str = "control-token";

/// The default data directory, where the CLI looks for the token when none is set.
const DEFAULT_DATA_DIR: &str = "./switchboard-data";

/// The token from the environment, or the one kept in `dir` (made there when missing).
pub fn provision(dir: &Path) -> anyhow::Result<String> {
    if let Some(token) = from_env() {
        return Ok(token);
    }
    let path = dir.join(TOKEN_FILE);
    if let Ok(token) = std::fs::read_to_string(&path) {
        let token = token.trim().to_string();
        if !token.is_empty() {
            return Ok(token);
        }
    }
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("no system randomness for the control token"))?;
    let token = hex::encode(bytes);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_private(&path, &token)?;
    tracing::info!(path = %path.display(), "made a control token; callers send it (export {TOKEN_ENV}=$(cat {}))", path.display());
    Ok(token)
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    // `mode` applies only to a new file: an old one may have been looser.
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .with_context(|| format!("restricting {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

fn from_env() -> Option<String> {
    std::env::var(TOKEN_ENV)
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// The token a caller sends: `SWITCHBOARD_CONTROL_TOKEN`, else the one a control plane (or
/// `up`) keeps in the default data directory here.
pub fn find() -> Option<String> {
    from_env().or_else(|| {
        let path = PathBuf::from(DEFAULT_DATA_DIR).join(TOKEN_FILE);
        std::fs::read_to_string(path)
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
    })
}
