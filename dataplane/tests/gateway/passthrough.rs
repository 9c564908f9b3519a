//! Pass-through: a virtual server that proxies one upstream as it is (pingora's proxy
//! phases): the upstream's own session, names and streamed answers.

use crate::harness::{post, InProcessGateway};
use crate::upstream::RustUpstream;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_through_server_is_the_upstream_as_it_is() {
    let upstream = RustUpstream::start().await;
    let yaml = format!(
        "apiVersion: switchboard.dev/v1\nkind: Upstream\nmetadata:\n  name: rust\nspec:\n  mcp:\n    url: {}\n---\napiVersion: switchboard.dev/v1\nkind: VirtualServer\nmetadata:\n  name: raw\nspec:\n  passthrough: rust\n",
        upstream.url
    );
    let gateway = InProcessGateway::start(&yaml).await;
    let url = gateway.url("raw");
    let opened = post(
        &url,
        &[],
        &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "raw-client", "version": "1"}}}),
    )
    .await;
    assert_eq!(opened.status, 200, "{:?}", opened.messages);
    let session = opened
        .header("mcp-session-id")
        .expect("the upstream's session id")
        .to_string();
    assert!(
        !session.starts_with("sb"),
        "the upstream's own session id, not one the gateway sealed: {session}"
    );
    let headers = vec![
        ("mcp-session-id".to_string(), session.clone()),
        ("mcp-protocol-version".to_string(), "2025-11-25".to_string()),
    ];
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert_eq!(post(&url, &headers, &initialized).await.status, 202);
    let listed = post(
        &url,
        &headers,
        &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    )
    .await;
    let names: Vec<&str> = listed.last()["result"]["tools"]
        .as_array()
        .map(|t| t.iter().filter_map(|t| t["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        names,
        ["echo", "progress", "ask", "announce"],
        "no prefixes"
    );
    let called = post(
        &url,
        &headers,
        &json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
            "name": "progress", "arguments": {}, "_meta": {"progressToken": 9}}}),
    )
    .await;
    let steps: Vec<Option<f64>> = called
        .messages
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .map(|m| m["params"]["progress"].as_f64())
        .collect();
    assert_eq!(
        steps,
        [Some(1.0), Some(2.0), Some(3.0)],
        "{:?}",
        called.messages
    );
    assert_eq!(called.last()["id"], 3);
}
