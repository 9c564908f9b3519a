//! Helpers the end-to-end tests share: our binaries as real processes (control planes on
//! the embedded store or etcd, data planes), the CLI, YAML builders, and polling.

use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use switchboard_testkit::{
    free_port, wait_for_http_ok, wait_for_tcp, ManagedProcess, McpHttpClient,
};

pub const BIN: &str = env!("CARGO_BIN_EXE_switchboard");
pub const WAIT: Duration = Duration::from_secs(30);

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A control plane on the embedded store (or on `etcd`), ready for admin calls.
pub async fn control_plane(etcd: Option<&str>) -> (ManagedProcess, String, tempfile::TempDir) {
    control_plane_with_key(etcd, None).await
}

/// The same, with `SWITCHBOARD_SECRET_KEY` set to `key` (or unset).
pub async fn control_plane_with_key(
    etcd: Option<&str>,
    key: Option<&str>,
) -> (ManagedProcess, String, tempfile::TempDir) {
    let data = tempfile::tempdir().expect("tempdir");
    let addr = format!("127.0.0.1:{}", free_port());
    let mut cmd = switchboard_testkit::switchboard(BIN);
    cmd.args(["controlplane", "--listen", &addr, "--data-dir"])
        .arg(data.path())
        .env("SWITCHBOARD_LOG", "info,switchboard_controlplane=debug")
        .env_remove("SWITCHBOARD_SECRET_KEY");
    if let Some(key) = key {
        cmd.env("SWITCHBOARD_SECRET_KEY", key);
    }
    if let Some(endpoint) = etcd {
        cmd.args(["--etcd", endpoint, "--etcd-prefix", "/discovery-test"]);
    }
    let p = ManagedProcess::spawn(cmd).expect("control plane");
    if let Err(e) = wait_for_tcp(&addr, WAIT).await {
        panic!("control plane did not start: {e}\n{}", p.log_tail(20));
    }
    (p, format!("http://{addr}"), data)
}

/// A data plane fed by `control_planes`; returns it and its MCP URL for server `demo`.
pub async fn data_plane(control_planes: &str) -> (ManagedProcess, String, tempfile::TempDir) {
    data_plane_with(control_planes, &[]).await
}

/// The same, with extra environment variables.
pub async fn data_plane_with(
    control_planes: &str,
    env: &[(&str, &str)],
) -> (ManagedProcess, String, tempfile::TempDir) {
    data_plane_in(control_planes, None, env).await
}

/// The same, run in `dir` (the repository root when None): relative paths in the
/// configuration, such as a stdio upstream's command, are found from there.
pub async fn data_plane_in(
    control_planes: &str,
    dir: Option<&Path>,
    env: &[(&str, &str)],
) -> (ManagedProcess, String, tempfile::TempDir) {
    let state = tempfile::tempdir().expect("tempdir");
    let listen = format!("127.0.0.1:{}", free_port());
    let mut cmd = switchboard_testkit::switchboard(BIN);
    cmd.args([
        "dataplane",
        "--control-plane",
        control_planes,
        "--listen",
        &listen,
    ])
    .arg("--state-dir")
    .arg(state.path())
    .current_dir(dir.unwrap_or(root()))
    .envs(env.iter().copied());
    let p = ManagedProcess::spawn(cmd).expect("data plane");
    if let Err(e) = wait_for_http_ok(&format!("http://{listen}/readyz"), WAIT).await {
        panic!("data plane did not start: {e}\n{}", p.log_tail(20));
    }
    (p, format!("http://{listen}/servers/demo/mcp"), state)
}

