//! `stdio` Upstreams run by the data plane itself: real `switchboard` processes, real stdio
//! MCP servers (npm server-everything, PyPI mcp-server-time, and a PyPI-SDK server that
//! tells its pid), and the official PyPI SDK client.

use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};
use switchboard_testkit::{
    free_port, python_bin, tail_of_file, wait_for_http_ok, ManagedProcess, McpHttpClient,
};

use crate::common::{
    apply, cli, control_plane, control_plane_with_key, data_plane_in, python_peer, root, BIN, WAIT,
};

/// The pid server's command, with its script relative to the data plane's directory (so a
/// data plane started elsewhere cannot run it).
fn pid_upstream(name: &str, extra: &str) -> String {
    let python = python_bin().expect("PyPI mcp installed");
    format!(
        "apiVersion: switchboard.dev/v1\nkind: Upstream\nmetadata:\n  name: {name}\nspec:\n  stdio:\n    command: {}\n    args: [tests/peers/pid_server.py]\n{extra}  health:\n    interval: 500ms\n---\n",
        python.display()
    )
}

fn demo_server(upstream: &str, prefix: &str) -> String {
    format!(
        "apiVersion: switchboard.dev/v1\nkind: VirtualServer\nmetadata:\n  name: demo\nspec:\n  upstreams:\n    - upstream: {upstream}\n      prefix: {prefix}\n"
    )
}

