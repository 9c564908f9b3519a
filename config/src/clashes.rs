//! Name clashes between upstreams federated into one virtual server. Both planes resolve
//! them the same way (the upstream listed first keeps the name; the later one's item is not
//! exposed), and the control plane reports them at apply and refresh time instead of
//! letting clients find out at call time.

use crate::catalog::Catalog;
use crate::kinds::virtual_server::{UpstreamSelection, VirtualServerSpec};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// One name offered twice inside a virtual server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clash {
    pub server: String,
    /// "tool" or "prompt".
    pub what: &'static str,
    /// The name clients see.
    pub name: String,
    /// Who keeps the name: an upstream, or "a local prompt".
    pub kept_by: String,
    /// The upstream whose item is left out.
    pub dropped_from: String,
}

impl fmt::Display for Clash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "virtual server `{}`: {} `{}` is offered by {} and by upstream `{}`; only the first is exposed (set a prefix or a rename)",
            self.server, self.what, self.name, self.kept_by, self.dropped_from
        )
    }
}

/// The items of one upstream a selection exposes, as (exposed name, upstream name, item).
pub fn exposed<'a>(
    sel: &'a UpstreamSelection,
    items: &'a [Value],
    allowed: Option<&'a Vec<String>>,
) -> impl Iterator<Item = (String, &'a str, &'a Value)> + 'a {
    items.iter().filter_map(move |item| {
        let name = item.get("name").and_then(Value::as_str)?;
        if allowed.is_some_and(|allowed| !allowed.iter().any(|a| a == name)) {
            return None;
        }
        Some((sel.exposed_name(name), name, item))
    })
}

/// Every clash in virtual server `server`, given the upstreams' catalogs and the names of
/// its local prompts (which always win).
pub fn clashes(
    server: &str,
    spec: &VirtualServerSpec,
    catalogs: &BTreeMap<String, Catalog>,
    local_prompts: &BTreeSet<String>,
) -> Vec<Clash> {
    let mut out = Vec::new();
    let mut tools: BTreeMap<String, String> = BTreeMap::new();
    let mut prompts: BTreeMap<String, String> = BTreeMap::new();
    for sel in &spec.upstreams {
        let Some(catalog) = catalogs.get(&sel.upstream) else {
            continue;
        };
        for (what, items, allowed, taken) in [
            ("tool", &catalog.tools, sel.tools.as_ref(), &mut tools),
            (
                "prompt",
                &catalog.prompts,
                sel.prompts.as_ref(),
                &mut prompts,
            ),
        ] {
            for (name, _, _) in exposed(sel, items, allowed) {
                let kept_by = if what == "prompt" && local_prompts.contains(&name) {
                    Some("a local prompt".to_string())
                } else {
                    taken.get(&name).map(|u| format!("upstream `{u}`"))
                };
                match kept_by {
                    Some(kept_by) if !kept_by.ends_with(&format!("`{}`", sel.upstream)) => out
                        .push(Clash {
                            server: server.to_string(),
                            what,
                            name,
                            kept_by,
                            dropped_from: sel.upstream.clone(),
                        }),
                    Some(_) => {} // listed twice by the same upstream: its own business
                    None => {
                        taken.insert(name, sel.upstream.clone());
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn catalog(tools: &[&str]) -> Catalog {
        Catalog {
            tools: tools.iter().map(|t| json!({"name": t})).collect(),
            ..Catalog::default()
        }
    }

    #[test]
    fn first_listed_upstream_keeps_the_name() {
        let spec = VirtualServerSpec {
            upstreams: vec![
                UpstreamSelection {
                    upstream: "a".into(),
                    ..Default::default()
                },
                UpstreamSelection {
                    upstream: "b".into(),
                    ..Default::default()
                },
                UpstreamSelection {
                    upstream: "c".into(),
                    prefix: "c_".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let catalogs = BTreeMap::from([
            ("a".to_string(), catalog(&["echo", "add"])),
            ("b".to_string(), catalog(&["echo", "time"])),
            ("c".to_string(), catalog(&["echo"])),
        ]);
        let found = clashes("vs", &spec, &catalogs, &BTreeSet::new());
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].name, "echo");
        assert_eq!(found[0].kept_by, "upstream `a`");
        assert_eq!(found[0].dropped_from, "b");
        assert!(found[0].to_string().contains("set a prefix"));
    }
}
