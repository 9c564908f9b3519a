//! Pass-through servers: one upstream proxied as-is by pingora.

use super::Gateway;
use crate::errors::unhealthy_message;
use crate::routes::Routes;
use pingora::prelude::HttpPeer;
use pingora::utils::tls::{parse_x509, CertKey, WrappedX509};
use std::sync::Arc;
use switchboard_upstream::TlsSettings;

/// Where a pass-through request goes; decided in `request_filter`, used by pingora's proxy.
pub struct PassTarget {
    /// Every address the upstream's host resolves to, tried in turn while connecting fails
    /// (`localhost` may name ::1 first while the upstream listens on 127.0.0.1 only).
    pub(super) addrs: Vec<std::net::SocketAddr>,
    /// Which of `addrs` this attempt uses.
    pub(super) attempt: usize,
    pub(super) tls: bool,
    /// Host header (and SNI) for the upstream.
    pub(super) host: String,
    pub(super) path_and_query: String,
    /// Client headers that must not reach the upstream.
    pub(super) drop_headers: Vec<String>,
    /// Set on the upstream request (after dropping), e.g. the upstream's credentials.
    pub(super) headers: Vec<(String, String)>,
    pub(super) connect: std::time::Duration,
    /// The upstream's own TLS settings (`None`: the platform's roots, the URL's host).
    pub(super) peer_tls: Option<Arc<PeerTls>>,
}

/// An upstream's `tls` settings as pingora's connector takes them.
pub struct PeerTls {
    /// Keeps pooled connections apart by settings (pingora's pool key leaves the CA out).
    group_key: u64,
    /// Trusted roots: the platform's plus the upstream's `caCert` (pingora uses a peer's
    /// list instead of its own, so both are in it).
    ca: Option<Arc<[WrappedX509]>>,
    client: Option<Arc<CertKey>>,
    server_name: Option<String>,
    insecure: bool,
}

/// A certificate pingora can hold (it panics on DER it cannot parse, so check first).
fn wrapped(der: &[u8]) -> Option<WrappedX509> {
    x509_parser::parse_x509_certificate(der)
        .ok()
        .map(|_| WrappedX509::new(der.to_vec(), parse_x509))
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerTls")
            .field("ca", &self.ca.as_ref().map(|c| c.len()))
            .field("client_certificate", &self.client.is_some())
            .field("server_name", &self.server_name)
            .field("insecure", &self.insecure)
            .finish()
    }
}

impl PeerTls {
    /// pingora's form of `tls`.
    pub fn new(tls: &TlsSettings) -> std::result::Result<PeerTls, String> {
        let ca = if tls.extra_roots().is_empty() {
            None
        } else {
            let mut all: Vec<WrappedX509> = switchboard_upstream::tls::platform_root_certs()
                .iter()
                .filter_map(|c| wrapped(c))
                .collect();
            for c in tls.extra_roots() {
                all.push(wrapped(c).ok_or("tls.caCert: not a usable X.509 certificate")?);
            }
            Some(Arc::from(all))
        };
        let client = match tls.identity() {
            None => None,
            Some((chain, key)) => {
                for c in chain {
                    wrapped(c).ok_or("tls.clientCert: not a usable X.509 certificate")?;
                }
                Some(Arc::new(CertKey::new(
                    chain.iter().map(|c| c.to_vec()).collect(),
                    key.secret_der().to_vec(),
                )))
            }
        };
        let fingerprint = tls.fingerprint();
        let mut key = [0u8; 8];
        key.copy_from_slice(&fingerprint[..8]);
        Ok(PeerTls {
            group_key: u64::from_be_bytes(key),
            ca,
            client,
            server_name: tls.server_name().map(str::to_string),
            insecure: tls.insecure(),
        })
    }

    /// Sets `peer` up to check and present what these settings say.
    pub(super) fn apply(&self, peer: &mut HttpPeer) {
        peer.group_key = self.group_key;
        if let Some(name) = &self.server_name {
            peer.sni = name.clone();
        }
        if let Some(ca) = &self.ca {
            peer.options.ca = Some(ca.clone());
        }
        if let Some(client) = &self.client {
            peer.client_cert_key = Some(client.clone());
        }
        if self.insecure {
            peer.options.verify_cert = false;
            peer.options.verify_hostname = false;
        }
    }
}

impl PassTarget {
    /// The address this attempt connects to.
    pub(super) fn addr(&self) -> std::net::SocketAddr {
        self.addrs[self.attempt % self.addrs.len()]
    }

    /// Moves on to the next address after a failed connect; false when all were tried.
    pub(super) fn next_address(&mut self) -> bool {
        if self.attempt + 1 < self.addrs.len() {
            self.attempt += 1;
            true
        } else {
            false
        }
    }
}

impl Gateway {
    /// Resolves a pass-through server's upstream for this request.
    pub(super) async fn pass_target(
        &self,
        routes: &Routes,
        upstream: &str,
        query: Option<&str>,
    ) -> std::result::Result<PassTarget, String> {
        let spec = routes
            .upstream(upstream)
            .ok_or_else(|| format!("upstream `{upstream}` is not in this snapshot"))?;
        if let Some(why) = routes.unhealthy(upstream) {
            return Err(unhealthy_message(upstream, why));
        }
        let mcp = spec
            .mcp
            .as_ref()
            .ok_or_else(|| format!("upstream `{upstream}` is not an MCP-over-HTTP server"))?;
        let url = reqwest::Url::parse(&mcp.url).map_err(|e| format!("upstream URL: {e}"))?;
        let host = url.host_str().unwrap_or_default().to_string();
        let port = url
            .port_or_known_default()
            .ok_or_else(|| format!("upstream URL `{}` has no port", mcp.url))?;
        let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| format!("cannot resolve `{host}`: {e}"))?
            .collect();
        if addrs.is_empty() {
            return Err(format!("`{host}` resolves to no address"));
        }
        let mut path_and_query = url.path().to_string();
        if let Some(q) = query.or(url.query()) {
            path_and_query.push('?');
            path_and_query.push_str(q);
        }
        let host_header = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        let peer_tls = match &spec.creds.tls {
            None => None,
            Some(tls) => Some(
                spec.peer_tls
                    .get_or_init(|| PeerTls::new(tls).map(Arc::new))
                    .clone()
                    .map_err(|e| format!("upstream `{upstream}`: {e}"))?,
            ),
        };
        Ok(PassTarget {
            peer_tls,
            addrs,
            attempt: 0,
            tls: url.scheme() == "https",
            host: host_header,
            path_and_query,
            drop_headers: Vec::new(),
            headers: spec
                .creds
                .current(
                    &self
                        .calls
                        .upstreams
                        .http_for(&spec)
                        .map_err(|e| format!("credentials: {e}"))?,
                )
                .await
                .map_err(|e| format!("credentials: {e}"))?
                .into_iter()
                .collect(),
            connect: spec
                .timeouts
                .connect
                .unwrap_or(crate::upstreams::DEFAULT_CONNECT_TIMEOUT),
        })
    }
}
