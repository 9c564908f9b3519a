//! Catalog discovery: what each MCP upstream offers, listed by the control plane so that
//! snapshots carry it and data planes answer listings from memory.
//!
//! Today every replica discovers on its own, on each registry change and every
//! [`REFRESH`]; an upstream that cannot be reached keeps its last known catalog. (One
//! discovery leader, stored catalogs, list_changed and health belong to issue #5.)

use crate::state::RegistryState;
use futures::future::join_all;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use switchboard_config::{Catalog, Kind, Resource};
use switchboard_upstream::McpHttp;
use tokio::sync::watch;

/// Catalogs by upstream name.
pub type Catalogs = Arc<BTreeMap<String, Catalog>>;

/// How often catalogs are listed again without a registry change.
pub const REFRESH: Duration = Duration::from_secs(30);

/// Time allowed for one upstream's whole discovery when its resource sets none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Follows the registry and publishes the catalogs of its MCP upstreams.
pub fn follow(mut state: watch::Receiver<Arc<RegistryState>>) -> watch::Receiver<Catalogs> {
    let (tx, rx) = watch::channel(Catalogs::default());
    tokio::spawn(async move {
        let mcp = McpHttp::new(Duration::from_secs(3));
        loop {
            let current = state.borrow_and_update().clone();
            let previous = tx.borrow().clone();
            let next = discover_all(&mcp, &current, &previous).await;
            if *next != *previous && tx.send(next).is_err() {
                return;
            }
            tokio::select! {
                changed = state.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(REFRESH) => {}
            }
        }
    });
    rx
}

async fn discover_all(mcp: &McpHttp, state: &RegistryState, previous: &Catalogs) -> Catalogs {
    let set = state.resource_set();
    let jobs = set.of_kind(Kind::Upstream).filter_map(|item| {
        let Resource::Upstream(u) = &item.resource else {
            return None;
        };
        let mcp_spec = u.spec.mcp.clone()?;
        let name = u.metadata.name.clone();
        let headers = u.spec.headers.clone();
        let timeout = u.spec.timeouts.request.unwrap_or(DEFAULT_TIMEOUT);
        Some(async move {
            let result = mcp.discover(&mcp_spec, &headers, timeout).await;
            (name, result)
        })
    });
    let mut out = BTreeMap::new();
    for (name, result) in join_all(jobs).await {
        match result {
            Ok(catalog) => {
                tracing::debug!(upstream = %name, tools = catalog.tools.len(), "catalog discovered");
                out.insert(name, catalog);
            }
            Err(e) => {
                tracing::warn!(upstream = %name, error = %e, "catalog discovery failed; keeping the last known catalog");
                if let Some(old) = previous.get(&name) {
                    out.insert(name, old.clone());
                }
            }
        }
    }
    Arc::new(out)
}
