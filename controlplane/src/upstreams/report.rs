//! `switchboard get upstreams`: each Upstream resource with what discovery knows of it,
//! and the name clashes its catalog causes.

use super::follow::Status;
use crate::state::RegistryState;
use std::collections::{BTreeMap, BTreeSet};
use switchboard_config::kinds::upstream::{McpTransport, UpstreamSpec};
use switchboard_config::{clashes, Clash, Kind, Resource, ResourceSet};
use switchboard_proto::v1::UpstreamStatus;

/// Every clash in every virtual server of `set`, given `status`'s catalogs.
pub fn all_clashes(set: &ResourceSet, status: &Status) -> Vec<Clash> {
    let catalogs: BTreeMap<_, _> = status
        .catalogs
        .iter()
        .map(|(k, v)| (k.clone(), v.catalog.clone()))
        .collect();
    set.of_kind(Kind::VirtualServer)
        .filter_map(|item| match &item.resource {
            Resource::VirtualServer(vs) => Some(vs),
            _ => None,
        })
        .flat_map(|vs| {
            let local: BTreeSet<String> = vs.spec.prompts.iter().cloned().collect();
            clashes(&vs.metadata.name, &vs.spec, &catalogs, &local)
        })
        .collect()
}

fn transport(spec: &UpstreamSpec) -> (&'static str, String) {
    if let Some(m) = &spec.mcp {
        let t = match m.transport {
            McpTransport::StreamableHttp => "mcp",
            McpTransport::Sse => "mcp+sse",
        };
        return (t, m.url.clone());
    }
    if let Some(s) = &spec.stdio {
        return ("stdio", s.command.clone());
    }
    if let Some(o) = &spec.openapi {
        let at = o.spec_url.clone().or(o.base_url.clone());
        return ("openapi", at.unwrap_or_else(|| "(inline document)".into()));
    }
    if let Some(r) = &spec.rest {
        return ("rest", r.base_url.clone());
    }
    if let Some(a) = &spec.a2a {
        return ("a2a", a.url.clone());
    }
    if let Some(g) = &spec.grpc {
        return ("grpc", g.address.clone());
    }
    ("", String::new())
}

/// The status rows for every upstream (or only `name`), ordered by name.
pub fn rows(state: &RegistryState, status: &Status, name: Option<&str>) -> Vec<UpstreamStatus> {
    let set = state.resource_set();
    let clashes = all_clashes(&set, status);
    set.of_kind(Kind::Upstream)
        .filter_map(|item| match &item.resource {
            Resource::Upstream(u) => Some((u, item.resource.to_json().to_string())),
            _ => None,
        })
        .filter(|(u, _)| name.is_none_or(|n| n == u.metadata.name))
        .map(|(u, json)| {
            let n = &u.metadata.name;
            let (transport, target) = transport(&u.spec);
            let health = status.health.get(n).cloned().unwrap_or_default();
            let catalog = status.catalogs.get(n);
            let count = |f: fn(&switchboard_config::Catalog) -> usize| {
                catalog.map_or(0, |c| u32::try_from(f(&c.catalog)).unwrap_or(u32::MAX))
            };
            UpstreamStatus {
                name: n.clone(),
                transport: transport.into(),
                target,
                // MCP, REST and A2A upstreams are checked by the discovery leader, stdio
                // ones by the data planes that run them; gRPC is not discovered yet.
                state: if u.spec.grpc.is_none() {
                    health.state.as_str().into()
                } else {
                    "not discovered".into()
                },
                consecutive_failures: health.consecutive_failures,
                last_error: health.last_error.clone(),
                last_error_unix_ms: health.last_error_unix_ms,
                last_refresh_unix_ms: health.last_refresh_unix_ms,
                since_unix_ms: health.since_unix_ms,
                tools: count(|c| c.tools.len()),
                prompts: count(|c| c.prompts.len()),
                resources: count(|c| c.resources.len()),
                resource_templates: count(|c| c.resource_templates.len()),
                catalog_hash: catalog.map(|c| c.hash.clone()).unwrap_or_default(),
                protocol_version: health.protocol_version.clone(),
                listening: health.listening,
                conflicts: clashes
                    .iter()
                    .filter(|c| &c.dropped_from == n || c.kept_by == format!("upstream `{n}`"))
                    .map(ToString::to_string)
                    .collect(),
                json,
            }
        })
        .collect()
}
