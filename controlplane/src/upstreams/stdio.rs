//! Catalogs and health of `stdio` upstreams, as the data planes that run them report them
//! on their discovery streams. The discovery leader does not run stdio commands (its machine
//! may not have them); whichever replica a report reaches writes it to the status namespace,
//! where it becomes part of every snapshot like a discovered catalog. Only upstreams the
//! registry has as stdio can be reported, and a write happens only when something changed.

use super::follow::Status;
use super::records::{catalog_key, health_key, CatalogRecord, HealthRecord, HealthState};
use crate::dataplanes::now_ms;
use crate::state::RegistryState;
use crate::store::Store;
use std::collections::HashMap;
use std::sync::Arc;
use switchboard_config::{Catalog, Kind, Resource, ResourceSet};
use switchboard_proto::v1::StdioReport;
use tokio::sync::{mpsc, watch};

/// Largest catalog a report may carry (the JSON), so one data plane cannot flood the store.
pub const MAX_CATALOG_BYTES: usize = 8 << 20;

/// Why a report was not recorded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReportRefused {
    #[error("no stdio upstream `{0}` in the registry")]
    NotStdio(String),
    #[error("catalog of `{0}` is {1} bytes, over the {MAX_CATALOG_BYTES}-byte limit")]
    TooLarge(String, usize),
    #[error("catalog of `{0}` is not a catalog: {1}")]
    Undecodable(String, String),
    #[error("catalog of `{0}` does not match its hash")]
    HashMismatch(String),
}

/// What to write for one report, given what the store has.
#[derive(Debug, Default, PartialEq)]
pub struct Writes {
    pub catalog: Option<CatalogRecord>,
    pub health: Option<HealthRecord>,
}

/// Decides what `report` changes. Pure, so it is tested without a store.
pub fn writes_for(
    report: &StdioReport,
    set: &ResourceSet,
    status: &Status,
) -> Result<Writes, ReportRefused> {
    let name = &report.upstream;
    let is_stdio = matches!(
        set.get(Kind::Upstream, name).map(|l| &l.resource),
        Some(Resource::Upstream(u)) if u.spec.stdio.is_some()
    );
    if !is_stdio {
        return Err(ReportRefused::NotStdio(name.clone()));
    }
    let mut writes = Writes::default();
    if !report.catalog_json.is_empty() {
        if report.catalog_json.len() > MAX_CATALOG_BYTES {
            return Err(ReportRefused::TooLarge(
                name.clone(),
                report.catalog_json.len(),
            ));
        }
        let catalog: Catalog = serde_json::from_slice(&report.catalog_json)
            .map_err(|e| ReportRefused::Undecodable(name.clone(), e.to_string()))?;
        let hash = catalog.content_hash();
        if hash != report.catalog_hash {
            return Err(ReportRefused::HashMismatch(name.clone()));
        }
        if status.catalogs.get(name).map(|c| &c.hash) != Some(&hash) {
            writes.catalog = Some(CatalogRecord {
                hash,
                catalog,
                discovered_unix_ms: now_ms(),
            });
        }
    }
    let old = status.health.get(name).cloned().unwrap_or_default();
    let state = if report.healthy {
        HealthState::Healthy
    } else {
        HealthState::Unhealthy
    };
    let health = HealthRecord {
        state,
        consecutive_failures: u32::from(!report.healthy),
        last_error: report.error.clone(),
        last_error_unix_ms: if report.healthy {
            old.last_error_unix_ms
        } else {
            now_ms()
        },
        last_refresh_unix_ms: report.refreshed_unix_ms,
        since_unix_ms: if old.state == state {
            old.since_unix_ms
        } else {
            now_ms()
        },
        protocol_version: report.protocol_version.clone(),
        listening: report.listening,
    };
    let same = old.state == health.state
        && old.last_error == health.last_error
        && old.protocol_version == health.protocol_version
        && old.listening == health.listening
        && old.last_refresh_unix_ms >= health.last_refresh_unix_ms;
    if !same || writes.catalog.is_some() {
        writes.health = Some(health);
    }
    Ok(writes)
}

