//! The admin gRPC service: what `switchboard apply/get/delete/get dataplanes` call.

use crate::convert::to_wire;
use crate::dataplanes::DataPlanes;
use crate::registry::{self, RegistryError};
use crate::state::{wait_for_revision, RegistryState};
use crate::store::Store;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use switchboard_config::{Kind, Source};
use switchboard_proto::v1::admin_server::Admin;
use switchboard_proto::v1::{
    ApplyRequest, ApplyResponse, DataPlaneEvent, DeleteRequest, DeleteResponse, GetRequest,
    GetResponse, ListDataPlanesRequest, ListDataPlanesResponse, ResourceResult, StoredResource,
    WatchDataPlanesRequest,
};
use tokio::sync::watch;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

/// How long a write waits for this replica to see its own commit before answering, so the
/// next `get dataplanes` already reflects it.
const READ_YOUR_WRITES: Duration = Duration::from_secs(5);

/// The admin service of one replica.
pub struct AdminService {
    store: Arc<dyn Store>,
    state: watch::Receiver<Arc<RegistryState>>,
    dataplanes: Arc<DataPlanes>,
}

impl AdminService {
    /// Serves admin calls against `store`, reporting `dataplanes`.
    pub fn new(
        store: Arc<dyn Store>,
        state: watch::Receiver<Arc<RegistryState>>,
        dataplanes: Arc<DataPlanes>,
    ) -> Self {
        AdminService {
            store,
            state,
            dataplanes,
        }
    }

    async fn settle(&self, revision: u64) {
        let mut rx = self.state.clone();
        let _ = tokio::time::timeout(READ_YOUR_WRITES, wait_for_revision(&mut rx, revision)).await;
    }
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
        let req = request.into_inner();
        let sources: Vec<Source> = req
            .files
            .into_iter()
            .map(|f| Source {
                name: f.name,
                text: f.content,
            })
            .collect();
        match registry::apply(self.store.as_ref(), &sources, req.dry_run).await {
            Ok(outcome) => {
                if let Some(revision) = outcome.revision {
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
                }))
            }
            Err(RegistryError::Invalid(d)) => Ok(Response::new(ApplyResponse {
                results: Vec::new(),
                errors: d.0.iter().map(to_wire).collect(),
            })),
            Err(e) => Err(status_of(e)),
        }
    }

    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
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
                name: r.name,
                generation: r.generation,
                resource_version: r.mod_revision,
                json: r.json,
            })
            .collect();
        Ok(Response::new(GetResponse { resources }))
    }

    async fn delete(
        &self,
        request: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let req = request.into_inner();
        let kind = parse_kind(&req.kind)?;
        match registry::delete(self.store.as_ref(), kind, &req.name).await {
            Ok(revision) => {
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
        _request: Request<ListDataPlanesRequest>,
    ) -> Result<Response<ListDataPlanesResponse>, Status> {
        Ok(Response::new(ListDataPlanesResponse {
            data_planes: self.dataplanes.list(),
        }))
    }

    type WatchDataPlanesStream = EventStream;

    async fn watch_data_planes(
        &self,
        _request: Request<WatchDataPlanesRequest>,
    ) -> Result<Response<Self::WatchDataPlanesStream>, Status> {
        let events = tokio_stream::wrappers::BroadcastStream::new(self.dataplanes.subscribe())
            .filter_map(|e| e.ok().map(Ok));
        Ok(Response::new(Box::pin(events)))
    }
}
