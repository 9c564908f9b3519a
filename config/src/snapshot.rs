//! The data plane's whole configuration: what the control plane builds per data-plane group
//! and pushes, and what a data plane checks before it serves it.

use crate::catalog::{Catalog, Discovered};
use crate::diagnostic::Diagnostics;
use crate::kinds::{
    auth_provider::AuthProviderSpec, prompt::PromptSpec, rate_limit::RateLimitPolicySpec,
    resource::ResourceSpec, upstream::UpstreamSpec, virtual_server::VirtualServerSpec,
};
use crate::object::{Kind, Metadata, Object, Resource, API_VERSION};
use crate::set::ResourceSet;
use crate::validate::validate;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// An immutable, self-contained configuration: every virtual server a data plane serves and
/// everything they reference, nothing else.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Snapshot {
    /// Content hash of everything else; see [`Snapshot::content_version`].
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub virtual_servers: BTreeMap<String, VirtualServerSpec>,
    #[serde(default)]
    pub upstreams: BTreeMap<String, UpstreamSpec>,
    #[serde(default)]
    pub prompts: BTreeMap<String, PromptSpec>,
    #[serde(default)]
    pub resources: BTreeMap<String, ResourceSpec>,
    #[serde(default)]
    pub auth_providers: BTreeMap<String, AuthProviderSpec>,
    #[serde(default)]
    pub rate_limits: BTreeMap<String, RateLimitPolicySpec>,
    /// Discovered catalogs of the upstreams above (absent until discovered).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub catalogs: BTreeMap<String, Catalog>,
    /// Upstreams the control plane's health checks found down, with the reason; calls to
    /// them fail fast until they recover.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unhealthy: BTreeMap<String, String>,
    /// The secret values the upstreams above reference (secret name -> key -> value), so
    /// data planes can authenticate to them. Opened by the control plane for this push.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, BTreeMap<String, String>>,
    /// Secrets placed on this group for its TLS listeners (`servedBy`), carried whole in
    /// `secrets`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listener_secrets: Vec<String>,
    /// How many data planes of this group are connected (at least 1): cluster-wide rate
    /// limits are split into this many per-replica shares.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub replicas: u32,
    /// Seals gateway session ids (base64 of 32 bytes). One key for the whole registry, so
    /// a client session keeps working on any replica; empty when the builder has none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub session_key: String,
    /// Keys that sealed session ids before `session_key` took over (newest first): they
    /// still open ids, so a key rotation ends no session before its time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous_session_keys: Vec<String>,
}

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

/// The identity a snapshot is built for (a data-plane group).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct NodeGroup {
    pub cluster: String,
    pub zone: String,
    pub labels: BTreeMap<String, String>,
}

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot {
            version: String::new(),
            virtual_servers: BTreeMap::new(),
            upstreams: BTreeMap::new(),
            prompts: BTreeMap::new(),
            resources: BTreeMap::new(),
            auth_providers: BTreeMap::new(),
            rate_limits: BTreeMap::new(),
            catalogs: BTreeMap::new(),
            unhealthy: BTreeMap::new(),
            secrets: BTreeMap::new(),
            listener_secrets: Vec::new(),
            replicas: 1,
            session_key: String::new(),
            previous_session_keys: Vec::new(),
        }
    }
}

impl NodeGroup {
    /// The group as one string (`cluster=..,zone=..,k=v`), e.g. for `get dataplanes` and
    /// for counting replicas per group.
    pub fn label(&self) -> String {
        let mut parts = vec![
            format!("cluster={}", self.cluster),
            format!("zone={}", self.zone),
        ];
        parts.extend(self.labels.iter().map(|(k, v)| format!("{k}={v}")));
        parts.join(",")
    }
}

/// Why a data plane refuses a snapshot (it then NACKs and keeps its old one).
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot payload is not valid JSON for this schema: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("snapshot version `{claimed}` does not match its content (hash `{actual}`)")]
    VersionMismatch { claimed: String, actual: String },
    #[error("snapshot is inconsistent:\n{0}")]
    Invalid(Diagnostics),
}

