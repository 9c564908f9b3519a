//! Running a data plane: the pingora server, fed by the discovery client (or by YAML files in
//! standalone mode), with routes recompiled and swapped on every accepted snapshot.

use crate::discovery::{ClientConfig, DiscoveryClient};
use crate::gateway::Gateway;
use crate::metrics::now_ms;
use crate::routes::Routes;
use crate::stdio::StdioUpstreams;
use arc_swap::{ArcSwap, ArcSwapOption};
use async_trait::async_trait;
use pingora::server::configuration::ServerConf;
use pingora::server::{Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use switchboard_config::Snapshot;

/// Where a data plane's configuration comes from.
pub enum Source {
    /// Snapshots pushed by control planes.
    ControlPlane(ClientConfig),
    /// A fixed snapshot (standalone mode, built from YAML files).
    Static(Snapshot),
}

/// What a data plane needs to run.
pub struct DataPlaneConfig {
    pub listen: String,
    pub max_body_bytes: usize,
    pub max_header_bytes: usize,
    /// Longest a client may take to send a whole request body (408 after it).
    pub body_timeout: std::time::Duration,
    /// How long an idle keep-alive connection waits for its next request.
    pub keepalive_timeout: std::time::Duration,
    /// Most connections one client address keeps open (0: no cap; trusted proxies exempt).
    pub max_connections_per_address: usize,
    /// Read buffer of each client connection (pingora's default is 64 KiB).
    pub read_buffer_bytes: usize,
    /// A separate address for /metrics, /healthz and /readyz (else the main one serves them).
    pub metrics_listen: Option<String>,
    /// Origins browsers may call from (`*` for any); empty: loopback origins and hosts
    /// virtual servers claim only.
    pub allowed_origins: Vec<String>,
    /// Proxies whose `X-Forwarded-For` names the client (rate limits by `clientIp`); none:
    /// the TCP peer is the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub source: Source,
    /// For pingora's pid and upgrade-socket files.
    pub state_dir: PathBuf,
    /// Certificates for TLS on `listen` (plain HTTP when `None`).
    pub tls: Option<crate::listener_tls::ListenerTls>,
    /// Allow plain HTTP on addresses beyond loopback (something in front terminates TLS).
    pub insecure: bool,
}

/// `--trusted-proxies` as networks: CIDRs (`10.0.0.0/8`) or single addresses.
pub fn parse_trusted_proxies(list: &[String]) -> Result<Vec<ipnet::IpNet>, String> {
    list.iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<ipnet::IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| format!("--trusted-proxies: `{s}` is neither an address nor a CIDR"))
        })
        .collect()
}

/// Whether `addr` (`host:port`) is a loopback address.
pub fn is_loopback(addr: &str) -> bool {
    addr.parse::<std::net::SocketAddr>()
        .map(|a| a.ip().is_loopback())
        .unwrap_or_else(|_| addr.starts_with("localhost:"))
}

/// Refuses plain HTTP beyond loopback unless told `--insecure`: `what` names the listener.
pub fn check_plaintext(what: &str, addr: &str, insecure: bool) -> Result<(), String> {
    if insecure || is_loopback(addr) {
        return Ok(());
    }
    Err(format!(
        "refusing to serve {what} without TLS on {addr}, beyond loopback: give --tls-cert and --tls-key, or --insecure when something in front of it terminates TLS"
    ))
}

/// Why the data plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the snapshot does not compile: {0}")]
    Routes(String),
    #[error("cannot start the HTTP server: {0}")]
    Server(String),
}

/// Routes for `snap` with its stdio upstreams served by this data plane.
fn compile(stdio: &StdioUpstreams, snap: &Snapshot) -> Result<Routes, String> {
    let local = stdio.prepare(snap).map_err(|e| e.to_string())?;
    let compiled = if local.is_empty() {
        Routes::compile(snap)
    } else {
        Routes::compile_with(&stdio.overlay(snap, &local), &local)
    };
    compiled.map_err(|e| e.to_string())
}

/// Runs the discovery client inside pingora's runtime.
struct DiscoveryTask {
    client: Mutex<Option<DiscoveryClient>>,
}

