//! kubectl-style operations on the registry: apply (all-or-nothing per request, validated
//! against everything stored), get and delete. Writes are guarded by the revisions just read
//! and retried on conflict, so concurrent writers never lose an update.

use crate::secrets::{SecretBox, SecretError};
use crate::state::decode;
use crate::store::{Expect, Listing, Record, Revision, Store, StoreError, Write};
use std::collections::BTreeMap;
use switchboard_config::{
    parse_sources, validate, Diagnostic, Diagnostics, Kind, Located, Resource, ResourceSet, Source,
};

/// How often a write retries after losing a race before giving up.
const MAX_ATTEMPTS: usize = 16;

/// What an apply did (or, for a dry run, would do) to one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub kind: Kind,
    pub name: String,
    pub action: Action,
    pub generation: u64,
}

/// The effect of apply on one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Created,
    Configured,
    Unchanged,
}

impl Action {
    /// kubectl's words for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Configured => "configured",
            Action::Unchanged => "unchanged",
        }
    }
}

/// Why an operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{0}")]
    Invalid(Diagnostics),
    #[error("{kind} `{name}` not found")]
    NotFound { kind: Kind, name: String },
    #[error(
        "gave up after {MAX_ATTEMPTS} attempts: other writers kept changing the same resources"
    )]
    Contended,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The outcome of a successful apply.
#[derive(Debug, Clone, Default)]
pub struct ApplyOutcome {
    pub results: Vec<Applied>,
    /// The commit's revision (None when nothing changed or for a dry run).
    pub revision: Option<Revision>,
}

fn index(listing: &Listing) -> BTreeMap<(Kind, String), &Record> {
    listing
        .records
        .iter()
        .map(|r| ((r.kind, r.name.clone()), r))
        .collect()
}

fn stored_set(listing: &Listing) -> switchboard_config::ResourceSet {
    let mut set = switchboard_config::ResourceSet::new();
    for record in &listing.records {
        if let Some(resource) = decode(record) {
            set.insert_resource(resource);
        }
    }
    set
}