impl Snapshot {
    /// Selects the virtual servers placed on `group` and everything they reference
    /// (including the catalogs of their upstreams), and stamps the content version. Pure:
    /// equal inputs give equal snapshots on any replica.
    pub fn build(set: &ResourceSet, group: &NodeGroup, discovered: &Discovered) -> Snapshot {
        let mut snap = Snapshot::default();
        for item in set.of_kind(Kind::VirtualServer) {
            let Resource::VirtualServer(vs) = &item.resource else {
                continue;
            };
            let placed = vs
                .spec
                .placement
                .as_ref()
                .is_none_or(|p| p.matches(&group.cluster, &group.zone, &group.labels));
            if !placed {
                continue;
            }
            let spec = &vs.spec;
            let upstream_names = spec
                .upstreams
                .iter()
                .map(|u| &u.upstream)
                .chain(spec.passthrough.iter());
            for name in upstream_names {
                if let Some(Resource::Upstream(o)) =
                    set.get(Kind::Upstream, name).map(|l| &l.resource)
                {
                    snap.upstreams.insert(name.clone(), o.spec.clone());
                }
            }
            for name in &spec.prompts {
                if let Some(Resource::Prompt(o)) = set.get(Kind::Prompt, name).map(|l| &l.resource)
                {
                    snap.prompts.insert(name.clone(), o.spec.clone());
                }
            }
            for name in &spec.resources {
                if let Some(Resource::Resource(o)) =
                    set.get(Kind::Resource, name).map(|l| &l.resource)
                {
                    snap.resources.insert(name.clone(), o.spec.clone());
                }
            }
            if let Some(name) = &spec.auth_provider {
                if let Some(Resource::AuthProvider(o)) =
                    set.get(Kind::AuthProvider, name).map(|l| &l.resource)
                {
                    snap.auth_providers.insert(name.clone(), o.spec.clone());
                }
            }
            for name in &spec.rate_limits {
                if let Some(Resource::RateLimitPolicy(o)) =
                    set.get(Kind::RateLimitPolicy, name).map(|l| &l.resource)
                {
                    snap.rate_limits.insert(name.clone(), o.spec.clone());
                }
            }
            snap.virtual_servers
                .insert(vs.metadata.name.clone(), spec.clone());
        }
        for item in set.of_kind(Kind::Secret) {
            if let Resource::Secret(secret) = &item.resource {
                let served = secret
                    .spec
                    .served_by
                    .as_ref()
                    .is_some_and(|p| p.matches(&group.cluster, &group.zone, &group.labels));
                if served {
                    snap.listener_secrets.push(secret.metadata.name.clone());
                }
            }
        }
        for name in snap.upstreams.keys() {
            if let Some(c) = discovered.catalogs.get(name) {
                snap.catalogs.insert(name.clone(), c.clone());
            }
            if let Some(reason) = discovered.unhealthy.get(name) {
                snap.unhealthy.insert(name.clone(), reason.clone());
            }
        }
        if !snap.rate_limits.is_empty() {
            // Only snapshots that split limits change when replicas come and go.
            snap.replicas = discovered
                .replicas
                .get(&group.label())
                .copied()
                .unwrap_or(1)
                .max(1);
        }
        snap.version = snap.content_version();
        snap
    }

