//! Pass-through: a virtual server that proxies one upstream as it is (pingora's proxy
//! phases): the upstream's own session, names and streamed answers.

use crate::harness::{in_session, initialize, post, InProcessGateway};
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
    // The upstream's own session id, not one the gateway sealed.
    let session = initialize(&url).await;
    assert!(!session.starts_with("sb"), "{session}");
    let headers = in_session(&session);
    let listed = post(
        &url,
        &headers,
        &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    )
    .await;
    assert_eq!(
        listed.tool_names(),
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
