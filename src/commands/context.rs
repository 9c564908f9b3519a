//! CLI contexts, as kubeconfig has them: named control planes with the credentials to reach
//! them, in `~/.config/switchboard/config.yaml` (or `SWITCHBOARD_CONFIG`), readable by its
//! owner only. Flags and environment variables override the current context.

use crate::cli::{ContextAction, ContextArgs};
use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// One control plane and how to reach it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Entry {
    pub server: String,
    /// CA (PEM file) of the control plane's certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// Client certificate and key (PEM files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// A file holding an operator token (or the control token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Contexts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    #[serde(default)]
    pub contexts: BTreeMap<String, Entry>,
}

/// Where the contexts live.
pub fn path() -> PathBuf {
    if let Ok(p) = std::env::var("SWITCHBOARD_CONFIG") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| ".".into());
    PathBuf::from(home).join(".config/switchboard/config.yaml")
}

/// The contexts file (empty when there is none); a file that does not parse is an error
/// naming it.
pub fn load() -> anyhow::Result<Contexts> {
    let path = path();
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_yaml::from_str(&text)
            .with_context(|| format!("{} is not a Switchboard contexts file", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Contexts::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The current context, if one is chosen.
pub fn current() -> anyhow::Result<Option<Entry>> {
    let all = load()?;
    let Some(name) = &all.current else {
        return Ok(None);
    };
    match all.contexts.get(name) {
        Some(e) => Ok(Some(e.clone())),
        None => anyhow::bail!(
            "the current context `{name}` is not in {}",
            path().display()
        ),
    }
}

fn save(all: &Contexts) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = path();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let text = serde_yaml::to_string(all)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    // `mode` applies only to a new file: an old one may have been looser.
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .with_context(|| format!("restricting {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// Runs `switchboard context ...`.
pub fn run(args: &ContextArgs) -> anyhow::Result<i32> {
    let mut all = load()?;
    match &args.action {
        ContextAction::Set {
            name,
            server,
            ca,
            cert,
            key,
            token_file,
        } => {
            let absolute = |p: &Option<PathBuf>| -> anyhow::Result<Option<PathBuf>> {
                p.as_ref()
                    .map(|p| std::fs::canonicalize(p).with_context(|| format!("{}", p.display())))
                    .transpose()
            };
            all.contexts.insert(
                name.clone(),
                Entry {
                    server: server.clone(),
                    ca: absolute(ca)?,
                    cert: absolute(cert)?,
                    key: absolute(key)?,
                    token_file: absolute(token_file)?,
                },
            );
            if all.current.is_none() {
                all.current = Some(name.clone());
            }
            save(&all)?;
            println!("context {name} saved in {}", path().display());
        }
        ContextAction::Use { name } => {
            if !all.contexts.contains_key(name) {
                anyhow::bail!("no context `{name}` in {}", path().display());
            }
            all.current = Some(name.clone());
            save(&all)?;
            println!("using context {name}");
        }
        ContextAction::List => {
            for (name, e) in &all.contexts {
                let mark = if all.current.as_deref() == Some(name) {
                    "*"
                } else {
                    " "
                };
                println!("{mark} {name:<20} {}", e.server);
            }
        }
    }
    Ok(0)
}
