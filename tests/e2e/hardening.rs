//! Attacks on the gateway and its control plane, each performed for real against our
//! binaries (the hardening issue's findings): every one must be refused cleanly, and what
//! was attacked must keep serving.

use crate::common::{
    apply, control_plane, data_plane, peer, server, time_bridge, upstream, upstream_status,
};
use crate::controlplane::{examples, ControlPlane};
use serde_json::json;
use std::time::{Duration, Instant};
use switchboard_testkit::{free_port, McpHttpClient};

const WAIT: Duration = Duration::from_secs(20);

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

/// 100 000 nested block sequences in 200 KB: once enough to make `validate` grow past a
/// gigabyte and abort, and to abort a control plane from a single Apply.
fn nesting_bomb(dir: &std::path::Path) -> String {
    let path = dir.join("bomb.yaml");
    std::fs::write(&path, "- ".repeat(100_000) + "x\n").expect("write the bomb");
    path.to_str().expect("utf-8 path").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_yaml_nesting_bomb_is_refused_where_it_starts_at_every_entry_point() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bomb = nesting_bomb(dir.path());
    let said = format!("{bomb}:1:129 (document 0): YAML syntax error: mappings and sequences nest deeper than 64 levels here");

    // validate
    let out = switchboard_testkit::switchboard(BIN)
        .args(["validate", "-f", &bomb])
        .output()
        .expect("run validate");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&said), "{stderr}");

    // dataplane -f: refuses to start, saying why.
    let mut dataplane = switchboard_testkit::switchboard(BIN);
    dataplane
        .args(["dataplane", "-f", &bomb])
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .arg("--state-dir")
        .arg(dir.path().join("dp"));
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::from(dataplane).output(),
    )
    .await
    .expect("the data plane stops at once")
    .expect("run dataplane");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&said), "{stderr}");

    // apply: the control plane refuses it and keeps serving.
    let data = dir.path().join("cp");
    let cp = ControlPlane::start(free_port(), &["--data-dir", data.to_str().expect("utf-8")]).await;
    let out = cp.cli(&["apply", "-f", &bomb]);
    assert_eq!(out.status.code(), Some(1), "{}", cp.process.log_tail(20));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("nest deeper than 64 levels here") && stderr.contains(":1:129"),
        "{stderr}"
    );
    let applied = cp.cli_ok(&[
        "apply",
        "-f",
        examples().join("quickstart.yaml").to_str().expect("utf-8"),
    ]);
    assert!(applied.contains("virtualserver/demo created"), "{applied}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_whose_catalog_no_snapshot_could_carry_cannot_freeze_config() {
    // A tool schema 124 levels deep: readable in the upstream's answer, not once a snapshot
    // wraps it. Accepted, it made every data plane NACK every later snapshot.
    let (_deep, base) = peer("deep_schema_server.py", &[]).await;
    let (_cp, admin, _data) = control_plane(None).await;
    let (_dp, url, _state) = data_plane(admin.trim_start_matches("http://")).await;
    apply(
        &admin,
        &format!(
            "{}{}",
            upstream("deep", &format!("{base}/mcp"), ""),
            server(&[("deep", "d_")])
        ),
    );
    // Once discovery has listed the upstream (and kept or refused its catalog)...
    let deadline = Instant::now() + WAIT;
    let status = loop {
        let status = upstream_status(&admin, "deep");
        let listed = status["tools"].as_u64().unwrap_or(0) > 0;
        if listed || !status["lastError"].as_str().unwrap_or_default().is_empty() {
            break status;
        }
        assert!(Instant::now() < deadline, "never listed: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // ...later changes still reach the data plane: a prompt applied now is served.
    apply(
        &admin,
        &format!(
            "apiVersion: switchboard.dev/v1\nkind: Prompt\nmetadata:\n  name: later\nspec:\n  template: still here\n---\n{}  prompts: [later]\n",
            server(&[("deep", "d_")])
        ),
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let mut client = McpHttpClient::new(&url);
        let prompts = match client.initialize().await {
            Ok(_) => client.request("prompts/list", json!({})).await.ok(),
            Err(_) => None,
        };
        let names: Vec<String> = prompts
            .and_then(|p| p["prompts"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|p| p["name"].as_str().map(str::to_string))
            .collect();
        if names.iter().any(|n| n == "later") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the later change never arrived: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The upstream is told why its catalog was refused.
    let refused = status["lastError"].as_str().unwrap_or_default();
    assert!(
        refused.contains("catalog refused: tools item 1 (`deep`) nests 124 levels deep"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_on_loopback_refuses_foreign_hosts_and_origins() {
    // A web page whose domain resolves to 127.0.0.1 (DNS rebinding) sends its own Host;
    // a cross-site page sends its Origin. Either once reached the child's tools.
    let listen = format!("127.0.0.1:{}", free_port());
    let _bridge = time_bridge(&listen).await;
    let url = format!("http://{listen}/mcp");
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "page", "version": "1"}}});
    let post = |extra: Vec<(&'static str, String)>| {
        let mut req = reqwest::Client::new()
            .post(&url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .json(&initialize);
        for (k, v) in extra {
            req = req.header(k, v);
        }
        async move {
            let resp = req.send().await.expect("POST");
            let status = resp.status().as_u16();
            (status, resp.text().await.unwrap_or_default())
        }
    };
    let port = listen.rsplit(':').next().unwrap_or_default().to_string();
    let (status, body) = post(vec![("host", format!("rebound.example:{port}"))]).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("DNS-rebinding protection"), "{body}");
    let (status, body) = post(vec![("origin", "https://evil.example".into())]).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("Origin `https://evil.example` is not allowed"),
        "{body}"
    );
    // This machine's own clients still get in.
    let (status, body) = post(vec![("origin", "http://localhost:5173".into())]).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(vec![]).await;
    assert_eq!(status, 200, "{body}");
}
