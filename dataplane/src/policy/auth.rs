//! Authentication of clients per virtual server: bearer JWTs (keys inline, from Secrets or
//! the environment, or from a JWKS document cached and re-fetched on rotation) or API keys
//! (compared by SHA-256). The result is a [`Principal`] for authorization and rate limits.

use super::client_cert::ClientCertificates;
use super::jwks::JwksCache;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use switchboard_config::kinds::auth_provider::{
    ApiKeyAuth, AuthProviderSpec, JwtAlgorithm, JwtAuth,
};
use switchboard_config::Snapshot;

/// Who is calling, as policies see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Principal {
    /// The subject claim or the API key's principal; empty for anonymous callers.
    pub subject: String,
    pub groups: Vec<String>,
    pub scopes: Vec<String>,
    /// When the credentials stop holding (a JWT's `exp`, Unix seconds); None when they do
    /// not expire by themselves. Connections that outlive one request end then.
    pub expires: Option<u64>,
}

impl Principal {
    /// A caller of a server without authentication.
    pub fn anonymous() -> Principal {
        Principal::default()
    }
}

/// Why a request is not authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credentials at all (the client should authenticate and retry).
    #[error("authentication required: send {0}")]
    Missing(&'static str),
    /// Credentials that do not verify.
    #[error("invalid credentials: {0}")]
    Invalid(String),
    /// The keys to verify with cannot be had right now.
    #[error("cannot verify credentials now: {0}")]
    Unavailable(String),
}

/// One virtual server's authenticator, compiled from its `AuthProvider`.
#[derive(Debug)]
pub enum Authenticator {
    Jwt(Box<JwtVerifier>),
    ApiKeys(ApiKeys),
    ClientCertificates(ClientCertificates),
}

/// The credentials a request offered, as read from its headers.
#[derive(Debug, Default, Clone, Copy)]
pub struct Offered<'a> {
    /// `Authorization` header value.
    pub authorization: Option<&'a str>,
    /// Value of the API-key header, when the provider uses API keys.
    pub api_key: Option<&'a str>,
    /// The certificate chain the client's TLS connection presented (leaf first).
    pub client_certificates: Option<&'a [rustls::pki_types::CertificateDer<'static>]>,
}

fn bearer(authorization: Option<&str>) -> Option<&str> {
    let value = authorization?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}

/// Why an auth provider cannot be served: the snapshot is refused, naming the provider.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error("auth provider `{0}` sets none of jwt, apiKeys and clientCertificate")]
    NoMethod(String),
    #[error("auth provider `{provider}` key {index}: {why}")]
    Key {
        provider: String,
        index: usize,
        why: KeyError,
    },
    #[error("auth provider `{provider}`: {why}")]
    JwksTls { provider: String, why: String },
    #[error("auth provider `{provider}`: clientCertificate.caCert: {why}")]
    CaCert {
        provider: String,
        why: crate::policy::client_cert::CaCertError,
    },
}

/// Why a JWT verification key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not an RSA, EC or Ed25519 public key: {0}")]
    NotAPublicKey(jsonwebtoken::errors::Error),
    #[error("Secret `{secret}` has no key `{key}`")]
    MissingSecret { secret: String, key: String },
    #[error("environment variable {0} is not set")]
    MissingEnv(String),
    #[error("set pem, secret or secretEnv")]
    NoSource,
}

impl Authenticator {
    /// Compiles `spec`; HMAC secrets come from the snapshot's Secrets or the environment.
    pub fn compile(
        name: &str,
        spec: &AuthProviderSpec,
        snap: &Snapshot,
    ) -> Result<Self, AuthConfigError> {
        if let Some(jwt) = &spec.jwt {
            return Ok(Authenticator::Jwt(Box::new(JwtVerifier::compile(
                name, jwt, snap,
            )?)));
        }
        if let Some(keys) = &spec.api_keys {
            return Ok(Authenticator::ApiKeys(ApiKeys::compile(keys)));
        }
        if let Some(certs) = &spec.client_certificate {
            let certs =
                ClientCertificates::compile(certs).map_err(|why| AuthConfigError::CaCert {
                    provider: name.to_string(),
                    why,
                })?;
            return Ok(Authenticator::ClientCertificates(certs));
        }
        Err(AuthConfigError::NoMethod(name.to_string()))
    }

    /// The header an API key is read from, if this authenticator takes API keys.
    pub fn api_key_header(&self) -> Option<&str> {
        match self {
            Authenticator::ApiKeys(k) => Some(&k.header),
            Authenticator::Jwt(_) | Authenticator::ClientCertificates(_) => None,
        }
    }

