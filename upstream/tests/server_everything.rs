//! The upstream client against the real npm server-everything.

use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;
use switchboard_config::kinds::upstream::{McpTransport, McpUpstream};
use switchboard_testkit::ServerEverything;
use switchboard_upstream::{McpHttp, UpstreamError};

const T: Duration = Duration::from_secs(15);

fn spec(url: String) -> McpUpstream {
    McpUpstream {
        url,
        transport: McpTransport::StreamableHttp,
        protocol_version: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovers_the_whole_catalog_and_calls_a_tool() {
    let server = ServerEverything::start().await.expect("server-everything");
    let mcp = McpHttp::new(Duration::from_secs(2));
    let catalog = mcp
        .discover(&spec(server.url()), &BTreeMap::new(), T)
        .await
        .expect("discover");
    let tools: Vec<&str> = catalog.tool_names().collect();
    assert!(tools.contains(&"echo"), "{tools:?}");
    assert!(!catalog.prompts.is_empty());
    assert!(!catalog.resources.is_empty());
    assert!(!catalog.resource_templates.is_empty());
    assert!(!catalog.protocol_version.is_empty());

    let session = mcp
        .initialize(&spec(server.url()), &BTreeMap::new(), T)
        .await
        .expect("initialize");
    let echoed = mcp
        .request(
            &session,
            "tools/call",
            json!({"name": "echo", "arguments": {"message": "hi"}}),
            T,
        )
        .await
        .expect("echo");
    assert!(echoed.to_string().contains("hi"), "{echoed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_upstream_is_a_clean_error() {
    let port = switchboard_testkit::free_port();
    let mcp = McpHttp::new(Duration::from_millis(500));
    let err = mcp
        .discover(
            &spec(format!("http://127.0.0.1:{port}/mcp")),
            &BTreeMap::new(),
            T,
        )
        .await
        .expect_err("nothing listens there");
    assert!(matches!(err, UpstreamError::Unreachable { .. }), "{err}");
}
