//! The upstream client against the real npm server-everything.

use serde_json::json;
use std::time::Duration;
use switchboard_config::kinds::upstream::{McpTransport, McpUpstream};
use switchboard_testkit::ServerEverything;
use switchboard_upstream::{Credentials, McpHttp, UpstreamError};

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
        .discover(&spec(server.url()), &Credentials::default(), T)
        .await
        .expect("discover");
    let tools: Vec<&str> = catalog.tool_names().collect();
    assert!(tools.contains(&"echo"), "{tools:?}");
    assert!(!catalog.prompts.is_empty());
    assert!(!catalog.resources.is_empty());
    assert!(!catalog.resource_templates.is_empty());
    assert!(!catalog.protocol_version.is_empty());

    let session = mcp
        .initialize(&spec(server.url()), &Credentials::default(), T)
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
            &Credentials::default(),
            T,
        )
        .await
        .expect_err("nothing listens there");
    assert!(matches!(err, UpstreamError::Unreachable { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_legacy_sse_transport_lists_and_calls_and_notices_a_dead_stream() {
    let mut server = ServerEverything::start_sse()
        .await
        .expect("server-everything (sse)");
    let mcp = McpHttp::new(Duration::from_secs(2));
    let legacy = McpUpstream {
        url: server.sse_url(),
        transport: McpTransport::Sse,
        protocol_version: None,
    };
    let conn = mcp
        .open(&legacy, &Credentials::default(), T)
        .await
        .expect("open over SSE");
    let catalog = mcp.catalog(&conn, T).await.expect("catalog");
    assert!(catalog.tool_names().any(|t| t == "echo"));
    assert!(!catalog.prompts.is_empty());
    let echoed = mcp
        .request_on(
            &conn,
            "tools/call",
            json!({"name": "echo", "arguments": {"message": "legacy"}}),
            T,
        )
        .await
        .expect("echo over SSE");
    assert!(echoed.to_string().contains("legacy"), "{echoed}");
    // The server goes away: requests fail at once instead of waiting for the timeout.
    server.process().kill();
    let started = std::time::Instant::now();
    let err = mcp
        .request_on(&conn, "ping", json!({}), T)
        .await
        .expect_err("dead server");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(
            err,
            UpstreamError::SessionExpired { .. } | UpstreamError::Unreachable { .. }
        ),
        "{err}"
    );
}