    /// The JWT settings, for the protected-resource metadata.
    pub fn jwt(&self) -> Option<&JwtAuth> {
        match self {
            Authenticator::Jwt(j) => Some(&j.spec),
            Authenticator::ApiKeys(_) | Authenticator::ClientCertificates(_) => None,
        }
    }

    /// Checks what a request offered.
    pub async fn authenticate(
        &self,
        offered: Offered<'_>,
        jwks: &JwksCache,
    ) -> Result<Principal, AuthError> {
        match self {
            Authenticator::Jwt(j) => {
                let token = bearer(offered.authorization)
                    .ok_or(AuthError::Missing("Authorization: Bearer <JWT>"))?;
                j.verify(token, jwks).await
            }
            Authenticator::ApiKeys(k) => {
                let key = offered
                    .api_key
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .or_else(|| bearer(offered.authorization))
                    .ok_or(AuthError::Missing("an API key"))?;
                k.check(key)
            }
            Authenticator::ClientCertificates(c) => c.check(offered.client_certificates),
        }
    }

    /// Whether clients prove who they are with a TLS client certificate.
    pub fn wants_client_certificate(&self) -> bool {
        matches!(self, Authenticator::ClientCertificates(_))
    }
}

/// Static API keys by the hex SHA-256 of the key.
#[derive(Debug)]
pub struct ApiKeys {
    header: String,
    by_hash: HashMap<String, Principal>,
}

impl ApiKeys {
    fn compile(spec: &ApiKeyAuth) -> ApiKeys {
        ApiKeys {
            header: spec.header_name(),
            by_hash: spec
                .keys
                .iter()
                .map(|k| {
                    let p = Principal {
                        subject: k.principal.clone(),
                        groups: k.groups.clone(),
                        scopes: k.scopes.clone(),
                        expires: None,
                    };
                    (k.sha256.clone(), p)
                })
                .collect(),
        }
    }

    fn check(&self, key: &str) -> Result<Principal, AuthError> {
        let hash = hex::encode(Sha256::digest(key.as_bytes()));
        self.by_hash
            .get(&hash)
            .cloned()
            .ok_or_else(|| AuthError::Invalid("unknown API key".into()))
    }
}

/// Verifies bearer JWTs from one issuer.
pub struct JwtVerifier {
    spec: JwtAuth,
    /// One validation per accepted algorithm (the library wants every algorithm of a
    /// validation to be of the key's family).
    validations: Vec<(Algorithm, Validation)>,
    /// Keys given in the resource (by `kid` when they have one).
    keys: Vec<(Option<String>, DecodingKey)>,
    /// How the https connection to the JWKS document is checked.
    jwks_tls: Option<switchboard_upstream::TlsSettings>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuer", &self.spec.issuer)
            .field("keys", &self.keys.len())
            .field("jwks_url", &self.spec.jwks_url)
            .finish()
    }
}

fn algorithm(a: JwtAlgorithm) -> Algorithm {
    match a {
        JwtAlgorithm::HS256 => Algorithm::HS256,
        JwtAlgorithm::HS384 => Algorithm::HS384,
        JwtAlgorithm::HS512 => Algorithm::HS512,
        JwtAlgorithm::RS256 => Algorithm::RS256,
        JwtAlgorithm::RS384 => Algorithm::RS384,
        JwtAlgorithm::RS512 => Algorithm::RS512,
        JwtAlgorithm::PS256 => Algorithm::PS256,
        JwtAlgorithm::PS384 => Algorithm::PS384,
        JwtAlgorithm::PS512 => Algorithm::PS512,
        JwtAlgorithm::ES256 => Algorithm::ES256,
        JwtAlgorithm::ES384 => Algorithm::ES384,
        JwtAlgorithm::EdDSA => Algorithm::EdDSA,
    }
}

/// A public key from PEM, whichever family it is.
fn pem_key(pem: &str) -> Result<DecodingKey, KeyError> {
    let bytes = pem.as_bytes();
    DecodingKey::from_rsa_pem(bytes)
        .or_else(|_| DecodingKey::from_ec_pem(bytes))
        .or_else(|_| DecodingKey::from_ed_pem(bytes))
        .map_err(KeyError::NotAPublicKey)
}

