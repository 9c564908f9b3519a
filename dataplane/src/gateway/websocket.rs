//! WebSocket for clients: `GET /servers/{name}/ws` upgraded with subprotocol `mcp`. Each
//! text frame is one JSON-RPC message (or batch), served like a streamable-HTTP POST;
//! everything for the client (answers, a call's progress and server requests, and what the
//! session's GET stream would carry) comes back as text frames. The connection is the
//! session: the client initializes on it, and closing it ends the session's upstream
//! sessions. After the 101, pingora hands over the connection's raw bytes; tungstenite does
//! the framing, over an in-memory pipe the bytes are pumped through.

use super::access::Record;
use super::admission::{ClientHeaders, Credentials};
use super::channel::Channel;
use super::serve::client_ip;
use super::slots::client_key;
use super::{header, send, Ctx, Gateway};
use crate::errors::GatewayError;
use crate::metrics::{metrics, Served, Tracked};
use crate::routes::ServerView;
use crate::transport::Reply;
use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::{SinkExt, StreamExt};
use pingora::http::ResponseHeader;
use pingora::prelude::Session as Downstream;
use pingora::Result;
use serde_json::Value;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// The subprotocol MCP over WebSocket is spoken under.
const SUBPROTOCOL: &str = "mcp";

/// Bytes the pipe between the connection and the framing buffers each way.
const PIPE: usize = 64 << 10;

/// How often an idle connection is pinged, so a client that vanished is noticed.
const PING_EVERY: std::time::Duration = std::time::Duration::from_secs(30);
/// Pings a client may leave unanswered before the connection is taken for dead.
const MAX_UNANSWERED_PINGS: u32 = 2;
/// Requests of one connection served at once; past it, new requests are refused at once
/// (answers and notifications still go through, so requests waiting on them can finish, up
/// to twice as many messages in all; then the connection is not read until some are done).
const MAX_IN_FLIGHT: usize = 64;
/// Most WebSocket connections one data plane keeps open (a tenth of them per client).
pub(super) const MAX_CONNECTIONS: usize = 10_000;

/// Why an upgrade request is refused, as its answer.
fn refuse(status: u16, why: &str) -> Reply {
    GatewayError::UpgradeRefused {
        status,
        why: why.to_string(),
    }
    .refusal()
}

/// Checks an upgrade request, yielding its `Sec-WebSocket-Accept` and whether the client
/// offered the `mcp` subprotocol (clients that offer none are served too).
fn handshake(session: &Downstream) -> std::result::Result<(String, bool), Reply> {
    let req = session.req_header();
    let upgrade = header(session, "upgrade").unwrap_or_default();
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return Err(refuse(
            426,
            "this endpoint speaks MCP over WebSocket: send GET with `Upgrade: websocket`",
        ));
    }
    if req.method != pingora::http::Method::GET || req.version != pingora::http::Version::HTTP_11 {
        return Err(refuse(400, "a WebSocket upgrade is a GET over HTTP/1.1"));
    }
    if header(session, "sec-websocket-version") != Some("13") {
        let mut reply = refuse(400, "only WebSocket version 13 is supported");
        reply.headers.push(("sec-websocket-version", "13".into()));
        return Err(reply);
    }
    let Some(key) = header(session, "sec-websocket-key").filter(|k| !k.is_empty()) else {
        return Err(refuse(400, "missing Sec-WebSocket-Key"));
    };
    let offered: Vec<&str> = header(session, "sec-websocket-protocol")
        .map(|p| p.split(',').map(str::trim).collect())
        .unwrap_or_default();
    let mcp = offered.iter().any(|p| p.eq_ignore_ascii_case(SUBPROTOCOL));
    if !offered.is_empty() && !mcp {
        return Err(refuse(
            400,
            "offer the WebSocket subprotocol `mcp` (Sec-WebSocket-Protocol: mcp)",
        ));
    }
    Ok((derive_accept_key(key.as_bytes()), mcp))
}

/// The refusal of a request that came while the connection serves as many as it may; None
/// for anything else (answers and notifications are always served).
fn too_busy(body: &[u8]) -> Option<String> {
    let msg: Value = serde_json::from_slice(body).ok()?;
    let id = msg.get("id").filter(|_| msg.get("method").is_some())?;
    let refused = GatewayError::ConnectionBusy { max: MAX_IN_FLIGHT }.response(id);
    Some(refused.to_string())
}

