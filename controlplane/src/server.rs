//! Running one control-plane replica: open the store, follow it, serve gRPC.

use crate::admin::AdminService;
use crate::dataplanes::DataPlanes;
use crate::discovery::{DiscoveryService, Hub};
use crate::identity::Gate;
use crate::store::{embedded::EmbeddedStore, etcd::EtcdStore, Store, StoreError};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use switchboard_proto::v1::admin_server::AdminServer;
use switchboard_proto::v1::discovery_server::DiscoveryServer;
use tokio::net::TcpListener;

/// Which store a replica uses.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    Etcd {
        endpoints: Vec<String>,
        prefix: String,
        access: crate::store::etcd::EtcdAccess,
    },
    Embedded {
        dir: PathBuf,
    },
}

/// Why a replica stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("cannot listen: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Secrets(#[from] crate::secrets::SecretError),
}

/// The key that seals gateway session ids: created once per registry, shared by every
/// control-plane replica (so all of them build the same snapshots).
async fn session_key(
    store: &dyn Store,
    secret_box: Option<&crate::secrets::SecretBox>,
) -> Result<String, ServeError> {
    use base64::Engine;
    use ring::rand::SecureRandom;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut fresh = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut fresh)
        .map_err(|_| StoreError::Unavailable("no system randomness for the session key".into()))?;
    // Sealed with the Secrets key when there is one, so the store alone does not give it
    // away (a key stored before it was sealed keeps working).
    let stored = match secret_box {
        Some(sealer) => sealer
            .seal("session-key", "key", &b64.encode(fresh))
            .into_bytes(),
        None => fresh.to_vec(),
    };
    let kept = store.secret("session-key", &stored).await?;
    let sealed = std::str::from_utf8(&kept)
        .ok()
        .filter(|t| t.starts_with(crate::secrets::SEALED_PREFIX));
    match (sealed, secret_box) {
        (Some(text), Some(sealer)) => Ok(sealer.open("session-key", "key", text)?),
        (Some(_), None) => Err(ServeError::Secrets(crate::secrets::SecretError::NoKey)),
        (None, _) => Ok(b64.encode(kept)),
    }
}

/// Opens the configured store.
pub async fn open_store(config: &StoreConfig) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match config {
        StoreConfig::Etcd {
            endpoints,
            prefix,
            access,
        } => Arc::new(EtcdStore::connect_with(endpoints, prefix, access).await?),
        StoreConfig::Embedded { dir } => Arc::new(EmbeddedStore::open(dir)?),
    })
}

/// A stable-enough replica id for nonces and `get dataplanes`: host name and pid.
pub fn replica_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "cp".into());
    format!("{host}-{}", std::process::id())
}

/// What `/metrics`, `/healthz` and `/readyz` read.
#[derive(Clone)]
struct Probe {
    store: Arc<dyn Store>,
    dataplanes: Arc<DataPlanes>,
    status: tokio::sync::watch::Receiver<Arc<crate::upstreams::follow::Status>>,
    id: String,
}

/// The plain-HTTP endpoints beside gRPC.
fn http_routes(probe: Probe) -> axum::Router {
    use axum::http::{header, StatusCode};
    use axum::routing::get;
    axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(
                |axum::extract::State(p): axum::extract::State<Probe>| async move {
                    // Ready when the store answers a point read.
                    let probe = p
                        .store
                        .get(switchboard_config::Kind::Upstream, "readyz-probe");
                    match tokio::time::timeout(std::time::Duration::from_secs(2), probe).await {
                        Ok(Ok(_)) => (StatusCode::OK, "ready\n".to_string()),
                        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}\n")),
                        Err(_) => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "store: no answer within 2s\n".to_string(),
                        ),
                    }
                },
            ),
        )
        .route(
            "/metrics",
            get(
                |axum::extract::State(p): axum::extract::State<Probe>| async move {
                    let status = p.status.borrow().clone();
                    let body = crate::metrics::metrics().render(&p.dataplanes, &status, &p.id);
                    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
                },
            ),
        )
        .with_state(probe)
}

/// Serves discovery and admin gRPC, and `/metrics`, `/healthz` and `/readyz` over HTTP, on
/// `listener` (and the HTTP endpoints on `metrics_listener` too) until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    store: Arc<dyn Store>,
    id: String,
    shutdown: impl Future<Output = ()> + Send + 'static,
    metrics_listener: Option<TcpListener>,
) -> Result<(), ServeError> {
    serve_with(
        listener,
        store,
        id,
        shutdown,
        metrics_listener,
        Access::Open,
    )
    .await
}

