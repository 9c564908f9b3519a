//! `subscriptions/listen` for stateless (2026-07-28) clients: one long-lived SSE answer
//! that first acknowledges the filter the gateway honors, then carries the notifications
//! the client opted in to, each stamped with the subscription's id. List changes come from
//! new snapshots that change what the server lists (as on a session's GET stream). For
//! resource URIs an upstream serves, the gateway opens an upstream session of the
//! subscription's own, subscribes there, and passes on that session's
//! `notifications/resources/updated`; the session ends with the stream.

use super::admission::client_headers;
use super::forwarder::{Forwarder, Scope};
use super::out::Out;
use crate::metrics::{metrics, Served, Tracked};
use crate::routes::{ServerView, UpstreamEntry};
use crate::upstreams::CallOptions;
use crate::{jsonrpc, transport};
use futures::StreamExt;
use pingora::Result;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};

/// The `_meta` key that names the subscription a message belongs to.
const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

/// The filter keys that opt in to each kind of listing, as `ServerView::lists` orders them
/// (see `listen::LIST_KINDS`).
const LIST_KEYS: [&str; 3] = [
    "toolsListChanged",
    "promptsListChanged",
    "resourcesListChanged",
];

/// `message` stamped with the subscription's id.
fn stamped(mut message: Value, id: &Value) -> Value {
    if let Some(params) = message.get_mut("params").and_then(Value::as_object_mut) {
        let meta = params.entry("_meta").or_insert_with(|| json!({}));
        if let Some(meta) = meta.as_object_mut() {
            meta.insert(SUBSCRIPTION_ID.into(), id.clone());
        }
    } else if let Some(object) = message.as_object_mut() {
        object.insert("params".into(), json!({"_meta": {SUBSCRIPTION_ID: id}}));
    }
    message
}

/// Sends one notification of the subscription `id`.
async fn send(out: &mut Out<'_>, message: Value, id: &Value) -> Result<()> {
    let data = stamped(message, id).to_string();
    let wire = super::out::message_event(&data);
    out.event(wire, &data, false).await
}

/// The part of a subscription's filter the gateway honors: what its acknowledgement says,
/// which listings' changes it wants (in the order of `LIST_KEYS`), and the resource URIs an
/// upstream agreed to watch.
struct Honored {
    notifications: serde_json::Map<String, Value>,
    lists: [bool; 3],
    watched: HashSet<String>,
}

impl Forwarder {
    /// Serves a `subscriptions/listen` stream until the client leaves (or the server is
    /// no longer served here, which ends it gracefully with its result).
    pub(super) async fn subscriptions(
        &self,
        out: &mut Out<'_>,
        Scope {
            routes,
            server,
            client,
        }: Scope<'_>,
        subscribe: transport::Subscribe,
    ) -> Result<Served> {
        let transport::Subscribe {
            id,
            filter,
            routes: uris,
        } = subscribe;
        let mut honored = serde_json::Map::new();
        let mut lists = [false; 3];
        for (i, key) in LIST_KEYS.iter().enumerate() {
            if filter.get(key) == Some(&json!(true)) {
                honored.insert((*key).into(), json!(true));
                lists[i] = true;
            }
        }
        // Resource URIs: local ones never change while served; upstream ones are watched
        // in an upstream session of this subscription's own.
        let mut by_upstream: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut watched: HashSet<String> = HashSet::new();
        for (uri, upstream) in uris {
            match upstream {
                Some(u) => by_upstream.entry(u).or_default().push(uri),
                None if server.resources.contains_key(&uri) => {
                    watched.insert(uri);
                }
                None => {} // no one serves it: not honored
            }
        }
        let mut own = crate::session::Session {
            server: server.name.clone(),
            version: crate::mcp::versions::LATEST.to_string(),
            capabilities: json!({}),
            upstreams: Default::default(),
            nonce: 0,
            principal: None,
            expires: 0, // never sealed for a client
        };
        let mut streams = Vec::new();
        // The subscription's upstream sessions end with it, however it ends (also while
        // they are still being opened).
        let mut ender = self.upstreams.ender_for(&own, &|_| None);
        for (upstream, uris) in by_upstream {
            let Some(spec) = routes.upstream(&upstream) else {
                continue;
            };
            let call = CallOptions {
                headers: client_headers(client, server, &spec),
                ..CallOptions::default()
            };
            let watching = self
                .watch_resources(&upstream, &spec, &mut own, &uris, &call)
                .await;
            if let Some(opened) = own.upstreams.get(&upstream) {
                let mut one = own.clone();
                one.upstreams = [(upstream.clone(), opened.clone())].into();
                ender.absorb(self.upstreams.ender_for(&one, &|_| Some(spec.clone())));
            }
            match watching {
                Ok((stream, accepted)) => {
                    watched.extend(accepted);
                    streams.push(stream);
                }
                Err(e) => {
                    tracing::warn!(%upstream, error = %e, "cannot subscribe to an upstream's resources for a client");
                }
            }
        }
        if !watched.is_empty() {
            let mut sorted: Vec<&String> = watched.iter().collect();
            sorted.sort();
            honored.insert("resourceSubscriptions".into(), json!(sorted));
        }
        let honored = Honored {
            notifications: honored,
            lists,
            watched,
        };
        let outcome = self
            .subscription_stream(out, server, &id, honored, streams)
            .await;
        drop(ender);
        outcome
    }

