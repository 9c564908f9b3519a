//! Serving one request to a virtual server: authenticate, read the body, apply the
//! transport rules and policies, then answer, forward, or hand over to the proxy.

use super::listen::ListenFrom;

/// Most request bytes a pass-through server with per-request policies reads (pingora's
/// retry buffer replays them to the upstream).
const SCREENED_BODY_BYTES: usize = 64 << 10;
use super::access::Record;
use super::admission::{client_headers, ClientHeaders, Limits};
use super::channel::Channel;
use super::forwarder::Scope;
use super::out::Out;
use super::replay::{Kind, Unresumable};
use super::slots::client_key;
use super::{header, send, Ctx, Gateway, Step};
use crate::errors::GatewayError;
use crate::metrics::{metrics, Served};
use crate::policy::auth::{Authenticator, Principal};
use crate::routes::{Routes, ServerView};
use crate::transport::{Outcome, Reply, RequestInfo};
use crate::{jsonrpc, transport};
use pingora::prelude::Session as Downstream;
use pingora::Result;
use serde_json::json;
use std::sync::Arc;

/// Who a request comes from: what its headers said, the client's own headers to pass on,
/// and its address.
#[derive(Clone, Copy)]
pub(super) struct Requester<'a> {
    pub(super) info: &'a RequestInfo,
    pub(super) client: &'a ClientHeaders,
    pub(super) client_ip: &'a str,
}

impl Gateway {
    /// Serves one request to a virtual server (the caller answers `Step::Reply`). For a
    /// legacy client's POST, what it produces goes to that client's event stream instead,
    /// and the POST itself gets 202.
    pub(super) async fn serve_server(
        &self,
        session: &mut Downstream,
        ctx: &mut Ctx,
        routes: &Routes,
        server: Arc<ServerView>,
        legacy: Option<Arc<Channel>>,
    ) -> Result<Step> {
        let rec = ctx.record.insert(Record::new(&server.name));
        let Some(caller) = self.caller(session, rec, &server).await? else {
            return Ok(Step::Done(true));
        };
        let client = ClientHeaders::of(session);
        if let Some(upstream) = server.passthrough.clone().filter(|_| legacy.is_none()) {
            rec.upstream = upstream.clone();
            rec.outcome = Served::Proxied;
            if let Some(refused) = self
                .screen_passthrough(session, rec, &server, caller)
                .await?
            {
                rec.outcome = refused.outcome();
                send(session, refused).await?;
                return Ok(Step::Done(true));
            }
            let query = session.req_header().uri.query().map(str::to_string);
            return match self.pass_target(routes, &upstream, query.as_deref()).await {
                Ok(mut t) => {
                    // The client's credentials stop here unless a policy passes them.
                    t.drop_headers.push("x-upstream-authorization".into());
                    if !server.forward_token {
                        t.drop_headers.push("authorization".into());
                    }
                    if let Some(h) = server
                        .auth
                        .as_deref()
                        .and_then(Authenticator::api_key_header)
                    {
                        t.drop_headers.push(h.to_string());
                    }
                    if let Some(spec) = routes.upstream(&upstream) {
                        t.headers.extend(client_headers(&client, &server, &spec));
                    }
                    // pingora proxies the request and streams the answer as-is.
                    ctx.pass = Some(t);
                    Ok(Step::Done(false))
                }
                Err(why) => {
                    rec.outcome = Served::UpstreamError;
                    let reply = GatewayError::PassThroughFailed {
                        upstream: upstream.clone(),
                        why,
                    }
                    .refusal();
                    send(session, reply).await?;
                    Ok(Step::Done(true))
                }
            };
        }
        let max_body = server.limits.max_body_bytes.unwrap_or(self.max_body_bytes);
        let body = match self.read_body(session, max_body).await? {
            Ok(b) => b,
            Err(e) => {
                let reply = e.refusal();
                rec.outcome = reply.outcome();
                send(session, reply).await?;
                // The rest of an oversized body is not worth reading.
                session.set_keepalive(None);
                return Ok(Step::Done(true));
            }
        };
        if let Some(c) = legacy {
            if !c.belongs_to(&caller) {
                let e = GatewayError::OtherPrincipal;
                rec.outcome = e.served();
                return Ok(Step::Reply(e.refusal()));
            }
            // The legacy transport has no session header: the stream's key stands for it.
            let version = header(session, "mcp-protocol-version").map(str::to_string);
            let refused = self
                .channel_message(&c, rec, routes, &server, version, &body)
                .await?;
            return Ok(Step::Reply(refused.unwrap_or_else(|| Reply::empty(202))));
        }
        let info = RequestInfo {
            method: session.req_header().method.as_str().to_string(),
            content_type: header(session, "content-type").map(str::to_string),
            accept: header(session, "accept").map(str::to_string),
            session_id: header(session, "mcp-session-id").map(str::to_string),
            protocol_version: header(session, "mcp-protocol-version").map(str::to_string),
            mcp_method: header(session, "mcp-method").map(str::to_string),
            mcp_name: header(session, "mcp-name").map(str::to_string),
            mcp_params: mcp_params(session),
            caller,
        };
        let client_ip = client_ip(session, &self.trusted_proxies);
        let from = Requester {
            info: &info,
            client: &client,
            client_ip: &client_ip,
        };
        let reply = self
            .dispatch(&mut Out::Http(session), rec, routes, &server, from, &body)
            .await?;
        Ok(reply.map_or(Step::Done(true), Step::Reply))
    }