/// The latest report of every data plane about one upstream, folded into one: healthy
/// while any data plane runs it well (each data plane routes by its own child's health, so
/// this is what `get upstreams` says), else the first failure, naming its data plane.
#[derive(Default)]
struct Fold {
    by_node: HashMap<String, (bool, String)>,
    /// The last report (without its catalog), to write the folded health again when a
    /// data plane goes away.
    last: Option<StdioReport>,
}

impl Fold {
    fn fold(&mut self, node: &str, report: &StdioReport) -> StdioReport {
        if self.by_node.len() < MAX_NODES || self.by_node.contains_key(node) {
            self.by_node
                .insert(node.to_string(), (report.healthy, report.error.clone()));
        }
        self.last = Some(StdioReport {
            catalog_json: Vec::new(),
            catalog_hash: String::new(),
            ..report.clone()
        });
        self.folded(report)
    }

    fn folded(&self, report: &StdioReport) -> StdioReport {
        let mut folded = report.clone();
        folded.healthy = self.by_node.values().any(|(healthy, _)| *healthy);
        folded.error = if folded.healthy {
            String::new()
        } else {
            self.by_node
                .iter()
                .find(|(_, (_, e))| !e.is_empty())
                .map(|(n, (_, e))| format!("on data plane {n}: {e}"))
                .unwrap_or_default()
        };
        folded
    }

    /// Forgets `node`; the folded report to write when that changes the verdict of the
    /// data planes still here (none are left: another replica may have them, so nothing
    /// is written).
    fn forget(&mut self, node: &str) -> Option<StdioReport> {
        let was = self.by_node.values().any(|(healthy, _)| *healthy);
        self.by_node.remove(node)?;
        if self.by_node.is_empty() {
            return None;
        }
        let folded = self.folded(self.last.as_ref()?);
        (folded.healthy != was).then_some(folded)
    }
}

/// Most data planes remembered per upstream.
const MAX_NODES: usize = 4_096;