#[async_trait]
impl BackgroundService for DiscoveryTask {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let client = self.client.lock().ok().and_then(|mut c| c.take());
        let Some(client) = client else {
            return;
        };
        tokio::select! {
            _ = client.run() => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Builds the server and runs it until a signal stops the process; never returns on success.
pub fn run(config: DataPlaneConfig) -> Result<(), StartError> {
    if config.tls.is_none() {
        check_plaintext("MCP clients", &config.listen, config.insecure)
            .map_err(StartError::Server)?;
    }
    if let Some(addr) = &config.metrics_listen {
        check_plaintext("metrics", addr, config.insecure).map_err(StartError::Server)?;
    }
    // pingora retries a failed bind for 30 s and then panics in a service task: check first,
    // so a taken port is a clear error at once.
    std::net::TcpListener::bind(&config.listen)
        .map_err(|e| StartError::Server(format!("cannot listen on {}: {e}", config.listen)))?;
    let routes = Arc::new(ArcSwap::from_pointee(Routes::default()));
    let (changed, changes) = tokio::sync::watch::channel(0u64);
    let changed = Arc::new(changed);
    let mut discovery = None;
    let signals = Arc::new(crate::signals::Signals::default());
    let stdio = StdioUpstreams::new()
        .map_err(|e| StartError::Server(format!("cannot start the stdio runtime: {e}")))?;
    // The snapshot being served, compiled again when a stdio upstream's catalog changes.
    let served: Arc<ArcSwapOption<Snapshot>> = Arc::new(ArcSwapOption::empty());
    // One compile-and-swap at a time, so a recompile of the old snapshot cannot land after
    // the new one.
    let swapping = Arc::new(Mutex::new(()));
    // The listener's certificates: files now, `--tls-secret`s from each served snapshot.
    let resolver = match &config.tls {
        Some(tls) => Some(tls.load().map_err(|e| StartError::Server(e.to_string()))?),
        None => None,
    };
    let serve = {
        let (stdio, routes, served, changed, swapping) = (
            stdio.clone(),
            routes.clone(),
            served.clone(),
            changed.clone(),
            swapping.clone(),
        );
        let resolver = resolver.clone();
        move |snap: &Snapshot| -> Result<(), String> {
            let _one = swapping.lock().unwrap_or_else(|p| p.into_inner());
            // Compiling is the check: a snapshot we cannot route is NACKed, and whatever it
            // started for itself is stopped again.
            let compiled = match compile(&stdio, snap) {
                Ok(c) => c,
                Err(e) => {
                    if let Some(still) = served.load_full() {
                        stdio.retire(&still);
                    }
                    return Err(e);
                }
            };
            routes.store(Arc::new(compiled));
            if let Some(resolver) = &resolver {
                resolver.use_secrets(snap);
            }
            stdio.retire(snap);
            served.store(Some(Arc::new(snap.clone())));
            changed.send_modify(|n| *n += 1);
            Ok(())
        }
    };
    let ended = Arc::new(crate::ended_sessions::EndedSessions::default());
    match config.source {
        Source::Static(snapshot) => {
            serve(&snapshot).map_err(StartError::Routes)?;
            crate::metrics::metrics().serving(&snapshot.version, now_ms());
        }
        Source::ControlPlane(client_config) => {
            let reports = stdio.clone();
            let client = DiscoveryClient::new(client_config)
                .with_signals(signals.clone())
                .with_ended_sessions(ended.clone())
                .with_stdio_reports(Arc::new(move || reports.reports()), stdio.changes());
            if let Some(persisted) = client.current().load_full() {
                match serve(&persisted) {
                    Ok(()) => {
                        // Its build time is not kept; it is at least as old as this start.
                        crate::metrics::metrics().serving(&persisted.version, now_ms());
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "persisted snapshot does not compile; waiting for a control plane")
                    }
                }
            }
            discovery = Some(client.with_check(Arc::new(serve.clone())));
        }
    }
    // What the stdio watchers find changes the routes of the snapshot being served.
    {
        let (mut ticks, stdio2) = (stdio.changes(), stdio.clone());
        let (routes, served, changed) = (routes.clone(), served.clone(), changed.clone());
        stdio.spawn(async move {
            while ticks.changed().await.is_ok() {
                let (stdio, routes, served, changed, swapping) = (
                    stdio2.clone(),
                    routes.clone(),
                    served.clone(),
                    changed.clone(),
                    swapping.clone(),
                );
                // Compiling may take a while: not on the thread the stdio servers' I/O uses.
                let recompiled = tokio::task::spawn_blocking(move || {
                    let _one = swapping.lock().unwrap_or_else(|p| p.into_inner());
                    let Some(snap) = served.load_full() else {
                        return;
                    };
                    match compile(&stdio, &snap) {
                        Ok(compiled) => {
                            routes.store(Arc::new(compiled));
                            changed.send_modify(|n| *n += 1);
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot recompile routes after a stdio upstream changed"),
                    }
                });
                let _ = recompiled.await;
            }
        });
    }
    let _ = std::fs::create_dir_all(&config.state_dir);
    let conf = ServerConf {
        threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        grace_period_seconds: Some(5),
        graceful_shutdown_timeout_seconds: Some(5),
        pid_file: config.state_dir.join("dataplane.pid").display().to_string(),
        upgrade_sock: config.state_dir.join("upgrade.sock").display().to_string(),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let loopback = is_loopback(&config.listen);
    let gateway = Gateway::new(routes.clone(), config.max_body_bytes)
        .with_max_header_bytes(config.max_header_bytes)
        .with_client_timeouts(config.body_timeout, config.keepalive_timeout)
        .with_changes(changes)
        .with_origin_policy(crate::policy::origin::OriginPolicy {
            allowed_origins: config.allowed_origins.clone(),
            loopback,
        })
        .with_signals(signals)
        .with_ended_sessions(ended)
        .with_trusted_proxies(config.trusted_proxies.clone());
    let gateway = match &config.metrics_listen {
        Some(addr) => {
            let taken = std::net::TcpListener::bind(addr)
                .map_err(|e| StartError::Server(format!("cannot listen on {addr}: {e}")))?;
            drop(taken);
            let mut admin = pingora::proxy::http_proxy_service(
                &server.configuration,
                Gateway::new(routes, config.max_body_bytes).admin_only(),
            );
            admin.add_tcp(addr);
            server.add_service(admin);
            gateway.without_metrics()
        }
        // Metrics name every tool, hidden ones too: not for whoever reaches a public port.
        None if !loopback => {
            tracing::info!(listen = %config.listen, "not serving /metrics on an address beyond loopback (metrics name every tool); use --metrics-listen");
            gateway.without_metrics()
        }
        None => gateway,
    };
    let mut proxy = pingora::services::listening::Service::new(
        "switchboard data plane".to_string(),
        crate::connections::PerAddress::new(
            pingora::proxy::http_proxy(&server.configuration, gateway),
            config.max_connections_per_address,
            config.trusted_proxies.clone(),
        ),
    );
    let buffers = pingora::listeners::L4BufferSettings::new(
        config.read_buffer_bytes,
        pingora::listeners::DEFAULT_L4_WRITE_BUFFER_SIZE,
    );
    let mut listener = pingora::listeners::ListenerConfig::tcp(&config.listen).l4_buffer(buffers);
    if let Some(resolver) = resolver {
        let settings = crate::listener_tls::ListenerTls::pingora_settings(resolver.clone())
            .map_err(|e| StartError::Server(format!("TLS settings: {e}")))?;
        listener = listener.tls(settings);
        server.add_service(background_service(
            "listener certificates",
            crate::listener_tls::Reloader(resolver),
        ));
    }
    proxy.add_listener(listener);
    server.add_service(proxy);
    if let Some(client) = discovery {
        server.add_service(background_service(
            "discovery",
            DiscoveryTask {
                client: Mutex::new(Some(client)),
            },
        ));
    }
    tracing::info!(listen = %config.listen, tls = config.tls.is_some(), "data plane listening");
    server.run_forever();
}

#[cfg(test)]
mod tests {
    use super::parse_trusted_proxies;

    #[test]
    fn trusted_proxies_are_networks_or_addresses() {
        let parsed =
            parse_trusted_proxies(&["10.0.0.0/8".into(), " 127.0.0.1".into(), "::1".into()])
                .expect("valid");
        assert_eq!(parsed.len(), 3);
        assert!(parsed[1].contains(&"127.0.0.1".parse::<std::net::IpAddr>().expect("ip")));
        let err = parse_trusted_proxies(&["10.0.0.0/33".into()]).expect_err("bad prefix");
        assert_eq!(
            err,
            "--trusted-proxies: `10.0.0.0/33` is neither an address nor a CIDR"
        );
    }
}
