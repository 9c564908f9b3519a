//! The streams a session-era client reads outside a call: its GET stream (what its upstream
//! sessions send on their own, merged, and the gateway's own list changes) and a call's
//! stream resumed with `Last-Event-ID`.

use super::admission::{client_headers, ClientHeaders};
use super::forward::mcp_upstreams;
use super::forwarder::{Forwarder, Scope};
use super::out::{replayed, Events, Out, KEEPALIVE};
use super::replay::{Kind, Reader};
use crate::metrics::{metrics, Served, Tracked};
use crate::routes::{ServerView, UpstreamEntry};
use crate::upstreams::CallOptions;
use futures::StreamExt;
use pingora::Result;
use serde_json::{json, Value};
use std::sync::Arc;

/// Where a GET stream starts: afresh (resumable when it belongs to a session, whose
/// fingerprint this is), or where a client that lost it left off.
pub(super) enum ListenFrom<'a> {
    Fresh(Option<&'a str>),
    Resumed(Reader, u64),
}

impl Forwarder {
    /// Serves a GET whose `Last-Event-ID` names a call's stream: what the client missed,
    /// then the rest of the call as it comes, ending with its answer.
    pub(super) async fn resume_call(
        &self,
        out: &mut Out<'_>,
        reader: Reader,
        mut seq: u64,
    ) -> Result<Served> {
        let replay = reader.replay().clone();
        out.start_stream().await?;
        let _streaming = Tracked::new(&metrics().sse_streams);
        let mut progress = replay.progress();
        let mut keepalive = tokio::time::interval(KEEPALIVE);
        keepalive.tick().await;
        let outcome = loop {
            let now = *progress.borrow_and_update();
            let missed = match replay.after(seq) {
                Ok(m) => m,
                Err(e) => {
                    tracing::info!(error = %e, "a resumed call stream ran past its buffer");
                    break Served::Error;
                }
            };
            seq += missed.len() as u64;
            if replayed(out, missed).await.is_err() {
                break Served::Ok; // the client left again
            }
            if now.ended && seq >= now.last {
                let _ = out.end().await;
                break Served::Ok;
            }
            tokio::select! {
                changed = progress.changed() => if changed.is_err() {
                    let _ = out.end().await;
                    break Served::Ok;
                },
                _ = keepalive.tick() => if out.keepalive().await.is_err() {
                    break Served::Ok;
                },
            }
        };
        drop(reader);
        Ok(outcome)
    }
}

