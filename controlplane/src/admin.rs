//! The admin gRPC service: what `switchboard apply/get/delete/get dataplanes` call.

use crate::audit::WriteEntry;
use crate::convert::to_wire;
use crate::dataplanes::DataPlanes;
use crate::identity::{actor, at_least, require, Gate, Role};
use crate::registry::{self, RegistryError};
use crate::secrets::SecretBox;
use crate::state::{wait_for_revision, RegistryState};
use crate::store::Store;
use crate::upstreams::follow::Status as DiscoveryStatus;
use crate::upstreams::records::{refresh_key, RefreshRequest};
use crate::upstreams::report;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use switchboard_config::{Kind, Source};
use switchboard_proto::v1::admin_server::Admin;
use switchboard_proto::v1::{
    ApplyRequest, ApplyResponse, DataPlaneEvent, DeleteRequest, DeleteResponse, GetRequest,
    GetResponse, ListDataPlanesRequest, ListDataPlanesResponse, ListUpstreamsRequest,
    ListUpstreamsResponse, ListWritesRequest, ListWritesResponse, RefreshUpstreamRequest,
    RefreshUpstreamResponse, ResourceResult, StoredResource, WatchDataPlanesRequest, WriteRecord,
};
use tokio::sync::watch;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

/// How long a write waits for this replica to see its own commit before answering, so the
/// next `get dataplanes` already reflects it.
const READ_YOUR_WRITES: Duration = Duration::from_secs(5);

/// How long `refresh upstream` waits for the discovery leader to list the catalog.
const REFRESH_WAIT: Duration = Duration::from_secs(30);

/// The admin service of one replica.
pub struct AdminService {
    store: Arc<dyn Store>,
    state: watch::Receiver<Arc<RegistryState>>,
    status: watch::Receiver<Arc<DiscoveryStatus>>,
    dataplanes: Arc<DataPlanes>,
    secret_box: Option<Arc<SecretBox>>,
    /// How callers are told apart.
    gate: Gate,
}

impl AdminService {
    /// The same service, letting in only the callers `gate` admits.
    pub fn gated(mut self, gate: Gate) -> Self {
        self.gate = gate;
        self
    }

    /// Serves admin calls against `store`, reporting `dataplanes` and discovery `status`.
    pub fn new(
        store: Arc<dyn Store>,
        state: watch::Receiver<Arc<RegistryState>>,
        status: watch::Receiver<Arc<DiscoveryStatus>>,
        dataplanes: Arc<DataPlanes>,
        secret_box: Option<Arc<SecretBox>>,
    ) -> Self {
        AdminService {
            store,
            state,
            status,
            dataplanes,
            secret_box,
            gate: Gate::Open,
        }
    }

    /// Clashes the applied resources cause with the catalogs known now.
    fn warnings(&self) -> Vec<String> {
        let state = self.state.borrow().clone();
        let status = self.status.borrow().clone();
        let set = state.resource_set();
        let mut out: Vec<String> = report::all_clashes(&set, &status)
            .iter()
            .map(ToString::to_string)
            .collect();
        out.extend(switchboard_config::cautions(&set));
        out
    }

    /// Logs `entries` (target `switchboard::audit`) and adds them to the record of writes.
    async fn record(&self, entries: &[WriteEntry]) {
        for e in entries {
            tracing::info!(target: "switchboard::audit", actor = %e.actor, kind = %e.kind, name = %e.name, action = %e.action, generation = e.generation, revision = e.revision, "write");
        }
        let known: Vec<String> = self.status.borrow().writes.keys().cloned().collect();
        // Read your writes: `get writes` right after shows this one.
        if let Some(last) = crate::audit::record(self.store.as_ref(), entries, known).await {
            let mut status = self.status.clone();
            let _ = tokio::time::timeout(
                READ_YOUR_WRITES,
                status.wait_for(|s| s.writes.contains_key(&last)),
            )
            .await;
        }
    }

    async fn settle(&self, revision: u64) {
        let mut rx = self.state.clone();
        let _ = tokio::time::timeout(READ_YOUR_WRITES, wait_for_revision(&mut rx, revision)).await;
    }
}

/// A stored Secret as `get` shows it: its keys, never its values (not even sealed).
fn redacted(json: &str) -> String {
    let Ok(mut v) = serde_json::from_str::<serde_json::Value>(json) else {
        return "{}".into();
    };
    if let Some(spec) = v.get_mut("spec").and_then(|s| s.as_object_mut()) {
        for field in ["data", "sealed"] {
            if let Some(values) = spec.get_mut(field).and_then(|d| d.as_object_mut()) {
                for value in values.values_mut() {
                    *value = serde_json::Value::String("(redacted)".into());
                }
            }
        }
    }
    v.to_string()
}

fn parse_kind(kind: &str) -> Result<Kind, Status> {
    kind.parse::<Kind>()
        .map_err(|e| Status::invalid_argument(e.to_string()))
}

