//! The `clientCertificate` auth provider: a client certificate presented on a TLS listener,
//! its chain checked against the provider's CA (dates and the client-authentication usage
//! included) with webpki, and its identity (SPIFFE id, common name, DNS name or e-mail) as
//! the principal, with the subject's organizational units as groups.

use super::auth::{AuthError, Principal};
use rustls::pki_types::{CertificateDer, TrustAnchor, UnixTime};
use switchboard_config::kinds::auth_provider::{ClientCertificateAuth, PrincipalFrom};
use x509_parser::extensions::GeneralName;

/// A compiled `clientCertificate` provider.
pub struct ClientCertificates {
    anchors: Vec<TrustAnchor<'static>>,
    principal: PrincipalFrom,
}

impl std::fmt::Debug for ClientCertificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCertificates")
            .field("anchors", &self.anchors.len())
            .field("principal", &self.principal)
            .finish()
    }
}

/// Why a provider's CA certificates cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CaCertError {
    #[error("not a PEM certificate bundle: {0}")]
    NotPem(String),
    #[error("not a usable CA certificate: {0}")]
    NotUsable(webpki::Error),
}

impl ClientCertificates {
    /// Reads the provider's CA certificates.
    pub fn compile(spec: &ClientCertificateAuth) -> Result<ClientCertificates, CaCertError> {
        let certs = switchboard_config::kinds::tls::pem_certificates(&spec.ca_cert)
            .map_err(CaCertError::NotPem)?;
        let anchors = certs
            .iter()
            .map(|c| {
                webpki::anchor_from_trusted_cert(c)
                    .map(|a| a.to_owned())
                    .map_err(CaCertError::NotUsable)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ClientCertificates {
            anchors,
            principal: spec.principal,
        })
    }

    /// The principal of the client whose connection presented `chain` (leaf first).
    pub fn check(&self, chain: Option<&[CertificateDer<'static>]>) -> Result<Principal, AuthError> {
        let chain = chain.filter(|c| !c.is_empty()).ok_or(AuthError::Missing(
            "a client certificate (connect over TLS with one)",
        ))?;
        let leaf = webpki::EndEntityCert::try_from(&chain[0])
            .map_err(|e| AuthError::Invalid(format!("client certificate: {e}")))?;
        leaf.verify_for_usage(
            rustls::crypto::ring::default_provider()
                .signature_verification_algorithms
                .all,
            &self.anchors,
            &chain[1..],
            UnixTime::now(),
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .map_err(|e| AuthError::Invalid(format!("client certificate not accepted: {e}")))?;
        identity(&chain[0], self.principal)
    }
}

/// The principal a verified leaf certificate names.
fn identity(leaf: &CertificateDer<'_>, from: PrincipalFrom) -> Result<Principal, AuthError> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| AuthError::Invalid(format!("client certificate: {e}")))?;
    let subject = cert.subject();
    let common_name = subject
        .iter_common_name()
        .find_map(|a| a.as_str().ok())
        .map(str::to_string);
    let groups = subject
        .iter_organizational_unit()
        .filter_map(|a| a.as_str().ok())
        .map(str::to_string)
        .collect();
    let sans: Vec<GeneralName<'_>> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|s| s.value.general_names.clone())
        .unwrap_or_default();
    let san = |pick: fn(&GeneralName<'_>) -> Option<String>| sans.iter().find_map(pick);
    let spiffe = || {
        san(|n| match n {
            GeneralName::URI(u) if u.starts_with("spiffe://") => Some(u.to_string()),
            _ => None,
        })
    };
    let name = match from {
        PrincipalFrom::SpiffeOrCommonName => spiffe().or(common_name),
        PrincipalFrom::CommonName => common_name,
        PrincipalFrom::DnsName => san(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_string()),
            _ => None,
        }),
        PrincipalFrom::Email => san(|n| match n {
            GeneralName::RFC822Name(e) => Some(e.to_string()),
            _ => None,
        }),
    };
    let subject = name.filter(|n| !n.is_empty()).ok_or_else(|| {
        AuthError::Invalid(format!(
            "the client certificate names no principal ({from:?})"
        ))
    })?;
    Ok(Principal {
        subject,
        groups,
        scopes: Vec::new(),
        expires: None,
    })
}