    /// Serves one request whose body is read: what streams (a forwarded call's answer, a
    /// GET stream) goes to `out`; a whole reply is returned for the caller to deliver.
    pub(super) async fn dispatch(
        &self,
        out: &mut Out<'_>,
        rec: &mut Record,
        routes: &Routes,
        server: &Arc<ServerView>,
        from: Requester<'_>,
        body: &[u8],
    ) -> Result<Option<Reply>> {
        let Requester {
            info,
            client,
            client_ip,
        } = from;
        let gate = Limits {
            limiter: &self.limiter,
            server,
            principal: &info.caller.subject,
            client_ip,
            ended: &self.ended,
        };
        rec.session = info
            .session_id
            .as_deref()
            .map(crate::session::fingerprint)
            .unwrap_or_default();
        // Streams of a session on streamable HTTP can be resumed (see `replay`), by that
        // session only: the buffers are keyed by a full digest of its id, not the short
        // fingerprint the logs show (and the session is its principal's, checked below).
        let resumable = match out {
            Out::Http(_) => info.session_id.as_deref().map(crate::session::digest),
            Out::Events(_) => None,
        };
        let at = Scope {
            routes,
            server,
            client,
        };
        let mut seen = transport::Seen::default();
        let outcome = transport::handle(server, info, body, &gate, &mut seen);
        rec.method = seen.method.unwrap_or_default();
        rec.tool = seen.tool.unwrap_or_default();
        let span = tracing::Span::current();
        span.record("mcp.method", rec.method.as_str());
        span.record("mcp.tool", rec.tool.as_str());
        let reply = match outcome {
            Outcome::Reply(reply) => reply,
            Outcome::Subscribe(subscribe) => {
                // Each opens upstream sessions and streams: a client gets its share only.
                let who = client_key(&info.caller.subject, client_ip);
                let _place = match self.subscription_streams.take(who) {
                    Ok(place) => place,
                    Err(e) => {
                        let reply = e.reply(&subscribe.id, false);
                        rec.outcome = e.served();
                        return Ok(Some(reply));
                    }
                };
                rec.outcome = self.calls.subscriptions(out, at, subscribe).await?;
                return Ok(None);
            }
            Outcome::Initialize {
                id,
                result,
                session,
            } => {
                metrics()
                    .sessions_opened
                    .with_label_values(&[server.name.as_str()])
                    .inc();
                self.calls.open_session(at, id, result, session).await
            }
            Outcome::Fanout {
                id,
                method,
                params,
                session,
            } => {
                self.calls.fanout(at, &method, &params, &session).await;
                Reply::json(200, &jsonrpc::result_response(&id, json!({})))
            }
            Outcome::Notify {
                method,
                params,
                session,
            } => {
                self.calls.fanout(at, &method, &params, &session).await;
                Reply::empty(202)
            }
            Outcome::Relay {
                upstream,
                message,
                session,
            } => {
                rec.upstream = upstream.clone();
                self.calls.relay(at, &upstream, &message, &session).await
            }
            Outcome::Listen(mcp_session) => {
                let who = client_key(&info.caller.subject, client_ip);
                let _place = match self.listen_streams.take(who) {
                    Ok(place) => place,
                    Err(e) => {
                        rec.outcome = e.served();
                        return Ok(Some(e.refusal()));
                    }
                };
                let last_event_id = match out {
                    Out::Http(s) => header(s, "last-event-id").map(str::to_string),
                    Out::Events(_) => None,
                };
                let fp = resumable.as_deref().unwrap_or_default();
                let from = match last_event_id.map(|id| self.calls.replays.resume(&id, fp)) {
                    None => ListenFrom::Fresh(resumable.as_deref()),
                    Some(Ok((reader, seq))) if reader.replay().kind() == Kind::Call => {
                        rec.outcome = self.calls.resume_call(out, reader, seq).await?;
                        return Ok(None);
                    }
                    Some(Ok((reader, seq))) => ListenFrom::Resumed(reader, seq),
                    // A call's stream that cannot be resumed: say so, or the client would
                    // wait for its answer forever.
                    Some(Err(
                        e @ (Unresumable::Unknown(Kind::Call) | Unresumable::Overrun(Kind::Call)),
                    )) => {
                        let reply = GatewayError::Unresumable(e.to_string()).refusal();
                        rec.outcome = reply.outcome();
                        return Ok(Some(reply));
                    }
                    // A GET stream this data plane no longer has: a fresh one is the best offer.
                    Some(Err(_)) => ListenFrom::Fresh(resumable.as_deref()),
                };
                rec.outcome = self.calls.listen(out, at, &mcp_session, from).await?;
                return Ok(None);
            }
            Outcome::Terminate(session) => {
                // Final: no replica serves the id again, though it could still open it.
                if let Some(id) = &info.session_id {
                    self.ended.end(id, session.expires);
                }
                self.end_session(routes, server, &session);
                Reply::empty(200)
            }
            Outcome::ListTasks { id, session } => self.calls.list_tasks(at, id, &session).await,
            Outcome::Task { id, method, params } => {
                let caller = info.caller.subject.clone();
                self.calls
                    .task_request(at, &caller, (id, method, params))
                    .await
            }
            Outcome::Forward(mut f) => {
                tracing::debug!(server = %server.name, upstream = %f.upstream, method = %f.method, "forwarding");
                if let Some(spec) = routes.upstream(&f.upstream) {
                    f.headers = client_headers(client, server, &spec);
                }
                f.client_ip = client_ip.to_string();
                rec.upstream = f.upstream.clone();
                rec.outcome = self
                    .calls
                    .forward(out, at, *f, resumable.as_deref())
                    .await?;
                return Ok(None);
            }
        };
        rec.outcome = reply.outcome();
        if reply.error_code == Some(jsonrpc::FORBIDDEN) {
            metrics()
                .authz_denied
                .with_label_values(&[server.name.as_str()])
                .inc();
        }
        Ok(Some(reply))
    }

