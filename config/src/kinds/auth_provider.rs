//! `AuthProvider`: how a virtual server authenticates its clients.

use super::secret::SecretRef;
use super::tls::ClientTls;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Exactly one of `jwt`, `apiKeys` and `clientCertificate` is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuthProviderSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtAuth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_keys: Option<ApiKeyAuth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<ClientCertificateAuth>,
}

/// Clients that present, on a TLS listener, a certificate issued by `caCert` (checked for
/// validity dates and the client-authentication usage). The principal is its SPIFFE id
/// (a `spiffe://` URI SAN) when it has one, else its subject's common name; its groups are
/// the subject's organizational units (OU).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClientCertificateAuth {
    /// The CA certificates (PEM) whose client certificates are accepted.
    pub ca_cert: String,
    /// Which identity names the principal (default `spiffeOrCommonName`).
    #[serde(default, skip_serializing_if = "PrincipalFrom::is_default")]
    pub principal: PrincipalFrom,
}

/// Where a client certificate's principal name comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PrincipalFrom {
    /// The `spiffe://` URI SAN, else the subject's common name.
    #[default]
    SpiffeOrCommonName,
    /// The subject's common name (CN).
    CommonName,
    /// The first DNS name SAN.
    DnsName,
    /// The first e-mail SAN.
    Email,
}

impl PrincipalFrom {
    /// True for the default, so serialisation can omit it.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Bearer JWTs from one issuer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JwtAuth {
    pub issuer: String,
    /// Accepted `aud` values; a token must carry at least one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// Accepted `alg` values; `none` is never accepted.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<JwtAlgorithm>,
    /// Keys fetched (and re-fetched on rotation) from this JWKS document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// How the https connection to `jwksUrl` is checked (extra CAs, client certificate).
    #[serde(default, skip_serializing_if = "ClientTls::is_empty")]
    pub tls: ClientTls,
    /// Keys given inline.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<JwtKey>,
    #[serde(default = "default_clock_skew", with = "crate::duration")]
    pub clock_skew: Duration,
    /// Forward the client's token to upstreams (off: tokens stop at the gateway).
    #[serde(default)]
    pub forward_token: bool,
    /// How often the JWKS document is fetched again (default 5m); a token whose `kid` is
    /// unknown fetches it at once (at most once a second), so rotations need no restart.
    #[serde(
        default,
        with = "crate::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub jwks_refresh: Option<Duration>,
    /// Which claims name the principal, its groups and its scopes.
    #[serde(default, skip_serializing_if = "ClaimNames::is_default")]
    pub claims: ClaimNames,
    /// Authorization servers announced in the OAuth protected-resource metadata (RFC 9728);
    /// the issuer when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorization_servers: Vec<String>,
    /// Scopes announced in the protected-resource metadata.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes_supported: Vec<String>,
}

impl JwtAuth {
    /// Default JWKS refresh interval.
    pub const DEFAULT_JWKS_REFRESH: Duration = Duration::from_secs(300);

    /// The JWKS refresh interval in force.
    pub fn jwks_every(&self) -> Duration {
        self.jwks_refresh.unwrap_or(Self::DEFAULT_JWKS_REFRESH)
    }
}

/// Claim names, for issuers that do not use the usual ones.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClaimNames {
    /// The principal (default `sub`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// A list (or space-separated string) of groups (default `groups`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<String>,
    /// A space-separated string (or list) of scopes (default `scope`, then `scp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<String>,
}

impl ClaimNames {
    /// True when nothing is set, so serialisation can omit the block.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

fn default_algorithms() -> Vec<JwtAlgorithm> {
    vec![JwtAlgorithm::RS256]
}

fn default_clock_skew() -> Duration {
    Duration::from_secs(60)
}

/// Signature algorithms Switchboard verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(clippy::upper_case_acronyms)]
pub enum JwtAlgorithm {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

impl JwtAlgorithm {
    /// HMAC algorithms need a shared secret instead of a public key.
    pub fn is_hmac(self) -> bool {
        matches!(self, Self::HS256 | Self::HS384 | Self::HS512)
    }
}

/// One verification key: `pem` for a public key; `secret` (a `Secret` value) or
/// `secretEnv` (an environment variable on the data plane) for an HMAC secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JwtKey {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pem: Option<String>,
    /// Name of an environment variable (on the data plane) holding an HMAC secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    /// An HMAC secret kept in a `Secret` (sealed at rest, carried in snapshots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretRef>,
}

/// Static API keys, stored only as SHA-256 hashes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApiKeyAuth {
    pub keys: Vec<ApiKey>,
    /// The header that carries a key (default `X-Api-Key`); `Authorization: Bearer <key>`
    /// is accepted too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
}

impl ApiKeyAuth {
    /// The key header in force, lower case.
    pub fn header_name(&self) -> String {
        self.header
            .as_deref()
            .unwrap_or("x-api-key")
            .to_ascii_lowercase()
    }
}

/// One API key and the principal it authenticates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApiKey {
    /// The principal (subject) a request with this key acts as.
    pub principal: String,
    /// Lower-case hex SHA-256 of the key.
    pub sha256: String,
    /// Groups the principal belongs to, for authorization rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Scopes the key grants, for authorization rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
}

impl AuthProviderSpec {
    /// Every secret value this provider needs, with the field that names it.
    pub fn refs(&self) -> Vec<(String, &SecretRef)> {
        let keys = self.jwt.iter().flat_map(|j| j.keys.iter().enumerate());
        let mut out: Vec<(String, &SecretRef)> = keys
            .filter_map(|(i, k)| {
                k.secret
                    .as_ref()
                    .map(|r| (format!("spec.jwt.keys[{i}].secret"), r))
            })
            .collect();
        out.extend(self.jwt.iter().flat_map(|j| j.tls.refs("spec.jwt.tls")));
        out
    }
}
