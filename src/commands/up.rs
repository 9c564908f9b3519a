//! `switchboard up`: a control plane with the embedded store and one data plane in one
//! process, with the given files applied: the quickest way to run Switchboard.

use crate::cli::Output;
use crate::cli::UpArgs;
use crate::commands::controlplane::shutdown_signal;
use crate::commands::dataplane::control_plane_url;
use crate::commands::validate::{print_diagnostics, INVALID};
use anyhow::Context;
use std::time::Duration;
use switchboard_config::{read_sources, Kind};
use switchboard_controlplane::registry::{self, RegistryError};
use switchboard_controlplane::server::{open_store, serve_with, Access, StoreConfig};
use switchboard_dataplane::discovery::ClientConfig;
use switchboard_dataplane::listener_tls::ListenerTls;
use switchboard_dataplane::server::{check_plaintext, run, DataPlaneConfig, Source};
use switchboard_proto::v1::Node;

/// Applies the files, starts the control plane on a side thread, runs the data plane here.
pub fn run_command(args: &UpArgs) -> anyhow::Result<i32> {
    // The admin API has no TLS yet: `up` keeps it on loopback unless told otherwise.
    check_plaintext("the admin API", &args.admin_listen, args.tls.insecure)
        .map_err(anyhow::Error::msg)?;
    let tls = ListenerTls::from_paths(&args.tls.tls_cert, &args.tls.tls_key, &args.tls.tls_secret)?;
    let sources = match read_sources(&args.files.files) {
        Ok(s) => s,
        Err(d) => {
            print_diagnostics(&d, Output::Text);
            return Ok(INVALID);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the control plane's runtime")?;
    let store = runtime.block_on(open_store(&StoreConfig::Embedded {
        dir: args.data_dir.join("registry"),
    }))?;
    let secret_box = switchboard_controlplane::secrets::SecretBox::from_env()?;
    let applied = runtime.block_on(registry::apply(
        store.as_ref(),
        &sources,
        false,
        secret_box.as_ref(),
    ));
    let servers = match applied {
        Ok(outcome) => {
            for r in &outcome.results {
                println!(
                    "{}/{} {}",
                    r.kind.as_str().to_lowercase(),
                    r.name,
                    r.action.as_str()
                );
            }
            outcome
                .results
                .iter()
                .filter(|r| r.kind == Kind::VirtualServer)
                .map(|r| r.name.clone())
                .collect::<Vec<_>>()
        }
        Err(RegistryError::Invalid(d)) => {
            print_diagnostics(&d, Output::Text);
            return Ok(INVALID);
        }
        Err(e) => return Err(e.into()),
    };
    // Even on loopback the control plane lets in only holders of the control token: this
    // process's data plane, and the CLI (which finds it in the data directory). It exists
    // before the port opens.
    let token = crate::commands::token::provision(&args.data_dir)?;
    let access = Access::Token(token.clone());
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(&args.admin_listen))
        .with_context(|| format!("listening on {}", args.admin_listen))?;
    let admin = listener.local_addr()?;
    std::thread::Builder::new()
        .name("controlplane".into())
        .spawn(move || {
            let served = serve_with(
                listener,
                store,
                "up".into(),
                shutdown_signal(),
                None,
                access,
            );
            if let Err(e) = runtime.block_on(served) {
                tracing::error!(error = %e, "control plane stopped");
            }
        })
        .context("starting the control-plane thread")?;
    println!(
        "control plane (admin API) on http://{admin}; the CLI sends the token in {}",
        args.data_dir
            .join(crate::commands::token::TOKEN_FILE)
            .display()
    );
    let scheme = if tls.is_some() { "https" } else { "http" };
    for s in &servers {
        println!("MCP endpoint: {scheme}://{}/servers/{s}/mcp", args.listen);
    }
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
        source: Source::ControlPlane(ClientConfig {
            control_planes: vec![control_plane_url(&admin.to_string())],
            node: Node {
                id: "up".into(),
                cluster: "default".into(),
                build_version: env!("CARGO_PKG_VERSION").into(),
                ..Node::default()
            },
            state_dir: Some(args.data_dir.join("dataplane")),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            tls: None,
            token: Some(token),
        }),
        state_dir: args.data_dir.join("dataplane"),
        tls,
        insecure: args.tls.insecure,
    })?;
    Ok(0)
}
