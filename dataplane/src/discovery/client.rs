//! The discovery client proper (see the module docs of `discovery`).

use super::persist::{load_snapshot, save_snapshot};
use crate::ended_sessions::EndedSessions;
use crate::signals::Signals;
use arc_swap::ArcSwapOption;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use switchboard_config::Snapshot;
use switchboard_proto::v1::discovery_client::DiscoveryClient as GrpcClient;
use switchboard_proto::v1::{DiscoveryRequest, DiscoveryResponse, ErrorDetail, Node, StdioReport};
use switchboard_proto::SNAPSHOT_FORMAT_JSON_V1;
use tokio::sync::{mpsc, watch};
use tonic::transport::Endpoint;

/// gRPC INVALID_ARGUMENT: the code a NACK carries for a snapshot that fails checks.
const INVALID_ARGUMENT: i32 = 3;

/// Where to connect and who we are.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Control-plane addresses (`http://host:port`), tried in turn.
    pub control_planes: Vec<String>,
    pub node: Node,
    /// Where the last good snapshot is kept (none: not persisted).
    pub state_dir: Option<PathBuf>,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// TLS to the control planes (their addresses are then `https://`).
    pub tls: Option<ControlPlaneTls>,
    /// The control token, for control planes that serve plain text on loopback.
    pub token: Option<String>,
}

/// How a data plane (or the CLI) checks the control plane and proves who it is.
#[derive(Clone)]
pub struct ControlPlaneTls {
    /// The CA (PEM) of the control plane's certificate.
    pub ca_pem: String,
    /// This caller's certificate chain and key (PEM), from `switchboard certs`.
    pub identity: Option<(String, String)>,
}

impl std::fmt::Debug for ControlPlaneTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlaneTls")
            .field("identity", &self.identity.is_some())
            .finish()
    }
}

impl ControlPlaneTls {
    /// tonic's form of these settings.
    pub fn client_config(&self) -> tonic::transport::ClientTlsConfig {
        let mut config = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&self.ca_pem));
        if let Some((cert, key)) = &self.identity {
            config = config.identity(tonic::transport::Identity::from_pem(cert, key));
        }
        config
    }
}

impl ClientConfig {
    /// Sensible defaults for one control plane.
    pub fn new(control_plane: impl Into<String>, node: Node) -> Self {
        ClientConfig {
            control_planes: vec![control_plane.into()],
            node,
            state_dir: None,
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            tls: None,
            token: None,
        }
    }
}

/// What the client is doing, for readiness checks, metrics and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientStatus {
    /// Version being served ("" before the first snapshot).
    pub version: String,
    /// The control plane of the open stream, if any.
    pub connected_to: Option<String>,
    pub pushes: u64,
    pub acks: u64,
    pub nacks: u64,
    /// The last connection failure or rejected snapshot.
    pub last_error: Option<String>,
}

/// Extra checks a data plane runs on a snapshot before serving it (e.g. that it can build
/// its routes from it); an `Err` NACKs the snapshot.
pub type Check = Arc<dyn Fn(&Snapshot) -> Result<(), String> + Send + Sync>;

/// Keeps `current` up to date from the control plane.
pub struct DiscoveryClient {
    config: ClientConfig,
    current: Arc<ArcSwapOption<Snapshot>>,
    status: watch::Sender<ClientStatus>,
    check: Check,
    signals: Arc<Signals>,
    stdio: Option<(StdioReports, watch::Receiver<u64>)>,
    ended: Arc<EndedSessions>,
}

/// What this data plane has to say about the stdio upstreams it runs (see
/// [`crate::stdio::StdioUpstreams::reports`]).
pub type StdioReports = Arc<dyn Fn() -> Vec<StdioReport> + Send + Sync>;

/// How often failures seen on the hot path are reported.
const SIGNAL_EVERY: Duration = Duration::from_secs(1);

