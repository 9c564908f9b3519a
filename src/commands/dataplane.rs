//! `switchboard dataplane`: one data-plane replica, fed by control planes or by YAML files.

use crate::cli::Output;
use crate::cli::{DataplaneArgs, NodeArgs};
use crate::commands::validate::{print_diagnostics, INVALID};
use std::time::Duration;
use switchboard_config::{load_sources, read_sources, NodeGroup, Snapshot};
use switchboard_dataplane::discovery::ClientConfig;
use switchboard_dataplane::listener_tls::ListenerTls;
use switchboard_dataplane::server::{run, DataPlaneConfig, Source};
use switchboard_proto::v1::Node;

/// This replica's identity for the discovery protocol.
pub fn node(args: &NodeArgs) -> Node {
    let id = args.node_id.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "dp".into());
        format!("{host}-{}", std::process::id())
    });
    Node {
        id,
        cluster: args.cluster.clone(),
        zone: args.zone.clone(),
        labels: args.labels.iter().cloned().collect(),
        build_version: env!("CARGO_PKG_VERSION").to_string(),
    }
}

/// `http://` is implied for bare `host:port` addresses.
pub fn control_plane_url(addr: &str) -> String {
    control_plane_url_for(addr, false)
}

/// The same, `https://` when the control plane is reached over TLS.
pub fn control_plane_url_for(addr: &str, tls: bool) -> String {
    if addr.contains("://") {
        addr.to_string()
    } else if tls {
        format!("https://{addr}")
    } else {
        format!("http://{addr}")
    }
}

/// Runs until a signal stops the process.
pub fn run_command(args: &DataplaneArgs) -> anyhow::Result<i32> {
    let tls = ListenerTls::from_paths(&args.tls.tls_cert, &args.tls.tls_key, &args.tls.tls_secret)?;
    let control_plane_tls = args.identity.tls()?;
    let node = node(&args.node);
    let source = if !args.files.is_empty() {
        let set = match read_sources(&args.files).and_then(|s| load_sources(&s)) {
            Ok(set) => set,
            Err(d) => {
                print_diagnostics(&d, Output::Text);
                return Ok(INVALID);
            }
        };
        let group = NodeGroup {
            cluster: node.cluster.clone(),
            zone: node.zone.clone(),
            labels: node.labels.clone().into_iter().collect(),
        };
        let mut snap = Snapshot::build(&set, &group, &Default::default());
        // Replicas fed the same files share sessions only if they share a key. A rotation:
        // `new,old` seals with the new key and still opens what the old one sealed.
        if let Ok(keys) = std::env::var("SWITCHBOARD_SESSION_KEY") {
            let mut keys = keys.split(',').map(|k| k.trim().to_string());
            let current = keys.next().unwrap_or_default();
            let previous: Vec<String> = keys.collect();
            switchboard_dataplane::session::Sealer::from_keys(&current, &previous)
                .map_err(|e| anyhow::anyhow!("SWITCHBOARD_SESSION_KEY: {e}"))?;
            snap = snap.with_session_keys(&current, &previous);
        }
        Source::Static(snap)
    } else if !args.control_plane.is_empty() {
        Source::ControlPlane(ClientConfig {
            control_planes: args
                .control_plane
                .iter()
                .map(|a| control_plane_url_for(a, control_plane_tls.is_some()))
                .map(|url| {
                    // tonic speaks TLS to https:// addresses only.
                    if control_plane_tls.is_some() && !url.starts_with("https://") {
                        anyhow::bail!("control plane `{url}` is not https://, but --ca is given: use https:// (or host:port)");
                    }
                    Ok(url)
                })
                .collect::<anyhow::Result<_>>()?,
            node,
            state_dir: Some(args.node.state_dir.clone()),
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            tls: control_plane_tls.clone(),
            token: crate::commands::token::find(),
        })
    } else {
        anyhow::bail!("say where the configuration comes from: --control-plane URL or -f FILE");
    };
    run(DataPlaneConfig {
        listen: args.listen.clone(),
        max_body_bytes: args.limits.max_body_bytes,
        max_header_bytes: args.limits.max_header_bytes,
        body_timeout: args.limits.body_timeout.into(),
        keepalive_timeout: args.limits.keepalive_timeout.into(),
        max_connections_per_address: args.limits.max_connections_per_address,
        read_buffer_bytes: args.limits.read_buffer_bytes,
        metrics_listen: args.telemetry.metrics_listen.clone(),
        allowed_origins: args.limits.allowed_origins.clone(),
        trusted_proxies: switchboard_dataplane::server::parse_trusted_proxies(
            &args.limits.trusted_proxies,
        )
        .map_err(anyhow::Error::msg)?,
        source,
        state_dir: args.node.state_dir.clone(),
        tls,
        insecure: args.tls.insecure,
    })?;
    Ok(0)
}
