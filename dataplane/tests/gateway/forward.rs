//! Forwarding calls: federated names, streamed progress relayed in order with the client's
//! own id and token, the stateless era's answers, and an upstream that went away.

use crate::harness::{federated, in_session, initialize, post, stateless, InProcessGateway};
use crate::upstream::RustUpstream;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_call_streams_progress_in_order_under_the_clients_id() {
    let upstream = RustUpstream::start().await;
    let gateway = InProcessGateway::start(&federated(&upstream.url)).await;
    let url = gateway.url("demo");
    let session = initialize(&url).await;

    let listed = post(
        &url,
        &in_session(&session),
        &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
    )
    .await;
    assert_eq!(
        listed.tool_names(),
        ["rs_echo", "rs_progress", "rs_ask", "rs_announce"]
    );

    let called = post(
        &url,
        &in_session(&session),
        &json!({"jsonrpc": "2.0", "id": "client-7", "method": "tools/call", "params": {
            "name": "rs_progress", "arguments": {}, "_meta": {"progressToken": "mine"}}}),
    )
    .await;
    assert_eq!(called.status, 200);
    assert!(called
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/event-stream")));
    let progress: Vec<(Value, Option<f64>)> = called
        .messages
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .map(|m| {
            (
                m["params"]["progressToken"].clone(),
                m["params"]["progress"].as_f64(),
            )
        })
        .collect();
    assert_eq!(
        progress,
        [1.0, 2.0, 3.0].map(|n| (json!("mine"), Some(n))),
        "{:?}",
        called.messages
    );
    let answer = called.last();
    assert_eq!(
        answer["id"], "client-7",
        "the response comes last, with the client's id"
    );
    assert_eq!(answer["result"]["content"][0]["text"], "three steps done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateless_call_gets_the_eras_answer() {
    let upstream = RustUpstream::start().await;
    let gateway = InProcessGateway::start(&federated(&upstream.url)).await;
    let (meta, headers) = stateless("tools/call", "rs_echo", json!({}));
    let called = post(
        &gateway.url("demo"),
        &headers,
        &json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
            "name": "rs_echo", "arguments": {"text": "plain"}, "_meta": meta}}),
    )
    .await;
    assert_eq!(called.status, 200, "{:?}", called.messages);
    let answer = called.last();
    assert_eq!(answer["id"], 3);
    assert_eq!(answer["result"]["content"][0]["text"], "plain");
    assert_eq!(answer["result"]["resultType"], "complete");

    // A tool the upstream does not have is the upstream's own error (naming the tool as the
    // upstream knows it), passed on with the status the era gives its code.
    let (meta, headers) = stateless("tools/call", "rs_missing", json!({}));
    let missing = post(
        &gateway.url("demo"),
        &headers,
        &json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {
            "name": "rs_missing", "arguments": {}, "_meta": meta}}),
    )
    .await;
    assert_eq!(missing.status, 400, "{:?}", missing.messages);
    assert_eq!(missing.last()["id"], 4);
    assert_eq!(missing.last()["error"]["code"], -32602);
    assert_eq!(
        missing.last()["error"]["message"],
        "no tool named missing",
        "the upstream's words, unchanged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_to_an_upstream_that_went_away_is_a_clean_error_naming_it() {
    let upstream = RustUpstream::start().await;
    let gateway = InProcessGateway::start(&federated(&upstream.url)).await;
    let url = gateway.url("demo");
    let session = initialize(&url).await;
    upstream.stop().await;
    let called = post(
        &url,
        &in_session(&session),
        &json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {
            "name": "rs_echo", "arguments": {"text": "anyone?"}}}),
    )
    .await;
    assert_eq!(
        called.status, 200,
        "a session-era failure keeps the session going"
    );
    let error = &called.last()["error"];
    assert_eq!(called.last()["id"], 5);
    assert_eq!(error["code"], -32603);
    assert_eq!(error["data"]["upstream"], "rust");
    assert!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("upstream `rust` failed"),
        "{error}"
    );
}
