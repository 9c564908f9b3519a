//! The kubectl-style envelope (`apiVersion`, `kind`, `metadata`, `spec`) and the `Resource`
//! sum type over every kind.

use crate::kinds::{
    auth_provider::AuthProviderSpec, operator_token::OperatorTokenSpec, prompt::PromptSpec,
    rate_limit::RateLimitPolicySpec, resource::ResourceSpec, secret::SecretSpec,
    upstream::UpstreamSpec, virtual_server::VirtualServerSpec,
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// The only `apiVersion` this build understands.
pub const API_VERSION: &str = "switchboard.dev/v1";

fn default_api_version() -> String {
    API_VERSION.to_string()
}

/// Identity and free-form labels of a resource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Metadata {
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// One document of any kind, with its spec type fixed by `S`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Object<S> {
    #[serde(default = "default_api_version")]
    pub api_version: String,
    pub kind: Kind,
    pub metadata: Metadata,
    pub spec: S,
}

/// Every resource kind users can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    Upstream,
    VirtualServer,
    Prompt,
    Resource,
    AuthProvider,
    RateLimitPolicy,
    Secret,
    OperatorToken,
}

impl Kind {
    /// All kinds, in the order their documents are best applied and listed.
    pub const ALL: [Kind; 8] = [
        Kind::OperatorToken,
        Kind::Secret,
        Kind::AuthProvider,
        Kind::RateLimitPolicy,
        Kind::Upstream,
        Kind::Prompt,
        Kind::Resource,
        Kind::VirtualServer,
    ];

    /// The spelling used in YAML and in store keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Upstream => "Upstream",
            Kind::VirtualServer => "VirtualServer",
            Kind::Prompt => "Prompt",
            Kind::Resource => "Resource",
            Kind::AuthProvider => "AuthProvider",
            Kind::RateLimitPolicy => "RateLimitPolicy",
            Kind::Secret => "Secret",
            Kind::OperatorToken => "OperatorToken",
        }
    }

    fn aliases(self) -> &'static [&'static str] {
        match self {
            Kind::Upstream => &["upstream", "upstreams", "us"],
            Kind::VirtualServer => &["virtualserver", "virtualservers", "vs"],
            Kind::Prompt => &["prompt", "prompts"],
            Kind::Resource => &["resource", "resources", "res"],
            Kind::AuthProvider => &["authprovider", "authproviders", "ap"],
            Kind::RateLimitPolicy => &["ratelimitpolicy", "ratelimitpolicies", "rl"],
            Kind::Secret => &["secret", "secrets"],
            Kind::OperatorToken => &["operatortoken", "operatortokens", "token", "tokens"],
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A kind name that matches no kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown kind `{0}`, expected one of Upstream, VirtualServer, Prompt, Resource, AuthProvider, RateLimitPolicy, Secret, OperatorToken")]
pub struct UnknownKind(pub String);

impl FromStr for Kind {
    type Err = UnknownKind;

    /// Accepts the exact kind, and (case-insensitively) singular, plural and short names,
    /// as `kubectl get` does.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        Kind::ALL
            .into_iter()
            .find(|k| k.aliases().contains(&lower.as_str()))
            .ok_or_else(|| UnknownKind(s.to_string()))
    }
}

/// A resource of any kind.
// Resources are few and built once per apply or snapshot; boxing the big Upstream variant
// would only add indirection at every use.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Resource {
    Upstream(Object<UpstreamSpec>),
    VirtualServer(Object<VirtualServerSpec>),
    Prompt(Object<PromptSpec>),
    Resource(Object<ResourceSpec>),
    AuthProvider(Object<AuthProviderSpec>),
    RateLimitPolicy(Object<RateLimitPolicySpec>),
    Secret(Object<SecretSpec>),
    OperatorToken(Object<OperatorTokenSpec>),
}

/// Applies `$body` to the `Object` inside any `Resource` variant.
macro_rules! each_kind {
    ($res:expr, $obj:ident => $body:expr) => {
        match $res {
            Resource::Upstream($obj) => $body,
            Resource::VirtualServer($obj) => $body,
            Resource::Prompt($obj) => $body,
            Resource::Resource($obj) => $body,
            Resource::AuthProvider($obj) => $body,
            Resource::RateLimitPolicy($obj) => $body,
            Resource::Secret($obj) => $body,
            Resource::OperatorToken($obj) => $body,
        }
    };
}

/// A stored resource's JSON that does not decode.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("resource JSON has no string `kind`")]
    MissingKind,
    #[error(transparent)]
    UnknownKind(#[from] UnknownKind),
    #[error("{kind} JSON does not match its schema: {source}")]
    Schema {
        kind: Kind,
        #[source]
        source: serde_json::Error,
    },
}

impl Resource {
    /// The kind of the inner object.
    pub fn kind(&self) -> Kind {
        match self {
            Resource::Upstream(_) => Kind::Upstream,
            Resource::VirtualServer(_) => Kind::VirtualServer,
            Resource::Prompt(_) => Kind::Prompt,
            Resource::Resource(_) => Kind::Resource,
            Resource::AuthProvider(_) => Kind::AuthProvider,
            Resource::RateLimitPolicy(_) => Kind::RateLimitPolicy,
            Resource::Secret(_) => Kind::Secret,
            Resource::OperatorToken(_) => Kind::OperatorToken,
        }
    }

    /// The resource's `metadata`.
    pub fn metadata(&self) -> &Metadata {
        each_kind!(self, o => &o.metadata)
    }

    /// The resource's `metadata.name`.
    pub fn name(&self) -> &str {
        &self.metadata().name
    }

    /// The `apiVersion` as written.
    pub fn api_version(&self) -> &str {
        each_kind!(self, o => &o.api_version)
    }

    /// Canonical JSON form: what the store keeps and `get -o json` prints.
    pub fn to_json(&self) -> serde_json::Value {
        // Serialising these plain data types cannot fail (string keys, no custom errors).
        each_kind!(self, o => serde_json::to_value(o).unwrap_or(serde_json::Value::Null))
    }

    /// Reads the canonical JSON form back (e.g. from the store).
    pub fn from_json(value: serde_json::Value) -> Result<Resource, DecodeError> {
        let kind: Kind = value
            .get("kind")
            .and_then(|k| k.as_str())
            .ok_or(DecodeError::MissingKind)?
            .parse()?;
        fn obj<S: DeserializeOwned>(
            kind: Kind,
            v: serde_json::Value,
        ) -> Result<Object<S>, DecodeError> {
            serde_json::from_value(v).map_err(|source| DecodeError::Schema { kind, source })
        }
        Ok(match kind {
            Kind::Upstream => Resource::Upstream(obj(kind, value)?),
            Kind::VirtualServer => Resource::VirtualServer(obj(kind, value)?),
            Kind::Prompt => Resource::Prompt(obj(kind, value)?),
            Kind::Resource => Resource::Resource(obj(kind, value)?),
            Kind::AuthProvider => Resource::AuthProvider(obj(kind, value)?),
            Kind::RateLimitPolicy => Resource::RateLimitPolicy(obj(kind, value)?),
            Kind::Secret => Resource::Secret(obj(kind, value)?),
            Kind::OperatorToken => Resource::OperatorToken(obj(kind, value)?),
        })
    }
}