impl JwtVerifier {
    fn compile(
        name: &str,
        spec: &JwtAuth,
        snap: &Snapshot,
    ) -> Result<JwtVerifier, AuthConfigError> {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = spec.clock_skew.as_secs();
        validation.set_issuer(&[spec.issuer.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss"]);
        if spec.audiences.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&spec.audiences);
            validation.required_spec_claims.insert("aud".into());
        }
        validation.validate_nbf = true;
        let mut keys = Vec::new();
        for (i, k) in spec.keys.iter().enumerate() {
            let key = if let Some(pem) = &k.pem {
                pem_key(pem)
            } else if let Some(r) = &k.secret {
                snap.secret(r)
                    .map(|s| DecodingKey::from_secret(s.as_bytes()))
                    .ok_or_else(|| KeyError::MissingSecret {
                        secret: r.secret.clone(),
                        key: r.key.clone(),
                    })
            } else if let Some(env) = &k.secret_env {
                std::env::var(env)
                    .map(|s| DecodingKey::from_secret(s.as_bytes()))
                    .map_err(|_| KeyError::MissingEnv(env.clone()))
            } else {
                Err(KeyError::NoSource)
            };
            let key = key.map_err(|why| AuthConfigError::Key {
                provider: name.to_string(),
                index: i,
                why,
            })?;
            keys.push((k.kid.clone(), key));
        }
        let validations = spec
            .algorithms
            .iter()
            .map(|a| {
                let alg = algorithm(*a);
                let mut v = validation.clone();
                v.algorithms = vec![alg];
                (alg, v)
            })
            .collect();
        let tls_failed = |why: String| AuthConfigError::JwksTls {
            provider: name.to_string(),
            why,
        };
        let jwks_tls = match spec.tls.resolve(&|r| snap.secret(r)) {
            Ok(Some(tls)) => Some(
                switchboard_upstream::TlsSettings::new(
                    &tls,
                    spec.jwks_url.as_deref().unwrap_or_default(),
                )
                .map_err(|e| tls_failed(e.to_string()))?,
            ),
            Ok(None) => None,
            Err(e) => return Err(tls_failed(e)),
        };
        Ok(JwtVerifier {
            spec: spec.clone(),
            validations,
            keys,
            jwks_tls,
        })
    }