    /// The same snapshot carrying the values of the secrets its upstreams reference, taken
    /// from `opened` (secret name -> key -> plain value).
    pub fn with_secrets(mut self, opened: &BTreeMap<String, BTreeMap<String, String>>) -> Snapshot {
        self.secrets.clear();
        let refs = self
            .upstreams
            .values()
            .flat_map(|u| u.secret_refs())
            .chain(self.auth_providers.values().flat_map(|a| a.refs()))
            .map(|(_, r)| r.clone())
            .collect::<Vec<_>>();
        for name in &self.listener_secrets {
            if let Some(values) = opened.get(name) {
                self.secrets.insert(name.clone(), values.clone());
            }
        }
        for r in &refs {
            if let Some(value) = opened.get(&r.secret).and_then(|s| s.get(&r.key)) {
                self.secrets
                    .entry(r.secret.clone())
                    .or_default()
                    .insert(r.key.clone(), value.clone());
            }
        }
        self.version = self.content_version();
        self
    }

    /// The plain value of a secret this snapshot carries.
    pub fn secret(&self, r: &crate::kinds::secret::SecretRef) -> Option<String> {
        self.secrets.get(&r.secret)?.get(&r.key).cloned()
    }

    /// The same snapshot carrying the registry's session key.
    pub fn with_session_key(self, key: &str) -> Snapshot {
        self.with_session_keys(key, &[])
    }

    /// The same snapshot sealing with `current` and still opening what `previous` sealed.
    pub fn with_session_keys(mut self, current: &str, previous: &[String]) -> Snapshot {
        self.session_key = current.to_string();
        self.previous_session_keys = previous.to_vec();
        self.version = self.content_version();
        self
    }

    /// A hash of the content (not of `version` itself): equal content, equal version.
    pub fn content_version(&self) -> String {
        let mut unversioned = self.clone();
        unversioned.version.clear();
        // BTreeMaps and struct field order make this JSON canonical.
        let bytes = serde_json::to_vec(&unversioned).unwrap_or_default();
        let digest = Sha256::digest(&bytes);
        hex::encode(&digest[..12])
    }

    /// The payload bytes carried in the discovery protocol.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes and checks a pushed payload: schema, version, and internal consistency.
    pub fn decode(payload: &[u8]) -> Result<Snapshot, SnapshotError> {
        let snap: Snapshot = serde_json::from_slice(payload)?;
        let actual = snap.content_version();
        if snap.version != actual {
            return Err(SnapshotError::VersionMismatch {
                claimed: snap.version,
                actual,
            });
        }
        let errors = validate(&snap.to_resource_set());
        if !errors.is_empty() {
            return Err(SnapshotError::Invalid(Diagnostics(errors)));
        }
        Ok(snap)
    }

    /// The snapshot's content as resources, e.g. to validate it.
    pub fn to_resource_set(&self) -> ResourceSet {
        fn obj<S>(kind: Kind, name: &str, spec: &S) -> Object<S>
        where
            S: Clone,
        {
            Object {
                api_version: API_VERSION.to_string(),
                kind,
                metadata: Metadata {
                    name: name.to_string(),
                    ..Metadata::default()
                },
                spec: spec.clone(),
            }
        }
        let mut set = ResourceSet::new();
        for (n, s) in &self.upstreams {
            set.insert_resource(Resource::Upstream(obj(Kind::Upstream, n, s)));
        }
        for (n, s) in &self.virtual_servers {
            set.insert_resource(Resource::VirtualServer(obj(Kind::VirtualServer, n, s)));
        }
        for (n, s) in &self.prompts {
            set.insert_resource(Resource::Prompt(obj(Kind::Prompt, n, s)));
        }
        for (n, s) in &self.resources {
            set.insert_resource(Resource::Resource(obj(Kind::Resource, n, s)));
        }
        for (n, s) in &self.auth_providers {
            set.insert_resource(Resource::AuthProvider(obj(Kind::AuthProvider, n, s)));
        }
        for (n, s) in &self.rate_limits {
            set.insert_resource(Resource::RateLimitPolicy(obj(Kind::RateLimitPolicy, n, s)));
        }
        for (n, values) in &self.secrets {
            let spec = crate::kinds::secret::SecretSpec {
                data: values.clone(),
                ..Default::default()
            };
            set.insert_resource(Resource::Secret(obj(Kind::Secret, n, &spec)));
        }
        set
    }
}
