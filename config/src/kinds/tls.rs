//! `tls`: how Switchboard checks the servers it connects to over https (an upstream, its
//! OAuth2 token endpoint, a JWKS document) and how it proves who it is to them.

use super::secret::SecretRef;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Serialize};

/// Settings for outgoing TLS; with none set, https URLs are checked against the platform's
/// trusted roots and the URL's host, and no client certificate is sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClientTls {
    /// Extra CA certificates (PEM) trusted on top of the platform's roots, for servers
    /// whose certificates a private CA issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<String>,
    /// The name the server's certificate must carry when it is not the URL's host (a
    /// server reached by IP address or through a tunnel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// A client certificate chain (PEM) for mutual TLS; needs `clientKey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<SecretRef>,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1) of `clientCert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<SecretRef>,
    /// Accept any certificate: anyone on the path can then read and change the traffic.
    /// `apply` warns about it; meant for a first try against a test server only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
}

impl ClientTls {
    /// True when nothing is set, so serialisation can omit the block.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Every secret value this block needs, with the field (under `prefix`) that names it.
    pub fn refs(&self, prefix: &str) -> Vec<(String, &SecretRef)> {
        let mut out = Vec::new();
        if let Some(r) = &self.client_cert {
            out.push((format!("{prefix}.clientCert"), r));
        }
        if let Some(r) = &self.client_key {
            out.push((format!("{prefix}.clientKey"), r));
        }
        out
    }

    /// The settings with the client certificate and key looked up by `lookup`; `None` when
    /// nothing is set. Errors name the missing secret value.
    pub fn resolve(
        &self,
        lookup: &dyn Fn(&SecretRef) -> Option<String>,
    ) -> Result<Option<ResolvedTls>, String> {
        if self.is_empty() {
            return Ok(None);
        }
        let get = |r: &SecretRef| {
            lookup(r).ok_or_else(|| format!("Secret `{}` has no key `{}`", r.secret, r.key))
        };
        let identity = match (&self.client_cert, &self.client_key) {
            (Some(c), Some(k)) => Some((get(c)?, get(k)?)),
            (None, None) => None,
            _ => return Err("tls: clientCert and clientKey go together".into()),
        };
        Ok(Some(ResolvedTls {
            ca_cert: self.ca_cert.clone(),
            server_name: self.server_name.clone(),
            identity,
            insecure_skip_verify: self.insecure_skip_verify,
        }))
    }
}

/// TLS settings with the client key filled in: never stored, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct ResolvedTls {
    pub ca_cert: Option<String>,
    pub server_name: Option<String>,
    /// Certificate chain PEM and private key PEM.
    pub identity: Option<(String, String)>,
    pub insecure_skip_verify: bool,
}

impl std::fmt::Debug for ResolvedTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolvedTls")
            .field("ca_cert", &self.ca_cert.is_some())
            .field("server_name", &self.server_name)
            .field("client_certificate", &self.identity.is_some())
            .field("insecure_skip_verify", &self.insecure_skip_verify)
            .finish()
    }
}

/// The certificates of a PEM bundle (at least one), or why it is not one: the one reading
/// of `caCert` and client certificates for validation and for the connections themselves.
pub fn pem_certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| match e {
            rustls_pki_types::pem::Error::MissingSectionEnd { end_marker } => format!(
                "a block is never ended (no `{}`)",
                String::from_utf8_lossy(&end_marker)
            ),
            other => other.to_string(),
        })?;
    if certs.is_empty() {
        return Err("no `-----BEGIN CERTIFICATE-----` block".into());
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_blocks_are_counted_and_broken_ones_named() {
        let one = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert_eq!(pem_certificates(one).map(|c| c.len()), Ok(1));
        assert_eq!(
            pem_certificates(&format!("{one}{one}")).map(|c| c.len()),
            Ok(2)
        );
        assert!(pem_certificates("hello")
            .unwrap_err()
            .contains("no `-----BEGIN"));
        assert!(pem_certificates("-----BEGIN CERTIFICATE-----\nAAAA\n")
            .unwrap_err()
            .contains("never ended"));
    }

    #[test]
    fn a_client_certificate_needs_its_key() {
        let r = SecretRef {
            secret: "s".into(),
            key: "k".into(),
        };
        let tls = ClientTls {
            client_cert: Some(r),
            ..Default::default()
        };
        assert!(tls.resolve(&|_| Some("x".into())).is_err());
        assert_eq!(ClientTls::default().resolve(&|_| None), Ok(None));
    }
}