    async fn verify(&self, token: &str, jwks: &JwksCache) -> Result<Principal, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Invalid(format!(
                "the token is {} bytes; at most {MAX_TOKEN_BYTES} are read",
                token.len()
            )));
        }
        refuse_critical(token)?;
        let header = jsonwebtoken::decode_header(token).map_err(|e| {
            AuthError::Invalid(format!(
                "not a usable JWT ({e}); `none` and unknown algorithms are refused"
            ))
        })?;
        let Some((_, validation)) = self.validations.iter().find(|(a, _)| *a == header.alg) else {
            return Err(AuthError::Invalid(format!(
                "algorithm {:?} is not accepted here",
                header.alg
            )));
        };
        let kid = header.kid.as_deref();
        let inline = self
            .keys
            .iter()
            .filter(|(k, key)| {
                key.family() == header.alg.family()
                    && (kid.is_none() || k.is_none() || k.as_deref() == kid)
            })
            .map(|(_, key)| key.clone());
        let mut candidates: Vec<DecodingKey> = inline.collect();
        if let Some(url) = &self.spec.jwks_url {
            let set = jwks
                .keys(url, self.jwks_tls.as_ref(), self.spec.jwks_every(), kid)
                .await
                .map_err(AuthError::Unavailable)?;
            candidates.extend(set.matching(kid, header.alg));
        }
        if candidates.is_empty() {
            return Err(AuthError::Invalid(match kid {
                Some(k) => format!("no key with kid `{k}`"),
                None => "no key for this token".into(),
            }));
        }
        let mut last = String::from("signature does not verify");
        for key in &candidates {
            match jsonwebtoken::decode::<Value>(token, key, validation) {
                Ok(data) => return Ok(self.principal(&data.claims)),
                Err(e) => {
                    use jsonwebtoken::errors::ErrorKind as K;
                    match e.kind() {
                        // Another key may be the right one.
                        K::InvalidSignature => {
                            last = "signature does not verify with any key of the provider".into();
                        }
                        K::InvalidAlgorithm | K::InvalidKeyFormat => {
                            last = e.to_string();
                        }
                        K::ExpiredSignature => {
                            return Err(AuthError::Invalid("token expired".into()))
                        }
                        K::ImmatureSignature => {
                            return Err(AuthError::Invalid("token not valid yet (nbf)".into()))
                        }
                        K::InvalidAudience => {
                            return Err(AuthError::Invalid("token is for another audience".into()))
                        }
                        K::InvalidIssuer => {
                            return Err(AuthError::Invalid("token is from another issuer".into()))
                        }
                        _ => return Err(AuthError::Invalid(e.to_string())),
                    }
                }
            }
        }
        Err(AuthError::Invalid(last))
    }

    fn principal(&self, claims: &Value) -> Principal {
        let names = &self.spec.claims;
        let strings = |v: Option<&Value>| -> Vec<String> {
            match v {
                Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect(),
                _ => Vec::new(),
            }
        };
        let subject = claims
            .get(names.subject.as_deref().unwrap_or("sub"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let groups = strings(claims.get(names.groups.as_deref().unwrap_or("groups")));
        let scopes = match names.scopes.as_deref() {
            Some(claim) => strings(claims.get(claim)),
            None => strings(claims.get("scope").or_else(|| claims.get("scp"))),
        };
        // Accepted until `exp` plus the clock skew allowed, as verification does.
        let expires = claims
            .get("exp")
            .and_then(|e| {
                e.as_u64()
                    .or_else(|| e.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
            })
            .map(|exp| exp.saturating_add(self.spec.clock_skew.as_secs()));
        Principal {
            subject,
            groups,
            scopes,
            expires,
        }
    }
}

/// Longest bearer token read: far past any real JWT, short of what would cost to parse.
pub const MAX_TOKEN_BYTES: usize = 16 << 10;

/// Refuses a token whose header marks parameters critical (`crit`, RFC 7515 4.1.11): this
/// verifier understands no extension, so it must not accept what depends on one. Keys the
/// token names itself (`jwk`, `jku`, `x5u`, `x5c`) are never used: only configured keys and
/// the provider's own JWKS verify.
fn refuse_critical(token: &str) -> Result<(), AuthError> {
    use base64::Engine;
    let Some(encoded) = token.split('.').next() else {
        return Ok(());
    };
    let Ok(raw) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(encoded) else {
        return Ok(()); // decode_header says what is wrong with it
    };
    let Ok(header) = serde_json::from_slice::<serde_json::Map<String, Value>>(&raw) else {
        return Ok(());
    };
    if header.contains_key("crit") {
        return Err(AuthError::Invalid(
            "the token marks header parameters critical (`crit`), which this gateway does not support".into(),
        ));
    }
    Ok(())
}

/// Authenticators by auth-provider name, compiled once per snapshot.
pub type Authenticators = HashMap<String, Arc<Authenticator>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_leniently() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer   abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(None), None);
    }

    fn hmac_verifier() -> JwtVerifier {
        let spec: AuthProviderSpec = serde_yaml::from_str(
            "jwt:\n  issuer: https://issuer.test\n  audiences: [sb]\n  algorithms: [HS256]\n  keys:\n    - secret: {secret: jwt, key: hmac}\n",
        )
        .expect("spec");
        let mut snap = Snapshot::default();
        snap.secrets.insert(
            "jwt".into(),
            [("hmac".to_string(), "s3cret".to_string())].into(),
        );
        match Authenticator::compile("p", &spec, &snap).expect("compiles") {
            Authenticator::Jwt(j) => *j,
            other => panic!("{other:?}"),
        }
    }

    fn hs(alg: Algorithm, secret: &str, claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(alg),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .expect("encode")
    }

    #[tokio::test]
    async fn hmac_tokens_from_a_secret() {
        let v = hmac_verifier();
        let jwks = JwksCache::default();
        let now = jsonwebtoken::get_current_timestamp();
        let claims = |exp: u64| serde_json::json!({"iss": "https://issuer.test", "aud": "sb", "sub": "ann", "exp": exp, "scope": "a b", "groups": ["g"]});
        let good = hs(Algorithm::HS256, "s3cret", claims(now + 60));
        let p = v.verify(&good, &jwks).await.expect("valid");
        assert_eq!(
            (p.subject.as_str(), p.scopes.clone(), p.groups.clone()),
            (
                "ann",
                vec!["a".to_string(), "b".to_string()],
                vec!["g".to_string()]
            )
        );
        let forged = hs(Algorithm::HS256, "guess", claims(now + 60));
        assert!(matches!(
            v.verify(&forged, &jwks).await,
            Err(AuthError::Invalid(_))
        ));
        let old = hs(Algorithm::HS256, "s3cret", claims(now - 600));
        assert_eq!(
            v.verify(&old, &jwks).await,
            Err(AuthError::Invalid("token expired".into()))
        );
        let other_alg = hs(Algorithm::HS384, "s3cret", claims(now + 60));
        assert!(
            matches!(v.verify(&other_alg, &jwks).await, Err(AuthError::Invalid(m)) if m.contains("HS384"))
        );
    }

    #[test]
    fn api_keys_match_by_hash() {
        let spec = ApiKeyAuth {
            keys: vec![switchboard_config::kinds::auth_provider::ApiKey {
                principal: "alice".into(),
                sha256: hex::encode(Sha256::digest(b"k1")),
                groups: vec!["dev".into()],
                scopes: vec![],
            }],
            header: None,
        };
        let keys = ApiKeys::compile(&spec);
        assert_eq!(keys.check("k1").map(|p| p.subject), Ok("alice".into()));
        assert!(matches!(keys.check("k2"), Err(AuthError::Invalid(_))));
    }
}
