//! Upstream questions (elicitation, sampling, roots) that a server asks on its session's
//! standalone GET stream, with no related request id: a TypeScript SDK server that asks
//! that way, the TypeScript and Python SDK clients in many short sessions, and raw HTTP for
//! a session whose GET stream and call land on different replicas.

use futures::StreamExt;
use serde_json::{json, Value};
use std::process::Command;
use switchboard_testkit::{free_port, node22_bin, npm_module_dir, wait_for_tcp, ManagedProcess};

use crate::common::*;

/// Sequential sessions per question kind and client.
const SESSIONS: &str = "50";

const KINDS: [&str; 3] = ["ask_elicitation", "ask_sampling", "ask_roots"];

/// The asking server on a reserved port, in `mode` (`events`: it keeps its events and has
/// ask_after_reconnect): (process, its MCP URL).
async fn asking_server_in(mode: &str) -> (ManagedProcess, String) {
    let modules = npm_module_dir("@modelcontextprotocol/sdk")
        .expect("TS SDK installed")
        .join("../..");
    let port = free_port();
    let mut cmd = Command::new(node22_bin().expect("Node 22"));
    cmd.arg(root().join("tests/peers/ts_asking_server.mjs"))
        .arg(&modules)
        .arg(port.to_string())
        .arg(mode);
    let p = ManagedProcess::spawn(cmd).expect("asking server");
    if let Err(e) = wait_for_tcp(&format!("127.0.0.1:{port}"), WAIT).await {
        panic!("the asking server did not start: {e}\n{}", p.log_tail(20));
    }
    (p, format!("http://127.0.0.1:{port}/mcp"))
}

/// A control plane with `asker` as upstream `a_`-prefixed in `demo`, and `planes` data planes.
async fn stack(planes: usize) -> (Vec<ManagedProcess>, Vec<String>, Vec<tempfile::TempDir>) {
    stack_with(planes, "plain", "").await
}

/// The same with the asking server in `mode` and `extra` YAML in its Upstream's spec.
async fn stack_with(
    planes: usize,
    mode: &str,
    extra: &str,
) -> (Vec<ManagedProcess>, Vec<String>, Vec<tempfile::TempDir>) {
    let (_server, url) = asking_server_in(mode).await;
    let (cp, admin, cp_data) = control_plane(None).await;
    let mut processes = vec![_server, cp];
    let mut dirs = vec![cp_data];
    let mut urls = Vec::new();
    for _ in 0..planes {
        let (dp, dp_url, state) = data_plane(admin.trim_start_matches("http://")).await;
        processes.push(dp);
        dirs.push(state);
        urls.push(dp_url);
    }
    apply(
        &admin,
        &format!(
            "{}{}",
            upstream("asker", &url, extra),
            server(&[("asker", "a_")])
        ),
    );
    for u in &urls {
        wait_for_tools(u, WAIT, "the asking tools", |t| {
            t.iter().any(|n| n == "a_ask_roots")
        })
        .await;
    }
    (processes, urls, dirs)
}

fn no_failures(client: &str, kind: &str, seen: &Value) {
    assert_eq!(
        seen["ok"],
        SESSIONS.parse::<u64>().expect("a number"),
        "{client} {kind}: {seen}"
    );
    assert_eq!(seen["failures"], json!([]), "{client} {kind}: {seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn questions_asked_on_the_upstreams_get_stream_reach_every_short_session() {
    let (_processes, urls, _dirs) = stack(1).await;
    let url = &urls[0];
    // Each kind's sessions run one after another; the kinds and the two SDKs side by side.
    let ts = KINDS.map(|kind| async move {
        let tool = format!("a_{kind}");
        (
            kind,
            node_peer("ts_asking_client.mjs", &[url, &tool, SESSIONS], true).await,
        )
    });
    let py = KINDS.map(|kind| async move {
        let tool = format!("a_{kind}");
        (
            kind,
            python_peer("py_asking_client.py", &[url, &tool, SESSIONS]).await,
        )
    });
    let (ts, py) =
        futures::future::join(futures::future::join_all(ts), futures::future::join_all(py)).await;
    for (kind, seen) in ts {
        no_failures("TypeScript SDK", kind, &seen);
    }
    for (kind, seen) in py {
        no_failures("Python SDK", kind, &seen);
    }
}

/// POSTs `body` to `url` in session `sid`.
async fn post(url: &str, sid: Option<&str>, body: Value) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .json(&body);
    if let Some(sid) = sid {
        req = req.header("mcp-session-id", sid);
    }
    req.send().await.expect("the gateway answers")
}

