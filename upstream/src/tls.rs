//! Outgoing https for every client the gateway runs (upstream MCP servers, legacy SSE
//! streams, OAuth2 token endpoints, JWKS documents): rustls with the platform's roots plus
//! an endpoint's own `tls` settings (extra CAs, a server name to check, a client
//! certificate), and a redirect rule that never carries credentials to another origin.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use switchboard_config::kinds::tls::ResolvedTls;

/// Redirects followed within one origin before giving up.
const MAX_REDIRECTS: usize = 10;

/// Why outgoing TLS settings cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    #[error("tls.caCert: {0}")]
    CaCert(String),
    #[error("tls.clientCert: {0}")]
    ClientCert(String),
    #[error("tls.clientKey: {0}")]
    ClientKey(String),
    #[error("tls.serverName: `{0}` is neither a DNS name nor an IP address")]
    ServerName(String),
    #[error("tls: {0}")]
    Config(String),
}

/// An endpoint's TLS settings, checked and ready: equal settings compare equal (by a
/// fingerprint), so clients can be shared and a changed certificate is noticed.
#[derive(Clone)]
pub struct TlsSettings {
    config: Arc<rustls::ClientConfig>,
    fingerprint: [u8; 32],
    insecure: bool,
    parts: Arc<Parts>,
}

/// The checked pieces, for proxies that build their own TLS connector (pingora's).
struct Parts {
    extra_roots: Vec<CertificateDer<'static>>,
    server_name: Option<String>,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
}

impl PartialEq for TlsSettings {
    fn eq(&self, other: &Self) -> bool {
        self.fingerprint == other.fingerprint
    }
}

impl Eq for TlsSettings {}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("fingerprint", &hex::encode(&self.fingerprint[..8]))
            .field("insecure", &self.insecure)
            .finish()
    }
}

impl TlsSettings {
    /// Settings for connections to `url` (whose host `serverName` and `insecureSkipVerify`
    /// apply to; any other host a client meets, such as a token endpoint, is checked as
    /// usual), built from `tls`.
    pub fn new(tls: &ResolvedTls, url: &str) -> Result<TlsSettings, TlsError> {
        let host = url::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(|h| h.trim_matches(['[', ']']).to_string()))
            .unwrap_or_default();
        let mut roots = RootCertStore::empty();
        roots.extend(platform_roots().roots.iter().cloned());
        let mut extra_roots = Vec::new();
        if let Some(pem) = &tls.ca_cert {
            let certs = parse_certs(pem).map_err(TlsError::CaCert)?;
            for c in certs {
                roots
                    .add(c.clone())
                    .map_err(|e| TlsError::CaCert(format!("not a usable CA certificate: {e}")))?;
                extra_roots.push(c);
            }
        }
        let roots = Arc::new(roots);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let expected = match &tls.server_name {
            Some(n) => {
                Some(ServerName::try_from(n.clone()).map_err(|_| TlsError::ServerName(n.clone()))?)
            }
            None => None,
        };
        let verifier = Arc::new(Verifier {
            webpki,
            host,
            expected,
            insecure: tls.insecure_skip_verify,
            schemes: provider.signature_verification_algorithms,
        });
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let (config, identity) = match &tls.identity {
            None => (builder.with_no_client_auth(), None),
            Some((cert, key)) => {
                let chain = parse_certs(cert).map_err(TlsError::ClientCert)?;
                for c in &chain {
                    webpki::EndEntityCert::try_from(c).map_err(|e| {
                        TlsError::ClientCert(format!("not a usable X.509 certificate: {e}"))
                    })?;
                }
                let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| {
                    TlsError::ClientKey(format!("no PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"))
                })?;
                let config = builder
                    .with_client_auth_cert(chain.clone(), key.clone_key())
                    .map_err(|e| TlsError::ClientKey(format!("does not fit clientCert: {e}")))?;
                (config, Some((chain, key)))
            }
        };
        let mut digest = Sha256::new();
        for part in [
            url.as_bytes(),
            tls.ca_cert.as_deref().unwrap_or_default().as_bytes(),
            tls.server_name.as_deref().unwrap_or_default().as_bytes(),
            tls.identity.as_ref().map_or(&[][..], |(c, _)| c.as_bytes()),
            tls.identity.as_ref().map_or(&[][..], |(_, k)| k.as_bytes()),
            &[u8::from(tls.insecure_skip_verify)],
        ] {
            digest.update((part.len() as u64).to_be_bytes());
            digest.update(part);
        }
        Ok(TlsSettings {
            config: Arc::new(config),
            fingerprint: digest.finalize().into(),
            insecure: tls.insecure_skip_verify,
            parts: Arc::new(Parts {
                extra_roots,
                server_name: tls.server_name.clone(),
                identity,
            }),
        })
    }

    /// CA certificates trusted on top of the platform's roots.
    pub fn extra_roots(&self) -> &[CertificateDer<'static>] {
        &self.parts.extra_roots
    }

    /// The name the server's certificate must carry, when not the URL's host.
    pub fn server_name(&self) -> Option<&str> {
        self.parts.server_name.as_deref()
    }

    /// The client certificate chain (leaf first) and its key, for mutual TLS.
    pub fn identity(&self) -> Option<(&[CertificateDer<'static>], &PrivateKeyDer<'static>)> {
        self.parts.identity.as_ref().map(|(c, k)| (c.as_slice(), k))
    }

    /// Whether certificates go unchecked.
    pub fn insecure(&self) -> bool {
        self.insecure
    }

    /// An Upstream's `tls` block with its client key looked up by `lookup`, for
    /// connections to its URL; `None` when the block is empty. Errors name the field.
    pub fn for_upstream(
        spec: &switchboard_config::kinds::upstream::UpstreamSpec,
        lookup: &dyn Fn(&switchboard_config::kinds::secret::SecretRef) -> Option<String>,
    ) -> Result<Option<TlsSettings>, String> {
        let url = spec.url().unwrap_or_default();
        match spec.tls.resolve(lookup)? {
            None => Ok(None),
            Some(r) => TlsSettings::new(&r, url)
                .map(Some)
                .map_err(|e| e.to_string()),
        }
    }

    /// A short, stable identity of these settings (keys clients are cached by).
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }
}

