//! The harness works with the real components: etcd, server-everything, mcp-server-time.

use serde_json::json;
use switchboard_testkit::{Etcd, ServerEverything, StdioMcpPeer};

/// The tool names of a `tools/list` result.
fn tool_names(result: &serde_json::Value) -> Vec<&str> {
    result["tools"]
        .as_array()
        .expect("tools array")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_starts_stores_and_survives_restart() {
    let mut etcd = Etcd::start().await.expect("etcd");
    let mut client = etcd_client::Client::connect([etcd.endpoint()], None)
        .await
        .expect("connect");
    client.put("smoke", "value", None).await.expect("put");
    drop(client);
    etcd.restart().await.expect("restart");
    let mut client = etcd_client::Client::connect([etcd.endpoint()], None)
        .await
        .expect("reconnect");
    let got = client.get("smoke", None).await.expect("get");
    assert_eq!(got.kvs()[0].value(), b"value");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_everything_lists_and_calls_echo() {
    let server = ServerEverything::start().await.expect("server-everything");
    let mut client = switchboard_testkit::McpHttpClient::new(server.url());
    let init = client.initialize().await.expect("initialize");
    assert!(init["serverInfo"]["name"].is_string(), "{init}");
    let tools = client
        .request("tools/list", json!({}))
        .await
        .expect("tools/list");
    let names = tool_names(&tools);
    assert!(names.contains(&"echo"), "{names:?}");
    let echoed = client
        .request(
            "tools/call",
            json!({"name": "echo", "arguments": {"message": "hi"}}),
        )
        .await
        .expect("echo");
    assert!(echoed.to_string().contains("hi"), "{echoed}");
}

#[test]
fn mcp_server_time_answers_over_stdio() {
    let mut peer = StdioMcpPeer::mcp_server_time().expect("mcp-server-time");
    peer.initialize().expect("initialize");
    let tools = peer.request("tools/list", json!({})).expect("tools/list");
    let names = tool_names(&tools);
    assert!(names.contains(&"get_current_time"), "{names:?}");
    let now = peer
        .request(
            "tools/call",
            json!({"name": "get_current_time", "arguments": {"timezone": "UTC"}}),
        )
        .expect("get_current_time");
    assert!(now.to_string().contains("UTC"), "{now}");
}
