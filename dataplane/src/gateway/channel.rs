//! Client connections that carry JSON-RPC messages both ways outside the request/response
//! pairs of streamable HTTP: the legacy HTTP+SSE stream and WebSocket. Each message a
//! client sends is served like a streamable-HTTP POST; everything that produces (answers,
//! a call's progress, server requests) and what the session's GET stream would carry
//! (upstream requests outside calls, `list_changed`) goes to the connection. The connection
//! stands for the MCP session: when it ends, the session's upstream sessions end too.

use super::access::Record;
use super::admission::ClientHeaders;
use super::forwarder::Scope;
use super::listen::ListenFrom;
use super::out::Out;
use super::Gateway;
use crate::errors::GatewayError;
use crate::metrics::Served;
use crate::policy::auth::Principal;
use crate::routes::{Routes, ServerView};
use crate::transport;
use crate::transport::{Outcome, Reply, RequestInfo};
use pingora::Result;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, Notify};

/// How many messages may wait for a slow client before senders wait too.
const BACKLOG: usize = 64;

/// One open client connection.
pub(super) struct Channel {
    /// Messages (JSON-RPC texts) on their way to the client.
    pub(super) tx: mpsc::Sender<String>,
    /// The gateway session id its initialize produced (sealed, like any other).
    sealed: Mutex<Option<String>>,
    /// Told when the session opens, so its GET-stream messages start flowing.
    opened: Notify,
    /// An initialize is being served (a second one is refused meanwhile).
    initializing: AtomicBool,
    pub(super) server: String,
    /// Who opened the connection (every message is theirs).
    caller: Principal,
    /// The credentials policies may pass on, from the request that opened the connection.
    pub(super) client: ClientHeaders,
    client_ip: String,
}

impl Channel {
    /// A channel for `server`'s client, with the receiving end its writer drains.
    pub(super) fn new(
        server: &str,
        caller: Principal,
        client: ClientHeaders,
        client_ip: String,
    ) -> (Arc<Channel>, mpsc::Receiver<String>) {
        let (tx, rx) = mpsc::channel(BACKLOG);
        let channel = Channel {
            tx,
            sealed: Mutex::new(None),
            opened: Notify::new(),
            initializing: AtomicBool::new(false),
            server: server.to_string(),
            caller,
            client,
            client_ip,
        };
        (Arc::new(channel), rx)
    }

    /// The gateway session this connection stands for, once initialized.
    pub(super) fn session(&self) -> Option<String> {
        self.sealed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records the session an initialize opened (a second initialize replaces it).
    fn open(&self, id: String) {
        *self.sealed.lock().unwrap_or_else(|p| p.into_inner()) = Some(id);
        self.opened.notify_one();
    }

    /// Whether `caller` is who opened the connection.
    pub(super) fn belongs_to(&self, caller: &Principal) -> bool {
        self.caller.subject == caller.subject
    }

    /// Waits until the session is open, then yields its id.
    pub(super) async fn wait_open(&self) -> String {
        loop {
            if let Some(id) = self.session() {
                return id;
            }
            self.opened.notified().await;
        }
    }

    /// The request a message on this channel stands for.
    fn request_info(&self, method: &str, protocol_version: Option<String>) -> RequestInfo {
        RequestInfo {
            method: method.to_string(),
            content_type: Some("application/json".into()),
            accept: Some("application/json, text/event-stream".into()),
            session_id: self.session(),
            protocol_version,
            mcp_method: None,
            mcp_name: None,
            mcp_params: Vec::new(),
            caller: self.caller.clone(),
        }
    }
}

/// The id of an `initialize` request, if `body` is one.
fn initialize_id(body: &[u8]) -> Option<Value> {
    // Most messages are not: look before parsing.
    if !body.windows(12).any(|w| w == b"\"initialize\"") {
        return None;
    }
    let msg: Value = serde_json::from_slice(body).ok()?;
    (msg.get("method").and_then(Value::as_str) == Some("initialize"))
        .then(|| msg.get("id").cloned().unwrap_or(Value::Null))
}

impl Gateway {
    /// Serves one message a channel's client sent. What it produces goes to the channel;
    /// a refusal that is not a JSON-RPC message (an HTTP-level error) is returned, for
    /// transports that can say it another way (the legacy POST's own response).
    pub(super) async fn channel_message(
        &self,
        channel: &Channel,
        rec: &mut Record,
        routes: &Routes,
        server: &Arc<ServerView>,
        protocol_version: Option<String>,
        body: &[u8],
    ) -> Result<Option<Reply>> {
        rec.principal = channel.caller.subject.clone();
        let initialize = initialize_id(body);
        if let Some(id) = &initialize {
            // The connection is the session: a second initialize (even one racing the
            // first) would orphan the first session's upstream sessions.
            if channel.session().is_some() || channel.initializing.swap(true, Ordering::SeqCst) {
                rec.method = "initialize".into();
                rec.outcome = Served::Error;
                let refused = GatewayError::ConnectionHasSession.response(id);
                let _ = channel.tx.send(refused.to_string()).await;
                return Ok(None);
            }
        }
        let served = self
            .channel_dispatch(channel, rec, routes, server, protocol_version, body)
            .await;
        if initialize.is_some() && channel.session().is_none() {
            channel.initializing.store(false, Ordering::SeqCst); // it failed: may be retried
        }
        served
    }

