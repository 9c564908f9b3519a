//! A2A agents as MCP tools, with an agent built on the official `a2a-sdk` (PyPI) server
//! framework: its card's skills listed as tools, plain calls (`SendMessage`), streamed calls
//! relayed as progress (`SendStreamingMessage`), a long task followed to its end, data
//! parts as structured content and a failed task as a tool error. Clients: the official
//! PyPI `mcp` SDK, and a raw JSON-RPC client for calls without a progress token.

use crate::common::*;
use serde_json::{json, Value};
use switchboard_testkit::McpHttpClient;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_a2a_sdk_agents_skills_are_tools_that_answer_stream_and_fail_cleanly() {
    let (_agent, base) = peer("a2a_agent.py", &["1.0"]).await;
    let (_cp, admin, _data) = control_plane(None).await;
    let (_dp, url, _state) = data_plane(admin.trim_start_matches("http://")).await;
    let upstream = format!(
        "apiVersion: switchboard.dev/v1\nkind: Upstream\nmetadata:\n  name: warehouse\nspec:\n  a2a:\n    url: {base}\n---\n"
    );
    apply(
        &admin,
        &format!("{upstream}{}", server(&[("warehouse", "wh_")])),
    );
    wait_for_tools(&url, WAIT, "the agent's skills", |t| t.len() == 5).await;
    let status = upstream_status(&admin, "warehouse");
    assert_eq!(status["protocolVersion"], json!("a2a 1.0"), "{status}");
    assert_eq!(status["state"], json!("healthy"), "{status}");

    // The SDK client passes a progress token: calls stream, relayed as progress.
    let got = python_peer(
        "py_tool_calls.py",
        &[
            &url,
            &json!([
                ["wh_echo", {"message": "hello agent"}],
                ["wh_countdown", {"message": "go"}],
                ["wh_slow", {"message": "take your time"}],
                ["wh_inventory", {"message": "pen paper ink"}],
                ["wh_fail", {"message": "open up"}],
                ["wh_echo", {}],
            ])
            .to_string(),
        ],
    )
    .await;
    let tools = &got["tools"];
    assert!(
        tools["wh_countdown"]["description"]
            .as_str()
            .is_some_and(|d| d.starts_with("Countdown: Streams 3, 2, 1")),
        "{tools}"
    );
    assert_eq!(
        tools["wh_echo"]["inputSchema"]["required"],
        json!(["message"])
    );
    let calls = got["calls"].as_array().expect("calls");
    assert_eq!(calls[0]["text"], json!(["hello agent"]), "{}", calls[0]);
    assert_eq!(
        calls[0]["progress"],
        json!(["running echo", "hello agent"]),
        "{}",
        calls[0]
    );
    // Each artifact chunk arrived as it was made; the result joins them.
    assert_eq!(
        calls[1]["progress"],
        json!(["running countdown", "3", "2", "1"]),
        "{}",
        calls[1]
    );
    assert_eq!(calls[1]["text"], json!(["3", "2", "1"]), "{}", calls[1]);
    // A long task: its status updates as progress, until it is done.
    let steps = calls[2]["progress"].as_array().map_or(0, Vec::len);
    assert!(steps >= 5, "{}", calls[2]);
    assert_eq!(calls[2]["text"], json!(["slow done"]), "{}", calls[2]);
    assert_eq!(
        calls[3]["structured"],
        json!({"items": 3.0}),
        "{}",
        calls[3]
    );
    assert_eq!(calls[4]["isError"], json!(true), "{}", calls[4]);
    assert_eq!(
        calls[4]["text"][0],
        json!("the agent's task ended failed: the warehouse is closed"),
        "{}",
        calls[4]
    );
    assert_eq!(calls[5]["error"]["code"], json!(-32602), "{}", calls[5]);

    // Without a progress token the call is one SendMessage; the long task is waited for.
    let mut client = McpHttpClient::new(url.clone());
    client.initialize().await.expect("initialize");
    let slow: Value = client
        .request(
            "tools/call",
            json!({"name": "wh_slow", "arguments": {"message": "no hurry"}}),
        )
        .await
        .expect("slow answers");
    assert_eq!(slow["content"][0]["text"], json!("slow done"), "{slow}");
    let data: Value = client
        .request(
            "tools/call",
            json!({"name": "wh_inventory", "arguments": {"message": "a b", "data": {"shelf": 4}}}),
        )
        .await
        .expect("inventory answers");
    assert_eq!(data["structuredContent"], json!({"items": 2.0}), "{data}");
}
