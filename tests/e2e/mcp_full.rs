//! The rest of MCP through the gateway (issue 8): requests upstreams send their clients
//! (sampling, elicitation, roots; during a call or on the session's GET stream) reach the
//! right client, and its answers go back to the right upstream session, with real peers
//! (server-everything and the TypeScript SDK).

use serde_json::Value;

use crate::common::*;

/// The TypeScript SDK client that answers sampling and roots requests with `tag` in them,
/// over streamable HTTP.
async fn ts_sampling_client(url: &str, prefix: &str, tag: &str) -> Value {
    ts_sampling_client_via(url, prefix, tag, None).await
}

/// The same client over WebSocket (`mode` "ws") or `switchboard connect` (`mode` BIN).
async fn ts_sampling_client_via(url: &str, prefix: &str, tag: &str, mode: Option<&str>) -> Value {
    let mut args = vec![url, prefix, tag];
    args.extend(mode);
    // The SDK's WebSocket transport needs the global WebSocket of Node 22.
    node_peer("ts_sampling_client.mjs", &args, mode == Some("ws")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_elicitation_and_roots_requests_reach_their_own_client_and_come_back() {
    // Discovery offers the client capabilities, so the tools server-everything registers
    // only for clients with sampling and roots are listed.
    let stack = everything_stack("ev_", "ev_trigger-sampling-request").await;
    let url = stack.url.clone();
    wait_for_tools(&url, WAIT, "sampling and roots tools", |t| {
        t.iter().any(|n| n == "ev_trigger-sampling-request")
            && t.iter().any(|n| n == "ev_get-roots-list")
    })
    .await;

    // Two clients at once: each gets only its own requests, and each result carries only
    // its own answers.
    let (alpha, beta) = tokio::join!(
        ts_sampling_client(&url, "ev_", "alpha"),
        ts_sampling_client(&url, "ev_", "beta")
    );
    for (seen, me, other) in [(&alpha, "alpha", "beta"), (&beta, "beta", "alpha")] {
        assert_own_answers(seen, me, other);
        assert_tool_calls(seen);
        assert!(
            seen["sampling"]
                .as_str()
                .unwrap_or("")
                .contains(&format!("model-{me}")),
            "{seen}"
        );
        assert!(seen["sampling_requests"].as_u64() >= Some(1), "{seen}");
        let elicitation = seen["elicitation"].as_str().unwrap_or_default();
        assert!(elicitation.contains("declined"), "{me}: {seen}");
        assert_eq!(seen["elicitation_requests"], 1, "{seen}");
    }
}

/// Status of an initialize POST with these headers.
async fn initialize_status(url: &str, headers: &[(&str, &str)]) -> u16 {
    initialize_with(url, headers).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_origins_and_rebound_hosts_are_refused_on_loopback() {
    let (_cp, admin, _data) = control_plane(None).await;
    let (_dp, url, _state) = data_plane(admin.trim_start_matches("http://")).await;
    apply(
        &admin,
        "apiVersion: switchboard.dev/v1\nkind: Resource\nmetadata:\n  name: note\nspec:\n  uri: docs://note\n  text: hi\n---\napiVersion: switchboard.dev/v1\nkind: VirtualServer\nmetadata:\n  name: demo\nspec:\n  resources: [note]\n",
    );
    let deadline = std::time::Instant::now() + WAIT;
    while initialize_status(&url, &[]).await != 200 {
        assert!(std::time::Instant::now() < deadline, "demo never served");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        initialize_status(&url, &[("origin", "http://localhost:3000")]).await,
        200
    );
    assert_eq!(
        initialize_status(&url, &[("origin", "https://evil.example")]).await,
        403
    );
    // A page on a domain that resolves to 127.0.0.1 sends its own Host.
    assert_eq!(
        initialize_status(&url, &[("host", "evil.example")]).await,
        403
    );
}

/// The Python SDK client's tool-call run (`py_stdio_client.py ARGS`).
async fn py_tool_calls(args: &[&str]) -> Value {
    python_peer("py_stdio_client.py", args).await
}

/// Tools listed, echo answered, three progress notifications, and a clean unknown-tool error.
fn assert_tool_calls(seen: &Value) {
    assert!(
        seen["tools"]
            .as_array()
            .is_some_and(|t| t.iter().any(|n| n == "ev_echo")),
        "{seen}"
    );
    assert!(
        seen["echo"]
            .as_str()
            .unwrap_or("")
            .contains("over a client"),
        "{seen}"
    );
    assert_eq!(seen["progress"].as_array().map(Vec::len), Some(3), "{seen}");
    assert!(
        seen["unknown_tool"]
            .as_str()
            .unwrap_or("")
            .contains("no-such-tool"),
        "{seen}"
    );
}

/// Asserts what a sampling client saw carries only its own answers.
fn assert_own_answers(seen: &Value, me: &str, other: &str) {
    let sampling = seen["sampling"].as_str().unwrap_or_default();
    assert!(
        sampling.contains(&format!("sampled by {me}: "))
            && sampling.contains(&format!("question from {me}")),
        "{me}: {seen}"
    );
    assert!(
        !sampling.contains(other),
        "{me} got {other}'s sampling: {seen}"
    );
    let roots = seen["roots"].as_str().unwrap_or_default();
    assert!(roots.contains(&format!("root-{me}")), "{me}: {seen}");
    assert!(!roots.contains(other), "{me} got {other}'s roots: {seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_clients_reach_the_gateway_through_switchboard_connect() {
    let stack = everything_stack("ev_", "ev_trigger-sampling-request").await;
    let url = stack.url.clone();

    // The Python SDK's stdio client: tools, a call, progress, and a clean error.
    let seen = py_tool_calls(&["ev_", BIN, "connect", &url]).await;
    assert_tool_calls(&seen);

    // The TypeScript SDK's stdio client answers the upstream's sampling, roots and
    // elicitation requests through `connect`.
    let seen = ts_sampling_client_via(&url, "ev_", "gamma", Some(BIN)).await;
    assert_own_answers(&seen, "gamma", "alpha");
    assert_tool_calls(&seen);
    assert!(
        seen["elicitation"]
            .as_str()
            .unwrap_or("")
            .contains("declined"),
        "{seen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_with_a_stream_hear_when_the_tool_list_changes() {
    let (_grow, base) = peer("growing_server.py", &[]).await;
    let stack = gateway_stack("grow", &format!("{base}/mcp"), "grow_", "grow_add_tool").await;
    let url = stack.url.clone();
    let mut client = switchboard_testkit::McpHttpClient::new(url.clone());
    let init = client.initialize().await.expect("initialize");
    assert_eq!(init["capabilities"]["tools"]["listChanged"], true, "{init}");
    let stream = reqwest::Client::new()
        .get(&url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", client.session_id().unwrap_or_default())
        .send()
        .await
        .expect("GET stream");
    assert_eq!(stream.status().as_u16(), 200);
    let mut body = stream.bytes_stream();

    client
        .request(
            "tools/call",
            serde_json::json!({"name": "grow_add_tool", "arguments": {"name": "later"}}),
        )
        .await
        .expect("add_tool");
    // The upstream tells discovery, discovery updates the catalog, the new snapshot changes
    // the listing, and the session's stream says so.
    let seen = read_until(
        &mut body,
        "notifications/tools/list_changed",
        std::time::Duration::from_secs(10),
    )
    .await;
    assert!(
        seen.contains("notifications/tools/list_changed"),
        "stream so far: {seen}"
    );
    assert_eq!(
        seen.matches("notifications/tools/list_changed").count(),
        1,
        "the upstream's own notification is not passed on as well: {seen}"
    );
    let tools = client
        .request("tools/list", serde_json::json!({}))
        .await
        .expect("list");
    assert!(tools.to_string().contains("grow_later"), "{tools}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cancellation_reaches_the_upstream_request_it_names() {
    let (_upstream, base) = peer("flaky_server.py", &[]).await;
    let stack = gateway_stack("slowpoke", &format!("{base}/mcp"), "", "hang").await;
    let url = stack.url.clone();
    let mut client = switchboard_testkit::McpHttpClient::new(url.clone());
    client.initialize().await.expect("initialize");
    let session = client.session_id().unwrap_or_default().to_string();
    let post = |body: serde_json::Value| {
        reqwest::Client::new()
            .post(&url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-06-18")
            .json(&body)
            .send()
    };
    // A call that never ends on its own, then the client gives up on it.
    let hung = tokio::spawn(post(
        serde_json::json!({"jsonrpc": "2.0", "id": 4242, "method": "tools/call", "params": {"name": "hang", "arguments": {}}}),
    ));
    let deadline = std::time::Instant::now() + WAIT;
    let seen = loop {
        let seen = client
            .request(
                "tools/call",
                serde_json::json!({"name": "cancellations_seen", "arguments": {}}),
            )
            .await
            .expect("cancellations_seen");
        let seen: serde_json::Value =
            serde_json::from_str(seen["content"][0]["text"].as_str().unwrap_or("{}"))
                .unwrap_or_default();
        if seen["hang_ids"].as_array().is_some_and(|a| !a.is_empty()) {
            break seen;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "hang never reached the upstream"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(
        seen["hang_ids"],
        serde_json::json!([4242]),
        "the client's own id upstream: {seen}"
    );
    let cancelled = post(serde_json::json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 4242, "reason": "user gave up"}}))
        .await
        .expect("cancel");
    assert_eq!(cancelled.status().as_u16(), 202);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let seen = client
            .request(
                "tools/call",
                serde_json::json!({"name": "cancellations_seen", "arguments": {}}),
            )
            .await
            .expect("cancellations_seen");
        let seen: serde_json::Value =
            serde_json::from_str(seen["content"][0]["text"].as_str().unwrap_or("{}"))
                .unwrap_or_default();
        if seen["cancelled"] == serde_json::json!([4242]) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no cancellation upstream: {seen}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    hung.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_subscription_brings_its_updates_to_the_subscriber() {
    let stack = everything_stack("ev_", "ev_toggle-subscriber-updates").await;
    let url = stack.url.clone();
    let mut client = switchboard_testkit::McpHttpClient::new(url.clone());
    let init = client.initialize().await.expect("initialize");
    assert_eq!(
        init["capabilities"]["resources"]["subscribe"], true,
        "{init}"
    );
    let listed = client
        .request("resources/list", serde_json::json!({}))
        .await
        .expect("resources/list");
    let uri = listed["resources"][0]["uri"]
        .as_str()
        .expect("an upstream resource")
        .to_string();
    let stream = reqwest::Client::new()
        .get(&url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", client.session_id().unwrap_or_default())
        .send()
        .await
        .expect("GET stream");
    let mut body = stream.bytes_stream();
    client
        .request("resources/subscribe", serde_json::json!({"uri": uri}))
        .await
        .expect("subscribe routed to the upstream");
    client
        .request(
            "tools/call",
            serde_json::json!({"name": "ev_toggle-subscriber-updates", "arguments": {}}),
        )
        .await
        .expect("start updates");
    // The update names the URI (as `"uri":"…"` in the event's data).
    let wanted = format!("\"uri\":\"{uri}\"");
    let seen = read_until(&mut body, &wanted, std::time::Duration::from_secs(12)).await;
    assert!(
        seen.contains("notifications/resources/updated") && seen.contains(&wanted),
        "stream so far: {seen}"
    );
    client
        .request("resources/unsubscribe", serde_json::json!({"uri": uri}))
        .await
        .expect("unsubscribe");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_sse_clients_pass_the_same_tool_call_run() {
    let stack = everything_stack("ev_", "ev_echo").await;
    let url = stack.url.clone();
    let sse = url.replace("/servers/demo/mcp", "/servers/demo/sse");
    let seen = py_tool_calls(&["ev_", "--sse", &sse]).await;
    assert_tool_calls(&seen);
    // A POST to a stream key this data plane never handed out.
    let stray = reqwest::Client::new()
        .post(url.replace("/servers/demo/mcp", "/servers/demo/messages?session=0123"))
        .header("content-type", "application/json")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .send()
        .await
        .expect("POST");
    assert_eq!(stray.status().as_u16(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_clients_pass_the_same_tool_call_run_and_answer_their_own_requests() {
    let stack = everything_stack("ev_", "ev_trigger-sampling-request").await;
    let url = stack.url.clone();
    wait_for_tools(&url, WAIT, "sampling and roots tools", |t| {
        t.iter().any(|n| n == "ev_get-roots-list")
    })
    .await;
    let ws = url
        .replace("http://", "ws://")
        .replace("/servers/demo/mcp", "/servers/demo/ws");
    // The TypeScript SDK's WebSocket transport, two clients at once: the tool-call run, and
    // each answers only the sampling and roots requests raised by its own calls.
    let (alpha, beta) = tokio::join!(
        ts_sampling_client_via(&ws, "ev_", "alpha", Some("ws")),
        ts_sampling_client_via(&ws, "ev_", "beta", Some("ws"))
    );
    for (seen, me, other) in [(&alpha, "alpha", "beta"), (&beta, "beta", "alpha")] {
        assert_tool_calls(seen);
        assert_own_answers(seen, me, other);
    }

    // The example client lists the tools and calls one.
    let example = tokio::process::Command::new(switchboard_testkit::node22_bin().expect("node"))
        .arg(root().join("examples/websocket/client.mjs"))
        .arg(&ws)
        .env(
            "NODE_MODULES",
            switchboard_testkit::deps_dir().join("npm/node_modules"),
        )
        .output();
    let example = tokio::time::timeout(WAIT, example)
        .await
        .expect("example finished")
        .expect("ran");
    let printed = String::from_utf8_lossy(&example.stdout);
    assert!(
        example.status.success() && printed.contains("ev_echo") && printed.contains(" -> "),
        "{printed}{}",
        String::from_utf8_lossy(&example.stderr)
    );

    // Requests that are not WebSocket upgrades, or offer other subprotocols, are refused.
    let http = url.replace("/servers/demo/mcp", "/servers/demo/ws");
    let plain = reqwest::get(&http).await.expect("GET");
    assert_eq!(plain.status().as_u16(), 426);
    assert_eq!(
        plain.headers().get("upgrade").and_then(|v| v.to_str().ok()),
        Some("websocket")
    );
    let other = reqwest::Client::new()
        .get(&http)
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-protocol", "graphql-ws")
        .send()
        .await
        .expect("GET");
    assert_eq!(other.status().as_u16(), 400);
    assert!(other.text().await.unwrap_or_default().contains("`mcp`"));
}

/// Reads `body` (an SSE stream) until `wanted` shows up in it or `within` passes; what
/// was read.
async fn read_until<B: AsRef<[u8]>>(
    body: &mut (impl futures::Stream<Item = reqwest::Result<B>> + Unpin),
    wanted: &str,
    within: std::time::Duration,
) -> String {
    use futures::StreamExt;
    let mut seen = String::new();
    let _ = tokio::time::timeout(within, async {
        while let Some(Ok(chunk)) = body.next().await {
            seen.push_str(&String::from_utf8_lossy(chunk.as_ref()));
            if seen.contains(wanted) {
                return;
            }
        }
    })
    .await;
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_sse_streams_also_carry_what_the_session_stream_would() {
    let (_grow, base) = peer("growing_server.py", &[]).await;
    let stack = gateway_stack("grow", &format!("{base}/mcp"), "grow_", "grow_add_tool").await;
    let sse = stack.url.replace("/servers/demo/mcp", "/servers/demo/sse");
    let origin = stack
        .url
        .split("/servers/")
        .next()
        .unwrap_or_default()
        .to_string();
    let stream = reqwest::get(&sse).await.expect("GET /sse");
    assert_eq!(stream.status().as_u16(), 200);
    let mut body = stream.bytes_stream();
    let first = read_until(&mut body, "\n\n", WAIT).await;
    let endpoint = first
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .expect("an endpoint event")
        .trim()
        .to_string();
    let post = |message: serde_json::Value| {
        reqwest::Client::new()
            .post(format!("{origin}{endpoint}"))
            .json(&message)
            .send()
    };
    let accepted = post(serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}))
        .await
        .expect("initialize");
    assert_eq!(accepted.status().as_u16(), 202);
    let init = read_until(&mut body, "\"id\":1", WAIT).await;
    assert!(init.contains("listChanged"), "{init}");
    post(serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await
        .expect("initialized");
    post(serde_json::json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "grow_add_tool", "arguments": {"name": "later"}}}))
        .await
        .expect("add_tool");
    // Discovery sees the new tool, the snapshot changes the listing, and the legacy stream
    // says so just like a streamable-HTTP session's GET stream.
    let seen = read_until(
        &mut body,
        "notifications/tools/list_changed",
        std::time::Duration::from_secs(10),
    )
    .await;
    assert!(
        seen.contains("notifications/tools/list_changed"),
        "stream so far: {seen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_stream_cut_mid_call_is_resumed_from_its_last_event_id() {
    let stack = everything_stack("ev_", "ev_trigger-long-running-operation").await;
    let hostport = stack
        .url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let gateway: std::net::SocketAddr = hostport.parse().expect("a loopback address");
    // The network fails right after the call's first progress event.
    let (relay, cuts) = cutting_relay(gateway, "\"progress\":1").await;
    let via = stack.url.replace(&hostport, &relay.to_string());
    // The TypeScript SDK reconnects with GET and Last-Event-ID; the gateway kept reading
    // the call while it was away, and replays what it missed, then the answer.
    let seen = node_peer("ts_client.mjs", &[&via, "ev_"], false).await;
    assert_eq!(cuts.load(std::sync::atomic::Ordering::SeqCst), 1, "{seen}");
    assert!(
        seen["long_running"]
            .as_str()
            .unwrap_or_default()
            .contains("completed"),
        "{seen}"
    );
    let progress: Vec<u64> = seen["progress"]
        .as_array()
        .map(|p| p.iter().filter_map(|e| e[0].as_u64()).collect())
        .unwrap_or_default();
    assert_eq!(progress, [1, 2, 3, 4], "every progress event, once: {seen}");

    // A stream this data plane never had is a clear 404, not a wait for ever.
    let mut client = switchboard_testkit::McpHttpClient::new(stack.url.clone());
    client.initialize().await.expect("initialize");
    let lost = reqwest::Client::new()
        .get(&stack.url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", client.session_id().unwrap_or_default())
        .header("last-event-id", "00000000000000abc7")
        .send()
        .await
        .expect("GET");
    assert_eq!(lost.status().as_u16(), 404);
    assert!(lost
        .text()
        .await
        .unwrap_or_default()
        .contains("not buffered"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateless_clients_answer_upstream_questions_through_input_required_results() {
    let stack = everything_stack("ev_", "ev_trigger-sampling-request").await;
    let url = stack.url.clone();
    wait_for_tools(&url, WAIT, "sampling and roots tools", |t| {
        t.iter().any(|n| n == "ev_get-roots-list")
    })
    .await;
    // Two 2026-07-28 clients (the Python SDK) at once: the upstream's sampling, roots and
    // elicitation requests come to each as InputRequiredResults; each answers and retries,
    // and the held upstream call goes on to its result.
    let run = |tag: &'static str| {
        let url = url.clone();
        async move { python_peer("py_input_client.py", &[url.as_str(), "ev_", tag]).await }
    };
    let (alpha, beta) = tokio::join!(run("alpha"), run("beta"));
    for (seen, me, other) in [(&alpha, "alpha", "beta"), (&beta, "beta", "alpha")] {
        assert_eq!(seen["protocol_version"], "2026-07-28", "{seen}");
        assert_own_answers(seen, me, other);
        assert_eq!(seen["sampling_requests"], 1, "{seen}");
        assert_eq!(seen["roots_requests"], 1, "{seen}");
        assert_eq!(seen["elicitation_requests"], 1, "{seen}");
        assert!(
            seen["elicitation"]
                .as_str()
                .unwrap_or_default()
                .contains("declined"),
            "{seen}"
        );
        assert!(
            seen["echo"]
                .as_str()
                .unwrap_or_default()
                .contains("no input needed"),
            "{seen}"
        );
    }

    // The example client does the same.
    let example = tokio::process::Command::new(switchboard_testkit::python_bin().expect("python"))
        .arg(root().join("examples/stateless/client.py"))
        .args([url.as_str(), "ev_"])
        .output();
    let example = tokio::time::timeout(WAIT, example)
        .await
        .expect("example finished")
        .expect("ran");
    let printed = String::from_utf8_lossy(&example.stdout);
    assert!(
        example.status.success()
            && printed.contains("the upstream asked to sample")
            && printed.contains("a sampled answer")
            && printed.contains("tools_list_changed"),
        "{printed}{}",
        String::from_utf8_lossy(&example.stderr)
    );

    // A retry with a state this data plane never handed out is a clear error.
    let stale = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "ev_echo")
        .json(&serde_json::json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {
            "name": "ev_echo", "arguments": {"message": "x"},
            "requestState": "sbh1.00", "inputResponses": {},
            "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
        }}))
        .send()
        .await
        .expect("POST");
    assert_eq!(stale.status().as_u16(), 400);
    let body = stale.text().await.unwrap_or_default();
    assert!(body.contains("requestState names no call"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateless_clients_listen_for_list_changes_and_resource_updates() {
    let (_grow, base) = peer("growing_server.py", &[]).await;
    let stack = gateway_stack("grow", &format!("{base}/mcp"), "grow_", "grow_touch").await;
    // The Python SDK's `subscriptions/listen`: the gateway acknowledges what it honors (the
    // URI no one serves is left out), then passes on the upstream's update of the note and
    // its own tools list_changed once discovery has the new tool.
    let seen = python_peer("py_listen_client.py", &[stack.url.as_str(), "grow_"]).await;
    assert_eq!(
        seen["honored"],
        serde_json::json!({"toolsListChanged": true, "resourceSubscriptions": ["growing://note"]}),
        "{seen}"
    );
    assert_eq!(
        seen["touched"], "told 1",
        "the subscription's own upstream session: {seen}"
    );
    let events = seen["events"].as_array().cloned().unwrap_or_default();
    assert!(
        events.contains(&Value::from("ResourceUpdated:growing://note"))
            && events.contains(&Value::from("ToolsListChanged")),
        "{seen}"
    );
    assert!(
        seen["tools"]
            .as_array()
            .is_some_and(|t| t.iter().any(|n| n == "grow_later")),
        "{seen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sessions_notifications_never_reach_another() {
    let stack = everything_stack("ev_", "ev_toggle-simulated-logging").await;
    let url = stack.url.clone();
    let open = |client: &switchboard_testkit::McpHttpClient| {
        reqwest::Client::new()
            .get(&url)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", client.session_id().unwrap_or_default())
            .send()
    };
    let mut alpha = switchboard_testkit::McpHttpClient::new(url.clone());
    let mut beta = switchboard_testkit::McpHttpClient::new(url.clone());
    for c in [&mut alpha, &mut beta] {
        c.initialize().await.expect("initialize");
        c.request("logging/setLevel", serde_json::json!({"level": "debug"}))
            .await
            .expect("setLevel");
    }
    let mut alpha_stream = open(&alpha).await.expect("alpha's stream").bytes_stream();
    let mut beta_stream = open(&beta).await.expect("beta's stream").bytes_stream();
    // Alpha's upstream session logs; only alpha's stream carries it.
    alpha
        .request(
            "tools/call",
            serde_json::json!({"name": "ev_toggle-simulated-logging", "arguments": {}}),
        )
        .await
        .expect("toggle logging");
    let heard = read_until(
        &mut alpha_stream,
        "notifications/message",
        std::time::Duration::from_secs(12),
    )
    .await;
    assert!(
        heard.contains("notifications/message"),
        "alpha heard: {heard}"
    );
    let overheard = read_until(
        &mut beta_stream,
        "notifications/message",
        std::time::Duration::from_secs(6),
    )
    .await;
    assert!(
        !overheard.contains("notifications/message"),
        "beta overheard alpha's log: {overheard}"
    );
    alpha
        .request(
            "tools/call",
            serde_json::json!({"name": "ev_toggle-simulated-logging", "arguments": {}}),
        )
        .await
        .expect("logging off");
}
