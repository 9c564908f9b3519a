//! `switchboard controlplane`: one control-plane replica.

use crate::cli::ControlplaneArgs;
use anyhow::Context;
use switchboard_controlplane::server::{
    open_store, replica_id, serve_with, Access, ServeTls, StoreConfig,
};

/// Runs until SIGINT or SIGTERM.
pub fn run(args: &ControlplaneArgs) -> anyhow::Result<i32> {
    let tls = match (&args.tls_cert, &args.tls_key, &args.client_ca) {
        (Some(cert), Some(key), Some(ca)) => {
            let read = |p: &std::path::PathBuf| {
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
            };
            Some(ServeTls {
                cert_pem: read(cert)?,
                key_pem: read(key)?,
                client_ca_pem: read(ca)?,
            })
        }
        _ => None,
    };
    // Without TLS no caller is checked: loopback only, unless told otherwise.
    if tls.is_none() {
        switchboard_dataplane::server::check_plaintext(
            "the admin and discovery API",
            &args.listen,
            args.insecure,
        )
        .map_err(anyhow::Error::msg)?;
    }
    if let Some(m) = &args.telemetry.metrics_listen {
        switchboard_dataplane::server::check_plaintext("metrics", m, args.insecure)
            .map_err(anyhow::Error::msg)?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let config = if args.etcd.is_empty() {
            StoreConfig::Embedded {
                dir: args.data_dir.clone(),
            }
        } else {
            StoreConfig::Etcd {
                endpoints: args.etcd.clone(),
                prefix: args.etcd_prefix.clone(),
                access: etcd_access(args)?,
            }
        };
        let store = open_store(&config)
            .await
            .with_context(|| format!("opening the store ({config:?})"))?;
        // The token exists before the port opens, so whoever sees the port can find it.
        let access = match tls {
            Some(tls) => Access::Tls(tls),
            None => Access::Token(crate::commands::token::provision(&args.data_dir)?),
        };
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let addr = listener.local_addr()?;
        let metrics = match &args.telemetry.metrics_listen {
            Some(m) => Some(
                tokio::net::TcpListener::bind(m)
                    .await
                    .with_context(|| format!("listening on {m}"))?,
            ),
            None => None,
        };
        let id = replica_id();
        tracing::info!(%addr, %id, store = ?config, "control plane listening");
        serve_with(listener, store, id, shutdown_signal(), metrics, access).await?;
        tracing::info!("control plane stopped");
        Ok(0)
    })
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// How to reach etcd, from the flags and `SWITCHBOARD_ETCD_PASSWORD`.
fn etcd_access(
    args: &ControlplaneArgs,
) -> anyhow::Result<switchboard_controlplane::store::etcd::EtcdAccess> {
    let read = |p: &std::path::PathBuf| {
        std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
    };
    let identity = match (&args.etcd_cert, &args.etcd_key) {
        (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
        _ => None,
    };
    let user = match &args.etcd_user {
        Some(user) => {
            let password = std::env::var("SWITCHBOARD_ETCD_PASSWORD").with_context(|| {
                format!("--etcd-user {user} needs its password in SWITCHBOARD_ETCD_PASSWORD")
            })?;
            Some((user.clone(), password))
        }
        None => None,
    };
    Ok(switchboard_controlplane::store::etcd::EtcdAccess {
        ca_pem: args.etcd_ca.as_ref().map(read).transpose()?,
        identity,
        user,
    })
}