/// The platform's trusted roots, read once (`SSL_CERT_FILE` / `SSL_CERT_DIR` override the
/// system store, as OpenSSL's tools do).
struct PlatformRoots {
    roots: Vec<rustls::pki_types::TrustAnchor<'static>>,
    ders: Vec<CertificateDer<'static>>,
    config: Arc<rustls::ClientConfig>,
}

fn platform_roots() -> &'static PlatformRoots {
    static ROOTS: OnceLock<PlatformRoots> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut store = RootCertStore::empty();
        let mut ders = Vec::new();
        match rustls_native_certs::load_native_certs() {
            Ok(certs) => {
                for c in certs {
                    if store.add(c.clone()).is_ok() {
                        ders.push(c);
                    }
                }
                if ders.is_empty() {
                    tracing::warn!(
                        "the platform has no trusted roots (install ca-certificates): https upstreams need tls.caCert"
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the platform's trusted roots"),
        }
        let roots = store.roots.clone();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map(|b| b.with_root_certificates(store).with_no_client_auth())
            .unwrap_or_else(|e| {
                // ring supports TLS 1.2 and 1.3, so this cannot happen; keep going without
                // roots rather than abort the process.
                tracing::error!(error = %e, "cannot build the default TLS settings");
                rustls::ClientConfig::builder()
                    .with_root_certificates(RootCertStore::empty())
                    .with_no_client_auth()
            });
        PlatformRoots {
            roots,
            ders,
            config: Arc::new(config),
        }
    })
}

/// The platform's trusted roots as certificates, for connectors that load their own.
pub fn platform_root_certs() -> &'static [CertificateDer<'static>] {
    &platform_roots().ders
}

fn parse_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    switchboard_config::kinds::tls::pem_certificates(pem)
        .map_err(|e| format!("not a PEM certificate bundle: {e}"))
}

/// Builds an HTTP client for outgoing calls: https checked against the platform's roots,
/// or against `tls` when given; redirects followed only within one origin.
pub fn http_client(
    connect_timeout: Option<Duration>,
    tls: Option<&TlsSettings>,
) -> Result<reqwest::Client, TlsError> {
    let config = match tls {
        Some(t) => t.config.clone(),
        None => platform_roots().config.clone(),
    };
    let mut builder = reqwest::Client::builder()
        .use_preconfigured_tls((*config).clone())
        .redirect(same_origin_redirects());
    if let Some(t) = connect_timeout {
        builder = builder.connect_timeout(t);
    }
    builder
        .build()
        .map_err(|e| TlsError::Config(format!("cannot build an HTTP client: {e}")))
}