impl Gateway {
    /// Serves `GET /servers/{name}/ws` until either side closes the connection.
    pub(super) async fn websocket(
        &self,
        session: &mut Downstream,
        ctx: &mut Ctx,
        server: &Arc<ServerView>,
    ) -> Result<()> {
        let rec = ctx.record.insert(Record::new(&server.name));
        rec.method = "websocket".into();
        if server.passthrough.is_some() {
            rec.outcome = Served::Error;
            let why = "a pass-through server speaks its upstream's own transport: use /servers/{name}/mcp";
            return send(session, refuse(400, why)).await;
        }
        let (accept, mcp) = match handshake(session) {
            Ok(h) => h,
            Err(reply) => {
                rec.outcome = reply.outcome();
                return send(session, reply).await;
            }
        };
        let Some(caller) = self.caller(session, rec, server).await? else {
            return Ok(());
        };
        // Checked again when the snapshot changes, and the connection ends when they expire.
        let credentials = Credentials::of(session, server);
        let held = Held {
            subject: caller.subject.clone(),
            expires: caller.expires,
            credentials,
        };
        let ip = client_ip(session, &self.trusted_proxies);
        let _counted = match self.websockets.take(client_key(&caller.subject, &ip)) {
            Ok(slot) => slot,
            Err(e) => {
                rec.outcome = e.served();
                return send(session, e.refusal()).await;
            }
        };
        let (channel, rx) = Channel::new(&server.name, caller, ClientHeaders::of(session), ip);
        let mut resp = ResponseHeader::build(101, Some(4))?;
        resp.insert_header("upgrade", "websocket")?;
        resp.insert_header("connection", "Upgrade")?;
        resp.insert_header("sec-websocket-accept", accept)?;
        if mcp {
            resp.insert_header("sec-websocket-protocol", SUBPROTOCOL)?;
        }
        session.set_read_timeout(None);
        session.write_response_header(Box::new(resp), false).await?;
        let _open = Tracked::new(&metrics().websockets);
        let max = server.limits.max_body_bytes.unwrap_or(self.max_body_bytes);
        let config = WebSocketConfig::default()
            .max_message_size(Some(max))
            .max_frame_size(Some(max));
        let (ours, theirs) = tokio::io::duplex(PIPE);
        let ws = WebSocketStream::from_raw_socket(ours, Role::Server, Some(config)).await;
        let pump = pump(session, theirs);
        tokio::pin!(pump);
        tokio::select! {
            () = &mut pump => {}
            () = self.converse(ws, &channel, rx, server, &held) => {
                // Let the close frame (and anything before it) reach the client.
                let _ = tokio::time::timeout(std::time::Duration::from_secs(1), pump).await;
            }
        }
        self.channel_closed(&channel);
        Ok(())
    }