/// The first SSE message of `body` whose JSON has a `method` equal to `method`.
async fn next_request<B: AsRef<[u8]>>(
    body: &mut (impl futures::Stream<Item = reqwest::Result<B>> + Unpin),
    method: &str,
) -> Value {
    let mut seen = String::new();
    let found = tokio::time::timeout(WAIT, async {
        while let Some(Ok(chunk)) = body.next().await {
            seen.push_str(&String::from_utf8_lossy(chunk.as_ref()));
            for data in switchboard_testkit::parse_sse_events(&seen) {
                if let Ok(msg) = serde_json::from_str::<Value>(&data) {
                    if msg["method"] == method {
                        return Some(msg);
                    }
                }
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(msg)) => msg,
        _ => panic!("no {method} on the stream; it carried: {seen}"),
    }
}

/// A session-era session that can be asked for elicitation: its id.
async fn initialize_asking(url: &str) -> String {
    let init = post(
        url,
        None,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {"elicitation": {}},
            "clientInfo": {"name": "hopper", "version": "0"}}}),
    )
    .await;
    let sid = init
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .expect("a session id")
        .to_string();
    let _ = init.text().await;
    post(
        url,
        Some(&sid),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    sid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_question_reaches_the_clients_get_stream_on_another_replica_and_the_call_completes() {
    let (_processes, urls, _dirs) = stack(2).await;
    let (a, b) = (&urls[0], &urls[1]);
    let sid = initialize_asking(a).await;
    // The session's GET stream on replica A: once it answers, A holds the upstream's.
    let get = reqwest::Client::new()
        .get(a)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &sid)
        .header("mcp-protocol-version", "2025-06-18")
        .send()
        .await
        .expect("GET");
    assert_eq!(get.status().as_u16(), 200);
    let mut stream = get.bytes_stream();

    // The call goes to replica B; the question comes on A's stream.
    let call = {
        let (b, sid) = (b.clone(), sid.clone());
        tokio::spawn(async move {
            let resp = post(
                &b,
                Some(&sid),
                json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                       "params": {"name": "a_ask_elicitation", "arguments": {}}}),
            )
            .await;
            resp.text().await.unwrap_or_default()
        })
    };
    let question = next_request(&mut stream, "elicitation/create").await;
    let answered = post(
        b,
        Some(&sid),
        json!({"jsonrpc": "2.0", "id": question["id"],
               "result": {"action": "accept", "content": {"name": "hopped"}}}),
    )
    .await;
    assert_eq!(answered.status().as_u16(), 202);
    let answer = tokio::time::timeout(WAIT, call)
        .await
        .expect("the call ends")
        .expect("joined");
    assert!(
        answer.contains(r#"\"name\":\"hopped\""#) || answer.contains("hopped"),
        "{answer}"
    );

    // A session with no GET stream at all: the call carries its question on its own stream.
    let sid = initialize_asking(b).await;
    let resp = post(
        b,
        Some(&sid),
        json!({"jsonrpc": "2.0", "id": 8, "method": "tools/call",
               "params": {"name": "a_ask_elicitation", "arguments": {}}}),
    )
    .await;
    let mut own = resp.bytes_stream();
    let question = next_request(&mut own, "elicitation/create").await;
    post(
        a,
        Some(&sid),
        json!({"jsonrpc": "2.0", "id": question["id"],
               "result": {"action": "accept", "content": {"name": "direct"}}}),
    )
    .await;
    let rest = tokio::time::timeout(WAIT, async {
        let mut text = String::new();
        while let Some(Ok(chunk)) = own.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        text
    })
    .await
    .expect("the call ends");
    assert!(rest.contains("direct"), "{rest}");
}

