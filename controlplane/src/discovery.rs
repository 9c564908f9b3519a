//! The discovery service: one state-of-the-world stream per data plane (see
//! `proto/switchboard/v1/discovery.proto` for the protocol).

use crate::dataplanes::DataPlanes;
use crate::identity::{caller, Caller, Gate};
use crate::snapshots::{group_of, SnapshotCache};
use crate::state::RegistryState;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use switchboard_config::Discovered;
use switchboard_proto::v1::discovery_server::Discovery;
use switchboard_proto::v1::{
    DiscoveryRequest, DiscoveryResponse, EndedSession, StdioReport, UpstreamSignal,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

/// After a registry change, wait this long for more changes before pushing, so a burst of
/// applies becomes a few pushes of the final state.
pub const COALESCE: Duration = Duration::from_millis(50);

/// Where reports of ended sessions go, and where the whole set comes from.
pub type EndedFeeds = (
    mpsc::Sender<(String, EndedSession)>,
    watch::Receiver<crate::ended_sessions::Ended>,
);

/// What every discovery stream of this replica shares.
pub struct Hub {
    pub control_plane_id: String,
    pub state: watch::Receiver<Arc<RegistryState>>,
    pub discovered: watch::Receiver<Arc<Discovered>>,
    pub snapshots: SnapshotCache,
    pub dataplanes: Arc<DataPlanes>,
    /// Passive health signals from data planes, to the relay.
    pub signals: Option<mpsc::Sender<(String, UpstreamSignal)>>,
    /// What data planes found running stdio upstreams, to its relay.
    pub stdio_reports: Option<mpsc::Sender<(String, Option<StdioReport>)>>,
    /// Sessions data planes ended, to their relay; and every ended session, to send.
    pub ended: Option<EndedFeeds>,
    nonces: AtomicU64,
}

impl Hub {
    /// A hub for replica `control_plane_id` following `state`; its snapshots carry keys
    /// derived from the master `session_key` (see [`SnapshotCache::new`]).
    pub fn new(
        control_plane_id: String,
        state: watch::Receiver<Arc<RegistryState>>,
        discovered: watch::Receiver<Arc<Discovered>>,
        dataplanes: Arc<DataPlanes>,
        session_key: String,
        secret_box: Option<Arc<crate::secrets::SecretBox>>,
    ) -> Self {
        Hub {
            control_plane_id,
            state,
            discovered,
            snapshots: SnapshotCache::new(
                crate::session_keys::SessionKeys::new(
                    &session_key,
                    crate::session_keys::ROTATE_EVERY,
                ),
                secret_box,
            ),
            dataplanes,
            signals: None,
            stdio_reports: None,
            ended: None,
            nonces: AtomicU64::new(1),
        }
    }

    /// Relays the data planes' passive health signals to `signals`.
    pub fn with_signals(mut self, signals: mpsc::Sender<(String, UpstreamSignal)>) -> Self {
        self.signals = Some(signals);
        self
    }

    /// Relays the data planes' stdio reports to `reports`.
    pub fn with_stdio_reports(
        mut self,
        reports: mpsc::Sender<(String, Option<StdioReport>)>,
    ) -> Self {
        self.stdio_reports = Some(reports);
        self
    }

    /// Relays the sessions data planes end to `relay`, and sends each data plane every
    /// session `ended` holds.
    pub fn with_ended_sessions(
        mut self,
        relay: mpsc::Sender<(String, EndedSession)>,
        ended: watch::Receiver<crate::ended_sessions::Ended>,
    ) -> Self {
        self.ended = Some((relay, ended));
        self
    }

    fn nonce(&self) -> String {
        let n = self.nonces.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.control_plane_id)
    }
}

/// The tonic service over a shared [`Hub`].
#[derive(Clone)]
pub struct DiscoveryService {
    hub: Arc<Hub>,
    /// How callers are told apart.
    gate: Gate,
}

impl DiscoveryService {
    /// Serves streams from `hub`.
    pub fn new(hub: Arc<Hub>) -> Self {
        DiscoveryService {
            hub,
            gate: Gate::Open,
        }
    }

    /// The same service, taking only the data planes `gate` admits (with certificates:
    /// only for the cluster theirs names).
    pub fn gated(mut self, gate: Gate) -> Self {
        self.gate = gate;
        self
    }
}

