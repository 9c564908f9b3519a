//! TLS on the data plane's client listener: certificates from files, chosen by the name the
//! client asks for (SNI), reloaded when the files change without dropping a connection; HTTP/2
//! or HTTP/1.1 by ALPN; and client certificates asked for (never required here), whose chain a
//! virtual server's `clientCertificate` provider checks against its own CA.

use async_trait::async_trait;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::TlsAccept;
use pingora::protocols::tls::TlsRef;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How often the certificate files are checked for changes.
pub const RELOAD_EVERY: Duration = Duration::from_secs(2);

/// Why the listener's TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ListenerTlsError {
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("give --tls-cert and --tls-key in pairs ({certs} certificates, {keys} keys)")]
    Unpaired { certs: usize, keys: usize },
}

fn file_error(path: &Path, reason: impl Into<String>) -> ListenerTlsError {
    ListenerTlsError::File {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// One certificate chain and key file pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The listener's certificates: the first pair is served when no other matches the name
/// the client asked for.
#[derive(Debug, Clone)]
pub struct ListenerTls {
    pub pairs: Vec<CertFiles>,
    /// Secrets whose `tls.crt`/`tls.key` the snapshot carries (`servedBy` this group).
    pub secrets: Vec<String>,
}

impl ListenerTls {
    /// Pairs `certs[i]` with `keys[i]`; `None` when neither is given.
    pub fn from_paths(
        certs: &[PathBuf],
        keys: &[PathBuf],
        secrets: &[String],
    ) -> Result<Option<ListenerTls>, ListenerTlsError> {
        if certs.len() != keys.len() {
            return Err(ListenerTlsError::Unpaired {
                certs: certs.len(),
                keys: keys.len(),
            });
        }
        if certs.is_empty() && secrets.is_empty() {
            return Ok(None);
        }
        Ok(Some(ListenerTls {
            secrets: secrets.to_vec(),
            pairs: certs
                .iter()
                .zip(keys)
                .map(|(c, k)| CertFiles {
                    cert: c.clone(),
                    key: k.clone(),
                })
                .collect(),
        }))
    }

    /// Loads every pair now (so a bad file stops the start with its name) and returns the
    /// resolver that serves them.
    pub fn load(&self) -> Result<Arc<CertResolver>, ListenerTlsError> {
        let files = load_files(&self.pairs)?;
        let sources = Sources {
            stamps: self
                .pairs
                .iter()
                .flat_map(|p| [stamp(&p.cert), stamp(&p.key)])
                .collect(),
            files,
            secrets: Vec::new(),
        };
        let resolver = CertResolver {
            pairs: self.pairs.clone(),
            secret_names: self.secrets.clone(),
            sources: std::sync::Mutex::new(Sources::default()),
            current: arc_swap::ArcSwapOption::empty(),
        };
        resolver.publish(&sources);
        *resolver.sources() = sources;
        Ok(Arc::new(resolver))
    }

    /// pingora's settings for a listener served by `resolver`: h2 and http/1.1 by ALPN,
    /// client certificates asked for, and their chain kept for the HTTP layer.
    pub fn pingora_settings(resolver: Arc<CertResolver>) -> pingora::Result<TlsSettings> {
        let mut settings = TlsSettings::with_callbacks(Box::new(KeepPeerCertificates))?;
        settings.set_cert_resolver(resolver);
        settings.set_client_cert_verifier(Arc::new(AskForClientCertificate::new()));
        settings.enable_h2();
        Ok(settings)
    }
}

/// A certificate ready to serve, with the DNS names it is for.
type Loaded = (Arc<CertifiedKey>, Vec<String>);

/// Certificates by the DNS names they are for.
#[derive(Debug)]
struct CertSet {
    default: Arc<CertifiedKey>,
    by_name: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` certificates, by `example.com`.
    by_parent: HashMap<String, Arc<CertifiedKey>>,
}

/// The digest of a file's contents (`None` when it cannot be read): unlike a modification
/// time, it sees every change, however soon after the last one.
fn stamp(path: &Path) -> Option<[u8; 32]> {
    use sha2::Digest;
    std::fs::read(path)
        .ok()
        .map(|b| sha2::Sha256::digest(b).into())
}

/// Reads every pair of files.
fn load_files(pairs: &[CertFiles]) -> Result<Vec<Loaded>, ListenerTlsError> {
    pairs.iter().map(load_pair).collect()
}

impl CertSet {
    /// The set of `keys`, the first being the default; `None` when there are none.
    fn of(keys: &[Loaded]) -> Option<CertSet> {
        let default = keys.first()?.0.clone();
        let mut by_name = HashMap::new();
        let mut by_parent = HashMap::new();
        for (key, names) in keys.iter().rev() {
            for name in names {
                match name.strip_prefix("*.") {
                    Some(parent) => by_parent.insert(parent.to_string(), key.clone()),
                    None => by_name.insert(name.clone(), key.clone()),
                };
            }
        }
        Some(CertSet {
            default,
            by_name,
            by_parent,
        })
    }

    #[cfg(test)]
    fn load(pairs: &[CertFiles]) -> Result<CertSet, ListenerTlsError> {
        CertSet::of(&load_files(pairs)?)
            .ok_or_else(|| file_error(Path::new("--tls-cert"), "no certificate given"))
    }

    fn pick(&self, name: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = name.map(str::to_ascii_lowercase) else {
            return self.default.clone();
        };
        if let Some(k) = self.by_name.get(&name) {
            return k.clone();
        }
        name.split_once('.')
            .and_then(|(_, parent)| self.by_parent.get(parent))
            .unwrap_or(&self.default)
            .clone()
    }
}

/// A certificate chain and its key from PEM files, with the DNS names it is for.
fn load_pair(pair: &CertFiles) -> Result<Loaded, ListenerTlsError> {
    let pem = std::fs::read(&pair.cert).map_err(|e| file_error(&pair.cert, e.to_string()))?;
    let key_pem = std::fs::read(&pair.key).map_err(|e| file_error(&pair.key, e.to_string()))?;
    parse_pair(
        &pem,
        &key_pem,
        &pair.cert.display().to_string(),
        &pair.key.display().to_string(),
    )
}

/// A certificate chain and its key from PEM (`cert_at`, `key_at` name where they came from
/// in errors), with the DNS names it is for.
fn parse_pair(
    pem: &[u8],
    key_pem: &[u8],
    cert_at: &str,
    key_at: &str,
) -> Result<Loaded, ListenerTlsError> {
    let at = |path: &str, reason: String| ListenerTlsError::File {
        path: path.to_string(),
        reason,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| at(cert_at, format!("not a PEM certificate chain: {e}")))?;
    let leaf = chain
        .first()
        .ok_or_else(|| at(cert_at, "no `-----BEGIN CERTIFICATE-----` block".into()))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| at(cert_at, format!("not a usable X.509 certificate: {e}")))?;
    let sans = parsed
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|s| s.value.general_names.clone())
        .unwrap_or_default();
    let mut names: Vec<String> = sans
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
            _ => None,
        })
        .collect();
    names.dedup();
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
        at(
            key_at,
            format!("no PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"),
        )
    })?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| at(key_at, format!("unusable private key: {e}")))?;
    let certified = CertifiedKey::new(chain, signer);
    certified
        .keys_match()
        .map_err(|e| at(key_at, format!("does not fit {cert_at}: {e}")))?;
    Ok((Arc::new(certified), names))
}

/// What the resolver serves from: certificate files, and Secrets from the snapshot.
#[derive(Debug, Default)]
struct Sources {
    files: Vec<Loaded>,
    /// What the files held when last read.
    stamps: Vec<Option<[u8; 32]>>,
    secrets: Vec<Loaded>,
}

/// Serves the certificate for the name a client asks for; swapped whole on reload, so a
/// handshake sees one consistent set and open connections keep theirs.
#[derive(Debug)]
pub struct CertResolver {
    pairs: Vec<CertFiles>,
    /// Secrets (from the snapshot) to serve, by name.
    secret_names: Vec<String>,
    sources: std::sync::Mutex<Sources>,
    current: arc_swap::ArcSwapOption<CertSet>,
}

impl CertResolver {
    fn publish(&self, sources: &Sources) {
        let all: Vec<Loaded> = sources
            .secrets
            .iter()
            .chain(&sources.files)
            .cloned()
            .collect();
        self.current.store(CertSet::of(&all).map(Arc::new));
    }

    fn sources(&self) -> std::sync::MutexGuard<'_, Sources> {
        self.sources.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the files again if any changed since the last read; a set that does not load
    /// is logged and the old one keeps serving. Returns whether a new set is in use.
    pub fn reload_if_changed(&self) -> bool {
        let now: Vec<Option<[u8; 32]>> = self
            .pairs
            .iter()
            .flat_map(|p| [stamp(&p.cert), stamp(&p.key)])
            .collect();
        let mut sources = self.sources();
        if now == sources.stamps {
            return false;
        }
        match load_files(&self.pairs) {
            Ok(files) => {
                sources.files = files;
                sources.stamps = now;
                self.publish(&sources);
                tracing::info!("listener certificates reloaded");
                true
            }
            Err(e) => {
                // Not again until the files change once more.
                sources.stamps = now;
                tracing::warn!(error = %e, "listener certificates changed but do not load; the previous ones keep serving");
                false
            }
        }
    }

    /// Serves the `--tls-secret` Secrets as `snapshot` carries them (`tls.crt`, `tls.key`);
    /// a missing or broken one is logged and the last good certificates keep serving.
    pub fn use_secrets(&self, snapshot: &switchboard_config::Snapshot) {
        if self.secret_names.is_empty() {
            return;
        }
        let mut loaded = Vec::new();
        for name in &self.secret_names {
            let values = snapshot.secrets.get(name);
            let cert = values.and_then(|v| v.get("tls.crt"));
            let key = values.and_then(|v| v.get("tls.key"));
            let (Some(cert), Some(key)) = (cert, key) else {
                tracing::warn!(secret = %name, "the snapshot carries no certificate for --tls-secret (is the Secret servedBy this data plane's group, with tls.crt and tls.key?); the previous one keeps serving");
                return;
            };
            match parse_pair(
                cert.as_bytes(),
                key.as_bytes(),
                &format!("Secret {name} tls.crt"),
                &format!("Secret {name} tls.key"),
            ) {
                Ok(pair) => loaded.push(pair),
                Err(e) => {
                    tracing::warn!(error = %e, "a --tls-secret certificate does not load; the previous one keeps serving");
                    return;
                }
            }
        }
        let mut sources = self.sources();
        sources.secrets = loaded;
        self.publish(&sources);
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // None (no certificate yet: a --tls-secret before the first snapshot) fails the
        // handshake.
        self.current
            .load()
            .as_ref()
            .map(|set| set.pick(hello.server_name()))
    }
}

/// Asks every client for a certificate and accepts any that proves its key: whether the
/// chain is trusted is each virtual server's question (its `clientCertificate` provider's
/// CA), answered per request. Clients without one connect as usual.
#[derive(Debug)]
struct AskForClientCertificate {
    schemes: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl AskForClientCertificate {
    fn new() -> Self {
        AskForClientCertificate {
            schemes: rustls::crypto::ring::default_provider().signature_verification_algorithms,
        }
    }
}

impl ClientCertVerifier for AskForClientCertificate {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.schemes)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.schemes)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes.supported_schemes()
    }
}

/// The certificate chain a client presented (leaf first), kept on its connection.
#[derive(Debug, Clone)]
pub struct PeerCertificates(pub Vec<CertificateDer<'static>>);

struct KeepPeerCertificates;

#[async_trait]
impl TlsAccept for KeepPeerCertificates {
    async fn handshake_complete_callback(
        &self,
        tls: &TlsRef,
    ) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        let chain = tls.peer_cert_chain_der()?;
        Some(Arc::new(PeerCertificates(chain.to_vec())))
    }
}

/// The client certificates presented on `session`'s connection, if any.
pub fn peer_certificates(session: &pingora::proxy::Session) -> Option<Arc<PeerCertificates>> {
    let digest = session.digest()?.ssl_digest.clone()?;
    digest
        .extension
        .get::<PeerCertificates>()
        .cloned()
        .map(Arc::new)
}

/// Reloads the listener's certificates when their files change.
pub struct Reloader(pub Arc<CertResolver>);

#[async_trait]
impl pingora::services::background::BackgroundService for Reloader {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        let mut tick = tokio::time::interval(RELOAD_EVERY);
        loop {
            tokio::select! {
                _ = tick.tick() => { self.0.reload_if_changed(); }
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dir: &Path, ca: &switchboard_testkit::TestCa, names: &[&str], file: &str) -> CertFiles {
        let (cert, key) = ca
            .server(names)
            .expect("certificate")
            .write(dir, file)
            .expect("write");
        CertFiles { cert, key }
    }

    #[test]
    fn names_pick_their_certificate_and_others_get_the_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = switchboard_testkit::TestCa::new("unit").expect("ca");
        let pairs = vec![
            pair(dir.path(), &ca, &["default.test"], "default"),
            pair(dir.path(), &ca, &["a.test"], "a"),
            pair(dir.path(), &ca, &["*.wild.test"], "wild"),
        ];
        let set = CertSet::load(&pairs).expect("loads");
        let first = |k: &Arc<CertifiedKey>| k.cert[0].clone();
        let of = |i: usize| {
            let pem = std::fs::read(&pairs[i].cert).expect("read");
            CertificateDer::pem_slice_iter(&pem)
                .next()
                .expect("one")
                .expect("pem")
        };
        assert_eq!(first(&set.pick(Some("A.TEST"))), of(1));
        assert_eq!(first(&set.pick(Some("x.wild.test"))), of(2));
        assert_eq!(first(&set.pick(Some("other.test"))), of(0));
        assert_eq!(first(&set.pick(None)), of(0));
    }

    #[test]
    fn a_key_that_does_not_fit_names_its_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = switchboard_testkit::TestCa::new("unit").expect("ca");
        let a = pair(dir.path(), &ca, &["a.test"], "a");
        let b = pair(dir.path(), &ca, &["b.test"], "b");
        let mixed = CertFiles {
            cert: a.cert,
            key: b.key.clone(),
        };
        let e = CertSet::load(&[mixed]).expect_err("mismatched key");
        assert!(e.to_string().contains("b.key"), "{e}");
        assert!(e.to_string().contains("does not fit"), "{e}");
    }
}
