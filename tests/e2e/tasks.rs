//! Tasks through the gateway: a session-era upstream's tasks (2025-11-25, the TypeScript
//! SDK's task store in tests/peers/conformance_fixture_server.mjs) followed by stateless
//! clients through the tasks extension, on whichever replica they ask.

use serde_json::{json, Value};
use std::time::{Duration, Instant};

use crate::common::*;

/// A stateless request to `url` from a client that follows tasks: (HTTP status, JSON-RPC
/// response).
async fn stateless(url: &str, method: &str, params: Value, tasks: bool) -> (u16, Value) {
    let mut capabilities = json!({"elicitation": {}});
    if tasks {
        capabilities["extensions"] = json!({"io.modelcontextprotocol/tasks": {}});
    }
    let mut params = params;
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": capabilities,
        "io.modelcontextprotocol/clientInfo": {"name": "tasks-test", "version": "0"},
    });
    let name = params
        .get("name")
        .or_else(|| params.get("taskId"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut req = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", method);
    if !name.is_empty() {
        req = req.header("mcp-name", name);
    }
    let resp = req
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
        .send()
        .await
        .expect("the gateway answers");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    let body = switchboard_testkit::parse_sse_events(&text)
        .last()
        .cloned()
        .unwrap_or(text);
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// Polls `tasks/get` on `url` (at the task's poll interval, bounded by [`WAIT`]) until the
/// task's status is `status` or terminal; the task as last seen.
async fn poll_until(url: &str, task_id: &str, status: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let (code, answer) = stateless(url, "tasks/get", json!({"taskId": task_id}), true).await;
        assert_eq!(code, 200, "{answer}");
        let task = answer["result"].clone();
        let now = task["status"].as_str().unwrap_or_default().to_string();
        if now == status || ["completed", "failed", "cancelled"].contains(&now.as_str()) {
            return task;
        }
        assert!(Instant::now() < deadline, "the task stayed {now}: {task}");
        let every = task["pollIntervalMs"].as_u64().unwrap_or(200).min(1000);
        tokio::time::sleep(Duration::from_millis(every)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_era_task_is_followed_by_a_stateless_client_on_any_replica() {
    let (_fixture, upstream_url) = fixture_server().await;
    let (cp, admin, cp_data) = control_plane(None).await;
    let (dp_a, a, state_a) = data_plane(admin.trim_start_matches("http://")).await;
    let (dp_b, b, state_b) = data_plane(admin.trim_start_matches("http://")).await;
    let _keep = (cp, cp_data, dp_a, state_a, dp_b, state_b);
    apply(
        &admin,
        &format!(
            "{}{}",
            upstream("fixture", &upstream_url, ""),
            server(&[("fixture", "")])
        ),
    );
    for url in [&a, &b] {
        wait_for_tools(url, WAIT, "the task tools", |t| {
            t.iter().any(|n| n == "confirm_delete")
        })
        .await;
    }

    // The extension is offered, and a task made on A is followed on B to its result.
    let (_, discovered) = stateless(&a, "server/discover", json!({}), true).await;
    assert!(
        discovered["result"]["capabilities"]["extensions"]["io.modelcontextprotocol/tasks"]
            .is_object(),
        "{discovered}"
    );
    let (code, created) = stateless(
        &a,
        "tools/call",
        json!({"name": "slow_compute", "arguments": {"seconds": 1, "label": "hop"}}),
        true,
    )
    .await;
    assert_eq!(code, 200, "{created}");
    let created = &created["result"];
    assert_eq!(created["resultType"], "task", "{created}");
    assert!(created.get("task").is_none(), "flat, not nested: {created}");
    let task_id = created["taskId"].as_str().expect("a task id").to_string();
    assert!(
        task_id.starts_with("sbt1."),
        "the gateway's own id: {task_id}"
    );
    let done = poll_until(&b, &task_id, "completed").await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["resultType"], "complete", "{done}");
    assert!(
        done["result"]["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("Computed hop")),
        "{done}"
    );
    // Cancelling a task that is over is acknowledged all the same.
    let (code, ack) = stateless(&a, "tasks/cancel", json!({"taskId": task_id}), true).await;
    assert_eq!(
        (code, &ack["result"]),
        (200, &json!({"resultType": "complete"}))
    );

    // A task that asks: the question shows on tasks/get, the answer goes by tasks/update.
    let (_, created) = stateless(
        &a,
        "tools/call",
        json!({"name": "confirm_delete", "arguments": {"filename": "notes.txt"}}),
        true,
    )
    .await;
    let task_id = created["result"]["taskId"]
        .as_str()
        .expect("a task")
        .to_string();
    let waiting = poll_until(&a, &task_id, "input_required").await;
    assert_eq!(waiting["status"], "input_required", "{waiting}");
    let asked = waiting["inputRequests"].as_object().expect("inputRequests");
    assert_eq!(asked.len(), 1, "{waiting}");
    let (key, question) = asked.iter().next().expect("one question");
    assert_eq!(question["method"], "elicitation/create", "{waiting}");
    let (code, ack) = stateless(
        &a,
        "tasks/update",
        json!({"taskId": task_id, "inputResponses": {
            key.clone(): {"action": "accept", "content": {"confirm": true}},
            "not-a-question": {"ignored": true},
        }}),
        true,
    )
    .await;
    assert_eq!(code, 200, "{ack}");
    let done = poll_until(&b, &task_id, "completed").await;
    assert!(
        done["result"]["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("Deleted notes.txt")),
        "{done}"
    );

    // Ids the gateway did not make, and clients that do not follow tasks, are refused.
    let (code, unknown) = stateless(&b, "tasks/get", json!({"taskId": "sbt1.forged"}), true).await;
    assert_eq!(code, 400, "{unknown}");
    assert_eq!(unknown["error"]["code"], -32602, "{unknown}");
    let (code, refused) = stateless(&b, "tasks/get", json!({"taskId": task_id}), false).await;
    assert_eq!(code, 400, "{refused}");
    assert_eq!(refused["error"]["code"], -32021, "{refused}");
    let (code, refused) = stateless(
        &a,
        "tools/call",
        json!({"name": "failing_job", "arguments": {}}),
        false,
    )
    .await;
    assert_eq!(code, 400, "{refused}");
    assert_eq!(
        refused["error"]["data"]["requiredCapabilities"]["extensions"]
            ["io.modelcontextprotocol/tasks"],
        json!({}),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_era_clients_follow_tasks_through_the_gateway() {
    let (_fixture, upstream_url) = fixture_server().await;
    let stack = gateway_stack("fixture", &upstream_url, "", "confirm_delete").await;
    let seen = node_peer("ts_task_client.mjs", &[&stack.url], true).await;
    assert_eq!(seen.get("error"), None, "{seen}");
    assert!(
        seen["tasks_capability"]["requests"]["tools"]["call"].is_object(),
        "{seen}"
    );
    let slow = &seen["slow"];
    assert_eq!(slow["text"], "Computed relayed in 1s", "{seen}");
    let id = slow["ids"][0].as_str().unwrap_or_default();
    assert!(
        id.starts_with("sbt0.fixture."),
        "the gateway's task id: {seen}"
    );
    assert_eq!(seen["confirm"]["text"], "Deleted old.txt", "{seen}");
    // The question came tied to the task by the id the client knows.
    let confirm_id = &seen["confirm"]["ids"][0];
    assert_eq!(&seen["questions"][0]["task"], confirm_id, "{seen}");
    assert_eq!(seen["cancelled"], "cancelled", "{seen}");
    let listed = seen["listed"].as_array().cloned().unwrap_or_default();
    assert!(listed.iter().any(|t| t == id), "{seen}");
    assert!(
        listed
            .iter()
            .all(|t| t.as_str().is_some_and(|t| t.starts_with("sbt0."))),
        "{seen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tasks_example_runs_a_report_as_a_task() {
    // examples/tasks: its server (on a free port instead of 3011), its YAML, its client.
    let modules = switchboard_testkit::npm_module_dir("@modelcontextprotocol/sdk")
        .expect("TS SDK installed")
        .join("../..");
    let port = switchboard_testkit::free_port();
    let mut cmd = std::process::Command::new(switchboard_testkit::node22_bin().expect("Node 22"));
    cmd.arg(root().join("examples/tasks/server.mjs"))
        .arg(&modules)
        .arg(port.to_string());
    let server = switchboard_testkit::ManagedProcess::spawn(cmd).expect("example server");
    if let Err(e) = switchboard_testkit::wait_for_tcp(&format!("127.0.0.1:{port}"), WAIT).await {
        panic!(
            "the example server did not start: {e}\n{}",
            server.log_tail(20)
        );
    }
    let (cp, admin, cp_data) = control_plane(None).await;
    let (dp, url, state) = data_plane(admin.trim_start_matches("http://")).await;
    let _keep = (server, cp, cp_data, dp, state);
    let yaml = std::fs::read_to_string(root().join("examples/tasks/tasks.yaml"))
        .expect("the example's YAML")
        .replace("127.0.0.1:3011", &format!("127.0.0.1:{port}"));
    apply(&admin, &yaml);
    let url = url.replace("/servers/demo/", "/servers/reports/");
    wait_for_tools(&url, WAIT, "build_report", |t| {
        t.iter().any(|n| n == "build_report")
    })
    .await;
    let run = tokio::process::Command::new(switchboard_testkit::python_bin().expect("python"))
        .arg(root().join("examples/tasks/client.py"))
        .args([url.as_str(), "1"])
        .output();
    let out = tokio::time::timeout(WAIT, run)
        .await
        .expect("the example client finished")
        .expect("ran");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success()
            && printed.contains("task created: working")
            && printed.contains("task completed: report ready after 1s"),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
