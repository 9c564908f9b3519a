//! `switchboard bridge`: serves one stdio MCP server over streamable HTTP, so a gateway (or
//! any remote client) can reach a server that only speaks stdio. The child is started once
//! and shared by all HTTP sessions; the bridge exits when the child does, so a supervisor
//! restarts both.

pub mod child;
pub mod connect;
pub mod http;

use axum::routing::get;
use axum::Router;
use child::{Child, ChildError};
use std::future::Future;
use std::sync::Arc;

/// How long calls in flight may finish after a stop.
const GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// What to run and where to serve it.
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    pub command: String,
    pub args: Vec<String>,
    /// The MCP endpoint's path, e.g. `/mcp`.
    pub path: String,
    /// When set, every MCP request must carry `Authorization: Bearer <this>` (401 otherwise).
    pub bearer: Option<String>,
}

/// Why the bridge stopped.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error(transparent)]
    Child(#[from] ChildError),
    #[error("HTTP server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Starts the stdio server and serves it on `listener` until `shutdown` resolves or the
/// server exits (then an error saying why).
pub async fn serve(
    config: BridgeConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), BridgeError> {
    let child = Child::start(&config.command, &config.args).await?;
    let bridge = Arc::new(http::Bridge::new(child.clone()));
    let mcp = Router::new()
        .route(
            &config.path,
            get(http::get).post(http::post).delete(http::delete),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::new(config.bearer.clone()),
            http::require_bearer,
        ));
    let app = mcp.route("/healthz", get(http::health)).with_state(bridge);
    tracing::info!(addr = ?listener.local_addr().ok(), path = %config.path, command = %config.command, "bridge serving");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
            })
            .await
    });
    tokio::select! {
        _ = shutdown => {}
        _ = child.wait_exit() => {}
    }
    let _ = stop_tx.send(());
    // Open GET streams never end by themselves: give calls in flight a moment, then go.
    if let Ok(Ok(Err(e))) = tokio::time::timeout(GRACE, server).await {
        return Err(e.into());
    }
    child.kill();
    match child.exit_reason() {
        Some(why) => Err(ChildError::Exited(why).into()),
        None => Ok(()),
    }
}