impl DiscoveryClient {
    /// A client that starts from the persisted snapshot when there is a valid one.
    pub fn new(config: ClientConfig) -> Self {
        let current = Arc::new(ArcSwapOption::empty());
        let mut status = ClientStatus::default();
        if let Some(dir) = &config.state_dir {
            match load_snapshot(dir) {
                Ok(Some(snap)) => {
                    tracing::info!(version = %snap.version, "serving the persisted snapshot until a control plane answers");
                    status.version = snap.version.clone();
                    current.store(Some(Arc::new(snap)));
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "ignoring the persisted snapshot");
                    status.last_error = Some(e.to_string());
                }
            }
        }
        let (status, _) = watch::channel(status);
        DiscoveryClient {
            config,
            current,
            status,
            check: Arc::new(|_| Ok(())),
            signals: Arc::default(),
            stdio: None,
            ended: Arc::default(),
        }
    }

    /// Reports the failures `signals` collects to the control plane (passive health).
    pub fn with_signals(mut self, signals: Arc<Signals>) -> Self {
        self.signals = signals;
        self
    }

    /// Reports the sessions ended here as they end, and adds those the control plane says
    /// other data planes ended.
    pub fn with_ended_sessions(mut self, ended: Arc<EndedSessions>) -> Self {
        self.ended = ended;
        self
    }

    /// Sends `reports()` on every new stream and whenever `changes` ticks.
    pub fn with_stdio_reports(
        mut self,
        reports: StdioReports,
        changes: watch::Receiver<u64>,
    ) -> Self {
        self.stdio = Some((reports, changes));
        self
    }

    /// Adds a check every snapshot must pass before it is served.
    pub fn with_check(mut self, check: Check) -> Self {
        self.check = check;
        self
    }

    /// The snapshot being served; swapped atomically, so a reader sees one whole snapshot.
    pub fn current(&self) -> Arc<ArcSwapOption<Snapshot>> {
        self.current.clone()
    }

    /// Follows the client's status.
    pub fn status(&self) -> watch::Receiver<ClientStatus> {
        self.status.subscribe()
    }

    /// Runs until the task is dropped: connect, follow, reconnect with jittered backoff.
    pub async fn run(self) {
        let planes = self.config.control_planes.clone();
        if planes.is_empty() {
            tracing::warn!("no control plane configured; serving the persisted snapshot only");
            std::future::pending::<()>().await;
        }
        let mut failures: u32 = 0;
        for endpoint in planes.iter().cycle() {
            match self.session(endpoint).await {
                Ok(received) => {
                    tracing::info!(control_plane = %endpoint, "discovery stream closed");
                    if received {
                        failures = 0;
                    }
                }
                Err(e) => {
                    tracing::warn!(control_plane = %endpoint, error = %e, "discovery stream failed");
                    self.status.send_modify(|s| s.last_error = Some(e));
                }
            }
            self.status.send_modify(|s| s.connected_to = None);
            let delay = self.backoff(failures);
            failures = failures.saturating_add(1);
            tokio::time::sleep(delay).await;
        }
    }

    fn backoff(&self, failures: u32) -> Duration {
        let base = self
            .config
            .min_backoff
            .saturating_mul(2u32.saturating_pow(failures.min(16)))
            .min(self.config.max_backoff);
        // Full jitter in [base/2, base]: replicas restarted together do not reconnect together.
        let half = base / 2;
        half + half.mul_f64(fastrand::f64())
    }

    /// One stream; Ok(true) when it delivered at least one push before ending.
    async fn session(&self, endpoint: &str) -> Result<bool, String> {
        let mut channel = Endpoint::from_shared(endpoint.to_string())
            .map_err(|e| format!("bad control-plane address `{endpoint}`: {e}"))?;
        if let Some(tls) = &self.config.tls {
            channel = channel
                .tls_config(tls.client_config())
                .map_err(|e| format!("TLS settings for {endpoint}: {e}"))?;
        }
        let channel = channel
            .connect_timeout(Duration::from_secs(3))
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .connect()
            .await
            .map_err(|e| format!("cannot connect to {endpoint}: {e}"))?;
        let mut grpc = GrpcClient::new(channel).max_decoding_message_size(256 << 20);
        let (tx, rx) = mpsc::channel(8);
        let hello = DiscoveryRequest {
            node: Some(self.config.node.clone()),
            version_info: self.version(),
            ..Default::default()
        };
        tx.send(hello)
            .await
            .map_err(|_| "request stream closed".to_string())?;
        let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        if let Some(token) = &self.config.token {
            let value = format!("Bearer {token}")
                .parse()
                .map_err(|_| "the control token is not a valid header value".to_string())?;
            request.metadata_mut().insert("authorization", value);
        }
        let mut responses = grpc
            .stream_snapshots(request)
            .await
            .map_err(|s| format!("{endpoint} refused the stream: {}", s.message()))?
            .into_inner();
        self.status
            .send_modify(|s| s.connected_to = Some(endpoint.to_string()));
        tracing::info!(control_plane = %endpoint, version = %self.version(), "discovery stream open");
        let mut received = false;
        let mut report = tokio::time::interval(SIGNAL_EVERY);
        let mut stdio_changes = self.stdio.as_ref().map(|(_, c)| c.clone());
        // A new stream may reach a replica that never heard of them: say it all again.
        if let Some(note) = self.stdio_note() {
            if tx.send(note).await.is_err() {
                return Ok(received);
            }
        }
        loop {
            let stdio_changed = async {
                match stdio_changes.as_mut() {
                    Some(c) => c.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            let message = tokio::select! {
                m = responses.message() => m,
                () = self.ended.reported.notified() => {
                    let ended_sessions = self.ended.take_unreported();
                    if ended_sessions.is_empty() {
                        continue;
                    }
                    let note = DiscoveryRequest {
                        version_info: self.version(),
                        ended_sessions,
                        ..Default::default()
                    };
                    if let Err(unsent) = tx.send(note).await {
                        self.ended.unsent(unsent.0.ended_sessions);
                        return Ok(received);
                    }
                    continue;
                }
                alive = stdio_changed => {
                    if !alive {
                        stdio_changes = None;
                    } else if let Some(note) = self.stdio_note() {
                        if tx.send(note).await.is_err() {
                            return Ok(received);
                        }
                    }
                    continue;
                }
                _ = report.tick() => {
                    let upstream_signals = self.signals.take();
                    if !upstream_signals.is_empty() {
                        let note = DiscoveryRequest {
                            version_info: self.version(),
                            upstream_signals,
                            ..Default::default()
                        };
                        if tx.send(note).await.is_err() {
                            return Ok(received);
                        }
                    }
                    continue;
                }
            };
            let response = match message {
                Ok(Some(r)) => r,
                Ok(None) => return Ok(received),
                Err(s) => return Err(format!("stream from {endpoint} broke: {}", s.message())),
            };
            self.ended.learn(&response.ended_sessions);
            if response.snapshot.is_none() && !response.ended_sessions.is_empty() {
                continue; // a notice of ended sessions: nothing to ACK
            }
            received = true;
            let reply = self.handle(response);
            if tx.send(reply).await.is_err() {
                return Ok(received);
            }
        }
    }

    /// A message carrying every stdio report, if there are any.
    fn stdio_note(&self) -> Option<DiscoveryRequest> {
        let (reports, _) = self.stdio.as_ref()?;
        let stdio_reports = reports();
        (!stdio_reports.is_empty()).then(|| DiscoveryRequest {
            version_info: self.version(),
            stdio_reports,
            ..Default::default()
        })
    }

    fn version(&self) -> String {
        self.current
            .load()
            .as_ref()
            .map(|s| s.version.clone())
            .unwrap_or_default()
    }

    /// Checks and applies one push; returns the ACK or NACK to send.
    fn handle(&self, response: DiscoveryResponse) -> DiscoveryRequest {
        self.status.send_modify(|s| s.pushes += 1);
        match self.accept(&response) {
            Ok(snapshot) => {
                let version = snapshot.version.clone();
                if let Some(dir) = &self.config.state_dir {
                    if let Err(e) = save_snapshot(dir, &snapshot) {
                        // Serving matters more than persisting: keep going, say so.
                        tracing::error!(error = %e, "cannot persist the snapshot");
                    }
                }
                self.current.store(Some(Arc::new(snapshot)));
                let created = response.snapshot.as_ref().map_or(0, |w| w.created_unix_ms);
                let m = crate::metrics::metrics();
                m.serving(&version, created);
                m.snapshots_applied.inc();
                self.status.send_modify(|s| {
                    s.version = version.clone();
                    s.acks += 1;
                });
                tracing::info!(%version, "applied snapshot");
                DiscoveryRequest {
                    version_info: version,
                    response_nonce: response.nonce,
                    ..Default::default()
                }
            }
            Err(message) => {
                tracing::warn!(version = %response.version_info, error = %message, "rejected snapshot; still serving the last good one");
                crate::metrics::metrics().snapshots_rejected.inc();
                self.status.send_modify(|s| {
                    s.nacks += 1;
                    s.last_error = Some(message.clone());
                });
                DiscoveryRequest {
                    version_info: self.version(),
                    response_nonce: response.nonce,
                    error_detail: Some(ErrorDetail {
                        code: INVALID_ARGUMENT,
                        message,
                    }),
                    ..Default::default()
                }
            }
        }
    }

    fn accept(&self, response: &DiscoveryResponse) -> Result<Snapshot, String> {
        let wire = response
            .snapshot
            .as_ref()
            .ok_or("push carries no snapshot")?;
        if wire.format != SNAPSHOT_FORMAT_JSON_V1 {
            return Err(format!("unsupported snapshot format `{}`", wire.format));
        }
        let snapshot = Snapshot::decode(&wire.payload).map_err(|e| e.to_string())?;
        if snapshot.version != response.version_info {
            return Err(format!(
                "push says version `{}` but carries `{}`",
                response.version_info, snapshot.version
            ));
        }
        (self.check)(&snapshot)?;
        Ok(snapshot)
    }
}
