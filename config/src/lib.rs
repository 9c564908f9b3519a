//! Switchboard's resource model: the YAML users write (`Upstream`, `VirtualServer`,
//! `Prompt`, `Resource`, `AuthProvider`, `RateLimitPolicy`), strict parsing with positioned
//! errors, semantic validation, and the snapshot that data planes serve.
//!
//! These types are the single source of truth for every schema: the store keeps their JSON,
//! and snapshot payloads on the wire are their JSON.

pub mod catalog;
pub mod clashes;
pub mod diagnostic;
pub mod duration;
pub mod jq;
pub mod kinds;
pub mod object;
pub mod openapi;
pub mod parse;
pub mod positions;
pub mod schema;
pub mod set;
pub mod snapshot;
pub mod validate;

pub use catalog::{Catalog, Discovered};
pub use clashes::{clashes, Clash};
pub use diagnostic::{Diagnostic, Diagnostics};
pub use object::{Kind, Metadata, Object, Resource, API_VERSION};
pub use parse::{parse_source, Located, Origin};
pub use set::{parse_sources, read_sources, ResourceSet, Source};
pub use snapshot::{NodeGroup, Snapshot, SnapshotError};
pub use validate::{cautions, load_sources, validate};