/// The first SSE event of `body` whose message has `method`: (its event id, the message).
async fn next_request_with_id<B: AsRef<[u8]>>(
    body: &mut (impl futures::Stream<Item = reqwest::Result<B>> + Unpin),
    method: &str,
) -> (String, Value) {
    let mut seen = String::new();
    let found = tokio::time::timeout(WAIT, async {
        while let Some(Ok(chunk)) = body.next().await {
            seen.push_str(&String::from_utf8_lossy(chunk.as_ref()));
            for event in seen.split("\n\n") {
                let id = event.lines().find_map(|l| l.strip_prefix("id: "));
                let data: String = event
                    .lines()
                    .filter_map(|l| l.strip_prefix("data: "))
                    .collect();
                if let (Some(id), Ok(msg)) = (id, serde_json::from_str::<Value>(&data)) {
                    if msg["method"] == method {
                        return Some((id.to_string(), msg));
                    }
                }
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(found)) => found,
        _ => panic!("no {method} with an event id on the stream; it carried: {seen}"),
    }
}

/// Reads the rest of a stream (bounded by [`WAIT`]).
async fn rest_of<B: AsRef<[u8]>>(
    mut body: impl futures::Stream<Item = reqwest::Result<B>> + Unpin,
) -> String {
    tokio::time::timeout(WAIT, async {
        let mut text = String::new();
        while let Some(Ok(chunk)) = body.next().await {
            text.push_str(&String::from_utf8_lossy(chunk.as_ref()));
        }
        text
    })
    .await
    .expect("the stream ends")
}

/// Opens the session's GET stream (with `last_event_id`, to resume one).
async fn get_stream(url: &str, sid: &str, last_event_id: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .get(url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", sid)
        .header("mcp-protocol-version", "2025-06-18");
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id);
    }
    let resp = req.send().await.expect("GET");
    assert_eq!(resp.status().as_u16(), 200);
    resp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_question_whose_stream_closes_unanswered_goes_out_again_on_the_call() {
    let (_processes, urls, _dirs) = stack(1).await;
    let url = &urls[0];
    let sid = initialize_asking(url).await;
    // The GET stream holds the upstream's, so the question comes there first.
    let mut get = get_stream(url, &sid, None).await.bytes_stream();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let call = {
        let (url, sid) = (url.clone(), sid.clone());
        tokio::spawn(async move {
            let resp = post(
                &url,
                Some(&sid),
                json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
                       "params": {"name": "a_ask_elicitation", "arguments": {}}}),
            )
            .await;
            let mut own = resp.bytes_stream();
            let again = next_request(&mut own, "elicitation/create").await;
            let _ = tx.send(again);
            rest_of(own).await
        })
    };
    let first = next_request(&mut get, "elicitation/create").await;
    // The client closes its GET stream without answering: the question is not lost with
    // it but goes out on the call's own stream.
    drop(get);
    let again = tokio::time::timeout(WAIT, rx)
        .await
        .expect("the question goes out again")
        .expect("the call task");
    assert_eq!(again["id"], first["id"], "the same question: {again}");
    let answered = post(
        url,
        Some(&sid),
        json!({"jsonrpc": "2.0", "id": again["id"],
               "result": {"action": "accept", "content": {"name": "second-chance"}}}),
    )
    .await;
    assert_eq!(answered.status().as_u16(), 202);
    let rest = call.await.expect("joined");
    assert!(rest.contains("second-chance"), "{rest}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_question_no_stream_takes_in_time_ends_the_call_with_an_error_naming_it() {
    // A two-second request timeout on the upstream: the time a question may wait.
    let (_processes, urls, _dirs) = stack_with(1, "plain", "  timeouts:\n    request: 2s\n").await;
    let url = &urls[0];
    let sid = initialize_asking(url).await;
    let resp = post(
        url,
        Some(&sid),
        json!({"jsonrpc": "2.0", "id": 10, "method": "tools/call",
               "params": {"name": "a_ask_elicitation", "arguments": {}}}),
    )
    .await;
    let mut own = resp.bytes_stream();
    let (event_id, _question) = next_request_with_id(&mut own, "elicitation/create").await;
    // The client leaves its call (the stream is kept for it to resume) and opens nothing
    // else: no stream can carry the question, so the upstream is told, and its tool ends.
    drop(own);
    let resumed = get_stream(url, &sid, Some(&event_id)).await;
    let rest = rest_of(resumed.bytes_stream()).await;
    assert!(
        rest.contains("`elicitation/create` was not delivered"),
        "the call's end names the undelivered question: {rest}"
    );
    assert!(rest.contains(r#""id":10"#), "the call's own answer: {rest}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_stream_that_drops_is_reopened_where_it_left_off() {
    // The server closes its GET stream and asks at once: only a stream reopened with
    // Last-Event-ID gets the question (the server keeps it for that).
    let (_processes, urls, _dirs) = stack_with(1, "events", "").await;
    let url = &urls[0];
    wait_for_tools(url, WAIT, "ask_after_reconnect", |t| {
        t.iter().any(|n| n == "a_ask_after_reconnect")
    })
    .await;
    let sid = initialize_asking(url).await;
    let resp = post(
        url,
        Some(&sid),
        json!({"jsonrpc": "2.0", "id": 11, "method": "tools/call",
               "params": {"name": "a_ask_after_reconnect", "arguments": {}}}),
    )
    .await;
    let mut own = resp.bytes_stream();
    let question = next_request(&mut own, "elicitation/create").await;
    post(
        url,
        Some(&sid),
        json!({"jsonrpc": "2.0", "id": question["id"],
               "result": {"action": "accept", "content": {"name": "resumed"}}}),
    )
    .await;
    let rest = rest_of(own).await;
    assert!(rest.contains("after reconnect: accept"), "{rest}");
    assert!(rest.contains("resumed"), "{rest}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn questions_reach_every_short_session_over_websocket_and_legacy_sse() {
    let (_processes, urls, _dirs) = stack(1).await;
    let base = urls[0].trim_end_matches("/mcp");
    let ws = format!("{}/ws", base.replacen("http://", "ws://", 1));
    let sse = format!("{base}/sse");
    for (mode, url) in [("ws", &ws), ("sse", &sse)] {
        let runs = KINDS.map(|kind| async move {
            let tool = format!("a_{kind}");
            (
                kind,
                node_peer("ts_asking_client.mjs", &[url, &tool, SESSIONS, mode], true).await,
            )
        });
        for (kind, seen) in futures::future::join_all(runs).await {
            no_failures(&format!("TypeScript SDK over {mode}"), kind, &seen);
        }
    }
}