/// Starts the relay; send it (node id, report) pairs, and `(node id, None)` when a data
/// plane disconnects (its reports stop counting).
pub fn relay(
    store: Arc<dyn Store>,
    registry: watch::Receiver<Arc<RegistryState>>,
    status: watch::Receiver<Arc<Status>>,
) -> mpsc::Sender<(String, Option<StdioReport>)> {
    let (tx, mut rx) = mpsc::channel::<(String, Option<StdioReport>)>(256);
    tokio::spawn(async move {
        let mut folds: HashMap<String, Fold> = HashMap::new();
        while let Some((node, report)) = rx.recv().await {
            let Some(report) = report else {
                // The data plane left: its verdict no longer counts.
                let changed: Vec<StdioReport> =
                    folds.values_mut().filter_map(|f| f.forget(&node)).collect();
                let set = registry.borrow().resource_set();
                let current = status.borrow().clone();
                for folded in changed {
                    if let Ok(Writes {
                        health: Some(record),
                        ..
                    }) = writes_for(&folded, &set, &current)
                    {
                        let bytes = serde_json::to_vec(&record).unwrap_or_default();
                        if let Err(e) = store
                            .status_put(&health_key(&folded.upstream), bytes, None)
                            .await
                        {
                            tracing::warn!(upstream = %folded.upstream, error = %e, "cannot record a stdio upstream's health");
                        }
                    }
                }
                continue;
            };
            let state = registry.borrow().clone();
            let current = status.borrow().clone();
            let set = state.resource_set();
            folds.retain(|name, _| set.contains(Kind::Upstream, name));
            let folded = folds
                .entry(report.upstream.clone())
                .or_default()
                .fold(&node, &report);
            let writes = match writes_for(&folded, &set, &current) {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!(%node, error = %e, "ignoring a stdio report");
                    continue;
                }
            };
            if let Some(record) = writes.catalog {
                tracing::info!(%node, upstream = %report.upstream, hash = %record.hash, tools = record.catalog.tools.len(), "stdio upstream's catalog changed");
                let bytes = serde_json::to_vec(&record).unwrap_or_default();
                if let Err(e) = store
                    .status_put(&catalog_key(&report.upstream), bytes, None)
                    .await
                {
                    tracing::warn!(upstream = %report.upstream, error = %e, "cannot record a stdio catalog");
                }
            }
            if let Some(record) = writes.health {
                let bytes = serde_json::to_vec(&record).unwrap_or_default();
                if let Err(e) = store
                    .status_put(&health_key(&report.upstream), bytes, None)
                    .await
                {
                    tracing::warn!(upstream = %report.upstream, error = %e, "cannot record a stdio upstream's health");
                }
            }
        }
    });
    tx
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_config::{load_sources, Source};

    fn set() -> ResourceSet {
        let text = "apiVersion: switchboard.dev/v1\nkind: Upstream\nmetadata:\n  name: local\nspec:\n  stdio:\n    command: server\n---\napiVersion: switchboard.dev/v1\nkind: Upstream\nmetadata:\n  name: remote\nspec:\n  mcp:\n    url: http://127.0.0.1:9/mcp\n";
        load_sources(&[Source {
            name: "t.yaml".into(),
            text: text.into(),
        }])
        .expect("valid")
    }

    fn report(upstream: &str, catalog: Option<&Catalog>, healthy: bool) -> StdioReport {
        StdioReport {
            upstream: upstream.into(),
            healthy,
            error: if healthy {
                String::new()
            } else {
                "gone".into()
            },
            catalog_json: catalog
                .map(|c| serde_json::to_vec(c).unwrap())
                .unwrap_or_default(),
            catalog_hash: catalog.map(Catalog::content_hash).unwrap_or_default(),
            protocol_version: "2025-11-25".into(),
            listening: true,
            refreshed_unix_ms: 10,
        }
    }

    fn catalog() -> Catalog {
        Catalog {
            tools: vec![serde_json::json!({"name": "t"})],
            ..Catalog::default()
        }
    }

    #[test]
    fn only_stdio_upstreams_of_the_registry_can_be_reported() {
        let status = Status::default();
        let c = catalog();
        assert_eq!(
            writes_for(&report("remote", Some(&c), true), &set(), &status),
            Err(ReportRefused::NotStdio("remote".into()))
        );
        assert_eq!(
            writes_for(&report("nope", Some(&c), true), &set(), &status),
            Err(ReportRefused::NotStdio("nope".into()))
        );
    }

    #[test]
    fn a_catalog_must_decode_and_match_its_hash() {
        let status = Status::default();
        let mut bad = report("local", Some(&catalog()), true);
        bad.catalog_hash = "forged".into();
        assert_eq!(
            writes_for(&bad, &set(), &status),
            Err(ReportRefused::HashMismatch("local".into()))
        );
        bad.catalog_json = b"[1]".to_vec();
        assert!(matches!(
            writes_for(&bad, &set(), &status),
            Err(ReportRefused::Undecodable(..))
        ));
    }

    #[test]
    fn writes_happen_only_when_something_changed() {
        let c = catalog();
        let first = writes_for(&report("local", Some(&c), true), &set(), &Status::default())
            .expect("accepted");
        let (Some(cat), Some(health)) = (first.catalog, first.health) else {
            panic!("a first report writes both");
        };
        assert_eq!(health.state, HealthState::Healthy);
        let mut status = Status::default();
        status.catalogs.insert("local".into(), cat);
        status.health.insert("local".into(), health);
        let again = writes_for(&report("local", Some(&c), true), &set(), &status).expect("ok");
        assert_eq!(again, Writes::default(), "nothing new, nothing written");
        let down = writes_for(&report("local", None, false), &set(), &status).expect("ok");
        assert!(down.catalog.is_none(), "the catalog stays");
        let h = down.health.expect("health changed");
        assert_eq!(
            (h.state, h.last_error.as_str()),
            (HealthState::Unhealthy, "gone")
        );
    }

    #[test]
    fn one_healthy_data_plane_keeps_the_upstream_healthy() {
        let mut fold = Fold::default();
        let c = catalog();
        assert!(fold.fold("a", &report("local", Some(&c), true)).healthy);
        let folded = fold.fold("b", &report("local", None, false));
        assert!(folded.healthy, "a still runs it");
        let after = fold.forget("a").expect("the verdict changed");
        assert!(!after.healthy);
        assert_eq!(after.error, "on data plane b: gone");
        assert!(after.catalog_json.is_empty(), "health only");
        let folded = fold.fold("b", &report("local", None, false));
        assert!(!folded.healthy);
        assert_eq!(
            fold.forget("b"),
            None,
            "nobody left here: another replica may know"
        );
    }
}
