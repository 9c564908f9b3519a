//! What an upstream offers (discovered by the control plane), carried in snapshots so data
//! planes answer listings from memory. Entries are kept as the upstream sent them.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// What discovery knows about upstreams, as snapshots need it: catalogs, and which
/// upstreams are down right now (with the reason clients will be given).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Discovered {
    pub catalogs: BTreeMap<String, Catalog>,
    pub unhealthy: BTreeMap<String, String>,
    /// Connected data planes per group label ([`crate::NodeGroup::label`]).
    pub replicas: BTreeMap<String, u32>,
}

impl From<BTreeMap<String, Catalog>> for Discovered {
    fn from(catalogs: BTreeMap<String, Catalog>) -> Self {
        Discovered {
            catalogs,
            unhealthy: BTreeMap::new(),
            replicas: BTreeMap::new(),
        }
    }
}

/// One upstream's tools, prompts, resources and resource templates.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Catalog {
    /// The protocol version the upstream agreed to.
    #[serde(default)]
    pub protocol_version: String,
    #[serde(default)]
    pub tools: Vec<Value>,
    #[serde(default)]
    pub prompts: Vec<Value>,
    #[serde(default)]
    pub resources: Vec<Value>,
    #[serde(default)]
    pub resource_templates: Vec<Value>,
}

impl Catalog {
    /// The `name` of each tool, in order.
    pub fn tool_names(&self) -> impl Iterator<Item = &str> {
        self.tools
            .iter()
            .filter_map(|t| t.get("name").and_then(Value::as_str))
    }
}

impl Catalog {
    /// A content hash: equal catalogs hash equal on every replica, so an unchanged refresh
    /// changes nothing downstream.
    pub fn content_hash(&self) -> String {
        use sha2::{Digest, Sha256};
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(&Sha256::digest(&bytes)[..12])
    }
}
