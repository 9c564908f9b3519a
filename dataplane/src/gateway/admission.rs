//! Who is calling and what they may pass on: authentication (401 challenges and the RFC
//! 9728 metadata document), the rate-limit gate, and client credentials for upstreams.

use super::access::Record;
use super::{header, request_host, send, text, Gateway, RESOURCE_METADATA};
use crate::jsonrpc;
use crate::jsonrpc::RpcError;
use crate::metrics::metrics;
use crate::policy::auth::{AuthError, Authenticator, Offered, Principal};
use crate::policy::authz::Target as Item;
use crate::policy::ratelimit::{KeyParts, RateLimiter};
use crate::routes::{ServerView, UpstreamEntry};
use crate::transport::{Gate, Refusal, Reply};
use pingora::prelude::Session as Downstream;
use pingora::Result;
use serde_json::json;

/// The client's credentials that policies may pass on to upstreams.
#[derive(Clone, Default)]
pub(super) struct ClientHeaders {
    pub(super) authorization: Option<String>,
    pub(super) upstream_authorization: Option<String>,
}

impl ClientHeaders {
    /// The credentials `session`'s request carries.
    pub(super) fn of(session: &Downstream) -> ClientHeaders {
        ClientHeaders {
            authorization: header(session, "authorization").map(str::to_string),
            upstream_authorization: header(session, "x-upstream-authorization").map(str::to_string),
        }
    }
}

/// What a request offered to prove who it is, kept by connections that outlive it.
#[derive(Clone, Default)]
pub(super) struct Credentials {
    authorization: Option<String>,
    api_key: Option<String>,
    client_certificates: Option<Vec<rustls::pki_types::CertificateDer<'static>>>,
}

impl Credentials {
    /// What `session`'s request offered to `server`'s authenticator.
    pub(super) fn of(session: &Downstream, server: &ServerView) -> Credentials {
        let Some(auth) = &server.auth else {
            return Credentials::default();
        };
        Credentials {
            authorization: header(session, "authorization").map(str::to_string),
            api_key: auth
                .api_key_header()
                .and_then(|h| header(session, h))
                .map(str::to_string),
            client_certificates: auth
                .wants_client_certificate()
                .then(|| crate::listener_tls::peer_certificates(session))
                .flatten()
                .map(|p| p.0.clone()),
        }
    }

    /// The same, as `auth` reads them (the API key from its own header only).
    fn offered(&self, auth: &Authenticator) -> Offered<'_> {
        Offered {
            authorization: self.authorization.as_deref(),
            api_key: self
                .api_key
                .as_deref()
                .filter(|_| auth.api_key_header().is_some()),
            client_certificates: self.client_certificates.as_deref(),
        }
    }
}

/// Headers a call to `upstream` carries for this client: its own token when the server
/// forwards tokens, and its `X-Upstream-Authorization` when the upstream takes it.
pub(super) fn client_headers(
    client: &ClientHeaders,
    server: &ServerView,
    upstream: &UpstreamEntry,
) -> Vec<(String, String)> {
    let passed = client
        .upstream_authorization
        .as_ref()
        .filter(|_| upstream.auth.passthrough);
    let forwarded = client
        .authorization
        .as_ref()
        .filter(|_| server.forward_token);
    passed
        .or(forwarded)
        .map(|v| vec![("authorization".to_string(), v.clone())])
        .unwrap_or_default()
}

/// Rate limits, as the transport rules ask for them.
pub(super) struct Limits<'a> {
    pub(super) limiter: &'a RateLimiter,
    pub(super) server: &'a ServerView,
    pub(super) principal: &'a str,
    pub(super) client_ip: &'a str,
    pub(super) ended: &'a crate::ended_sessions::EndedSessions,
}

impl Gate for Limits<'_> {
    fn ended(&self, id: &str) -> bool {
        self.ended.is_ended(id)
    }

    fn admit(&self, method: &str, target: Item<'_>) -> std::result::Result<(), Refusal> {
        if self.server.rate_limits.is_empty() {
            return Ok(());
        }
        let tool = match target {
            Item::Tool(t) => t,
            _ => "",
        };
        let parts = KeyParts {
            server: &self.server.name,
            principal: self.principal,
            tool,
            client_ip: self.client_ip,
        };
        self.limiter
            .check(&self.server.rate_limits, method, &parts)
            .map_err(|l| {
                let secs = l.retry_after.as_secs_f64().ceil().max(1.0);
                tracing::debug!(server = %self.server.name, policy = %l.policy, principal = %self.principal, "rate limited");
                metrics()
                    .rate_limited
                    .with_label_values(&[self.server.name.as_str(), l.policy.as_str()])
                    .inc();
                Refusal {
                    error: RpcError {
                        code: jsonrpc::RATE_LIMITED,
                        message: format!(
                            "rate limit `{}` exceeded; retry in {secs:.0}s",
                            l.policy
                        ),
                        data: Some(json!({"policy": l.policy, "retryAfterSeconds": secs})),
                    },
                    retry_after: Some(l.retry_after),
                }
            })
    }
}

