//! `stdio` Upstreams, run by this data plane itself.
//!
//! For each one in the snapshot the data plane starts the bridge (`switchboard-bridge`) on a
//! loopback port it binds itself, behind a bearer token only it knows, and routes the
//! upstream's calls there as if it were an MCP server over streamable HTTP: sessions, GET
//! streams, questions to clients, retries and metrics work as for any upstream. The bridge
//! keeps the child running (restarts with backoff, logs its stderr, one child per client
//! session with `isolation: perSession`). A watcher lists the child's catalog and follows
//! its health; the result overrides the snapshot's for this data plane's routes and is
//! reported to the control plane, which stores it like a discovered catalog.
//!
//! A snapshot is served in two steps so a rejected one changes nothing: [`StdioUpstreams::
//! prepare`] starts what it needs (before its routes compile), [`StdioUpstreams::retire`]
//! stops what it no longer uses (once it is accepted).

mod watch;

use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use switchboard_bridge::child::{ChildSpec, Environment};
use switchboard_bridge::sessions::Isolation;
use switchboard_bridge::BridgeConfig;
use switchboard_config::kinds::upstream::{StdioIsolation, UpstreamSpec};
use switchboard_config::{Catalog, Snapshot};
use switchboard_proto::v1::StdioReport;
use tokio::sync::watch as tokio_watch;

/// Where this data plane serves one stdio upstream's bridge, and the token it wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalEndpoint {
    pub url: String,
    pub bearer: String,
    /// Which instance serves it (the hash of what it runs), to find the watcher's findings.
    pub instance: String,
}

/// Local endpoints by upstream name, for [`crate::routes::Routes::compile_with`].
pub type LocalEndpoints = HashMap<String, LocalEndpoint>;

/// What the watcher last found about one stdio upstream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LocalStatus {
    pub catalog: Option<Catalog>,
    pub healthy: bool,
    /// Why it is not healthy (empty when it is).
    pub error: String,
    pub protocol_version: String,
    pub listening: bool,
    pub refreshed_unix_ms: i64,
}

/// Why a snapshot's stdio upstreams cannot be served (the snapshot is then NACKed).
#[derive(Debug, thiserror::Error)]
pub enum StdioError {
    #[error("stdio upstream `{upstream}`: secretEnv.{var}: the snapshot carries no value for Secret `{secret}` key `{key}`")]
    MissingSecret {
        upstream: String,
        var: String,
        secret: String,
        key: String,
    },
    #[error("stdio upstreams: cannot listen on a loopback port: {0}")]
    Listen(std::io::Error),
    #[error("stdio upstreams: no system randomness for a bridge token")]
    Random,
}

/// One running bridge.
struct Instance {
    endpoint: LocalEndpoint,
    stop: tokio_watch::Sender<bool>,
}

/// Identifies what an instance runs: the upstream's name and a hash of its spec and the
/// values of its environment (a rotated secret restarts the child).
type InstanceKey = (String, String);

/// The stdio upstreams this data plane runs, on a runtime of their own (pingora owns its
/// runtimes, and static mode compiles routes before any runs).
pub struct StdioUpstreams {
    runtime: tokio::runtime::Handle,
    instances: Mutex<HashMap<InstanceKey, Instance>>,
    /// What the watchers found, by instance.
    status: Arc<Mutex<HashMap<InstanceKey, LocalStatus>>>,
    /// The instances the served snapshot uses, by upstream name.
    current: Mutex<BTreeMap<String, String>>,
    changes: tokio_watch::Sender<u64>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl StdioUpstreams {
    /// A manager with its own runtime thread.
    pub fn new() -> std::io::Result<Arc<StdioUpstreams>> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("stdio-upstreams")
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        // The runtime lives as long as the process: park its owner on a thread of its own.
        std::thread::Builder::new()
            .name("stdio-upstreams-owner".into())
            .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
        Ok(Arc::new(StdioUpstreams {
            runtime: handle,
            instances: Mutex::new(HashMap::new()),
            status: Arc::default(),
            current: Mutex::new(BTreeMap::new()),
            changes: tokio_watch::channel(0).0,
        }))
    }

