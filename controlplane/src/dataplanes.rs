//! Which data planes are connected to this replica, what they were pushed and what they
//! acknowledged: the answer to `switchboard get dataplanes`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};
use switchboard_proto::v1::{DataPlaneEvent, DataPlaneStatus, Node};
use tokio::sync::broadcast;

/// Milliseconds since the Unix epoch, for status timestamps.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Connection handle returned by [`DataPlanes::connect`].
pub type ConnectionId = u64;

/// The registry of connected data planes, with a feed of changes for `WatchDataPlanes`.
pub struct DataPlanes {
    control_plane_id: String,
    next_id: AtomicU64,
    connected: Mutex<HashMap<ConnectionId, DataPlaneStatus>>,
    events: broadcast::Sender<DataPlaneEvent>,
}

impl DataPlanes {
    /// An empty registry for the replica `control_plane_id`.
    pub fn new(control_plane_id: String) -> Self {
        let (events, _) = broadcast::channel(1024);
        DataPlanes {
            control_plane_id,
            next_id: AtomicU64::new(1),
            connected: Mutex::new(HashMap::new()),
            events,
        }
    }

    /// Records a new stream; `version` is what the data plane says it already serves.
    pub fn connect(&self, node: Node, group: String, version: String) -> ConnectionId {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let status = DataPlaneStatus {
            node: Some(node),
            group,
            acked_version: version,
            last_pushed_version: String::new(),
            last_nack: String::new(),
            connected_unix_ms: now_ms(),
            last_ack_unix_ms: 0,
            control_plane_id: self.control_plane_id.clone(),
        };
        self.lock().insert(id, status.clone());
        self.emit("connected", status);
        id
    }

    /// A push was sent.
    pub fn pushed(&self, id: ConnectionId, version: &str) {
        self.update(id, None, |s| s.last_pushed_version = version.to_string());
    }

    /// The data plane applied `version`.
    pub fn acked(&self, id: ConnectionId, version: &str) {
        self.update(id, Some("acked"), |s| {
            s.acked_version = version.to_string();
            s.last_nack.clear();
            s.last_ack_unix_ms = now_ms();
        });
    }

    /// The desired version is the one the data plane already serves; any NACK is moot.
    pub fn in_sync(&self, id: ConnectionId, version: &str) {
        self.update(id, Some("in-sync"), |s| {
            s.last_pushed_version = version.to_string();
            s.last_nack.clear();
        });
    }

    /// The data plane rejected its last push and keeps serving what it had.
    pub fn nacked(&self, id: ConnectionId, error: &str) {
        self.update(id, Some("nacked"), |s| s.last_nack = error.to_string());
    }

    /// The stream ended.
    pub fn disconnect(&self, id: ConnectionId) {
        let removed = self.lock().remove(&id);
        if let Some(status) = removed {
            self.emit("disconnected", status);
        }
    }

    /// Every connected data plane, ordered by node id.
    pub fn list(&self) -> Vec<DataPlaneStatus> {
        let mut all: Vec<_> = self.lock().values().cloned().collect();
        all.sort_by(|a, b| node_id(a).cmp(node_id(b)));
        all
    }

    /// How many data planes are connected.
    pub fn count(&self) -> usize {
        self.lock().len()
    }

    /// A feed of connects, ACKs, NACKs and disconnects from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<DataPlaneEvent> {
        self.events.subscribe()
    }

    fn update(&self, id: ConnectionId, event: Option<&str>, f: impl FnOnce(&mut DataPlaneStatus)) {
        let snapshot = {
            let mut map = self.lock();
            let Some(status) = map.get_mut(&id) else {
                return;
            };
            f(status);
            status.clone()
        };
        if let Some(event) = event {
            self.emit(event, snapshot);
        }
    }

    fn emit(&self, event: &str, status: DataPlaneStatus) {
        // No watcher is fine.
        let _ = self.events.send(DataPlaneEvent {
            event: event.to_string(),
            status: Some(status),
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ConnectionId, DataPlaneStatus>> {
        // A panic while holding this lock leaves plain data behind; keep serving it.
        self.connected.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn node_id(s: &DataPlaneStatus) -> &str {
    s.node.as_ref().map(|n| n.id.as_str()).unwrap_or("")
}