/// An HTTP client with the platform's roots, for callers with no settings of their own.
pub fn default_http_client() -> reqwest::Client {
    http_client(None, None).unwrap_or_else(|e| {
        tracing::error!(error = %e, "falling back to an HTTP client without TLS settings");
        reqwest::Client::new()
    })
}

/// Follows a redirect only to the same scheme, host and port: credentials (bearer tokens,
/// secret headers, client certificates) never go to a server they were not meant for, and
/// https never falls back to http.
fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let Some(first) = attempt.previous().first() else {
            return attempt.follow();
        };
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
        }
        if attempt.url().origin() == first.origin() {
            attempt.follow()
        } else {
            let to = attempt.url().to_string();
            attempt.error(format!(
                "redirected to another origin ({to}): not followed, so credentials stay with the server they were meant for; point the URL there if that is right"
            ))
        }
    })
}

/// Checks certificates with webpki, against `expected` instead of the URL's host when
/// connecting to `host`, or not at all for `host` when told to skip.
#[derive(Debug)]
struct Verifier {
    webpki: Arc<WebPkiServerVerifier>,
    host: String,
    expected: Option<ServerName<'static>>,
    insecure: bool,
    schemes: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl Verifier {
    fn is_own_host(&self, name: &ServerName<'_>) -> bool {
        match name {
            ServerName::DnsName(d) => d.as_ref().eq_ignore_ascii_case(&self.host),
            ServerName::IpAddress(ip) => {
                std::net::IpAddr::from(*ip).to_string() == self.host
                    || self.host.parse::<std::net::IpAddr>().ok() == Some((*ip).into())
            }
            _ => false,
        }
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let own = self.is_own_host(server_name);
        if own && self.insecure {
            return Ok(ServerCertVerified::assertion());
        }
        let name = match (&self.expected, own) {
            (Some(expected), true) => expected,
            _ => server_name,
        };
        self.webpki
            .verify_server_cert(end_entity, intermediates, name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.schemes)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.schemes)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_settings_name_the_field() {
        let bad_ca = ResolvedTls {
            ca_cert: Some("not pem".into()),
            server_name: None,
            identity: None,
            insecure_skip_verify: false,
        };
        let e = TlsSettings::new(&bad_ca, "https://a.example/mcp").unwrap_err();
        assert!(e.to_string().starts_with("tls.caCert"), "{e}");
        let ca = switchboard_testkit::TestCa::new("unit").expect("ca");
        let good = ca.client("gateway", &[]).expect("client certificate");
        let with = |cert: &str, key: &str| ResolvedTls {
            ca_cert: None,
            server_name: None,
            identity: Some((cert.into(), key.into())),
            insecure_skip_verify: false,
        };
        let fake = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let e = TlsSettings::new(&with(fake, &good.key_pem), "https://a.example/mcp").unwrap_err();
        assert!(e.to_string().starts_with("tls.clientCert"), "{e}");
        let e = TlsSettings::new(
            &with(&good.cert_pem, "no key here"),
            "https://a.example/mcp",
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("tls.clientKey"), "{e}");
        let other = ca.client("other", &[]).expect("another certificate");
        let e = TlsSettings::new(
            &with(&good.cert_pem, &other.key_pem),
            "https://a.example/mcp",
        )
        .unwrap_err();
        assert!(e.to_string().contains("does not fit clientCert"), "{e}");
        TlsSettings::new(
            &with(&good.cert_pem, &good.key_pem),
            "https://a.example/mcp",
        )
        .expect("a certificate with its own key");
    }

    #[test]
    fn equal_settings_share_a_fingerprint_and_changes_show() {
        let tls = ResolvedTls {
            ca_cert: None,
            server_name: Some("mcp.internal".into()),
            identity: None,
            insecure_skip_verify: false,
        };
        let a = TlsSettings::new(&tls, "https://10.0.0.1/mcp").expect("valid");
        let b = TlsSettings::new(&tls, "https://10.0.0.1/mcp").expect("valid");
        assert_eq!(a, b);
        let other = ResolvedTls {
            server_name: Some("other.internal".into()),
            ..tls
        };
        assert_ne!(
            a,
            TlsSettings::new(&other, "https://10.0.0.1/mcp").expect("valid")
        );
    }
}
