//! The data plane end to end: real `switchboard` processes on loopback ports, the official
//! PyPI `mcp` SDK client, and raw HTTP for bad input.

use serde_json::{json, Value};
use std::time::Duration;
use switchboard_testkit::{
    free_port, python_bin, wait_for_http_ok, ManagedProcess, McpHttpClient, ServerEverything,
};

use crate::common::{node_peer, root, BIN, WAIT};

fn quickstart() -> String {
    root()
        .join("tests/fixtures/federation.yaml")
        .display()
        .to_string()
}

/// Starts `switchboard ARGS...` and waits until `ready_url` answers 2xx.
async fn start(args: &[&str], ready_url: &str) -> ManagedProcess {
    let mut cmd = switchboard_testkit::switchboard(BIN);
    cmd.args(args)
        .env("SWITCHBOARD_LOG", "info,switchboard_dataplane=debug");
    let p = ManagedProcess::spawn(cmd).expect("spawn switchboard");
    if let Err(e) = wait_for_http_ok(ready_url, WAIT).await {
        panic!(
            "switchboard {args:?} never became ready: {e}\n{}",
            p.log_tail(40)
        );
    }
    p
}

/// A `switchboard up` on free ports with a temporary data dir.
struct Up {
    process: ManagedProcess,
    port: u16,
    _data: tempfile::TempDir,
}

impl Up {
    async fn start(extra: &[&str]) -> Up {
        Self::start_with(&quickstart(), extra).await
    }

    /// `up` on the quickstart, with the `everything` upstream pointed at `url`.
    async fn start_against(url: &str) -> (Up, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = std::fs::read_to_string(quickstart())
            .expect("quickstart")
            .replace("http://127.0.0.1:3001/mcp", url);
        let file = dir.path().join("quickstart.yaml");
        std::fs::write(&file, text).expect("write");
        let up = Self::start_with(&file.display().to_string(), &[]).await;
        (up, dir)
    }

    async fn start_with(config: &str, extra: &[&str]) -> Up {
        let data = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let admin = format!("127.0.0.1:{}", free_port());
        let dir = data.path().display().to_string();
        let mut args = vec![
            "up",
            "-f",
            config,
            "--listen",
            &listen,
            "--admin-listen",
            &admin,
            "--data-dir",
            &dir,
        ];
        args.extend_from_slice(extra);
        let process = start(&args, &format!("http://{listen}/readyz")).await;
        Up {
            process,
            port,
            _data: data,
        }
    }

    fn mcp(&self, server: &str) -> String {
        format!("http://127.0.0.1:{}/servers/{server}/mcp", self.port)
    }
}

async fn python_client(up: &Up, mode: &str) -> Value {
    let script = root().join("tests/peers/py_client.py");
    let out = tokio::process::Command::new(python_bin().expect("PyPI mcp installed"))
        .arg(&script)
        .args([&up.mcp("demo"), mode])
        .output();
    let out = tokio::time::timeout(WAIT, out)
        .await
        .expect("client finished")
        .expect("ran");
    assert!(
        out.status.success(),
        "mode {mode}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        up.process.log_tail(30)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from the client")
}