impl Forwarder {
    /// Serves a client's GET stream: the messages its upstream sessions send on their own,
    /// merged, with the ids of upstream requests wrapped so the answers find their way
    /// back, and the gateway's own `list_changed` notifications when a new snapshot changes
    /// the server's listings. Ends when the client leaves.
    pub(super) async fn listen(
        &self,
        out: &mut Out<'_>,
        Scope {
            routes,
            server,
            client,
        }: Scope<'_>,
        session: &crate::session::Session,
        from: ListenFrom<'_>,
    ) -> Result<Served> {
        let wanted: Vec<(&String, Arc<UpstreamEntry>)> = mcp_upstreams(routes, server)
            .filter(|(name, _)| session.upstreams.contains_key(*name))
            .collect();
        let opening = wanted.iter().map(|(name, spec)| async move {
            let opened = self.open_listen(name, spec, client, server, session).await;
            ((*name).clone(), opened)
        });
        let mut merged = futures::stream::SelectAll::new();
        // Streams to try again (refused because a call holds it, or ended), and when.
        let mut retry: std::collections::BTreeMap<
            String,
            (tokio::time::Instant, std::time::Duration),
        > = Default::default();
        // When each upstream stream was (re)opened, and the wait before it.
        let mut opened_at: std::collections::HashMap<
            String,
            (tokio::time::Instant, std::time::Duration),
        > = Default::default();
        for (name, opened) in futures::future::join_all(opening).await {
            match opened {
                Listened::Streaming(stream) => {
                    merged.push(stream);
                    opened_at.insert(
                        name,
                        (tokio::time::Instant::now(), super::questions::FIRST_REOPEN),
                    );
                }
                Listened::None => {}
                Listened::Retry(e) => {
                    tracing::debug!(upstream = %name, error = %e, "cannot open an upstream's stream for a client yet; trying again");
                    let first = super::questions::FIRST_REOPEN;
                    retry.insert(name, (tokio::time::Instant::now() + first, first));
                }
            }
        }
        // The questions this stream relays are kept until answered (see `outstanding`).
        let asking: std::collections::HashMap<
            &str,
            (super::outstanding::Key, std::time::Duration),
        > = wanted
            .iter()
            .filter_map(|(name, spec)| {
                let id = super::questions::own_session_id(name, spec, session)?;
                let patience = super::questions::patience(server, spec, name);
                Some((name.as_str(), (((*name).clone(), id), patience)))
            })
            .collect();
        let keys: Vec<super::outstanding::Key> = asking.values().map(|(k, _)| k.clone()).collect();
        let carrier = self.question_carrier();
        let mut waiting = self.outstanding.subscribe();
        out.start_stream().await?;
        let _streaming = Tracked::new(&metrics().sse_streams);
        let replay = match from {
            ListenFrom::Fresh(fp) => fp.and_then(|fp| self.replays.open(fp, Kind::Listen)),
            ListenFrom::Resumed(reader, seq) => {
                let missed = reader.replay().after(seq).unwrap_or_default();
                for (_, data) in &missed {
                    // Replayed here: no other stream needs to carry them again.
                    if let Ok(msg) = serde_json::from_str::<Value>(data) {
                        let asked = crate::mcp::relay::unwrap(&msg["id"])
                            .and_then(|(upstream, _)| asking.get(upstream.as_str()));
                        if let (true, Some((key, _))) = (crate::mcp::relay::is_request(&msg), asked)
                        {
                            carrier.claim(key, &msg["id"]);
                        }
                    }
                }
                if replayed(out, missed).await.is_err() {
                    return Ok(Served::Ok); // the client left again
                }
                Some((reader.replay().clone(), reader))
            }
        };
        let mut events = Events::new(out, replay);
        // Questions that lost their stream before the client answered go out first.
        waiting.borrow_and_update();
        for (upstream, mut msg) in carrier.take_waiting(&keys) {
            msg["id"] = crate::mcp::relay::wrap(&upstream, &msg["id"]);
            crate::mcp::relay::task_ids_out(&upstream, &mut msg, false);
            if !matches!(events.send(&msg.to_string(), false).await, Ok(true)) {
                return Ok(Served::Ok); // the client left
            }
        }
        let mut upstreams_open = !merged.is_empty();
        let mut keepalive = tokio::time::interval(KEEPALIVE);
        keepalive.tick().await;
        let mut changes = self.changes.clone();
        changes.borrow_and_update();
        let mut routes_change = true;
        let mut lists = server.lists;
        loop {
            let due = retry.values().map(|(at, _)| *at).min();
            let messages = tokio::select! {
                _ = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)), if due.is_some() => {
                    let now = tokio::time::Instant::now();
                    let ready: Vec<String> = retry
                        .iter()
                        .filter(|(_, (at, _))| *at <= now)
                        .map(|(name, _)| name.clone())
                        .collect();
                    for name in ready {
                        let Some((_, wait)) = retry.remove(&name) else { continue };
                        // The routes in force now (the upstream may have moved).
                        let Some(spec) = self.routes.load().upstream(&name) else { continue };
                        match self.open_listen(&name, &spec, client, server, session).await {
                            Listened::Streaming(stream) => {
                                tracing::debug!(upstream = %name, "upstream stream for a client reopened");
                                merged.push(stream);
                                upstreams_open = true;
                                opened_at.insert(name, (tokio::time::Instant::now(), wait));
                            }
                            Listened::None => {}
                            Listened::Retry(_) => {
                                let next = super::questions::next_reopen(wait);
                                retry.insert(name, (tokio::time::Instant::now() + next, next));
                            }
                        }
                    }
                    continue;
                }
                next = merged.next(), if upstreams_open => match next {
                    Some((upstream, Upstreamed::Ended)) => {
                        tracing::debug!(%upstream, "an upstream's stream to a client ended; reopening it");
                        // A stream that ends at once is not tried again at once.
                        let first = super::questions::FIRST_REOPEN;
                        let wait = match opened_at.remove(&upstream) {
                            Some((at, wait)) if at.elapsed() < std::time::Duration::from_secs(5) => {
                                super::questions::next_reopen(wait)
                            }
                            _ => first,
                        };
                        retry.insert(upstream, (tokio::time::Instant::now() + wait, wait));
                        continue;
                    }
                    Some((upstream, Upstreamed::Message(Ok(mut msg)))) => {
                        let method = msg.get("method").and_then(Value::as_str).unwrap_or("");
                        if switchboard_upstream::is_list_changed(method) {
                            // The gateway's own listing changes once discovery has the new
                            // catalog; it says so then (below).
                            continue;
                        }
                        if crate::mcp::relay::is_request(&msg) {
                            if let Some((key, patience)) = asking.get(upstream.as_str()) {
                                carrier.carry(key, &msg, session, *patience);
                            }
                            msg["id"] = crate::mcp::relay::wrap(&upstream, &msg["id"]);
                        }
                        crate::mcp::relay::task_ids_out(&upstream, &mut msg, false);
                        vec![msg]
                    }
                    Some((upstream, Upstreamed::Message(Err(e)))) => {
                        tracing::debug!(%upstream, error = %e, "an upstream's stream to a client broke");
                        continue;
                    }
                    None => {
                        upstreams_open = false;
                        continue;
                    }
                },
                changed = changes.changed(), if routes_change => {
                    if changed.is_err() {
                        routes_change = false; // fixed routes: nothing will change
                        continue;
                    }
                    let Some(now) = self.routes.load().server(&server.name) else {
                        events.out.end().await?;
                        return Ok(Served::Ok); // the server is gone from this data plane
                    };
                    let notes = list_changes(&lists, &now.lists, [true; 3]);
                    lists = now.lists;
                    notes
                }
                changed = waiting.changed() => {
                    if changed.is_err() {
                        continue;
                    }
                    carrier
                        .take_waiting(&keys)
                        .into_iter()
                        .map(|(upstream, mut msg)| {
                            msg["id"] = crate::mcp::relay::wrap(&upstream, &msg["id"]);
                            crate::mcp::relay::task_ids_out(&upstream, &mut msg, false);
                            msg
                        })
                        .collect()
                }
                () = events.out.closed() => return Ok(Served::Ok), // the client left
                _ = keepalive.tick() => {
                    if events.out.keepalive().await.is_err() {
                        return Ok(Served::Ok); // the client left
                    }
                    continue;
                }
            };
            for msg in messages {
                if !matches!(events.send(&msg.to_string(), false).await, Ok(true)) {
                    return Ok(Served::Ok); // the client left
                }
            }
        }
    }
}

