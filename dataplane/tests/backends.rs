//! The data plane's caller registry (`backends`) against real MCP servers: MCP over
//! streamable HTTP answers as it arrives (progress events first, in order, then the
//! response), MCP over HTTP+SSE answers whole, and kinds this data plane cannot call are
//! named instead of tried.

use futures::StreamExt;
use serde_json::{json, Value};
use std::time::Duration;
use switchboard_config::kinds::upstream::{
    GrpcUpstream, McpTransport, McpUpstream, StdioUpstream, UpstreamKind, UpstreamSpec,
};
use switchboard_dataplane::backends::{caller_for, NoCaller};
use switchboard_dataplane::routes::UpstreamEntry;
use switchboard_dataplane::upstreams::UpstreamPool;
use switchboard_testkit::ServerEverything;
use switchboard_upstream::backend::{Answer, CallOptions};

const T: Duration = Duration::from_secs(20);

fn mcp(url: String, transport: McpTransport) -> UpstreamEntry {
    UpstreamEntry::plain(UpstreamSpec {
        mcp: Some(McpUpstream {
            url,
            transport,
            protocol_version: None,
        }),
        ..UpstreamSpec::default()
    })
}

/// Every message of an answer, in the order it came (the response last).
async fn messages(answer: Answer) -> (Vec<Value>, &'static str) {
    match answer {
        Answer::Ready(msg) => (vec![msg], "ready"),
        Answer::Body(body) => (vec![body.await.expect("a JSON body")], "body"),
        Answer::Events(mut events) => {
            let mut all = Vec::new();
            while let Some(event) = tokio::time::timeout(T, events.next())
                .await
                .expect("events")
            {
                let event = event.expect("an event");
                if let Ok(msg) = serde_json::from_str::<Value>(&event.data) {
                    all.push(msg);
                }
            }
            (all, "events")
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamable_mcp_answers_progress_first_then_the_response() {
    let server = ServerEverything::start().await.expect("server-everything");
    let spec = mcp(server.url(), McpTransport::StreamableHttp);
    let pool = UpstreamPool::default();
    let caller = caller_for(&pool, "everything", &spec, None).expect("MCP is called");
    let request = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": "trigger-long-running-operation",
        "arguments": {"duration": 0.3, "steps": 3},
        "_meta": {"progressToken": "p1"}}});
    let answer = caller
        .call(&request, &CallOptions::default())
        .await
        .expect("answered");
    let (all, how) = messages(answer).await;
    assert_eq!(
        how, "events",
        "a tool that reports progress streams: {all:?}"
    );
    let progress: Vec<i64> = all
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .map(|m| m["params"]["progress"].as_i64().unwrap_or(-1))
        .collect();
    assert_eq!(progress, vec![1, 2, 3], "{all:?}");
    let last = all.last().expect("a response");
    assert_eq!(last["id"], 7, "the response comes last: {all:?}");
    assert!(last["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .contains("Steps: 3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_sse_mcp_answers_whole() {
    let server = ServerEverything::start_sse()
        .await
        .expect("server-everything (sse)");
    let spec = mcp(server.sse_url(), McpTransport::Sse);
    let pool = UpstreamPool::default();
    let caller = caller_for(&pool, "legacy", &spec, None).expect("legacy MCP is called");
    let request = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"message": "old transport"}}});
    let answer = caller
        .call(&request, &CallOptions::default())
        .await
        .expect("answered");
    let (all, how) = messages(answer).await;
    assert_eq!(how, "ready");
    assert_eq!(all[0]["id"], 3);
    assert!(all[0].to_string().contains("old transport"), "{all:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_mcp_upstream_is_an_error_before_any_answer() {
    let port = switchboard_testkit::free_port();
    let spec = mcp(
        format!("http://127.0.0.1:{port}/mcp"),
        McpTransport::StreamableHttp,
    );
    let pool = UpstreamPool::default();
    let caller = caller_for(&pool, "gone", &spec, None).expect("MCP is called");
    let request = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    let err = match caller.call(&request, &CallOptions::default()).await {
        Ok(_) => panic!("nothing listens on port {port}"),
        Err(e) => e,
    };
    assert!(
        matches!(
            err,
            switchboard_upstream::UpstreamError::Unreachable { connect: true, .. }
        ),
        "{err}"
    );
}

#[test]
fn kinds_this_data_plane_cannot_call_are_named() {
    let pool = UpstreamPool::default();
    let grpc = UpstreamEntry::plain(UpstreamSpec {
        grpc: Some(GrpcUpstream {
            address: "http://127.0.0.1:1".into(),
            services: vec![],
        }),
        ..UpstreamSpec::default()
    });
    assert_eq!(
        caller_for(&pool, "svc", &grpc, None).err(),
        Some(NoCaller {
            kind: Some(UpstreamKind::Grpc)
        })
    );
    // A stdio upstream this data plane does not run has no local endpoint (no `mcp`).
    let stdio = UpstreamEntry::plain(UpstreamSpec {
        stdio: Some(
            serde_json::from_value::<StdioUpstream>(json!({"command": "true"})).expect("stdio"),
        ),
        ..UpstreamSpec::default()
    });
    let refused = caller_for(&pool, "child", &stdio, None).err();
    assert_eq!(
        refused,
        Some(NoCaller {
            kind: Some(UpstreamKind::Stdio)
        })
    );
    assert_eq!(
        refused.map(|e| e.to_string()).unwrap_or_default(),
        "a stdio upstream this data plane does not run"
    );
}