    /// Whether the credentials the connection opened with still name its principal under
    /// the routes in force; why not, otherwise.
    async fn still_valid(&self, channel: &Channel, held: &Held) -> std::result::Result<(), String> {
        let routes = self.routes.load_full();
        let Some(server) = routes.server(&channel.server) else {
            return Err(format!(
                "virtual server `{}` is no longer served here",
                channel.server
            ));
        };
        match self.verify(&server, &held.credentials).await {
            Ok(p) if p.subject == held.subject => Ok(()),
            Ok(_) => Err("the credentials name another principal now".into()),
            // Keys that cannot be fetched right now say nothing about these credentials.
            Err(crate::policy::auth::AuthError::Unavailable(_)) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Reads the client's frames and writes what the channel carries, until the client
    /// closes the connection, it breaks, or its credentials expire or stop being accepted
    /// (then a close frame says why, with code 1008).
    async fn converse(
        &self,
        ws: WebSocketStream<DuplexStream>,
        channel: &Channel,
        mut rx: mpsc::Receiver<String>,
        server: &ServerView,
        held: &Held,
    ) {
        let expiry = async {
            match held.expires {
                Some(at) => {
                    let left = at.saturating_sub(crate::session::unix_now());
                    tokio::time::sleep(std::time::Duration::from_secs(left)).await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::pin!(expiry);
        let mut changes = self.calls.changes.clone();
        changes.borrow_and_update();
        let mut follow_changes = true;
        let (mut sink, mut frames) = futures::StreamExt::split(ws);
        let mut inflight = FuturesUnordered::new();
        let listening = self.channel_listen(channel, server);
        tokio::pin!(listening);
        let mut listened = false;
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        let mut unanswered = 0;
        loop {
            let out = tokio::select! {
                // Past twice the cap (notifications and answers, which are let through at
                // the cap), frames wait in the connection until some are served.
                frame = frames.next(), if inflight.len() < 2 * MAX_IN_FLIGHT => match frame {
                    Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => {
                        unanswered = 0;
                        let body = message.into_data().to_vec();
                        if inflight.len() >= MAX_IN_FLIGHT {
                            if let Some(busy) = too_busy(&body) {
                                let _ = channel.tx.try_send(busy);
                                continue;
                            }
                        }
                        inflight.push(self.ws_message(channel, body));
                        continue;
                    }
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Err(e)) => {
                        tracing::debug!(server = %server.name, error = %e, "a WebSocket client's connection broke");
                        break;
                    }
                    Some(Ok(_)) => {
                        unanswered = 0; // a pong (pings are answered by the framing)
                        continue;
                    }
                },
                Some(()) = inflight.next(), if !inflight.is_empty() => continue,
                next = rx.recv() => match next {
                    Some(message) => Message::text(message),
                    None => break,
                },
                () = &mut listening, if !listened => {
                    listened = true;
                    continue;
                }
                () = &mut expiry => {
                    tracing::info!(server = %server.name, principal = %held.subject, "a WebSocket's credentials expired; closing it");
                    policy_close("the credentials expired")
                }
                changed = changes.changed(), if follow_changes => {
                    if changed.is_err() {
                        follow_changes = false;
                        continue;
                    }
                    match self.still_valid(channel, held).await {
                        Ok(()) => continue,
                        Err(why) => {
                            tracing::info!(server = %server.name, principal = %held.subject, %why, "a WebSocket's credentials are no longer accepted; closing it");
                            policy_close(&format!("the credentials are no longer accepted: {why}"))
                        }
                    }
                }
                _ = ping.tick() => {
                    if unanswered >= MAX_UNANSWERED_PINGS {
                        tracing::debug!(server = %server.name, "a WebSocket client stopped answering pings");
                        break;
                    }
                    unanswered += 1;
                    Message::Ping(Bytes::new())
                }
            };
            let closing = matches!(out, Message::Close(_));
            if sink.send(out).await.is_err() || closing {
                break;
            }
        }
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), sink.close()).await;
    }

    /// Serves one message a WebSocket client sent; what it produces goes to its channel.
    async fn ws_message(&self, channel: &Channel, body: Vec<u8>) {
        let routes = self.routes.load_full();
        let Some(server) = routes.server(&channel.server) else {
            let gone = GatewayError::ServerGone(channel.server.clone()).response(&Value::Null);
            let _ = channel.tx.send(gone.to_string()).await;
            return;
        };
        let mut rec = Record::new(&server.name);
        let status = match self
            .channel_message(channel, &mut rec, &routes, &server, None, &body)
            .await
        {
            Ok(None) => 200,
            Ok(Some(refused)) => {
                // An HTTP-level refusal: its JSON-RPC error is all a WebSocket can carry.
                if serde_json::from_slice::<Value>(&refused.body).is_ok() {
                    let text = String::from_utf8_lossy(&refused.body).into_owned();
                    let _ = channel.tx.send(text).await;
                }
                refused.status
            }
            Err(e) => {
                tracing::debug!(server = %server.name, error = %e, "a WebSocket message was not served");
                0
            }
        };
        rec.finish(status);
    }
}

/// Who a connection was opened by, and what proved it, for checking again later.
struct Held {
    subject: String,
    /// When the credentials expire (Unix seconds), if they do.
    expires: Option<u64>,
    credentials: Credentials,
}

/// A close frame ending a connection by policy (1008), saying why (cut to the 123 bytes a
/// close frame's reason may have).
fn policy_close(why: &str) -> Message {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    let mut reason = why.to_string();
    while reason.len() > 123 {
        reason.pop();
    }
    Message::Close(Some(CloseFrame {
        code: CloseCode::Policy,
        reason: reason.into(),
    }))
}

/// Moves bytes between the upgraded connection and the framing's end of the pipe until
/// either side closes. Client bytes wait in a bounded buffer, so a busy framing side never
/// stops answers from flowing out.
async fn pump(session: &mut Downstream, pipe: DuplexStream) {
    let (mut from_ws, mut to_ws) = tokio::io::split(pipe);
    let mut inbound = bytes::BytesMut::new();
    let mut buf = vec![0u8; 16 << 10];
    let mut client_open = true;
    loop {
        tokio::select! {
            got = session.read_request_body(), if client_open && inbound.len() < PIPE => match got {
                Ok(Some(bytes)) => inbound.extend_from_slice(&bytes),
                _ => {
                    client_open = false; // deliver what is buffered, then stop
                    if inbound.is_empty() {
                        return;
                    }
                }
            },
            wrote = to_ws.write(&inbound), if !inbound.is_empty() => match wrote {
                Ok(n) => {
                    let _ = inbound.split_to(n);
                    if !client_open && inbound.is_empty() {
                        return;
                    }
                }
                Err(_) => return,
            },
            read = from_ws.read(&mut buf) => match read {
                Ok(0) | Err(_) => {
                    let _ = session.write_response_body(None, true).await;
                    return;
                }
                Ok(n) => {
                    let chunk = Bytes::copy_from_slice(&buf[..n]);
                    if session.write_response_body(Some(chunk), false).await.is_err() {
                        return;
                    }
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_cap_requests_are_refused_and_answers_still_served() {
        let refused = too_busy(br#"{"jsonrpc":"2.0","id":7,"method":"tools/call"}"#)
            .expect("a request is refused");
        assert!(refused.contains(r#""id":7"#) && refused.contains("in flight"));
        assert!(too_busy(br#"{"jsonrpc":"2.0","id":"sb1.u.MA","result":{}}"#).is_none());
        assert!(too_busy(br#"{"jsonrpc":"2.0","method":"notifications/cancelled"}"#).is_none());
    }
}