/// What a client's GET stream reads from one upstream session's stream.
pub(super) enum Upstreamed {
    Message(std::result::Result<Value, String>),
    /// The stream is over (it is tried again while the client listens).
    Ended,
}

/// One upstream's stream for a client's GET stream, tagged with the upstream's name.
type Tagged = std::pin::Pin<Box<dyn futures::Stream<Item = (String, Upstreamed)> + Send>>;

/// The outcome of opening an upstream's stream for a client's GET stream.
enum Listened {
    Streaming(Tagged),
    /// The upstream offers none.
    None,
    /// Not now (a call holds it, or it failed): try again.
    Retry(String),
}

impl Forwarder {
    /// Opens the GET stream of `client`'s session with `name`, noting that this data plane
    /// holds it (see `questions`) for as long as the stream lives.
    async fn open_listen(
        &self,
        name: &str,
        spec: &Arc<UpstreamEntry>,
        headers: &ClientHeaders,
        server: &ServerView,
        client: &crate::session::Session,
    ) -> Listened {
        let call = CallOptions {
            headers: client_headers(headers, server, spec),
            ..CallOptions::default()
        };
        match self.upstreams.listen(name, spec, client, &call).await {
            Ok(Some(stream)) => {
                let holding = super::questions::own_session_id(name, spec, client)
                    .map(|id| self.listening.hold(name, &id));
                let tag = name.to_string();
                let ended = tag.clone();
                let tagged = stream
                    .map(move |m| {
                        let _held = &holding; // released with the stream
                        (tag.clone(), Upstreamed::Message(m))
                    })
                    .chain(futures::stream::once(
                        async move { (ended, Upstreamed::Ended) },
                    ));
                Listened::Streaming(Box::pin(tagged))
            }
            Ok(None) => Listened::None,
            Err(e) => Listened::Retry(e.to_string()),
        }
    }
}

/// The kinds of listing a server has, in the order of `ServerView::lists`.
pub(super) const LIST_KINDS: [&str; 3] = ["tools", "prompts", "resources"];

/// The gateway's `notifications/*/list_changed` for the listings (of the kinds `wanted`)
/// whose fingerprints differ between `before` and `now`.
pub(super) fn list_changes(before: &[u64; 3], now: &[u64; 3], wanted: [bool; 3]) -> Vec<Value> {
    LIST_KINDS
        .iter()
        .enumerate()
        .filter(|(i, _)| wanted[*i] && before[*i] != now[*i])
        .map(|(_, kind)| json!({"jsonrpc": "2.0", "method": format!("notifications/{kind}/list_changed")}))
        .collect()
}