fn status_of(e: RegistryError) -> Status {
    match e {
        RegistryError::NotFound { .. } => Status::not_found(e.to_string()),
        RegistryError::Contended => Status::aborted(e.to_string()),
        RegistryError::Invalid(_) => Status::invalid_argument(e.to_string()),
        RegistryError::Store(_) => Status::unavailable(e.to_string()),
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<DataPlaneEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Admin for AdminService {
    async fn apply(
        &self,
        request: Request<ApplyRequest>,
    ) -> Result<Response<ApplyResponse>, Status> {
        let who = require(&request, &self.gate, &self.state.borrow(), Role::Editor)?;
        let req = request.into_inner();
        let sources: Vec<Source> = req
            .files
            .into_iter()
            .map(|f| Source {
                name: f.name,
                text: f.content,
            })
            .collect();
        if at_least(&who, Role::Admin, "write Secrets").is_err() {
            let (parsed, _) = switchboard_config::parse_sources(&sources);
            if parsed.of_kind(Kind::Secret).next().is_some() {
                at_least(&who, Role::Admin, "write Secrets")?;
            }
            if parsed.of_kind(Kind::OperatorToken).next().is_some() {
                at_least(&who, Role::Admin, "write operator tokens")?;
            }
            // What reads a Secret decides where its value goes, and a stdio upstream runs
            // a command on every data plane of its groups: both are an admin's to write.
            for item in parsed.iter() {
                let (reads_secrets, runs_command) = match &item.resource {
                    switchboard_config::Resource::Upstream(u) => {
                        (!u.spec.secret_refs().is_empty(), u.spec.stdio.is_some())
                    }
                    switchboard_config::Resource::AuthProvider(a) => {
                        (!a.spec.refs().is_empty(), false)
                    }
                    _ => (false, false),
                };
                if reads_secrets {
                    at_least(
                        &who,
                        Role::Admin,
                        &format!(
                            "write {} `{}`, which reads Secrets",
                            item.resource.kind(),
                            item.resource.name()
                        ),
                    )?;
                }
                if runs_command {
                    at_least(
                        &who,
                        Role::Admin,
                        &format!(
                            "write stdio Upstream `{}`, which runs a command on data planes",
                            item.resource.name()
                        ),
                    )?;
                }
            }
        }
        match registry::apply(
            self.store.as_ref(),
            &sources,
            req.dry_run,
            self.secret_box.as_deref(),
        )
        .await
        {
            Ok(outcome) => {
                if let Some(revision) = outcome.revision {
                    let entries: Vec<WriteEntry> = outcome
                        .results
                        .iter()
                        .filter(|a| a.action.as_str() != "unchanged")
                        .map(|a| WriteEntry {
                            unix_ms: crate::dataplanes::now_ms(),
                            actor: actor(&who),
                            kind: a.kind.to_string(),
                            name: a.name.clone(),
                            action: a.action.as_str().to_string(),
                            generation: a.generation,
                            revision,
                        })
                        .collect();
                    self.record(&entries).await;
                    self.settle(revision).await;
                }
                let results = outcome
                    .results
                    .into_iter()
                    .map(|a| ResourceResult {
                        kind: a.kind.to_string(),
                        name: a.name,
                        action: a.action.as_str().to_string(),
                        generation: a.generation,
                    })
                    .collect();
                Ok(Response::new(ApplyResponse {
                    results,
                    errors: Vec::new(),
                    warnings: self.warnings(),
                }))
            }
            Err(RegistryError::Invalid(d)) => Ok(Response::new(ApplyResponse {
                results: Vec::new(),
                errors: d.0.iter().map(to_wire).collect(),
                warnings: Vec::new(),
            })),
            Err(e) => Err(status_of(e)),
        }
    }

    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        require(&request, &self.gate, &self.state.borrow(), Role::Viewer)?;
        let req = request.into_inner();
        let kind = parse_kind(&req.kind)?;
        let name = (!req.name.is_empty()).then_some(req.name.as_str());
        let records = registry::get(self.store.as_ref(), kind, name)
            .await
            .map_err(status_of)?;
        let resources = records
            .into_iter()
            .map(|r| StoredResource {
                kind: r.kind.to_string(),
                json: if r.kind == Kind::Secret {
                    redacted(&r.json)
                } else {
                    r.json
                },
                name: r.name,
                generation: r.generation,
                resource_version: r.mod_revision,
            })
            .collect();
        Ok(Response::new(GetResponse { resources }))
    }

    async fn delete(
        &self,
        request: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let who = require(&request, &self.gate, &self.state.borrow(), Role::Editor)?;
        let req = request.into_inner();
        let kind = parse_kind(&req.kind)?;
        if kind == Kind::Secret {
            at_least(&who, Role::Admin, "delete Secrets")?;
        }
        if kind == Kind::OperatorToken {
            at_least(&who, Role::Admin, "revoke operator tokens")?;
        }
        match registry::delete(self.store.as_ref(), kind, &req.name).await {
            Ok(revision) => {
                self.record(&[WriteEntry {
                    unix_ms: crate::dataplanes::now_ms(),
                    actor: actor(&who),
                    kind: kind.to_string(),
                    name: req.name.clone(),
                    action: "deleted".into(),
                    generation: 0,
                    revision,
                }])
                .await;
                self.settle(revision).await;
                Ok(Response::new(DeleteResponse {
                    deleted: true,
                    errors: Vec::new(),
                }))
            }
            Err(RegistryError::Invalid(d)) => Ok(Response::new(DeleteResponse {
                deleted: false,
                errors: d.0.iter().map(to_wire).collect(),
            })),
            Err(e) => Err(status_of(e)),
        }
    }

    async fn list_data_planes(
        &self,
        request: Request<ListDataPlanesRequest>,
    ) -> Result<Response<ListDataPlanesResponse>, Status> {
        require(&request, &self.gate, &self.state.borrow(), Role::Viewer)?;
        Ok(Response::new(ListDataPlanesResponse {
            data_planes: self.dataplanes.list(),
        }))
    }

    type WatchDataPlanesStream = EventStream;

    async fn watch_data_planes(
        &self,
        request: Request<WatchDataPlanesRequest>,
    ) -> Result<Response<Self::WatchDataPlanesStream>, Status> {
        require(&request, &self.gate, &self.state.borrow(), Role::Viewer)?;
        let events = tokio_stream::wrappers::BroadcastStream::new(self.dataplanes.subscribe())
            .filter_map(|e| e.ok().map(Ok));
        Ok(Response::new(Box::pin(events)))
    }

    async fn list_upstreams(
        &self,
        request: Request<ListUpstreamsRequest>,
    ) -> Result<Response<ListUpstreamsResponse>, Status> {
        require(&request, &self.gate, &self.state.borrow(), Role::Viewer)?;
        let name = request.into_inner().name;
        let state = self.state.borrow().clone();
        let status = self.status.borrow().clone();
        let upstreams = report::rows(&state, &status, (!name.is_empty()).then_some(name.as_str()));
        if !name.is_empty() && upstreams.is_empty() {
            return Err(Status::not_found(format!("Upstream `{name}` not found")));
        }
        Ok(Response::new(ListUpstreamsResponse {
            upstreams,
            discovery_leader: status
                .leader
                .as_ref()
                .map(|l| l.holder.clone())
                .unwrap_or_default(),
        }))
    }

    async fn list_writes(
        &self,
        request: Request<ListWritesRequest>,
    ) -> Result<Response<ListWritesResponse>, Status> {
        require(&request, &self.gate, &self.state.borrow(), Role::Viewer)?;
        let writes = self
            .status
            .borrow()
            .writes
            .values()
            .map(|e| WriteRecord {
                unix_ms: e.unix_ms,
                actor: e.actor.clone(),
                kind: e.kind.clone(),
                name: e.name.clone(),
                action: e.action.clone(),
                generation: e.generation,
                revision: e.revision,
            })
            .collect();
        Ok(Response::new(ListWritesResponse { writes }))
    }

    async fn refresh_upstream(
        &self,
        request: Request<RefreshUpstreamRequest>,
    ) -> Result<Response<RefreshUpstreamResponse>, Status> {
        require(&request, &self.gate, &self.state.borrow(), Role::Editor)?;
        let name = request.into_inner().name;
        let state = self.state.borrow().clone();
        let spec = match state
            .resource_set()
            .get(Kind::Upstream, &name)
            .map(|item| &item.resource)
        {
            Some(switchboard_config::Resource::Upstream(u)) => u.spec.clone(),
            _ => return Err(Status::not_found(format!("Upstream `{name}` not found"))),
        };
        if spec.stdio.is_some() {
            return Err(Status::failed_precondition(format!(
                "Upstream `{name}` is a stdio server: the data planes that run it list it (at start, whenever it restarts or says its list changed, and every discovery.refreshInterval) and report what they find"
            )));
        }
        if spec.mcp.is_none() {
            return Err(Status::failed_precondition(format!(
                "Upstream `{name}` is not an MCP server; the control plane does not discover it"
            )));
        }
        let request = RefreshRequest {
            requested_unix_ms: crate::dataplanes::now_ms(),
        };
        let bytes = serde_json::to_vec(&request).unwrap_or_default();
        let mut status = self.status.clone();
        self.store
            .status_put(&refresh_key(&name), bytes, None)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        // The leader clears the request once it has listed (or failed to list) the catalog.
        let seen = status
            .wait_for(|s| s.refresh.get(&name) == Some(&request))
            .await
            .is_ok();
        let done = seen
            && tokio::time::timeout(
                REFRESH_WAIT,
                status.wait_for(|s| s.refresh.get(&name) != Some(&request)),
            )
            .await
            .is_ok_and(|r| r.is_ok());
        if !done {
            return Err(Status::deadline_exceeded(format!(
                "the discovery leader did not refresh `{name}` within {REFRESH_WAIT:?} (is any control-plane replica leading discovery?)"
            )));
        }
        let state = self.state.borrow().clone();
        let current = self.status.borrow().clone();
        let upstream = report::rows(&state, &current, Some(&name))
            .into_iter()
            .next();
        Ok(Response::new(RefreshUpstreamResponse { upstream }))
    }
}