    /// Opens `upstream`'s GET stream in the subscription's own session (opened here),
    /// then subscribes to `uris` there; the stream, and the URIs the upstream took.
    async fn watch_resources(
        &self,
        upstream: &str,
        spec: &UpstreamEntry,
        own: &mut crate::session::Session,
        uris: &[String],
        call: &CallOptions,
    ) -> std::result::Result<(switchboard_upstream::Messages, Vec<String>), String> {
        let opened = self
            .upstreams
            .open_for(upstream, spec, own, call)
            .await
            .map_err(|e| e.to_string())?;
        own.upstreams.insert(upstream.to_string(), opened);
        let stream = self
            .upstreams
            .listen(upstream, spec, own, call)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the upstream offers no stream")?;
        let mut accepted = Vec::new();
        for uri in uris {
            let body = json!({"jsonrpc": "2.0", "id": self.upstreams.internal_id(), "method": "resources/subscribe", "params": {"uri": uri}});
            let answer = match self
                .upstreams
                .send(upstream, spec, &body, Some(own), call)
                .await
            {
                Ok(resp) => {
                    let url = own.upstreams.get(upstream).map_or(upstream, |r| &r.url);
                    match switchboard_upstream::McpHttp::response_for(url, resp, &body["id"]).await
                    {
                        Ok(answer) => answer.get("error").map_or(Ok(()), |e| Err(e.to_string())),
                        Err(e) => Err(e.to_string()),
                    }
                }
                Err(e) => Err(e.to_string()),
            };
            match answer {
                Ok(()) => accepted.push(uri.clone()),
                Err(why) => {
                    tracing::info!(%upstream, %uri, %why, "an upstream refused a resource subscription; not honored")
                }
            }
        }
        Ok((stream, accepted))
    }

    /// The stream itself: the acknowledgment, then the notifications.
    async fn subscription_stream(
        &self,
        out: &mut Out<'_>,
        server: &ServerView,
        id: &Value,
        honored: Honored,
        streams: Vec<switchboard_upstream::Messages>,
    ) -> Result<Served> {
        let Honored {
            notifications: honored,
            lists,
            watched,
        } = honored;
        out.start_stream().await?;
        let _streaming = Tracked::new(&metrics().sse_streams);
        let ack = json!({"jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged", "params": {"notifications": honored}});
        if send(out, ack, id).await.is_err() {
            return Ok(Served::Ok);
        }
        let mut updates = futures::stream::select_all(streams);
        let mut upstreams_open = !updates.is_empty();
        let mut changes = self.changes.clone();
        changes.borrow_and_update();
        let mut routes_change = lists.iter().any(|l| *l);
        let mut seen = server.lists;
        let mut keepalive = tokio::time::interval(super::out::KEEPALIVE);
        keepalive.tick().await;
        loop {
            let messages: Vec<Value> = tokio::select! {
                next = updates.next(), if upstreams_open => match next {
                    Some(Ok(msg)) if msg["method"] == "notifications/resources/updated" => {
                        let uri = msg.pointer("/params/uri").and_then(Value::as_str).unwrap_or("");
                        if !watched.contains(uri) {
                            continue;
                        }
                        vec![json!({"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"uri": uri}})]
                    }
                    Some(_) => continue,
                    None => {
                        upstreams_open = false;
                        continue;
                    }
                },
                changed = changes.changed(), if routes_change => {
                    if changed.is_err() {
                        routes_change = false;
                        continue;
                    }
                    let Some(now) = self.routes.load().server(&server.name) else {
                        // The server is gone from this data plane: end gracefully.
                        let mut result = json!({"_meta": {SUBSCRIPTION_ID: id}});
                        crate::mcp::modern::shape_result("subscriptions/listen", &mut result, &server.name);
                        let data = jsonrpc::result_response(id, result).to_string();
                        let wire = super::out::message_event(&data);
                        out.event(wire, &data, true).await?;
                        return Ok(Served::Ok);
                    };
                    let notes = super::listen::list_changes(&seen, &now.lists, lists);
                    seen = now.lists;
                    notes
                }
                _ = keepalive.tick() => {
                    if out.keepalive().await.is_err() {
                        return Ok(Served::Ok);
                    }
                    continue;
                }
            };
            for message in messages {
                if send(out, message, id).await.is_err() {
                    return Ok(Served::Ok); // the client left
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_names_its_subscription() {
        let id = json!("listen-1");
        let note = stamped(
            json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}),
            &id,
        );
        assert_eq!(note["params"]["_meta"][SUBSCRIPTION_ID], id);
        let updated = stamped(
            json!({"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"uri": "a://b"}}),
            &id,
        );
        assert_eq!(updated["params"]["uri"], "a://b");
        assert_eq!(updated["params"]["_meta"][SUBSCRIPTION_ID], id);
    }
}