/// Whether `caller` may receive the snapshots of `cluster`.
fn may_join(caller: &Caller, cluster: &str) -> Result<(), Status> {
    match caller {
        Caller::Unchecked | Caller::TokenHolder => Ok(()),
        Caller::DataPlane { cluster: allowed } if allowed == cluster => Ok(()),
        Caller::DataPlane { cluster: allowed } => Err(Status::permission_denied(format!(
            "this certificate is for cluster `{allowed}`, not `{cluster}`"
        ))),
        Caller::Operator { name, .. } => Err(Status::permission_denied(format!(
            "operator `{name}`'s certificate cannot open a discovery stream"
        ))),
        Caller::Anonymous => Err(Status::unauthenticated(
            "a discovery stream needs a data plane's client certificate (switchboard certs dataplane), or the control token without TLS",
        )),
    }
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<DiscoveryResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Discovery for DiscoveryService {
    type StreamSnapshotsStream = ResponseStream;

    async fn stream_snapshots(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamSnapshotsStream>, Status> {
        let who = caller(&request, &self.gate, &self.hub.state.borrow());
        // Nothing is read from a caller that could never join.
        if matches!(who, Caller::Anonymous | Caller::Operator { .. }) {
            may_join(&who, "")?;
        }
        let mut inbound = request.into_inner();
        let first = inbound.message().await?.ok_or_else(|| {
            Status::invalid_argument("stream closed before the node said who it is")
        })?;
        let node = first
            .node
            .filter(|n| !n.id.is_empty())
            .ok_or_else(|| Status::invalid_argument("the first message must carry node.id"))?;
        if let Err(refused) = may_join(&who, &node.cluster) {
            tracing::warn!(node = %node.id, cluster = %node.cluster, reason = %refused.message(), "discovery stream refused");
            return Err(refused);
        }
        let (tx, rx) = mpsc::channel(4);
        let hub = self.hub.clone();
        tokio::spawn(async move {
            let session = Session {
                hub,
                node,
                acked: first.version_info,
                inbound,
                tx,
            };
            session.run().await;
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

struct Session {
    hub: Arc<Hub>,
    node: switchboard_proto::v1::Node,
    /// The version the data plane serves (from its hello, then from its ACKs).
    acked: String,
    inbound: Streaming<DiscoveryRequest>,
    tx: mpsc::Sender<Result<DiscoveryResponse, Status>>,
}

impl Session {
    /// Whose reports these are: the node id within its cluster, so a data plane of one
    /// cluster that claims another's node id cannot overwrite or forget that node's reports.
    fn reporter(&self) -> String {
        format!("{}/{}", self.node.cluster, self.node.id)
    }

    async fn run(mut self) {
        let group = group_of(&self.node);
        let hub = self.hub.clone();
        let conn = hub
            .dataplanes
            .connect(self.node.clone(), group.label(), self.acked.clone());
        tracing::info!(node = %self.node.id, group = %group.label(), version = %self.acked, "data plane connected");
        let mut state = hub.state.clone();
        let mut discovered = hub.discovered.clone();
        let mut pending_nonce = String::new();
        let mut last_pushed = String::new();
        let mut dirty = true;
        let mut pushed_at = std::time::Instant::now();
        // The upstreams this data plane's group serves: it may report on those only.
        let mut served: crate::snapshots::Served = Default::default();
        let mut ended = hub.ended.as_ref().map(|(_, e)| e.clone());
        let mut ended_sent = std::collections::HashSet::new();
        let mut ended_dirty = ended.is_some();
        loop {
            if ended_dirty {
                ended_dirty = false;
                if let Some(all) = ended.as_mut().map(|e| e.borrow_and_update().clone()) {
                    let news = crate::ended_sessions::unsent(&all, &mut ended_sent);
                    if !news.is_empty() {
                        let notice = DiscoveryResponse {
                            control_plane_id: hub.control_plane_id.clone(),
                            ended_sessions: news,
                            ..Default::default()
                        };
                        if self.tx.send(Ok(notice)).await.is_err() {
                            break;
                        }
                    }
                }
            }
            if dirty {
                dirty = false;
                let current = state.borrow_and_update().clone();
                let current_discovered = discovered.borrow_and_update().clone();
                let (snap, upstreams) =
                    hub.snapshots
                        .get_with_upstreams(&group, &current, &current_discovered);
                served = upstreams;
                if snap.version == self.acked && last_pushed != self.acked {
                    // The config went back to what the data plane serves (e.g. the change it
                    // rejected was reverted): nothing to push, and no NACK outstanding.
                    last_pushed = self.acked.clone();
                    pending_nonce.clear();
                    hub.dataplanes.in_sync(conn, &self.acked);
                } else if snap.version != self.acked && snap.version != last_pushed {
                    let nonce = hub.nonce();
                    let response = DiscoveryResponse {
                        version_info: snap.version.clone(),
                        nonce: nonce.clone(),
                        snapshot: Some(snap.as_ref().clone()),
                        control_plane_id: hub.control_plane_id.clone(),
                        ended_sessions: Vec::new(),
                    };
                    if self.tx.send(Ok(response)).await.is_err() {
                        break;
                    }
                    tracing::debug!(node = %self.node.id, version = %snap.version, %nonce, "pushed snapshot");
                    crate::metrics::metrics().pushes.inc();
                    pushed_at = std::time::Instant::now();
                    hub.dataplanes.pushed(conn, &snap.version);
                    last_pushed = snap.version.clone();
                    pending_nonce = nonce;
                }
            }
            tokio::select! {
                msg = self.inbound.message() => match msg {
                    Ok(Some(mut msg)) => {
                        let (reports, strays): (Vec<_>, Vec<_>) = std::mem::take(&mut msg.stdio_reports)
                            .into_iter()
                            .partition(|r| served.contains(&r.upstream));
                        msg.upstream_signals.retain(|s| served.contains(&s.upstream));
                        for stray in strays {
                            tracing::warn!(node = %self.node.id, upstream = %stray.upstream, "ignored a report on an upstream this data plane's group does not serve");
                        }
                        if let Some(relay) = &hub.signals {
                            for signal in std::mem::take(&mut msg.upstream_signals) {
                                // A full relay already has news of failures to pass on.
                                let _ = relay.try_send((self.reporter(), signal));
                            }
                        }
                        if let Some((relay, _)) = &hub.ended {
                            if msg.ended_sessions.len() > crate::ended_sessions::MAX_PER_MESSAGE {
                                tracing::warn!(node = %self.node.id, count = msg.ended_sessions.len(), "ignored a message reporting too many ended sessions");
                            } else {
                                for e in std::mem::take(&mut msg.ended_sessions) {
                                    if relay.send((self.reporter(), e)).await.is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                        if let Some(relay) = &hub.stdio_reports {
                            for report in reports {
                                if relay.send((self.reporter(), Some(report))).await.is_err() {
                                    break;
                                }
                            }
                        }
                        if msg.response_nonce.is_empty() || msg.response_nonce != pending_nonce {
                            continue; // a stale or unsolicited message
                        }
                        let m = crate::metrics::metrics();
                        let took = pushed_at.elapsed().as_secs_f64();
                        match msg.error_detail {
                            Some(err) => {
                                tracing::warn!(node = %self.node.id, version = %last_pushed, error = %err.message, "data plane rejected snapshot");
                                m.nacks.inc();
                                m.push_to_ack.with_label_values(&["nack"]).observe(took);
                                hub.dataplanes.nacked(conn, &err.message);
                            }
                            None => {
                                m.acks.inc();
                                m.push_to_ack.with_label_values(&["ack"]).observe(took);
                                self.acked = msg.version_info;
                                hub.dataplanes.acked(conn, &self.acked);
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(status) => {
                        tracing::debug!(node = %self.node.id, %status, "discovery stream error");
                        break;
                    }
                },
                changed = state.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    tokio::time::sleep(COALESCE).await;
                    dirty = true;
                }
                changed = discovered.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    dirty = true;
                }
                () = tokio::time::sleep(hub.snapshots.until_keys_rotate()) => {
                    // A new period: the same config with the next session keys.
                    dirty = true;
                }
                changed = async {
                    match ended.as_mut() {
                        Some(e) => e.changed().await.is_ok(),
                        None => std::future::pending().await,
                    }
                } => {
                    if !changed {
                        ended = None;
                    }
                    ended_dirty = changed;
                }
            }
        }
        hub.dataplanes.disconnect(conn);
        if let Some(relay) = &hub.stdio_reports {
            let _ = relay.send((self.reporter(), None)).await;
        }
        tracing::info!(node = %self.node.id, "data plane disconnected");
    }
}