    async fn channel_dispatch(
        &self,
        channel: &Channel,
        rec: &mut Record,
        routes: &Routes,
        server: &Arc<ServerView>,
        protocol_version: Option<String>,
        body: &[u8],
    ) -> Result<Option<Reply>> {
        let info = channel.request_info("POST", protocol_version);
        let mut out = Out::Events(&channel.tx);
        let from = super::serve::Requester {
            info: &info,
            client: &channel.client,
            client_ip: &channel.client_ip,
        };
        let reply = self
            .dispatch(&mut out, rec, routes, server, from, body)
            .await?;
        let Some(reply) = reply else {
            return Ok(None);
        };
        if !(200..300).contains(&reply.status) {
            return Ok(Some(reply));
        }
        if let Some((_, id)) = reply.headers.iter().find(|(k, _)| *k == "mcp-session-id") {
            channel.open(id.clone());
        }
        out.reply(reply).await?;
        Ok(None)
    }

    /// Carries what the session's GET stream would to the channel, from when its session
    /// opens until the client leaves (then returns, having ended the upstream sessions).
    pub(super) async fn channel_listen(&self, channel: &Channel, server: &ServerView) {
        let sealed = channel.wait_open().await;
        let routes = self.routes.load_full();
        let Some(now) = routes.server(&server.name) else {
            return;
        };
        let mut info = channel.request_info("GET", None);
        info.session_id = Some(sealed);
        let outcome = transport::handle(
            &now,
            &info,
            b"",
            &transport::AdmitAll,
            &mut transport::Seen::default(),
        );
        let Outcome::Listen(session) = outcome else {
            return; // a server without upstreams has nothing to say on its own
        };
        let mut out = Out::Events(&channel.tx);
        if let Err(e) = self
            .calls
            .listen(
                &mut out,
                Scope {
                    routes: &routes,
                    server: &now,
                    client: &channel.client,
                },
                &session,
                ListenFrom::Fresh(None),
            )
            .await
        {
            tracing::debug!(server = %server.name, error = %e, "a channel's stream ended");
        }
    }

    /// Ends the upstream sessions of a channel whose client left.
    pub(super) fn channel_closed(&self, channel: &Channel) {
        let Some(sealed) = channel.session() else {
            return;
        };
        let routes = self.routes.load_full();
        let Some(server) = routes.server(&channel.server) else {
            return;
        };
        if let Some(session) = server.sealer.open(&sealed) {
            self.end_session(&routes, &server, &session);
        }
    }
}
