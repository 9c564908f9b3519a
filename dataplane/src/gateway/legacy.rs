//! The 2024-11-05 HTTP+SSE transport for clients: `GET /servers/{name}/sse` opens an event
//! stream whose first event names the POST endpoint (`/servers/{name}/messages?session=K`);
//! every POST there is served like a streamable-HTTP request, with its answers (and a
//! call's progress and server requests) sent on the stream. The stream's key lives in the
//! data plane that holds the stream, so clients of this transport need their POSTs to
//! reach the same replica (a load balancer with affinity on the `session` parameter).

use super::access::Record;
use super::admission::ClientHeaders;
use super::channel::Channel;
use super::serve::client_ip;
use super::{send, Ctx, Gateway};
use crate::errors::GatewayError;
use crate::metrics::{metrics, Served, Tracked};
use crate::routes::ServerView;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::Session as Downstream;
use pingora::Result;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Most legacy streams one data plane keeps open (a tenth of them per client).
const MAX_STREAMS: usize = 10_000;

/// The legacy streams open on this data plane, by key.
pub(super) struct LegacyClients {
    open: Mutex<HashMap<String, Arc<Channel>>>,
    /// Places for streams: [`MAX_STREAMS`], a share of them per client.
    slots: Arc<super::slots::Slots>,
}

impl Default for LegacyClients {
    fn default() -> Self {
        LegacyClients {
            open: Mutex::default(),
            slots: super::slots::Slots::new(MAX_STREAMS, "legacy SSE streams", || {
                GatewayError::TooManyLegacyStreams
            }),
        }
    }
}

impl LegacyClients {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Channel>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The stream `key` names, if it is open here and belongs to `server`.
    pub(super) fn get(&self, key: &str, server: &str) -> Option<Arc<Channel>> {
        self.lock().get(key).filter(|c| c.server == server).cloned()
    }
}

/// An unguessable stream key (it is what a legacy client's POSTs present).
fn new_key() -> Option<String> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new().fill(&mut bytes).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The `session` query parameter of a legacy POST.
pub(super) fn key_of(session: &Downstream) -> Option<String> {
    let query = session.req_header().uri.query()?;
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("session="))
        .map(str::to_string)
}

impl Gateway {
    /// Serves `GET /servers/{name}/sse` until the client leaves.
    pub(super) async fn legacy_stream(
        &self,
        session: &mut Downstream,
        ctx: &mut Ctx,
        server: &ServerView,
    ) -> Result<()> {
        let rec = ctx.record.insert(Record::new(&server.name));
        let Some(caller) = self.caller(session, rec, server).await? else {
            return Ok(());
        };
        let ip = client_ip(session, &self.trusted_proxies);
        let place = self
            .legacy
            .slots
            .take(super::slots::client_key(&caller.subject, &ip));
        let (key, _place) = match (new_key(), place) {
            (Some(k), Ok(place)) => (k, place),
            (_, Err(e)) => {
                rec.outcome = e.served();
                return send(session, e.refusal()).await;
            }
            (None, Ok(_)) => {
                rec.outcome = Served::Error;
                return send(session, GatewayError::TooManyLegacyStreams.refusal()).await;
            }
        };
        let (channel, mut rx) = Channel::new(&server.name, caller, ClientHeaders::of(session), ip);
        self.legacy.lock().insert(key.clone(), channel.clone());
        let mut header = ResponseHeader::build(200, Some(3))?;
        header.insert_header("content-type", "text/event-stream")?;
        header.insert_header("cache-control", "no-cache")?;
        session
            .write_response_header(Box::new(header), false)
            .await?;
        let _streaming = Tracked::new(&metrics().sse_streams);
        let endpoint = format!(
            "event: endpoint\ndata: /servers/{}/messages?session={key}\n\n",
            server.name
        );
        let mut pending = Some(endpoint);
        let mut keepalive = tokio::time::interval(std::time::Duration::from_secs(15));
        keepalive.tick().await;
        let listening = self.channel_listen(&channel, server);
        tokio::pin!(listening);
        let mut listened = false;
        loop {
            let wire = match pending.take() {
                Some(w) => w,
                None => tokio::select! {
                    next = rx.recv() => match next {
                        Some(message) => super::out::message_event(&message),
                        None => break,
                    },
                    () = &mut listening, if !listened => {
                        listened = true;
                        continue;
                    }
                    _ = keepalive.tick() => ": keepalive\n\n".to_string(),
                },
            };
            if session
                .write_response_body(Some(Bytes::from(wire)), false)
                .await
                .is_err()
            {
                break; // the client left
            }
        }
        self.legacy.lock().remove(&key);
        self.channel_closed(&channel);
        Ok(())
    }
}