/// Who may call a control plane.
#[derive(Clone)]
pub enum Access {
    /// Anyone (in-process use and the library's tests).
    Open,
    /// Holders of this token (plain text on loopback).
    Token(String),
    /// Callers with client certificates, over TLS.
    Tls(ServeTls),
}

/// TLS for the control plane's API: its certificate, and the CA whose client certificates
/// name data planes (by cluster) and operators (by role).
#[derive(Clone)]
pub struct ServeTls {
    pub cert_pem: String,
    pub key_pem: String,
    pub client_ca_pem: String,
}

/// [`serve`], letting in only what `access` says: with TLS every discovery stream and admin
/// call needs a client certificate from `client_ca_pem` that names who it is; with a token,
/// the token.
pub async fn serve_with(
    listener: TcpListener,
    store: Arc<dyn Store>,
    id: String,
    shutdown: impl Future<Output = ()> + Send + 'static,
    metrics_listener: Option<TcpListener>,
    access: Access,
) -> Result<(), ServeError> {
    let gate = match &access {
        Access::Open => Gate::Open,
        Access::Token(t) => Gate::token(t),
        Access::Tls(_) => Gate::Certificates,
    };
    let tls = match access {
        Access::Tls(tls) => Some(tls),
        _ => None,
    };
    let store = crate::store::metered::Metered::wrap(store);
    let state = crate::state::follow(store.clone());
    let dataplanes = Arc::new(DataPlanes::new(id.clone()));
    let status = crate::upstreams::follow::follow(store.clone());
    let discovered = crate::upstreams::follow::discovered(status.clone());
    let secret_box = crate::secrets::SecretBox::from_env()?.map(Arc::new);
    if secret_box.is_none() {
        tracing::info!(
            "{} is not set: Secrets cannot be applied",
            crate::secrets::KEY_ENV
        );
    }
    let discovery_leader = crate::upstreams::leader::spawn(
        store.clone(),
        state.clone(),
        status.clone(),
        id.clone(),
        secret_box.clone(),
    );
    let session_key = session_key(store.as_ref(), secret_box.as_deref()).await?;
    let replicas = crate::replicas::publish(store.clone(), dataplanes.clone(), id.clone());
    let ended = crate::ended_sessions::follow(status.clone());
    let pruning = crate::ended_sessions::prune(store.clone(), ended.clone());
    let (exit_store, exit_key) = (store.clone(), crate::replicas::replicas_key(&id));
    let probe = Probe {
        store: store.clone(),
        dataplanes: dataplanes.clone(),
        status: status.clone(),
        id: id.clone(),
    };
    let side = metrics_listener.map(|l| {
        let app = http_routes(probe.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(l, app).await {
                tracing::error!(error = %e, "metrics listener stopped");
            }
        })
    });
    let hub = Arc::new(
        Hub::new(
            id,
            state.clone(),
            discovered,
            dataplanes.clone(),
            session_key,
            secret_box.clone(),
        )
        .with_signals(crate::upstreams::signals::relay(store.clone()))
        .with_stdio_reports(crate::upstreams::stdio::relay(
            store.clone(),
            state.clone(),
            status.clone(),
        ))
        .with_ended_sessions(crate::ended_sessions::relay(store.clone()), ended.clone()),
    );
    let discovery = DiscoveryServer::new(DiscoveryService::new(hub).gated(gate.clone()))
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(256 << 20);
    let admin = AdminServer::new(
        AdminService::new(store, state, status, dataplanes, secret_box).gated(gate),
    )
    .max_decoding_message_size(64 << 20);
    let routes = tonic::service::Routes::from(http_routes(probe))
        .add_service(discovery)
        .add_service(admin);
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &tls {
        // Client certificates are optional at the handshake (health probes have none) and
        // required by every discovery stream and admin call.
        let config = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(
                &tls.cert_pem,
                &tls.key_pem,
            ))
            .client_ca_root(tonic::transport::Certificate::from_pem(&tls.client_ca_pem))
            .client_auth_optional(true);
        builder = builder.tls_config(config)?;
    }
    builder
        .accept_http1(true)
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(20)))
        .add_routes(routes)
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown,
        )
        .await?;
    discovery_leader.abort();
    replicas.abort();
    pruning.abort();
    if let Some(side) = side {
        side.abort();
    }
    // Let the other replicas count our data planes' new homes at once.
    let _ = exit_store.status_delete(&exit_key, None).await;
    Ok(())
}