/// Waits until the data plane lists `tool` (catalog discovered and pushed).
async fn wait_for_tool(up: &Up, tool: &str) {
    let mut client = McpHttpClient::new(up.mcp("demo"));
    client.initialize().await.expect("initialize");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let tools = client
            .request("tools/list", json!({}))
            .await
            .expect("tools/list");
        if tools["tools"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["name"] == tool))
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{tool} never listed: {tools}\n{}",
            up.process.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_client_calls_real_upstream_tools_with_streamed_progress() {
    let server = ServerEverything::start().await.expect("server-everything");
    let (up, _dir) = Up::start_against(&server.url()).await;
    wait_for_tool(&up, "everything_echo").await;
    for mode in ["legacy", "2026-07-28"] {
        let seen = python_client(&up, mode).await;
        let tools = seen["tools"].as_array().expect("tools");
        assert!(
            tools.iter().any(|t| t == "everything_get-sum"),
            "{mode}: {tools:?}"
        );
        assert!(tools
            .iter()
            .all(|t| t.as_str().is_some_and(|n| n.starts_with("everything_"))));
        assert_eq!(seen["echo"], "Echo: via switchboard", "{mode}");
        assert!(seen["long_running"]
            .as_str()
            .expect("text")
            .contains("completed"));
        // Four progress notifications, arriving spread over the two seconds, not in one burst
        // at the end: the gateway streams events as they come.
        let progress = seen["progress"].as_array().expect("progress");
        assert_eq!(progress.len(), 4, "{mode}: {progress:?}");
        let first = progress[0][1].as_f64().expect("time");
        let last = progress[3][1].as_f64().expect("time");
        assert!(
            last - first >= 1.0,
            "{mode}: progress arrived bunched: {progress:?}"
        );
        // The upstream's prompts (prefixed) and resources are listed next to the local ones
        // and answered by the upstream.
        assert!(
            !seen["upstream_prompts"]
                .as_array()
                .expect("prompts")
                .is_empty(),
            "{seen}"
        );
        assert!(
            seen["upstream_prompt_messages"].as_u64() >= Some(1),
            "{seen}"
        );
        assert_eq!(
            seen["upstream_resource_uri"], seen["upstream_resources"][0],
            "{seen}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_upstream_gives_a_clean_error_not_a_hang() {
    let mut server = ServerEverything::start().await.expect("server-everything");
    let (up, _dir) = Up::start_against(&server.url()).await;
    wait_for_tool(&up, "everything_echo").await;
    let mut client = McpHttpClient::new(up.mcp("demo"));
    client.initialize().await.expect("initialize");
    server.process().kill();
    let started = std::time::Instant::now();
    let err = client
        .request(
            "tools/call",
            json!({"name": "everything_echo", "arguments": {"message": "x"}}),
        )
        .await
        .expect_err("the upstream is gone");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    let text = err.to_string();
    assert!(
        text.contains("-32603") && text.contains("upstream `everything` failed"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_client_uses_a_virtual_server_in_both_eras() {
    let up = Up::start(&[]).await;
    for (mode, era) in [
        ("legacy", "2025-11-25"),
        ("auto", "2026-07-28"),
        ("2026-07-28", "2026-07-28"),
    ] {
        let seen = python_client(&up, mode).await;
        assert_eq!(seen["protocol_version"], era, "{mode}");
        if mode != "2026-07-28" {
            // A pinned version skips discovery, so only the other two learn the name.
            assert_eq!(seen["server_name"], "switchboard/demo", "{mode}");
        }
        assert_eq!(seen["prompts"], json!(["summarize"]), "{mode}");
        let text = seen["prompt_text"].as_str().expect("prompt text");
        assert!(
            text.contains("a general reader") && text.contains("Switchboard routes MCP."),
            "{text}"
        );
        assert_eq!(seen["resources"], json!(["docs://switchboard/handbook"]));
        assert!(seen["resource_text"]
            .as_str()
            .expect("text")
            .starts_with("# Handbook"));
        assert_eq!(
            seen["unknown_prompt_error"],
            "unknown prompt: no-such-prompt"
        );
    }
}

async fn post(url: &str, session: Option<&str>, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body);
    if let Some(s) = session {
        req = req.header("mcp-session-id", s);
    }
    let resp = req.send().await.expect("POST");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_the_right_error_and_big_bodies_still_work() {
    let up = Up::start(&["--max-body-bytes", "200000"]).await;
    let url = up.mcp("demo");
    let mut client = McpHttpClient::new(url.clone());
    client.initialize().await.expect("initialize");
    // A session to use with raw requests.
    let init = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .body(r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}"#)
        .send()
        .await
        .expect("initialize");
    let sid = init.headers()["mcp-session-id"]
        .to_str()
        .expect("ascii")
        .to_string();
    let s = Some(sid.as_str());

    let code = |v: &Value| v["error"]["code"].as_i64();
    let (status, v) = post(&url, s, "{not json").await;
    assert_eq!((status, code(&v)), (400, Some(-32700)));
    let (status, v) = post(&url, s, r#"{"id":1,"method":"ping"}"#).await;
    assert_eq!((status, code(&v)), (400, Some(-32600)));
    let (_, v) = post(
        &url,
        s,
        r#"{"jsonrpc":"2.0","id":2,"method":"no/such/method"}"#,
    )
    .await;
    assert_eq!((code(&v), v["id"].clone()), (Some(-32601), json!(2)));
    let (_, v) = post(&url, s, r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"ghost","arguments":{}}}"#).await;
    assert_eq!(code(&v), Some(-32602));
    assert_eq!(v["error"]["message"], "unknown tool: ghost");
    let (status, _) = post(
        &up.mcp("nope"),
        s,
        r#"{"jsonrpc":"2.0","id":4,"method":"ping"}"#,
    )
    .await;
    assert_eq!(status, 404);

    // Bigger than pingora's 64 KiB request buffer, under our limit: still answered.
    let pad = "x".repeat(150_000);
    let big =
        json!({"jsonrpc": "2.0", "id": 5, "method": "ping", "params": {"_meta": {"pad": pad}}})
            .to_string();
    let (status, v) = post(&url, s, big).await;
    assert_eq!((status, v["result"].clone()), (200, json!({})));
    // Over the limit: 413, and the gateway keeps serving.
    let pad = "x".repeat(300_000);
    let huge =
        json!({"jsonrpc": "2.0", "id": 6, "method": "ping", "params": {"_meta": {"pad": pad}}})
            .to_string();
    let (status, v) = post(&url, s, huge).await;
    assert_eq!((status, code(&v)), (413, Some(-32600)));
    let pong = client
        .request("ping", json!({}))
        .await
        .expect("still serving");
    assert_eq!(pong, json!({}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_mode_serves_yaml_without_a_control_plane() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let state = tempfile::tempdir().expect("tempdir");
    let q = quickstart();
    let dir = state.path().display().to_string();
    let _dp = start(
        &[
            "dataplane",
            "-f",
            &q,
            "--listen",
            &listen,
            "--state-dir",
            &dir,
        ],
        &format!("http://{listen}/readyz"),
    )
    .await;
    let mut client = McpHttpClient::new(format!("http://{listen}/servers/demo/mcp"));
    client.initialize().await.expect("initialize");
    let prompts = client
        .request("prompts/list", json!({}))
        .await
        .expect("prompts/list");
    assert_eq!(prompts["prompts"][0]["name"], "summarize");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_plane_outlives_its_control_plane_and_restarts_from_its_persisted_snapshot() {
    let cp_data = tempfile::tempdir().expect("tempdir");
    let dp_state = tempfile::tempdir().expect("tempdir");
    let cp_addr = format!("127.0.0.1:{}", free_port());
    let mut cmd = switchboard_testkit::switchboard(BIN);
    cmd.args(["controlplane", "--listen", &cp_addr, "--data-dir"])
        .arg(cp_data.path());
    let mut cp = ManagedProcess::spawn(cmd).expect("control plane");
    switchboard_testkit::wait_for_tcp(&cp_addr, WAIT)
        .await
        .expect("control plane up");
    let server = format!("http://{cp_addr}");
    let out = switchboard_testkit::switchboard(BIN)
        .args(["apply", "-f", &quickstart(), "--server", &server])
        .output()
        .expect("apply");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let listen = format!("127.0.0.1:{}", free_port());
    let state = dp_state.path().display().to_string();
    let dp_args = [
        "dataplane",
        "--control-plane",
        &cp_addr,
        "--listen",
        &listen,
        "--state-dir",
        &state,
        "--node-id",
        "dp-1",
    ];
    let ready = format!("http://{listen}/readyz");
    let mut dp = start(&dp_args, &ready).await;
    let url = format!("http://{listen}/servers/demo/mcp");
    let mut client = McpHttpClient::new(url.clone());
    client.initialize().await.expect("initialize");

    cp.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let prompts = client
        .request("prompts/list", json!({}))
        .await
        .expect("served without a CP");
    assert_eq!(prompts["prompts"][0]["name"], "summarize");

    // Restart the data plane while the control plane is still gone: it starts from disk.
    dp.kill();
    let _dp = start(&dp_args, &ready).await;
    let mut client = McpHttpClient::new(url);
    client.initialize().await.expect("initialize after restart");
    let read = client
        .request(
            "resources/read",
            json!({"uri": "docs://switchboard/handbook"}),
        )
        .await
        .expect("resources/read from the persisted snapshot");
    assert!(read["contents"][0]["text"]
        .as_str()
        .expect("text")
        .starts_with("# Handbook"));
}

#[test]
fn a_taken_listen_address_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let state = tempfile::tempdir().expect("tempdir");
    let out = switchboard_testkit::switchboard(BIN)
        .args([
            "dataplane",
            "-f",
            &quickstart(),
            "--listen",
            &addr,
            "--state-dir",
        ])
        .arg(state.path())
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
}

/// The quickstart with the `everything` upstream at `url`, written to a temp dir.
fn quickstart_against(url: &str) -> (tempfile::TempDir, String) {
    quickstart_with(url, "http://127.0.0.1:3002/mcp")
}

/// The quickstart with its `everything` and `time` upstreams at these URLs.
fn quickstart_with(everything: &str, time: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(quickstart())
        .expect("quickstart")
        .replace("http://127.0.0.1:3001/mcp", everything)
        .replace("http://127.0.0.1:3002/mcp", time);
    let file = dir.path().join("quickstart.yaml");
    std::fs::write(&file, text).expect("write");
    let path = file.display().to_string();
    (dir, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_hops_between_replicas_and_survives_a_replica_restart() {
    let server = ServerEverything::start().await.expect("server-everything");
    let (_cfg, config) = quickstart_against(&server.url());
    let cp_data = tempfile::tempdir().expect("tempdir");
    let cp_addr = format!("127.0.0.1:{}", free_port());
    let mut cmd = switchboard_testkit::switchboard(BIN);
    cmd.args(["controlplane", "--listen", &cp_addr, "--data-dir"])
        .arg(cp_data.path());
    let _cp = ManagedProcess::spawn(cmd).expect("control plane");
    switchboard_testkit::wait_for_tcp(&cp_addr, WAIT)
        .await
        .expect("control plane up");
    let out = switchboard_testkit::switchboard(BIN)
        .args([
            "apply",
            "-f",
            &config,
            "--server",
            &format!("http://{cp_addr}"),
        ])
        .output()
        .expect("apply");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Two replicas of one group, no sticky routing between them.
    let states = [
        tempfile::tempdir().expect("t"),
        tempfile::tempdir().expect("t"),
    ];
    let listens = [
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    ];
    let args = |i: usize| {
        vec![
            "dataplane".to_string(),
            "--control-plane".into(),
            cp_addr.clone(),
            "--listen".into(),
            listens[i].clone(),
            "--state-dir".into(),
            states[i].path().display().to_string(),
            "--node-id".into(),
            format!("dp-{i}"),
        ]
    };
    let start_replica = |i: usize| {
        let args = args(i);
        let ready = format!("http://{}/readyz", listens[i]);
        async move {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            start(&refs, &ready).await
        }
    };
    let _a = start_replica(0).await;
    let mut b = start_replica(1).await;
    let url = |i: usize| format!("http://{}/servers/demo/mcp", listens[i]);

    let mut client = McpHttpClient::new(url(0));
    client.initialize().await.expect("initialize on replica A");
    let echo = |n: &str| json!({"name": "everything_echo", "arguments": {"message": n}});
    let deadline = tokio::time::Instant::now() + WAIT;
    // The catalog reaches both replicas shortly after apply.
    loop {
        client.set_url(url(1));
        match client.request("tools/call", echo("hop")).await {
            Ok(r) => {
                assert_eq!(r["content"][0]["text"], "Echo: hop");
                break;
            }
            Err(e) => assert!(
                tokio::time::Instant::now() < deadline,
                "replica B never served A's session: {e}\n{}",
                b.log_tail(30)
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Back and forth: the same session on both replicas.
    for (i, word) in [(0, "a"), (1, "b"), (0, "c")] {
        client.set_url(url(i));
        let r = client
            .request("tools/call", echo(word))
            .await
            .expect("call");
        assert_eq!(r["content"][0]["text"], format!("Echo: {word}"));
    }
    // Replica B restarts; the session still works there (the id carries what it needs).
    b.kill();
    let _b = start_replica(1).await;
    client.set_url(url(1));
    let r = client
        .request("tools/call", echo("after restart"))
        .await
        .expect("call after the replica restarted");
    assert_eq!(r["content"][0]["text"], "Echo: after restart");

    // An id this registry did not seal is not a session.
    let forged = reqwest::Client::new()
        .post(url(0))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header(
            "mcp-session-id",
            "sb2.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        )
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
        .send()
        .await
        .expect("send");
    assert_eq!(forged.status(), 404);
}

/// `switchboard bridge` serving PyPI `mcp-server-time` (a stdio server) on a free port.
async fn time_bridge() -> (ManagedProcess, String) {
    let time = switchboard_testkit::venv_bin("mcp-server-time").expect("mcp-server-time installed");
    let listen = format!("127.0.0.1:{}", free_port());
    let mut cmd = switchboard_testkit::switchboard(BIN);
    cmd.args(["bridge", "--listen", &listen, "--stdio"])
        .arg(&time)
        .args(["--", "--local-timezone", "UTC"]);
    let process = ManagedProcess::spawn(cmd).expect("bridge");
    if let Err(e) =
        switchboard_testkit::wait_for_http_ok(&format!("http://{listen}/healthz"), WAIT).await
    {
        panic!("bridge did not start: {e}\n{}", process.log_tail(30));
    }
    (process, format!("http://{listen}/mcp"))
}

async fn ts_client(url: &str) -> Value {
    ts_client_with_prefix(url, "everything_").await
}

async fn ts_client_with_prefix(url: &str, prefix: &str) -> Value {
    node_peer("ts_client.mjs", &[url, prefix], false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdio_server_behind_the_bridge_answers_directly_and_through_the_gateway() {
    let (bridge, time_url) = time_bridge().await;
    // Directly: the bridge is a streamable-HTTP MCP server.
    let mut direct = McpHttpClient::new(time_url.clone());
    let init = direct
        .initialize()
        .await
        .expect("initialize via the bridge");
    assert_eq!(init["serverInfo"]["name"], "mcp-time", "{init}");
    let now = direct
        .request(
            "tools/call",
            json!({"name": "get_current_time", "arguments": {"timezone": "UTC"}}),
        )
        .await
        .expect("call via the bridge");
    assert!(
        now["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("UTC")),
        "{now}\n{}",
        bridge.log_tail(20)
    );

    // Through one virtual server, next to server-everything, for both SDK clients.
    let server = ServerEverything::start().await.expect("server-everything");
    let (_cfg, config) = quickstart_with(&server.url(), &time_url);
    let up = Up::start_with(&config, &[]).await;
    wait_for_tool(&up, "time_get_current_time").await;
    wait_for_tool(&up, "everything_echo").await;
    for mode in ["legacy", "2026-07-28"] {
        let seen = python_client(&up, mode).await;
        assert!(
            seen["time"].as_str().is_some_and(|t| t.contains("UTC")),
            "{mode}: {seen}"
        );
        assert_eq!(seen["echo"], "Echo: via switchboard", "{mode}");
    }
    let seen = ts_client(&up.mcp("demo")).await;
    assert_eq!(seen["server_name"], "switchboard/demo", "{seen}");
    assert!(
        seen["time"].as_str().is_some_and(|t| t.contains("UTC")),
        "{seen}"
    );
    assert_eq!(seen["echo"], "Echo: from ts", "{seen}");
    assert_progress_streamed(&seen, "ts");
    assert!(
        seen["unknown_tool_error"]
            .as_str()
            .is_some_and(|e| e.contains("unknown tool: no_such_tool")),
        "{seen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_and_log_levels_reach_the_upstream() {
    let server = ServerEverything::start().await.expect("server-everything");
    let (up, _dir) = Up::start_against(&server.url()).await;
    wait_for_tool(&up, "everything_echo").await;
    let mut client = McpHttpClient::new(up.mcp("demo"));
    client.initialize().await.expect("initialize");
    // The prompt's client-visible (prefixed) name is renamed back for the upstream.
    let done = client
        .request(
            "completion/complete",
            json!({"ref": {"type": "ref/prompt", "name": "everything_completable-prompt"},
                   "argument": {"name": "department", "value": "E"}}),
        )
        .await
        .expect("completion/complete");
    assert_eq!(
        done["completion"]["values"],
        json!(["Engineering"]),
        "{done}"
    );
    // Local prompts complete to nothing rather than failing.
    let local = client
        .request(
            "completion/complete",
            json!({"ref": {"type": "ref/prompt", "name": "summarize"},
                   "argument": {"name": "audience", "value": "x"}}),
        )
        .await
        .expect("local completion");
    assert_eq!(local["completion"]["values"], json!([]));
    let set = client
        .request("logging/setLevel", json!({"level": "debug"}))
        .await
        .expect("logging/setLevel");
    assert_eq!(set, json!({}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_upstream_stream_is_cut_at_its_idle_timeout() {
    let server = ServerEverything::start().await.expect("server-everything");
    let dir = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(quickstart())
        .expect("quickstart")
        .replace("http://127.0.0.1:3001/mcp", &server.url())
        .replace("request: 30s", "request: 30s\n    idle: 1s");
    let file = dir.path().join("quickstart.yaml");
    std::fs::write(&file, text).expect("write");
    let up = Up::start_with(&file.display().to_string(), &[]).await;
    wait_for_tool(&up, "everything_echo").await;
    let mut client = McpHttpClient::new(up.mcp("demo"));
    client.initialize().await.expect("initialize");
    let started = std::time::Instant::now();
    // One step of ten seconds: the upstream says nothing for ten seconds.
    let err = client
        .request(
            "tools/call",
            json!({"name": "everything_trigger-long-running-operation",
                   "arguments": {"duration": 10, "steps": 1}}),
        )
        .await
        .expect_err("cut off");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "took {took:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("-32603") && text.contains("no event for 1s"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passthrough_server_proxies_one_upstream_as_is() {
    let server = ServerEverything::start().await.expect("server-everything");
    let dir = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(root().join("examples/passthrough.yaml"))
        .expect("example")
        .replace("http://127.0.0.1:3001/mcp", &server.url());
    let file = dir.path().join("passthrough.yaml");
    std::fs::write(&file, text).expect("write");
    let up = Up::start_with(&file.display().to_string(), &[]).await;
    // The upstream itself answers: its own name, unprefixed tools, its progress stream.
    let seen = ts_client_with_prefix(&up.mcp("everything-raw"), "").await;
    assert!(
        seen["server_name"]
            .as_str()
            .is_some_and(|n| !n.starts_with("switchboard")),
        "{seen}"
    );
    assert!(
        seen["tools"]
            .as_array()
            .is_some_and(|t| t.contains(&json!("echo"))),
        "{seen}"
    );
    assert_eq!(seen["echo"], "Echo: from ts", "{seen}");
    assert_progress_streamed(&seen, "ts");

    // A dead upstream is a clean 502, not a hang.
    drop(server);
    let started = std::time::Instant::now();
    let resp = reqwest::Client::new()
        .post(up.mcp("everything-raw"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .send()
        .await
        .expect("an answer");
    assert_eq!(resp.status(), 502);
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// Four progress notifications, arriving spread over the call's two seconds rather than in
/// one burst at the end: the gateway streams events as they come.
fn assert_progress_streamed(seen: &Value, label: &str) {
    let progress = seen["progress"].as_array().expect("progress");
    assert_eq!(progress.len(), 4, "{label}: {seen}");
    let spread = progress[3][1].as_f64().unwrap_or(0.0) - progress[0][1].as_f64().unwrap_or(0.0);
    assert!(
        spread >= 1.0,
        "{label}: progress arrived bunched: {progress:?}"
    );
}
