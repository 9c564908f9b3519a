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
    /// How each tool of a REST or OpenAPI upstream is called (absent for MCP upstreams).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rest: Option<crate::kinds::rest::RestBindings>,
    /// How an A2A upstream's skills are called (absent for other kinds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub a2a: Option<crate::kinds::upstream::A2aBindings>,
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

/// Largest catalog kept, as its stored JSON: under etcd's default request limit (1.5 MiB)
/// with room to spare, and far below what a data plane decodes.
pub const MAX_CATALOG_BYTES: usize = 1 << 20;

/// Deepest nesting of one catalog item (a tool's schema, say). Snapshots wrap items in a
/// few more levels, and every decoder on the way (serde_json's limit is 128) must still
/// read them.
pub const MAX_ITEM_DEPTH: usize = 64;

/// Why a catalog cannot be carried in snapshots.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("the catalog is {bytes} bytes; at most {max} are kept")]
    TooLarge { bytes: usize, max: usize },
    #[error("{list} item {index}{} nests {depth} levels deep; at most {max} are kept", named(.name))]
    TooDeep {
        list: &'static str,
        index: usize,
        name: Option<String>,
        depth: usize,
        max: usize,
    },
}

fn named(name: &Option<String>) -> String {
    name.as_ref()
        .map(|n| format!(" (`{n}`)"))
        .unwrap_or_default()
}

/// How deeply `v` nests (a scalar is 0, `[]` is 1), counted without recursion.
pub fn depth(v: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(v, 0usize)];
    while let Some((v, d)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(a) => Box::new(a.iter()),
            Value::Object(o) => Box::new(o.values()),
            _ => continue,
        };
        deepest = deepest.max(d + 1);
        stack.extend(children.map(|c| (c, d + 1)));
    }
    deepest
}

impl Catalog {
    /// Whether this catalog can be stored and carried in snapshots to every data plane: no
    /// item nested deeper than [`MAX_ITEM_DEPTH`], and [`MAX_CATALOG_BYTES`] in all. An
    /// upstream whose catalog fails this keeps its previous one, so it cannot block the
    /// snapshots (and their other updates) of everything else.
    pub fn check(&self) -> Result<(), CatalogError> {
        let lists = [
            ("tools", &self.tools),
            ("prompts", &self.prompts),
            ("resources", &self.resources),
            ("resourceTemplates", &self.resource_templates),
        ];
        for (list, items) in lists {
            for (index, item) in items.iter().enumerate() {
                let depth = depth(item);
                if depth > MAX_ITEM_DEPTH {
                    let name = item
                        .get("name")
                        .or_else(|| item.get("uri"))
                        .and_then(Value::as_str)
                        .map(|n| n.chars().take(100).collect());
                    return Err(CatalogError::TooDeep {
                        list,
                        index,
                        name,
                        depth,
                        max: MAX_ITEM_DEPTH,
                    });
                }
            }
        }
        let bytes = serde_json::to_vec(self).map_or(usize::MAX, |b| b.len());
        if bytes > MAX_CATALOG_BYTES {
            return Err(CatalogError::TooLarge {
                bytes,
                max: MAX_CATALOG_BYTES,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(levels: usize) -> Value {
        let mut v = json!({"type": "string"});
        for _ in 1..levels {
            v = json!({"type": "object", "properties": {"x": v}});
        }
        v
    }

    #[test]
    fn catalogs_that_no_snapshot_could_carry_are_refused() {
        assert_eq!(depth(&json!(1)), 0);
        assert_eq!(depth(&json!([])), 1);
        assert_eq!(depth(&json!({"a": [1, {"b": 2}]})), 3);
        let tool = |schema: Value| json!({"name": "t", "inputSchema": schema});
        let fine = Catalog {
            tools: vec![tool(nested(30))],
            ..Catalog::default()
        };
        assert_eq!(fine.check(), Ok(()));
        let deep = Catalog {
            tools: vec![tool(json!({})), tool(nested(62))],
            ..Catalog::default()
        };
        let err = deep.check().expect_err("too deep");
        assert_eq!(
            err.to_string(),
            "tools item 1 (`t`) nests 124 levels deep; at most 64 are kept"
        );
        let big = Catalog {
            tools: (0..2000)
                .map(|i| json!({"name": format!("t{i}"), "description": "x".repeat(600)}))
                .collect(),
            ..Catalog::default()
        };
        assert!(matches!(big.check(), Err(CatalogError::TooLarge { .. })));
    }
}
