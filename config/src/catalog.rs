//! What an upstream offers (discovered by the control plane), carried in snapshots so data
//! planes answer listings from memory. Entries are kept as the upstream sent them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

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