    /// Ticks whenever a watcher finds something new (a catalog, a health change).
    pub fn changes(&self) -> tokio_watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Runs `future` on the manager's runtime.
    pub fn spawn<F>(&self, future: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.runtime.spawn(future);
    }

    /// Starts a bridge for every stdio upstream of `snap` not running yet (stopping none)
    /// and returns where each is served.
    pub fn prepare(&self, snap: &Snapshot) -> Result<LocalEndpoints, StdioError> {
        let mut endpoints = LocalEndpoints::new();
        for (name, spec) in &snap.upstreams {
            let Some(child) = child_spec(name, spec, snap)? else {
                continue;
            };
            let key = (name.clone(), instance_hash(spec, &child));
            let existing = lock(&self.instances).get(&key).map(|i| i.endpoint.clone());
            let endpoint = match existing {
                Some(e) => e,
                None => {
                    let instance = self.start(&key, spec, child)?;
                    let e = instance.endpoint.clone();
                    lock(&self.instances).insert(key.clone(), instance);
                    e
                }
            };
            endpoints.insert(name.clone(), endpoint);
        }
        Ok(endpoints)
    }

    /// Makes `snap` the served snapshot: stops every bridge it does not use.
    pub fn retire(&self, snap: &Snapshot) {
        let mut wanted = BTreeMap::new();
        for (name, spec) in &snap.upstreams {
            if let Ok(Some(child)) = child_spec(name, spec, snap) {
                wanted.insert(name.clone(), instance_hash(spec, &child));
            }
        }
        let stale: Vec<(InstanceKey, Instance)> = {
            let mut instances = lock(&self.instances);
            let keys: Vec<InstanceKey> = instances
                .keys()
                .filter(|(n, h)| wanted.get(n) != Some(h))
                .cloned()
                .collect();
            keys.into_iter()
                .filter_map(|k| instances.remove(&k).map(|i| (k, i)))
                .collect()
        };
        for (key, instance) in stale {
            tracing::info!(upstream = %key.0, "stdio upstream no longer served here; stopping it");
            let mut status = lock(&self.status);
            instance.stop.send_replace(true);
            status.remove(&key);
        }
        let changed = *lock(&self.current) != wanted;
        *lock(&self.current) = wanted;
        if changed {
            self.changes.send_modify(|n| *n += 1);
        }
    }