    /// Applies a pass-through server's per-request policies: reads the request (kept for
    /// pingora to send on as it is) and refuses it, or lets it through (None). Servers
    /// without such policies are not read at all.
    async fn screen_passthrough(
        &self,
        session: &mut Downstream,
        rec: &mut Record,
        server: &ServerView,
        caller: Principal,
    ) -> Result<Option<Reply>> {
        if session.req_header().method != pingora::http::Method::POST || !transport::screens(server)
        {
            return Ok(None);
        }
        // What is read is replayed to the upstream from pingora's retry buffer, which holds
        // at most this much.
        let limit =
            SCREENED_BODY_BYTES.min(server.limits.max_body_bytes.unwrap_or(self.max_body_bytes));
        session.enable_retry_buffering();
        let body = match self.read_body(session, limit).await? {
            Ok(b) => b,
            Err(e) => {
                session.set_keepalive(None);
                let e = match e {
                    GatewayError::BodyTooLarge { .. } => {
                        GatewayError::PassThroughTooLarge { limit }
                    }
                    other => other,
                };
                return Ok(Some(e.refusal()));
            }
        };
        let info = RequestInfo {
            method: "POST".into(),
            caller,
            ..RequestInfo::default()
        };
        let client_ip = client_ip(session, &self.trusted_proxies);
        let gate = Limits {
            limiter: &self.limiter,
            server,
            principal: &info.caller.subject,
            client_ip: &client_ip,
            ended: &self.ended,
        };
        let mut seen = transport::Seen::default();
        let refused = transport::screen(server, &info, &body, &gate, &mut seen);
        rec.method = seen.method.unwrap_or_default();
        if refused
            .as_ref()
            .is_some_and(|r| r.error_code == Some(jsonrpc::FORBIDDEN))
        {
            metrics()
                .authz_denied
                .with_label_values(&[server.name.as_str()])
                .inc();
        }
        Ok(refused)
    }

    /// Ends a client's session: its upstream sessions end too.
    pub(super) fn end_session(
        &self,
        routes: &Routes,
        server: &ServerView,
        session: &crate::session::Session,
    ) {
        metrics()
            .sessions_closed
            .with_label_values(&[server.name.as_str()])
            .inc();
        let keys: Vec<super::outstanding::Key> = session
            .upstreams
            .iter()
            .filter_map(|(name, r)| Some((name.clone(), r.id.clone()?)))
            .collect();
        self.calls.outstanding.forget(&keys);
        self.calls
            .upstreams
            .close_for(session, &|name| routes.upstream(name));
    }