/// Runs the CLI; returns (exit code, stdout, stderr).
pub fn cli(args: &[&str]) -> (i32, String, String) {
    let out = switchboard_testkit::switchboard(BIN)
        .args(args)
        .output()
        .expect("run switchboard");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn apply(server: &str, yaml: &str) -> (String, String) {
    let (code, out, err) = try_apply(server, yaml);
    assert_eq!(code, 0, "apply failed:\n{out}\n{err}");
    (out, err)
}

pub fn try_apply(server: &str, yaml: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("config.yaml");
    std::fs::write(&file, yaml).expect("write");
    cli(&[
        "apply",
        "-f",
        &file.display().to_string(),
        "--server",
        server,
    ])
}

/// Polls `tools/list` until `pred` holds for the listed names (or panics after `within`).
pub async fn wait_for_tools(
    url: &str,
    within: Duration,
    what: &str,
    pred: impl Fn(&[String]) -> bool,
) {
    wait_for_tools_as(url, &[], within, what, pred).await;
}

/// The same for a client that sends `headers` (credentials).
pub async fn wait_for_tools_as(
    url: &str,
    headers: &[(&str, &str)],
    within: Duration,
    what: &str,
    pred: impl Fn(&[String]) -> bool,
) {
    let deadline = Instant::now() + within;
    loop {
        let mut client = McpHttpClient::new(url);
        for (k, v) in headers {
            client = client.with_header(k, v);
        }
        let names: Vec<String> = match client.initialize().await {
            Ok(_) => client
                .request("tools/list", json!({}))
                .await
                .ok()
                .and_then(|r| r["tools"].as_array().cloned())
                .unwrap_or_default()
                .iter()
                .filter_map(|t| t["name"].as_str().map(str::to_string))
                .collect(),
            Err(_) => Vec::new(),
        };
        if pred(&names) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: still {names:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `get upstreams NAME -o json` as the status block.
pub fn upstream_status(server: &str, name: &str) -> serde_json::Value {
    let (code, out, err) = cli(&["get", "upstreams", name, "-o", "json", "--server", server]);
    assert_eq!(code, 0, "{out}\n{err}");
    let list: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    list[0]["status"].clone()
}

pub fn upstream(name: &str, url: &str, extra: &str) -> String {
    format!(
        "apiVersion: switchboard.dev/v1\nkind: Upstream\nmetadata:\n  name: {name}\nspec:\n  mcp:\n    url: {url}\n  health:\n    interval: 500ms\n    timeout: 1s\n    unhealthyThreshold: 2\n{extra}---\n"
    )
}

pub fn server(upstreams: &[(&str, &str)]) -> String {
    let mut s = String::from(
        "apiVersion: switchboard.dev/v1\nkind: VirtualServer\nmetadata:\n  name: demo\nspec:\n  upstreams:\n",
    );
    for (name, prefix) in upstreams {
        s.push_str(&format!(
            "    - upstream: {name}\n      prefix: \"{prefix}\"\n"
        ));
    }
    s
}

/// mcp-server-time behind `switchboard bridge` on `listen`.
pub async fn time_bridge(listen: &str) -> ManagedProcess {
    time_bridge_with_token(listen, None).await
}

/// The same, requiring `Authorization: Bearer <token>` when one is given.
pub async fn time_bridge_with_token(listen: &str, token: Option<&str>) -> ManagedProcess {
    let time = switchboard_testkit::venv_bin("mcp-server-time").expect("mcp-server-time installed");
    let mut cmd = switchboard_testkit::switchboard(BIN);
    cmd.args(["bridge", "--listen", listen]);
    if let Some(token) = token {
        cmd.args(["--bearer-env", "BRIDGE_TOKEN"])
            .env("BRIDGE_TOKEN", token);
    }
    cmd.arg("--stdio")
        .arg(&time)
        .args(["--", "--local-timezone", "UTC"]);
    let p = ManagedProcess::spawn(cmd).expect("bridge");
    if let Err(e) = wait_for_http_ok(&format!("http://{listen}/healthz"), WAIT).await {
        panic!("bridge did not start: {e}\n{}", p.log_tail(20));
    }
    p
}

/// A Python peer from tests/peers on a free port: (process, base URL).
pub async fn peer(script: &str, args: &[&str]) -> (ManagedProcess, String) {
    let port = free_port();
    let mut cmd = Command::new(switchboard_testkit::python_bin().expect("PyPI mcp installed"));
    cmd.arg(root().join("tests/peers").join(script))
        .arg(port.to_string())
        .args(args);
    let p = ManagedProcess::spawn(cmd).expect(script);
    if let Err(e) = wait_for_tcp(&format!("127.0.0.1:{port}"), WAIT).await {
        panic!("{script} did not start: {e}\n{}", p.log_tail(20));
    }
    (p, format!("http://127.0.0.1:{port}"))
}

/// A control plane and a data plane serving one upstream as virtual server `demo`.
/// Dropping it stops both.
pub struct GatewayStack {
    /// `demo`'s MCP URL on the data plane.
    pub url: String,
    _processes: (ManagedProcess, ManagedProcess),
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

/// Starts a [`GatewayStack`] for upstream `name` at `upstream_url` (tools under `prefix`)
/// and waits until `demo` lists `tool`.
pub async fn gateway_stack(
    name: &str,
    upstream_url: &str,
    prefix: &str,
    tool: &str,
) -> GatewayStack {
    let (cp, admin, data) = control_plane(None).await;
    let (dp, url, state) = data_plane(admin.trim_start_matches("http://")).await;
    apply(
        &admin,
        &format!(
            "{}{}",
            upstream(name, upstream_url, ""),
            server(&[(name, prefix)])
        ),
    );
    wait_for_tools(&url, WAIT, &format!("{name}'s tools"), |t| {
        t.iter().any(|n| n == tool)
    })
    .await;
    GatewayStack {
        url,
        _processes: (cp, dp),
        _dirs: (data, state),
    }
}

/// The conformance fixture server (tests/peers/conformance_fixture_server.mjs: a
/// session-era server with the suite's fixture tools, prompts, resources and task tools) on
/// a reserved port: (process, its MCP URL).
pub async fn fixture_server() -> (ManagedProcess, String) {
    let modules = switchboard_testkit::npm_module_dir("@modelcontextprotocol/sdk")
        .expect("TS SDK installed")
        .join("../..");
    let port = switchboard_testkit::free_port();
    let mut cmd = Command::new(switchboard_testkit::node22_bin().expect("Node 22"));
    cmd.arg(root().join("tests/peers/conformance_fixture_server.mjs"))
        .arg(&modules)
        .arg(port.to_string());
    let p = ManagedProcess::spawn(cmd).expect("fixture server");
    if let Err(e) = switchboard_testkit::wait_for_tcp(&format!("127.0.0.1:{port}"), WAIT).await {
        panic!("the fixture server did not start: {e}\n{}", p.log_tail(20));
    }
    (p, format!("http://127.0.0.1:{port}/mcp"))
}

/// server-everything behind a [`GatewayStack`].
pub struct EverythingStack {
    /// The upstream's own MCP URL.
    pub direct: String,
    /// `demo`'s MCP URL on the data plane.
    pub url: String,
    _gateway: GatewayStack,
    _everything: switchboard_testkit::ServerEverything,
}

/// Starts an [`EverythingStack`] and waits until `demo` lists `tool`.
pub async fn everything_stack(prefix: &str, tool: &str) -> EverythingStack {
    let everything = switchboard_testkit::ServerEverything::start()
        .await
        .expect("server-everything");
    let gateway = gateway_stack("everything", &everything.url(), prefix, tool).await;
    EverythingStack {
        direct: everything.url(),
        url: gateway.url.clone(),
        _gateway: gateway,
        _everything: everything,
    }
}

/// POSTs an initialize with `headers`; returns status, response headers and body.
pub async fn initialize_with(
    url: &str,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}"#);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("gateway answers");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.unwrap_or_default())
}

/// Runs a Node test peer (`tests/peers/SCRIPT`, given the npm modules dir first, then
/// `args`) on Node 22 or the system's Node, and parses the one JSON object it prints.
pub async fn node_peer(script: &str, args: &[&str], node22: bool) -> serde_json::Value {
    node_peer_with_env(script, args, node22, &[]).await
}

/// The same, with extra environment variables (`NODE_EXTRA_CA_CERTS`, say).
pub async fn node_peer_with_env(
    script: &str,
    args: &[&str],
    node22: bool,
    env: &[(&str, &str)],
) -> serde_json::Value {
    let node = if node22 {
        switchboard_testkit::node22_bin()
    } else {
        switchboard_testkit::node_bin()
    };
    let modules = switchboard_testkit::deps_dir().join("npm/node_modules");
    let out = tokio::process::Command::new(node.expect("node"))
        .arg(root().join("tests/peers").join(script))
        .arg(&modules)
        .args(args)
        .envs(env.iter().copied())
        .output();
    let out = tokio::time::timeout(WAIT, out)
        .await
        .expect("the Node peer finished")
        .expect("ran");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{script} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// A loopback TCP relay to `target` that cuts the first connection whose answer bytes
/// contain `marker`, right after passing those bytes on (a network failure mid-stream);
/// later connections are relayed whole. Yields its address and how many it cut.
pub async fn cutting_relay(
    target: std::net::SocketAddr,
    marker: &'static str,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let cuts = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = cuts.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(target).await else {
                continue;
            };
            let cuts = counted.clone();
            tokio::spawn(async move {
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = async {
                    let _ = tokio::io::copy(&mut cr, &mut sw).await;
                };
                let down = async {
                    let mut buf = vec![0u8; 16 << 10];
                    loop {
                        let n = match sr.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        if cw.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                        let hit = String::from_utf8_lossy(&buf[..n]).contains(marker);
                        let first = cuts.compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst);
                        if hit && first.is_ok() {
                            return; // dropping both halves cuts the connection
                        }
                    }
                };
                tokio::select! {
                    () = up => {}
                    () = down => {}
                }
            });
        }
    });
    (addr, cuts)
}

