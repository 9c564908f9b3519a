//! Snapshots per data-plane group, built once per registry revision and shared by every
//! stream of that group (so one apply costs one build per group, not one per data plane).

use crate::dataplanes::now_ms;
use crate::secrets::{open_set, Opened, SecretBox};
use crate::session_keys::SessionKeys;
use crate::state::RegistryState;
use crate::store::Revision;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use switchboard_config::{Discovered, NodeGroup, ResourceSet, Snapshot};
use switchboard_proto::v1;

/// A built snapshot in wire form.
pub type WireSnapshot = Arc<v1::Snapshot>;

/// Memo of the latest resource set and the snapshots built from it.
pub struct SnapshotCache {
    inner: Mutex<Memo>,
    keys: SessionKeys,
    secret_box: Option<Arc<SecretBox>>,
}

#[derive(Default)]
struct Memo {
    revision: Revision,
    /// The session-key period the snapshots were built for.
    period: u64,
    /// Identity of the discovery results the memo was built with.
    discovered: usize,
    set: Option<Arc<ResourceSet>>,
    /// The set's Secrets, opened.
    opened: Arc<Opened>,
    by_group: HashMap<NodeGroup, (WireSnapshot, Served)>,
}

/// The upstreams a group's snapshot holds: what its data planes may report on.
pub type Served = Arc<std::collections::BTreeSet<String>>;

impl SnapshotCache {
    /// A cache whose snapshots carry the session keys of the current period (derived from
    /// the registry's master key), so data planes seal session ids that every other replica
    /// can open. Secrets are opened with `secret_box` for the upstreams that reference them.
    pub fn new(keys: SessionKeys, secret_box: Option<Arc<SecretBox>>) -> Self {
        SnapshotCache {
            inner: Mutex::default(),
            keys,
            secret_box,
        }
    }

    /// How long until snapshots must carry the next period's session keys.
    pub fn until_keys_rotate(&self) -> std::time::Duration {
        self.keys.until_next(std::time::SystemTime::now())
    }

    /// The snapshot for `group` as of `state` and `discovered` (built on first use).
    pub fn get(
        &self,
        group: &NodeGroup,
        state: &RegistryState,
        discovered: &Arc<Discovered>,
    ) -> WireSnapshot {
        self.get_with_upstreams(group, state, discovered).0
    }

    /// The same, with the names of the upstreams it holds.
    pub fn get_with_upstreams(
        &self,
        group: &NodeGroup,
        state: &RegistryState,
        discovered: &Arc<Discovered>,
    ) -> (WireSnapshot, Served) {
        let discovered_id = Arc::as_ptr(discovered) as usize;
        let period = self.keys.period_now();
        let set = {
            let mut memo = self.lock();
            if memo.set.is_none()
                || memo.revision != state.revision
                || memo.discovered != discovered_id
                || memo.period != period
            {
                memo.revision = state.revision;
                memo.period = period;
                memo.discovered = discovered_id;
                let set = state.resource_set();
                memo.opened = Arc::new(open_set(&set, self.secret_box.as_deref()));
                memo.set = Some(Arc::new(set));
                memo.by_group.clear();
            }
            if let Some(snap) = memo.by_group.get(group) {
                return snap.clone();
            }
            (memo.set.clone().unwrap_or_default(), memo.opened.clone())
        };
        let (set, opened) = set;
        let (key, previous) = self.keys.for_period(period);
        let snap = Snapshot::build(&set, group, discovered)
            .with_secrets(&opened)
            .with_session_keys(&key, &previous);
        let served: Served = Arc::new(snap.upstreams.keys().cloned().collect());
        let wire = Arc::new(v1::Snapshot {
            version: snap.version.clone(),
            format: switchboard_proto::SNAPSHOT_FORMAT_JSON_V1.to_string(),
            payload: snap.encode().into(),
            created_unix_ms: now_ms(),
        });
        let mut memo = self.lock();
        if memo.revision == state.revision
            && memo.discovered == discovered_id
            && memo.period == period
        {
            memo.by_group
                .insert(group.clone(), (wire.clone(), served.clone()));
        }
        (wire, served)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Memo> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A data plane's group, from its identity.
pub fn group_of(node: &v1::Node) -> NodeGroup {
    NodeGroup {
        cluster: node.cluster.clone(),
        zone: node.zone.clone(),
        labels: node
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}
