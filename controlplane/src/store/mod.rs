//! Where the registry lives. Two implementations of one contract: etcd for clusters of
//! control-plane replicas, and an embedded redb file for a single node. Both give every
//! change a revision, guard writes by the revision a writer last saw (so concurrent writers
//! never lose an update), and replay changes from any revision still in history.

pub mod embedded;
pub mod etcd;
mod etcd_status;
pub mod metered;
mod record;
pub mod status;

pub use record::{Change, Event, Expect, Listing, Record, Write};
pub use status::{Fence, Leadership, StatusMap, StatusStream};

use futures::Stream;
use std::pin::Pin;
use switchboard_config::Kind;

/// A store revision: increases with every committed write.
pub type Revision = u64;

/// Batches of changes, each batch one committed write (in revision order).
pub type EventStream = Pin<Box<dyn Stream<Item = Result<Vec<Event>, StoreError>> + Send>>;

/// What can go wrong talking to a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A write's expectation failed: someone else changed the resource first. Re-read, retry.
    #[error("{kind} `{name}` was changed concurrently")]
    Conflict { kind: Kind, name: String },
    /// The history a watch asked for is gone; the watcher must re-list.
    #[error("revision {requested} is compacted (history starts after {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    /// The store could not be reached or answered with an error; try again later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A fenced write by a replica that is no longer the discovery leader.
    #[error("not the discovery leader any more")]
    Fenced,
    /// Stored bytes do not decode: a bug or manual tampering.
    #[error("corrupt record at `{key}`: {reason}")]
    Corrupt { key: String, reason: String },
}

/// The registry's storage contract (see the module docs).
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Every record, consistent as of the returned revision.
    async fn list(&self) -> Result<Listing, StoreError>;

    /// One record, if present.
    async fn get(&self, kind: Kind, name: &str) -> Result<Option<Record>, StoreError>;

    /// Applies all writes atomically, or none when any expectation fails (`Conflict`).
    /// Returns the revision of the commit.
    async fn write(&self, writes: Vec<Write>) -> Result<Revision, StoreError>;

    /// Every change committed after revision `after`, then live changes, in order.
    async fn watch(&self, after: Revision) -> Result<EventStream, StoreError>;

    /// Forgets history up to and including `revision` (maintenance, and tests of recovery).
    async fn compact(&self, revision: Revision) -> Result<(), StoreError>;

    /// The registry-wide secret `name`, stored as `fresh` if there is none yet. Every
    /// replica gets the same value: the first writer wins and the rest read it.
    async fn secret(&self, name: &str, fresh: &[u8]) -> Result<Vec<u8>, StoreError>;

    /// Sets status entry `key`; with a fence, only while that leadership still holds.
    async fn status_put(
        &self,
        key: &str,
        value: Vec<u8>,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError>;

    /// Removes status entry `key` (absent is fine); fenced like [`Store::status_put`].
    async fn status_delete(&self, key: &str, fence: Option<&Fence>) -> Result<(), StoreError>;

    /// The status map now, then again after every change. Ends with an error when the
    /// store's feed breaks; the caller follows again.
    async fn status_follow(&self) -> Result<StatusStream, StoreError>;

    /// Waits until this replica (`holder`, unique per process) holds the discovery lease.
    /// A lost lease is reported through [`Leadership::lost`]; campaign again after it.
    async fn campaign(&self, holder: &str) -> Result<Leadership, StoreError>;
}

/// Key of a record inside the store's namespace: `Kind/name`.
pub fn record_key(kind: Kind, name: &str) -> String {
    format!("{}/{name}", kind.as_str())
}

/// The inverse of [`record_key`].
pub fn parse_record_key(key: &str) -> Option<(Kind, String)> {
    let (kind, name) = key.split_once('/')?;
    let kind: Kind = kind.parse().ok()?;
    Some((kind, name.to_string()))
}
