//! A store that counts its operations and their errors (for `/metrics`), around any other.

use super::{
    EventStream, Fence, Leadership, Listing, Record, Revision, StatusStream, Store, StoreError,
    Write,
};
use crate::metrics::metrics;
use std::sync::Arc;
use switchboard_config::Kind;

/// Counts every call into `inner`, by operation and outcome.
pub struct Metered {
    inner: Arc<dyn Store>,
}

impl Metered {
    /// Wraps `inner`.
    pub fn wrap(inner: Arc<dyn Store>) -> Arc<dyn Store> {
        Arc::new(Metered { inner })
    }
}

fn count<T>(op: &str, result: Result<T, StoreError>) -> Result<T, StoreError> {
    let outcome = match &result {
        Ok(_) => "ok",
        Err(StoreError::Conflict { .. }) => "conflict",
        Err(StoreError::Fenced) => "fenced",
        Err(_) => "error",
    };
    metrics().store_ops.with_label_values(&[op, outcome]).inc();
    result
}

#[async_trait::async_trait]
impl Store for Metered {
    async fn list(&self) -> Result<Listing, StoreError> {
        count("list", self.inner.list().await)
    }

    async fn get(&self, kind: Kind, name: &str) -> Result<Option<Record>, StoreError> {
        count("get", self.inner.get(kind, name).await)
    }

    async fn write(&self, writes: Vec<Write>) -> Result<Revision, StoreError> {
        count("write", self.inner.write(writes).await)
    }

    async fn watch(&self, after: Revision) -> Result<EventStream, StoreError> {
        count("watch", self.inner.watch(after).await)
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        count("compact", self.inner.compact(revision).await)
    }

    async fn secret(&self, name: &str, fresh: &[u8]) -> Result<Vec<u8>, StoreError> {
        count("secret", self.inner.secret(name, fresh).await)
    }

    async fn status_put(
        &self,
        key: &str,
        value: Vec<u8>,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError> {
        count("status_put", self.inner.status_put(key, value, fence).await)
    }

    async fn status_delete(&self, key: &str, fence: Option<&Fence>) -> Result<(), StoreError> {
        count("status_delete", self.inner.status_delete(key, fence).await)
    }

    async fn status_follow(&self) -> Result<StatusStream, StoreError> {
        count("status_follow", self.inner.status_follow().await)
    }

    async fn campaign(&self, holder: &str) -> Result<Leadership, StoreError> {
        count("campaign", self.inner.campaign(holder).await)
    }
}
