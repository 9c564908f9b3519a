//! The values a store holds and the operations on them, shared by both implementations.

use super::Revision;
use serde::{Deserialize, Serialize};
use switchboard_config::Kind;

/// One stored resource with its bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub kind: Kind,
    pub name: String,
    /// Starts at 1 and increments on every change of content.
    pub generation: u64,
    /// Revision of the last write to this record.
    pub mod_revision: Revision,
    /// The resource's canonical JSON (`switchboard_config::Resource::to_json`).
    pub json: String,
}

/// What a record's stored value holds besides its key (and, in etcd, its revision).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StoredValue {
    pub generation: u64,
    pub resource: serde_json::Value,
}

impl StoredValue {
    /// Encodes a record's value; canonical JSON in, compact JSON out.
    pub(crate) fn encode(generation: u64, json: &str) -> Result<Vec<u8>, serde_json::Error> {
        let resource: serde_json::Value = serde_json::from_str(json)?;
        serde_json::to_vec(&StoredValue {
            generation,
            resource,
        })
    }

    /// Decodes a stored value into the record's `(generation, json)`.
    pub(crate) fn decode(bytes: &[u8]) -> Result<(u64, String), serde_json::Error> {
        let v: StoredValue = serde_json::from_slice(bytes)?;
        Ok((v.generation, serde_json::to_string(&v.resource)?))
    }
}

/// A consistent read of everything.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub records: Vec<Record>,
    pub revision: Revision,
}

/// A write's precondition on the record's current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Last-writer-wins (no precondition).
    Any,
    /// The record must not exist (create).
    Absent,
    /// The record must exist with exactly this mod revision (update what you read).
    ModRevision(Revision),
}

impl Expect {
    /// Whether the precondition holds for the record as it is now (None: absent).
    pub fn holds(self, current: Option<&Record>) -> bool {
        match (self, current) {
            (Expect::Any, _) | (Expect::Absent, None) => true,
            (Expect::ModRevision(r), Some(c)) => c.mod_revision == r,
            _ => false,
        }
    }
}

/// One operation of an atomic write.
#[derive(Debug, Clone)]
pub enum Write {
    Put {
        kind: Kind,
        name: String,
        generation: u64,
        json: String,
        expect: Expect,
    },
    Delete {
        kind: Kind,
        name: String,
        expect: Expect,
    },
}

impl Write {
    /// The record this operation touches.
    pub fn target(&self) -> (Kind, &str) {
        match self {
            Write::Put { kind, name, .. } | Write::Delete { kind, name, .. } => (*kind, name),
        }
    }

    /// The operation's precondition.
    pub fn expect(&self) -> Expect {
        match self {
            Write::Put { expect, .. } | Write::Delete { expect, .. } => *expect,
        }
    }
}

/// What happened to one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Put(Record),
    Delete { kind: Kind, name: String },
}

/// One change at one revision (a multi-record write gives several events of one revision).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub revision: Revision,
    pub change: Change,
}