/// Creates or updates every resource in `sources`, or nothing when anything is invalid.
/// `Secret` values are sealed with `secrets` before they are written (and refused without
/// it).
pub async fn apply(
    store: &dyn Store,
    sources: &[Source],
    dry_run: bool,
    secrets: Option<&SecretBox>,
) -> Result<ApplyOutcome, RegistryError> {
    let (mut incoming, errors) = parse_sources(sources);
    if !errors.is_empty() {
        return Err(RegistryError::Invalid(Diagnostics(errors)));
    }
    let errors = seal_secrets(&mut incoming, secrets);
    if !errors.is_empty() {
        return Err(RegistryError::Invalid(Diagnostics(errors)));
    }
    if incoming.is_empty() {
        return Err(RegistryError::Invalid(Diagnostics(vec![Diagnostic {
            file: sources.first().map(|s| s.name.clone()).unwrap_or_default(),
            document: None,
            line: None,
            column: None,
            field: String::new(),
            message: "no resources to apply".into(),
        }])));
    }
    for _ in 0..MAX_ATTEMPTS {
        let listing = store.list().await?;
        let current = index(&listing);
        let mut merged = stored_set(&listing);
        for item in incoming.iter() {
            merged.insert(item.clone());
        }
        let errors = validate(&merged);
        if !errors.is_empty() {
            return Err(RegistryError::Invalid(Diagnostics(errors)));
        }
        let (results, writes) = plan(incoming.iter(), &current);
        if dry_run || writes.is_empty() {
            return Ok(ApplyOutcome {
                results,
                revision: None,
            });
        }
        match store.write(writes).await {
            Ok(revision) => {
                return Ok(ApplyOutcome {
                    results,
                    revision: Some(revision),
                })
            }
            Err(StoreError::Conflict { kind, name }) => {
                tracing::debug!(%kind, %name, "apply lost a race; re-reading");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(RegistryError::Contended)
}

/// Replaces the plain values of every incoming `Secret` with sealed ones, and checks that
/// values given already sealed open with this control plane's key.
fn seal_secrets(incoming: &mut ResourceSet, secrets: Option<&SecretBox>) -> Vec<Diagnostic> {
    let mut errors = Vec::new();
    for item in incoming.iter_mut() {
        let Resource::Secret(secret) = &mut item.resource else {
            continue;
        };
        let name = secret.metadata.name.clone();
        let Some(b) = secrets else {
            let message = SecretError::NoKey.to_string();
            let field = "spec.data";
            errors.push(match &item.origin {
                Some(o) => o.diagnostic(field, message),
                None => Diagnostic {
                    file: String::new(),
                    document: None,
                    line: None,
                    column: None,
                    field: field.into(),
                    message,
                },
            });
            continue;
        };
        for (key, sealed) in &secret.spec.sealed {
            if let Err(e) = b.open(&name, key, sealed) {
                let message = e.to_string();
                if let Some(o) = &item.origin {
                    errors.push(o.diagnostic(&format!("spec.sealed.{key}"), message));
                }
            }
        }
        let plain = std::mem::take(&mut secret.spec.data);
        for (key, value) in plain {
            let sealed = b.seal(&name, &key, &value);
            secret.spec.sealed.insert(key, sealed);
        }
    }
    errors
}

fn plan<'a>(
    incoming: impl Iterator<Item = &'a Located>,
    current: &BTreeMap<(Kind, String), &Record>,
) -> (Vec<Applied>, Vec<Write>) {
    let mut results = Vec::new();
    let mut writes = Vec::new();
    for item in incoming {
        let kind = item.resource.kind();
        let name = item.resource.name().to_string();
        let json = item.resource.to_json().to_string();
        let existing = current.get(&(kind, name.clone()));
        let (action, generation, expect) = match existing {
            None => (Action::Created, 1, Expect::Absent),
            Some(r) if same_json(&r.json, &json) => (Action::Unchanged, r.generation, Expect::Any),
            Some(r) => (
                Action::Configured,
                r.generation + 1,
                Expect::ModRevision(r.mod_revision),
            ),
        };
        if action != Action::Unchanged {
            writes.push(Write::Put {
                kind,
                name: name.clone(),
                generation,
                json,
                expect,
            });
        }
        results.push(Applied {
            kind,
            name,
            action,
            generation,
        });
    }
    (results, writes)
}

fn same_json(a: &str, b: &str) -> bool {
    match (
        serde_json::from_str::<serde_json::Value>(a),
        serde_json::from_str::<serde_json::Value>(b),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Deletes one resource, refusing when others still reference it.
pub async fn delete(store: &dyn Store, kind: Kind, name: &str) -> Result<Revision, RegistryError> {
    for _ in 0..MAX_ATTEMPTS {
        let listing = store.list().await?;
        let Some(record) = index(&listing)
            .get(&(kind, name.to_string()))
            .copied()
            .cloned()
        else {
            return Err(RegistryError::NotFound {
                kind,
                name: name.to_string(),
            });
        };
        let mut remaining = stored_set(&listing);
        remaining.remove(kind, name);
        let errors: Vec<Diagnostic> = validate(&remaining)
            .into_iter()
            .filter(|d| {
                d.message
                    .contains(&format!("{kind} `{name}` does not exist"))
            })
            .collect();
        if !errors.is_empty() {
            return Err(RegistryError::Invalid(Diagnostics(errors)));
        }
        let write = Write::Delete {
            kind,
            name: name.to_string(),
            expect: Expect::ModRevision(record.mod_revision),
        };
        match store.write(vec![write]).await {
            Ok(revision) => return Ok(revision),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(RegistryError::Contended)
}

/// Every stored resource of `kind` (or just `name`), ordered by name.
pub async fn get(
    store: &dyn Store,
    kind: Kind,
    name: Option<&str>,
) -> Result<Vec<Record>, RegistryError> {
    match name {
        Some(name) => match store.get(kind, name).await? {
            Some(r) => Ok(vec![r]),
            None => Err(RegistryError::NotFound {
                kind,
                name: name.to_string(),
            }),
        },
        None => {
            let mut records: Vec<Record> = store
                .list()
                .await?
                .records
                .into_iter()
                .filter(|r| r.kind == kind)
                .collect();
            records.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(records)
        }
    }
}