/// A session whose `tools/list` includes `tool` (polled on the same session, so a
/// `perSession` upstream gets one child for it, not one per poll).
async fn session_listing(url: &str, tool: &str, dp: &ManagedProcess) -> McpHttpClient {
    let deadline = Instant::now() + WAIT;
    let mut client = loop {
        // The virtual server exists once the applied snapshot arrives.
        let mut client = McpHttpClient::new(url);
        match client.initialize().await {
            Ok(_) => break client,
            Err(e) => assert!(Instant::now() < deadline, "{e}\n{}", dp.log_tail(20)),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    loop {
        let listed = client
            .request("tools/list", json!({}))
            .await
            .expect("tools/list");
        let names: Vec<&str> = listed["tools"]
            .as_array()
            .map(|t| t.iter().filter_map(|t| t["name"].as_str()).collect())
            .unwrap_or_default();
        if names.contains(&tool) {
            return client;
        }
        assert!(
            Instant::now() < deadline,
            "{tool} never listed: {names:?}\n{}",
            dp.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn call(client: &mut McpHttpClient, tool: &str, args: Value) -> anyhow::Result<String> {
    let result = client
        .request("tools/call", json!({"name": tool, "arguments": args}))
        .await?;
    anyhow::ensure!(result["isError"] != true, "tool error: {result}");
    Ok(result["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

fn upstream_status(admin: &str, name: &str) -> Value {
    let (code, out, err) = cli(&["get", "upstreams", name, "-o", "json", "--server", admin]);
    assert_eq!(code, 0, "{err}");
    let rows: Value = serde_json::from_str(&out).expect("JSON");
    rows[0]["status"].clone()
}

/// Polls until `get upstreams NAME` satisfies `pred`.
async fn wait_status(admin: &str, name: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let status = upstream_status(admin, name);
        if pred(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "{what}: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A secret-sealing key for the tests' control planes.
const KEY: &str = "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq8M=";

/// `switchboard up -f CONFIG` run from the repository root on reserved ports: the process,
/// its data-plane and admin addresses, and its data dir.
async fn up_in_root(
    config: &str,
    env: &[(&str, &str)],
) -> (ManagedProcess, String, String, tempfile::TempDir) {
    let data = tempfile::tempdir().expect("tempdir");
    let listen = format!("127.0.0.1:{}", free_port());
    let admin = format!("127.0.0.1:{}", free_port());
    let mut cmd = switchboard_testkit::switchboard(BIN);
    cmd.args(["up", "-f", config, "--listen", &listen])
        .args(["--admin-listen", &admin, "--data-dir"])
        .arg(data.path())
        .envs(env.iter().copied())
        .current_dir(root());
    let up = ManagedProcess::spawn(cmd).expect("switchboard up");
    if let Err(e) = wait_for_http_ok(&format!("http://{listen}/readyz"), WAIT).await {
        panic!("up -f {config} did not start: {e}\n{}", up.log_tail(30));
    }
    (up, listen, admin, data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn make_run_alone_serves_both_quickstart_upstreams_to_the_python_sdk() {
    // What `make run` starts, from the repository root, with nothing else running.
    let (up, listen, admin, _data) = up_in_root("examples/quickstart.yaml", &[]).await;
    let url = format!("http://{listen}/servers/demo/mcp");
    let seen = python_peer("py_quickstart.py", &[&url]).await;
    assert!(
        seen.get("exception").is_none(),
        "{seen}\n{}",
        up.log_tail(40)
    );
    let tools: Vec<&str> = seen["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(tools.contains(&"everything_get-sum"), "{tools:?}");
    assert!(tools.contains(&"time_convert_time"), "{tools:?}");
    assert_eq!(seen["echo"], "Echo: hello", "{seen}");
    assert_eq!(seen["time"]["timezone"], "Europe/Paris", "{seen}");

    // Both are reported to the control plane: healthy, with their catalogs, no error.
    let admin = format!("http://{admin}");
    for (name, tools) in [("everything", 13), ("time", 2)] {
        let status = wait_status(&admin, name, "reported", |s| s["tools"] == tools).await;
        assert_eq!(status["state"], "healthy", "{status}");
        assert_eq!(status["transport"], "stdio", "{status}");
        assert_eq!(status["lastError"], "", "{status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_killed_mid_call_gives_a_clean_error_and_the_next_call_reaches_its_successor() {
    let (_cp, admin, _cp_data) = control_plane(None).await;
    let (dp, url, _state) = data_plane_in(&admin, None, &[]).await;
    apply(
        &admin,
        &format!("{}{}", pid_upstream("pids", ""), demo_server("pids", "p_")),
    );
    let mut client = session_listing(&url, "p_whoami", &dp).await;
    let first = call(&mut client, "p_whoami", json!({}))
        .await
        .expect("whoami");

    // A call in flight when the child dies gets a JSON-RPC error, not a hang.
    let mut napper = McpHttpClient::new(&url);
    napper.initialize().await.expect("initialize");
    let nap = tokio::spawn(async move { call(&mut napper, "p_nap", json!({"seconds": 60})).await });
    let deadline = Instant::now() + WAIT;
    while !tail_of_file(&dp.log_path(), 200).contains(&format!("napping in {first}")) {
        assert!(
            Instant::now() < deadline,
            "the nap never started\n{}",
            dp.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let killed = Command::new("kill")
        .args(["-9", &first])
        .status()
        .expect("kill");
    assert!(killed.success(), "kill -9 {first}");
    let failed = tokio::time::timeout(Duration::from_secs(10), nap)
        .await
        .expect("the cut call ends at once")
        .expect("joined");
    let error = failed.expect_err("the cut call fails").to_string();
    assert!(error.contains("stdio server exited"), "{error}");

    // The child is restarted; the same client session goes on with the new one.
    let second = call(&mut client, "p_whoami", json!({}))
        .await
        .unwrap_or_else(|e| panic!("after the restart: {e}\n{}", dp.log_tail(30)));
    assert_ne!(second, first, "a new process serves");
    assert!(
        dp.log_tail(200).contains("restarting"),
        "{}",
        dp.log_tail(30)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_session_isolation_gives_each_client_session_its_own_child_up_to_the_cap() {
    let (_cp, admin, _cp_data) = control_plane(None).await;
    let (dp, url, _state) = data_plane_in(&admin, None, &[]).await;
    // The data plane's catalog watcher holds one child; two clients fill the cap of 3.
    let extra = "    isolation: perSession\n    maxSessions: 3\n";
    apply(
        &admin,
        &format!("{}{}", pid_upstream("iso", extra), demo_server("iso", "i_")),
    );
    let mut a = session_listing(&url, "i_whoami", &dp).await;
    let mut b = McpHttpClient::new(&url);
    b.initialize().await.expect("initialize b");
    let pid_a = call(&mut a, "i_whoami", json!({})).await.expect("a");
    let pid_b = call(&mut b, "i_whoami", json!({})).await.expect("b");
    assert_ne!(pid_a, pid_b, "two sessions, two children");
    assert_eq!(call(&mut a, "i_whoami", json!({})).await.expect("a"), pid_a);
    assert_eq!(call(&mut b, "i_whoami", json!({})).await.expect("b"), pid_b);

    // A third session is refused with a clear error rather than sharing a child.
    let mut c = McpHttpClient::new(&url);
    c.initialize().await.expect("initialize c");
    let refused = call(&mut c, "i_whoami", json!({}))
        .await
        .expect_err("over the cap");
    let refused = refused.to_string();
    assert!(
        refused.contains("isolation: perSession") && refused.contains("maxSessions cap"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_sees_its_env_and_secrets_only_and_its_catalog_reaches_data_planes_that_cannot_run_it(
) {
    const TOKEN: &str = "s3cret-stdio-token";
    let (_cp, admin, _cp_data) = control_plane_with_key(None, Some(KEY)).await;
    let (dp, url, _state) = data_plane_in(&admin, None, &[("LEAKY", "from-the-data-plane")]).await;
    let secret = format!(
        "apiVersion: switchboard.dev/v1\nkind: Secret\nmetadata:\n  name: creds\nspec:\n  data:\n    token: {TOKEN}\n---\n"
    );
    let extra =
        "    env: {MARK: plain}\n    secretEnv:\n      TOKEN: {secret: creds, key: token}\n";
    apply(
        &admin,
        &format!(
            "{secret}{}{}",
            pid_upstream("pids", extra),
            demo_server("pids", "p_")
        ),
    );
    let mut client = session_listing(&url, "p_env", &dp).await;
    let env = |name: &str| json!({"name": name});
    assert_eq!(
        call(&mut client, "p_env", env("MARK")).await.expect("env"),
        "plain"
    );
    assert_eq!(
        call(&mut client, "p_env", env("TOKEN")).await.expect("env"),
        TOKEN
    );
    assert_eq!(
        call(&mut client, "p_env", env("LEAKY")).await.expect("env"),
        "<unset>",
        "the data plane's own environment does not reach the child"
    );
    assert!(
        !tail_of_file(&dp.log_path(), 10_000).contains(TOKEN),
        "the secret is logged"
    );
    let status = wait_status(&admin, "pids", "reported", |s| s["tools"] == 5).await;
    assert_eq!(status["state"], "healthy", "{status}");

    // A data plane whose machine cannot run the command (here: the script is not where it
    // runs) still lists the tools, from the catalog the first one reported, and its calls
    // fail with the reason.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let (dp2, url2, _state2) = data_plane_in(&admin, Some(elsewhere.path()), &[]).await;
    let mut other = session_listing(&url2, "p_whoami", &dp2).await;
    let deadline = Instant::now() + WAIT;
    let error = loop {
        let e = call(&mut other, "p_whoami", json!({}))
            .await
            .expect_err("cannot run here")
            .to_string();
        if e.contains("exited") {
            break e;
        }
        assert!(Instant::now() < deadline, "{e}\n{}", dp2.log_tail(30));
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(error.contains("pids"), "names the upstream: {error}");
    // The first data plane still serves, and the registry does not flip to unhealthy.
    assert_eq!(
        call(&mut client, "p_env", env("MARK")).await.expect("env"),
        "plain"
    );
    assert_eq!(upstream_status(&admin, "pids")["state"], "healthy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stdio_example_runs_a_shared_and_a_per_session_server() {
    let key = ("SWITCHBOARD_SECRET_KEY", KEY);
    let (up, listen, _admin, _data) = up_in_root("examples/stdio/", &[key]).await;
    let url = format!("http://{listen}/servers/local-tools/mcp");
    let mut a = session_listing(&url, "sandbox_get-env", &up).await;
    let _ = session_listing(&url, "clock_get_current_time", &up).await;
    let env: Value = serde_json::from_str(
        &call(&mut a, "sandbox_get-env", json!({}))
            .await
            .expect("get-env"),
    )
    .expect("JSON env");
    assert_eq!(env["API_TOKEN"], "demo-token", "{env}");
    assert_eq!(env["LOG_LEVEL"], "info", "{env}");
    assert!(env.get("SWITCHBOARD_SECRET_KEY").is_none(), "{env}");
    let now = call(&mut a, "clock_get_current_time", json!({"timezone": "UTC"}))
        .await
        .expect("time");
    assert!(now.contains("\"timezone\": \"UTC\""), "{now}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_data_plane_lists_and_calls_its_own_stdio_upstreams() {
    // No control plane: the data plane's own watchers supply the catalogs.
    let state = tempfile::tempdir().expect("tempdir");
    let listen = format!("127.0.0.1:{}", free_port());
    let mut cmd = switchboard_testkit::switchboard(BIN);
    cmd.args([
        "dataplane",
        "-f",
        "examples/quickstart.yaml",
        "--listen",
        &listen,
    ])
    .arg("--state-dir")
    .arg(state.path())
    .current_dir(root());
    let dp = ManagedProcess::spawn(cmd).expect("data plane");
    if let Err(e) = wait_for_http_ok(&format!("http://{listen}/readyz"), WAIT).await {
        panic!("data plane did not start: {e}\n{}", dp.log_tail(20));
    }
    let url = format!("http://{listen}/servers/demo/mcp");
    let mut client = session_listing(&url, "time_convert_time", &dp).await;
    let _ = session_listing(&url, "everything_echo", &dp).await;
    let echoed = call(&mut client, "everything_echo", json!({"message": "alone"}))
        .await
        .expect("echo");
    assert_eq!(echoed, "Echo: alone");
}
