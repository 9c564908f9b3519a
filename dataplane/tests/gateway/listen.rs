//! A session's own stream (GET): what the client's upstream session sends outside any call
//! reaches the client there, with nothing of another session's.

use crate::harness::{federated, in_session, initialize, post, InProcessGateway, WAIT};
use crate::upstream::RustUpstream;
use futures::StreamExt;
use serde_json::{json, Value};
use std::time::Duration;

/// Reads a session's GET stream into a channel, message by message.
async fn open_stream(url: &str, session: &str) -> tokio::sync::mpsc::Receiver<Value> {
    let mut req = reqwest::Client::new()
        .get(url)
        .header("accept", "text/event-stream");
    for (k, v) in in_session(session) {
        req = req.header(k, v);
    }
    let resp = tokio::time::timeout(WAIT, req.send())
        .await
        .expect("the stream opens in time")
        .expect("GET");
    assert_eq!(resp.status().as_u16(), 200);
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        let mut events = Box::pin(switchboard_upstream::json_events(resp.bytes_stream()));
        while let Some(Ok(event)) = events.next().await {
            if let Ok(msg) = serde_json::from_str::<Value>(&event.data) {
                if tx.send(msg).await.is_err() {
                    return;
                }
            }
        }
    });
    rx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_upstream_session_says_on_its_own_reaches_that_clients_stream_only() {
    let upstream = RustUpstream::start().await;
    let gateway = InProcessGateway::start(&federated(&upstream.url)).await;
    let url = gateway.url("demo");
    let (mine, other) = (initialize(&url).await, initialize(&url).await);
    let mut stream = open_stream(&url, &mine).await;
    let mut others = open_stream(&url, &other).await;

    // The upstream logs after answering, on the session's own stream. The gateway opens the
    // upstream's stream when the client opens its own; until that is done a message has
    // nowhere to go, so ask again (a bounded number of times) until one arrives.
    let mut heard = None;
    for attempt in 0..20 {
        let text = format!("hello-{attempt}");
        let called = post(
            &url,
            &in_session(&mine),
            &json!({"jsonrpc": "2.0", "id": attempt, "method": "tools/call", "params": {
                "name": "rs_announce", "arguments": {"text": text}}}),
        )
        .await;
        assert_eq!(called.last()["result"]["content"][0]["text"], "announcing");
        if let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(500), stream.recv()).await
        {
            heard = Some(msg);
            break;
        }
    }
    let heard = heard.expect("a message on the session's stream");
    assert_eq!(heard["method"], "notifications/message", "{heard}");
    assert!(
        heard["params"]["data"]
            .as_str()
            .unwrap_or_default()
            .starts_with("hello-"),
        "{heard}"
    );
    // The other session's stream heard none of it.
    while let Ok(msg) = others.try_recv() {
        assert_ne!(msg["method"], "notifications/message", "{msg}");
    }
}