    fn start(
        &self,
        key: &InstanceKey,
        spec: &UpstreamSpec,
        child: ChildSpec,
    ) -> Result<Instance, StdioError> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(StdioError::Listen)?;
        listener.set_nonblocking(true).map_err(StdioError::Listen)?;
        let port = listener.local_addr().map_err(StdioError::Listen)?.port();
        let bearer = token()?;
        let endpoint = LocalEndpoint {
            url: format!("http://127.0.0.1:{port}/mcp"),
            bearer: bearer.clone(),
            instance: key.1.clone(),
        };
        let stdio = spec.stdio.as_ref();
        let isolation = match stdio.map(|s| s.isolation) {
            Some(StdioIsolation::PerSession) => Isolation::PerSession {
                max: stdio.map_or(16, |s| s.session_cap() as usize),
                idle: stdio.map(|s| s.idle()).unwrap_or_default(),
            },
            _ => Isolation::Shared,
        };
        let config = BridgeConfig {
            child,
            isolation,
            path: "/mcp".into(),
            bearer: Some(bearer),
            // Its own loopback port: only this data plane calls it.
            origins: switchboard_bridge::origin::OriginPolicy {
                allowed_origins: Vec::new(),
                loopback: true,
            },
        };
        let (stop, stopped) = tokio_watch::channel(false);
        let watcher = watch::Watcher {
            key: key.clone(),
            spec: spec.clone(),
            endpoint: endpoint.clone(),
            status: self.status.clone(),
            changes: self.changes.clone(),
            stopped: stopped.clone(),
        };
        let mut stopped_bridge = stopped.clone();
        let name = key.0.clone();
        self.runtime.spawn(async move {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(upstream = %name, error = %e, "cannot serve a stdio upstream");
                    return;
                }
            };
            let running = switchboard_bridge::spawn(config, listener);
            tokio::spawn(watcher.run(stopped));
            let _ = stopped_bridge.wait_for(|s| *s).await;
            running.stop();
        });
        tracing::info!(upstream = %key.0, url = %endpoint.url, "stdio upstream served by this data plane");
        Ok(Instance { endpoint, stop })
    }

    /// `snap` as this data plane serves it: its stdio upstreams' catalogs and health as
    /// found here (the control plane's, from any data plane, until this one has listed).
    pub fn overlay(&self, snap: &Snapshot, local: &LocalEndpoints) -> Snapshot {
        let mut view = snap.clone();
        let status = lock(&self.status);
        for (name, endpoint) in local {
            // This data plane's own child decides whether calls go out, not another's.
            view.unhealthy.remove(name);
            let Some(found) = status.get(&(name.clone(), endpoint.instance.clone())) else {
                continue;
            };
            if let Some(catalog) = &found.catalog {
                view.catalogs.insert(name.clone(), catalog.clone());
            }
            if !found.healthy && !found.error.is_empty() {
                view.unhealthy.insert(name.clone(), found.error.clone());
            }
        }
        view
    }

    /// What to tell the control plane about the served snapshot's stdio upstreams.
    pub fn reports(&self) -> Vec<StdioReport> {
        let current = lock(&self.current).clone();
        let status = lock(&self.status);
        current
            .into_iter()
            .filter_map(|(name, hash)| {
                let s = status.get(&(name.clone(), hash))?;
                Some(StdioReport {
                    upstream: name,
                    healthy: s.healthy,
                    error: s.error.clone(),
                    catalog_json: s
                        .catalog
                        .as_ref()
                        .and_then(|c| serde_json::to_vec(c).ok())
                        .unwrap_or_default(),
                    catalog_hash: s
                        .catalog
                        .as_ref()
                        .map(Catalog::content_hash)
                        .unwrap_or_default(),
                    protocol_version: s.protocol_version.clone(),
                    listening: s.listening,
                    refreshed_unix_ms: s.refreshed_unix_ms,
                })
            })
            .collect()
    }
}

/// How to start `spec`'s child, if it is a stdio upstream: its environment filled from the
/// snapshot's secrets.
fn child_spec(
    name: &str,
    spec: &UpstreamSpec,
    snap: &Snapshot,
) -> Result<Option<ChildSpec>, StdioError> {
    let Some(stdio) = &spec.stdio else {
        return Ok(None);
    };
    let mut env: Vec<(String, String)> = stdio
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (var, r) in &stdio.secret_env {
        let value = snap.secret(r).ok_or_else(|| StdioError::MissingSecret {
            upstream: name.to_string(),
            var: var.clone(),
            secret: r.secret.clone(),
            key: r.key.clone(),
        })?;
        env.push((var.clone(), value));
    }
    Ok(Some(ChildSpec {
        command: stdio.command.clone(),
        args: stdio.args.clone(),
        env,
        environment: Environment::Minimal,
        cwd: stdio.cwd.as_ref().map(Into::into),
        label: name.to_string(),
    }))
}

/// A hash of everything that makes a child different: the spec and the environment's
/// values (so a rotated secret gets a new child, and the hash says nothing of the value).
fn instance_hash(spec: &UpstreamSpec, child: &ChildSpec) -> String {
    let mut h = Sha256::new();
    // The stdio block and what the watcher uses: other edits (timeouts, retries) keep the
    // child and its sessions.
    h.update(serde_json::to_vec(&spec.stdio).unwrap_or_default());
    h.update(serde_json::to_vec(&spec.health).unwrap_or_default());
    h.update(serde_json::to_vec(&spec.discovery).unwrap_or_default());
    for (k, v) in &child.env {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..12])
}

/// 256 random bits as hex: the bridge's bearer token.
fn token() -> Result<String, StdioError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| StdioError::Random)?;
    Ok(hex::encode(bytes))
}
