//! `switchboard hash-key`: the hash an `AuthProvider` stores instead of an API key.

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};
use std::io::Read;

/// Reads one key from standard input (a trailing newline is not part of it) and prints its
/// SHA-256 in hex; the key itself never appears on a command line or in shell history.
pub fn run() -> anyhow::Result<()> {
    let mut key = String::new();
    std::io::stdin()
        .read_to_string(&mut key)
        .context("reading the key from standard input")?;
    let key = key.strip_suffix('\n').unwrap_or(&key);
    let key = key.strip_suffix('\r').unwrap_or(key);
    if key.is_empty() {
        bail!("no key on standard input (try: printf %s \"$KEY\" | switchboard hash-key)");
    }
    println!("{}", hex::encode(Sha256::digest(key.as_bytes())));
    Ok(())
}