/// Runs a Python test peer (`tests/peers/SCRIPT ARGS`, on the venv's Python with the PyPI
/// SDK) and parses the one JSON object it prints.
pub async fn python_peer(script: &str, args: &[&str]) -> serde_json::Value {
    python_peer_with_env(script, args, &[]).await
}

/// The same, with extra environment variables (`SSL_CERT_FILE`, say).
pub async fn python_peer_with_env(
    script: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> serde_json::Value {
    let out = tokio::process::Command::new(switchboard_testkit::python_bin().expect("python"))
        .arg(root().join("tests/peers").join(script))
        .args(args)
        .envs(env.iter().copied())
        .output();
    let out = tokio::time::timeout(WAIT, out)
        .await
        .expect("the Python peer finished")
        .expect("ran");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{script} printed no JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// An HTTP client trusting `ca_pem`, presenting `identity` when given.
pub fn trusting(ca_pem: &str, identity: Option<&switchboard_testkit::CertPair>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA"));
    if let Some(id) = identity {
        let pem = format!("{}{}", id.cert_pem, id.key_pem);
        b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).expect("identity"));
    }
    b.build().expect("client")
}

/// POSTs one JSON-RPC message; returns the status and the JSON-RPC message of the body.
pub async fn rpc(
    http: &reqwest::Client,
    url: &str,
    session: Option<&str>,
    body: serde_json::Value,
) -> (u16, Option<String>, serde_json::Value) {
    let mut req = http
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .body(body.to_string());
    if let Some(s) = session {
        req = req.header("mcp-session-id", s);
    }
    let resp = req.send().await.expect("gateway answers");
    let status = resp.status().as_u16();
    let sid = resp
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = resp.text().await.unwrap_or_default();
    let json = text
        .lines()
        .find_map(|l| l.strip_prefix("data:"))
        .map_or_else(|| serde_json::from_str(&text), serde_json::from_str)
        .unwrap_or(serde_json::Value::Null);
    (status, sid, json)
}

/// initialize + notifications/initialized + tools/call `tool`: (status of the call, result).
pub async fn call_as(
    http: &reqwest::Client,
    url: &str,
    tool: &str,
    args: serde_json::Value,
) -> (u16, serde_json::Value) {
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
    let (status, sid, body) = rpc(http, url, None, init).await;
    if status != 200 {
        return (status, body);
    }
    let sid = sid.as_deref();
    rpc(
        http,
        url,
        sid,
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    let (status, _, body) = rpc(
        http,
        url,
        sid,
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": tool, "arguments": args}}),
    )
    .await;
    (status, body)
}
