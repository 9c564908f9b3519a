//! The store's second namespace: discovery status shared by control-plane replicas
//! (catalogs, health, refresh requests, passive signals), plus the lease that elects the one
//! replica allowed to write discovery results.
//!
//! Status entries are small JSON documents by key. Only the discovery leader writes results,
//! and its writes are fenced: once another replica holds the lease, a deposed leader's
//! writes fail with [`super::StoreError::Fenced`] instead of overwriting newer results.

use futures::Stream;
use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::{oneshot, watch};

/// Every status entry by key, as of one moment.
pub type StatusMap = Arc<BTreeMap<String, Vec<u8>>>;

/// The whole status map again after every change (state of the world, not deltas).
pub type StatusStream = Pin<Box<dyn Stream<Item = Result<StatusMap, super::StoreError>> + Send>>;

/// Proof of leadership that guards status writes; opaque outside the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The key the leader holds (etcd) and the value it wrote there.
    pub(crate) key: String,
    pub(crate) holder: String,
}

/// Held while this replica is the discovery leader; dropping it resigns.
pub struct Leadership {
    pub fence: Fence,
    lost: watch::Receiver<bool>,
    _resign: oneshot::Sender<()>,
}

impl Leadership {
    /// Leadership reported through `lost` (true once gone); `resign` fires when dropped.
    pub(crate) fn new(
        fence: Fence,
        lost: watch::Receiver<bool>,
        resign: oneshot::Sender<()>,
    ) -> Self {
        Leadership {
            fence,
            lost,
            _resign: resign,
        }
    }

    /// Resolves when the lease is lost (expired, revoked, or the store unreachable for
    /// longer than the lease).
    pub async fn lost(&mut self) {
        // An error means the keeper is gone, which is a loss too.
        let _ = self.lost.wait_for(|lost| *lost).await;
    }

    /// Whether leadership is already known to be lost.
    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }
}
