//! The upstream client against the real npm server-everything, and MCP discovery through
//! the backend trait: nothing to check before the first listing, a listing with the whole
//! catalog, a live check, word of changes offered, and all failing cleanly once the server
//! is gone.

use futures::StreamExt;
use serde_json::json;
use std::time::Duration;
use switchboard_config::kinds::upstream::{McpTransport, McpUpstream, UpstreamSpec};
use switchboard_testkit::ServerEverything;
use switchboard_upstream::backend::{discovery_for, Checked, Discovery, McpDiscovery};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_discovery_lists_checks_follows_changes_and_notices_the_end() {
    let mut server = ServerEverything::start().await.expect("server-everything");
    let http = McpHttp::new(Duration::from_secs(2));
    let mut d = McpDiscovery::new(http, spec(server.url()), Credentials::default(), T);
    assert_eq!(d.check(T).await.expect("nothing to check"), Checked::Relist);
    assert!(
        d.changes().is_none(),
        "no connection yet: nothing to follow"
    );

    let listing = d.list().await.expect("listing");
    assert!(listing.catalog.tool_names().any(|t| t == "echo"));
    assert!(!listing.catalog.prompts.is_empty());
    assert!(!listing.protocol_version.is_empty());
    assert_eq!(
        listing.catalog.protocol_version, listing.protocol_version,
        "the catalog records the version too"
    );
    assert_eq!(d.check(T).await.expect("alive"), Checked::Alive);

    // server-everything announces listChanged: its session's stream is followed, and only
    // one stream is handed out while it is.
    let first = d
        .changes()
        .expect("server-everything announces list changes");
    assert!(
        d.changes().is_none(),
        "the stream handed out is still followed"
    );
    // A new session (after a failure, or an upstream that forgot the old one) is followed
    // by a new stream.
    d.reset();
    d.list().await.expect("listed in a new session");
    let mut changes = d.changes().expect("a stream for the new session");
    drop(first);
    server.process().kill();
    let ended = tokio::time::timeout(T, changes.next())
        .await
        .expect("the stream ends once the server is gone");
    assert!(matches!(ended, Some(Err(_)) | None), "{ended:?}");
    drop(changes);
    let err = d.check(T).await.expect_err("the server is gone");
    assert!(
        matches!(err, UpstreamError::Unreachable { .. }),
        "a clean error: {err}"
    );
    d.reset();
    assert_eq!(d.check(T).await.expect("reset"), Checked::Relist);
    assert!(d.list().await.is_err());
}

#[test]
fn only_kinds_the_control_plane_lists_get_a_discovery() {
    let http = McpHttp::new(Duration::from_secs(1));
    let mcp = UpstreamSpec {
        mcp: Some(spec("http://127.0.0.1:1/mcp".into())),
        ..UpstreamSpec::default()
    };
    assert!(discovery_for(&mcp, Credentials::default(), &http, T).is_some());
    // Stdio upstreams are listed by the data planes that run them.
    let stdio: UpstreamSpec =
        serde_json::from_value(serde_json::json!({"stdio": {"command": "true"}})).expect("spec");
    assert!(discovery_for(&stdio, Credentials::default(), &http, T).is_none());
}