/// The URL clients reach this request's host at (`X-Forwarded-Proto` says the scheme a
/// proxy in front terminated).
fn base_url(session: &Downstream) -> String {
    let over_tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
    let scheme = header(session, "x-forwarded-proto")
        .filter(|p| *p == "https" || *p == "http")
        .unwrap_or(if over_tls { "https" } else { "http" });
    let host = request_host(session).unwrap_or("localhost");
    format!("{scheme}://{host}")
}

/// The server's endpoint path as this request addressed it (by name, or by host on /mcp).
fn endpoint_path(session: &Downstream) -> String {
    let path = session.req_header().uri.path();
    let path = path.strip_prefix(RESOURCE_METADATA).unwrap_or(path);
    path.trim_end_matches('/').to_string()
}

/// RFC 9728 metadata for a server that takes OAuth bearer tokens (404 for the others).
pub(super) fn resource_metadata(session: &Downstream, server: &ServerView) -> Reply {
    let Some(jwt) = server.auth.as_deref().and_then(Authenticator::jwt) else {
        return text(404, "this server takes no OAuth tokens\n");
    };
    let servers = if jwt.authorization_servers.is_empty() {
        vec![jwt.issuer.clone()]
    } else {
        jwt.authorization_servers.clone()
    };
    let mut doc = json!({
        "resource": format!("{}{}", base_url(session), endpoint_path(session)),
        "authorization_servers": servers,
        "bearer_methods_supported": ["header"],
        "resource_name": server.name,
    });
    if !jwt.scopes_supported.is_empty() {
        doc["scopes_supported"] = json!(jwt.scopes_supported);
    }
    Reply::json(200, &doc)
}

/// A `WWW-Authenticate` parameter value, quoted.
fn quoted(value: &str) -> String {
    let clean: String = value
        .chars()
        .filter(|c| !c.is_control())
        .map(|c| if c == '"' { '\'' } else { c })
        .collect();
    format!("\"{clean}\"")
}

impl Gateway {
    /// Who is calling `server`, noted in the request's record; None once the refusal has
    /// been sent.
    pub(super) async fn caller(
        &self,
        session: &mut Downstream,
        rec: &mut Record,
        server: &ServerView,
    ) -> Result<Option<Principal>> {
        match self.authenticate(session, server).await {
            Ok(p) => {
                rec.principal = p.subject.clone();
                Ok(Some(p))
            }
            Err(reply) => {
                rec.outcome = reply.outcome();
                send(session, reply).await?;
                Ok(None)
            }
        }
    }

    /// Who presents `credentials` to `server` now: every request's check, and again for a
    /// connection that outlives its first request when the snapshot changes (a removed key
    /// ends it).
    pub(super) async fn verify(
        &self,
        server: &ServerView,
        credentials: &Credentials,
    ) -> std::result::Result<Principal, AuthError> {
        match &server.auth {
            None => Ok(Principal::anonymous()),
            Some(auth) => {
                auth.authenticate(credentials.offered(auth), &self.jwks)
                    .await
            }
        }
    }

    /// Who is calling `server`, or the 401 (503 when keys cannot be fetched) to answer.
    pub(super) async fn authenticate(
        &self,
        session: &Downstream,
        server: &ServerView,
    ) -> std::result::Result<Principal, Reply> {
        let e = match self.verify(server, &Credentials::of(session, server)).await {
            Ok(p) => return Ok(p),
            Err(e) => e,
        };
        tracing::info!(server = %server.name, error = %e, "authentication failed");
        let reason = match &e {
            AuthError::Missing(_) => "missing",
            AuthError::Invalid(_) => "invalid",
            AuthError::Unavailable(_) => "unavailable",
        };
        metrics()
            .auth_rejected
            .with_label_values(&[server.name.as_str(), reason])
            .inc();
        let mut challenge = String::from("Bearer realm=\"switchboard\"");
        let status = match &e {
            AuthError::Missing(_) => 401,
            AuthError::Invalid(why) => {
                challenge.push_str(", error=\"invalid_token\", error_description=");
                challenge.push_str(&quoted(why));
                401
            }
            AuthError::Unavailable(_) => 503,
        };
        if server
            .auth
            .as_deref()
            .and_then(Authenticator::jwt)
            .is_some()
        {
            let url = format!(
                "{}{RESOURCE_METADATA}{}",
                base_url(session),
                endpoint_path(session)
            );
            challenge.push_str(", resource_metadata=");
            challenge.push_str(&quoted(&url));
        }
        let mut reply = Reply::rpc_error(status, jsonrpc::UNAUTHORIZED, e.to_string());
        reply.headers.push(("www-authenticate", challenge));
        Err(reply)
    }
}