    /// Reads the whole body, or says why not: it is over the limit (checked against
    /// Content-Length up front, and against what arrives for chunked bodies), or it did not
    /// arrive within the body timeout.
    async fn read_body(
        &self,
        session: &mut Downstream,
        max: usize,
    ) -> Result<std::result::Result<Vec<u8>, GatewayError>> {
        let too_large = || GatewayError::BodyTooLarge { max };
        let declared = header(session, "content-length").and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > max) {
            return Ok(Err(too_large()));
        }
        let mut body = Vec::with_capacity(declared.unwrap_or(0).min(max));
        // The whole body within the deadline: a client trickling it cannot hold the
        // connection (and what was read) for ever.
        let read = tokio::time::timeout(self.body_timeout, async {
            while let Some(chunk) = session.read_request_body().await? {
                if body.len() + chunk.len() > max {
                    return Ok(false);
                }
                body.extend_from_slice(&chunk);
            }
            Ok::<bool, Box<pingora::Error>>(true)
        })
        .await;
        match read {
            Ok(Ok(true)) => Ok(Ok(body)),
            Ok(Ok(false)) => Ok(Err(too_large())),
            Ok(Err(e)) => Err(e),
            Err(_) => Ok(Err(GatewayError::BodyTimeout {
                after: self.body_timeout,
            })),
        }
    }
}

/// The client's address, as rate limits by IP see it (see [`client_address`]).
pub(super) fn client_ip(session: &Downstream, trusted: &[ipnet::IpNet]) -> String {
    let peer = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip());
    if trusted.is_empty() {
        // No proxy is trusted (the default): the headers are not worth reading.
        return peer.map(|ip| ip.to_string()).unwrap_or_default();
    }
    let forwarded: Vec<&str> = session
        .req_header()
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    client_address(peer, &forwarded, trusted)
}

/// The client of a request from `peer`: the peer itself, unless it is a trusted proxy;
/// then the last address of `X-Forwarded-For` (its values in order) that is not a trusted
/// proxy, since each proxy appends the address it saw and only trusted ones are honest. An
/// entry that is not an address ends the walk at the one after it, so a client cannot
/// pick an address by sending garbage.
pub(crate) fn client_address(
    peer: Option<std::net::IpAddr>,
    forwarded_for: &[&str],
    trusted: &[ipnet::IpNet],
) -> String {
    let is_trusted = |ip: &std::net::IpAddr| trusted.iter().any(|net| net.contains(ip));
    let Some(peer) = peer else {
        return String::new();
    };
    if !is_trusted(&peer) {
        return peer.to_string();
    }
    let mut client = peer;
    for entry in forwarded_for.iter().flat_map(|v| v.split(',')).rev() {
        match entry.trim().parse::<std::net::IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !is_trusted(&ip) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    client.to_string()
}

/// The request's `Mcp-Param-*` headers: (the name after the prefix, lowercase; the value).
fn mcp_params(session: &Downstream) -> Vec<(String, String)> {
    session
        .req_header()
        .headers
        .iter()
        .filter_map(|(name, value)| {
            let suffix = name.as_str().strip_prefix("mcp-param-")?;
            Some((suffix.to_string(), value.to_str().ok()?.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::client_address;

    #[test]
    fn the_client_is_the_peer_unless_a_trusted_proxy_says_otherwise() {
        let nets = |list: &[&str]| -> Vec<ipnet::IpNet> {
            list.iter().map(|n| n.parse().expect("net")).collect()
        };
        let ip = |s: &str| Some(s.parse().expect("ip"));
        let proxies = nets(&["10.0.0.0/8", "127.0.0.1/32"]);
        // No trusted proxies, or an untrusted peer: the header is the client's own words.
        assert_eq!(
            client_address(ip("10.0.0.5"), &["1.2.3.4"], &[]),
            "10.0.0.5"
        );
        assert_eq!(
            client_address(ip("192.0.2.9"), &["1.2.3.4"], &proxies),
            "192.0.2.9"
        );
        // Through trusted proxies: the last address none of them is.
        assert_eq!(
            client_address(
                ip("10.0.0.5"),
                &["6.6.6.6, 198.51.100.7, 10.1.2.3"],
                &proxies
            ),
            "198.51.100.7",
            "a spoofed first entry is passed over"
        );
        assert_eq!(
            client_address(ip("127.0.0.1"), &["6.6.6.6", "198.51.100.7"], &proxies),
            "198.51.100.7",
            "several headers read in order"
        );
        // Garbage stops the walk: the client cannot choose what comes before it.
        assert_eq!(
            client_address(ip("10.0.0.5"), &["6.6.6.6, not-an-ip, 10.1.2.3"], &proxies),
            "10.1.2.3"
        );
        assert_eq!(client_address(ip("10.0.0.5"), &[], &proxies), "10.0.0.5");
        assert_eq!(client_address(None, &["1.2.3.4"], &proxies), "");
    }
}
