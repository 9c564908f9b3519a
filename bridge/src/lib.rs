//! `switchboard bridge`: serves one stdio MCP server over streamable HTTP, so a gateway (or
//! any remote client) can reach a server that only speaks stdio. The child is shared by all
//! HTTP sessions (restarted with backoff when it dies), or started per session. Data planes
//! embed the same bridge on a loopback port of their own for `stdio` Upstreams.

pub mod child;
pub mod connect;
pub mod http;
pub mod origin;
pub mod sessions;

use axum::routing::get;
use axum::Router;
use child::{ChildError, ChildSpec};
use sessions::{Isolation, Sessions};
use std::future::Future;
use std::sync::Arc;
use tokio::sync::watch;

/// How long calls in flight may finish after a stop.
const GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// What to run and where to serve it.
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    pub child: ChildSpec,
    pub isolation: Isolation,
    /// The MCP endpoint's path, e.g. `/mcp`.
    pub path: String,
    /// When set, every MCP request must carry `Authorization: Bearer <this>` (401 otherwise).
    pub bearer: Option<String>,
    /// Origin and Host checks of MCP requests (403 otherwise).
    pub origins: origin::OriginPolicy,
}

/// Why the bridge stopped.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error(transparent)]
    Child(#[from] ChildError),
    #[error("HTTP server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// A bridge serving in the background; dropping it (or [`RunningBridge::stop`]) stops the
/// HTTP server and every child.
pub struct RunningBridge {
    stop: watch::Sender<bool>,
}

impl RunningBridge {
    /// Stops serving and ends every child.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }
}

impl Drop for RunningBridge {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts serving `config` on `listener` in the background (call inside a Tokio runtime).
pub fn spawn(config: BridgeConfig, listener: tokio::net::TcpListener) -> RunningBridge {
    let (stop_tx, stop_rx) = watch::channel(false);
    let sessions = Sessions::start(config.child.clone(), config.isolation, stop_rx.clone());
    let bridge = Arc::new(http::Bridge::new(sessions));
    let mcp = Router::new()
        .route(
            &config.path,
            get(http::get).post(http::post).delete(http::delete),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::new(config.bearer.clone()),
            http::require_bearer,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::new(config.origins.clone()),
            http::check_origin,
        ));
    let app = mcp.route("/healthz", get(http::health)).with_state(bridge);
    tracing::info!(addr = ?listener.local_addr().ok(), path = %config.path, server = %config.child.label, "bridge serving");
    let (mut stop, mut stopped) = (stop_rx.clone(), stop_rx);
    tokio::spawn(async move {
        let served = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        });
        // Open GET streams never end by themselves: after a stop, calls in flight get a
        // moment, then the server goes.
        tokio::select! {
            r = async move { served.await } => if let Err(e) = r {
                tracing::error!(error = %e, "bridge HTTP server failed");
            },
            _ = async {
                let _ = stopped.wait_for(|s| *s).await;
                tokio::time::sleep(GRACE).await;
            } => {}
        }
    });
    RunningBridge { stop: stop_tx }
}

/// Serves `config` on `listener` until `shutdown` resolves (`switchboard bridge`). The
/// child is restarted when it dies; a program that does not exist fails at once.
pub async fn serve(
    config: BridgeConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), BridgeError> {
    // A program that is not there is a start-up error, not a restart loop.
    child::find_program(&config.child.command)?;
    let running = spawn(config, listener);
    shutdown.await;
    running.stop();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    Ok(())
}
