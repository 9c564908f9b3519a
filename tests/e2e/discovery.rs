//! Upstream discovery end to end (issue 5): real control-plane and data-plane processes,
//! real upstreams (a growing server on the official Python SDK, mcp-server-time behind the
//! bridge, server-everything), and the CLI.

use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use switchboard_testkit::{
    free_port, python_bin, wait_for_tcp, Etcd, ManagedProcess, McpHttpClient, ServerEverything,
};

use crate::common::*;

/// The growing test server (official Python SDK) on a free port.
async fn growing_server(port: u16) -> ManagedProcess {
    let mut cmd = Command::new(python_bin().expect("PyPI mcp installed"));
    cmd.arg(root().join("tests/peers/growing_server.py"))
        .arg(port.to_string());
    let p = ManagedProcess::spawn(cmd).expect("growing server");
    if let Err(e) = wait_for_tcp(&format!("127.0.0.1:{port}"), WAIT).await {
        panic!("growing server did not start: {e}\n{}", p.log_tail(20));
    }
    p
}

/// Whether any file under `dir` contains `needle`.
fn any_file_contains(dir: &Path, needle: &[u8]) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let path = e.path();
        if path.is_dir() {
            any_file_contains(&path, needle)
        } else {
            std::fs::read(&path)
                .map(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
                .unwrap_or(false)
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstreams_are_discovered_refreshed_on_list_changed_and_health_checked() {
    let grow_port = free_port();
    let _grow = growing_server(grow_port).await;
    let grow_url = format!("http://127.0.0.1:{grow_port}/mcp");
    let time_listen = format!("127.0.0.1:{}", free_port());
    let mut time = time_bridge(&time_listen).await;
    let time_url = format!("http://{time_listen}/mcp");
    let (cp, admin, _cp_data) = control_plane(None).await;
    let (_dp, url, _dp_state) = data_plane(admin.trim_start_matches("http://")).await;

    // One upstream first; the second is applied while everything runs.
    apply(
        &admin,
        &format!(
            "{}{}",
            upstream("grow", &grow_url, ""),
            server(&[("grow", "grow_")])
        ),
    );
    wait_for_tools(&url, WAIT, "grow's tools", |t| {
        t.iter().any(|n| n == "grow_add_tool")
    })
    .await;
    let (_, warnings) = apply(
        &admin,
        &format!(
            "{}{}",
            upstream("time", &time_url, ""),
            server(&[("grow", "grow_"), ("time", "")])
        ),
    );
    assert!(!warnings.contains("warning"), "{warnings}");
    wait_for_tools(&url, WAIT, "time's tools appear without restarts", |t| {
        t.iter().any(|n| n == "get_current_time")
    })
    .await;

    // server-everything over the legacy HTTP+SSE transport: discovered, listed, callable.
    let sse = ServerEverything::start_sse()
        .await
        .expect("server-everything (sse)");
    apply(
        &admin,
        &format!(
            "{}{}",
            upstream("legacy", &sse.sse_url(), "")
                .replace("    url: ", "    transport: sse\n    url: "),
            server(&[("grow", "grow_"), ("time", ""), ("legacy", "legacy_")])
        ),
    );
    wait_for_tools(&url, WAIT, "legacy SSE tools", |t| {
        t.iter().any(|n| n == "legacy_echo")
    })
    .await;
    let mut client = McpHttpClient::new(url.clone());
    client.initialize().await.expect("initialize");
    let echoed = client
        .request(
            "tools/call",
            json!({"name": "legacy_echo", "arguments": {"message": "over sse"}}),
        )
        .await
        .expect("legacy echo");
    assert!(
        echoed["content"][0]["text"]
            .as_str()
            .unwrap_or("")
            .contains("over sse"),
        "{echoed}"
    );
    let legacy = upstream_status(&admin, "legacy");
    assert_eq!(legacy["transport"], "mcp+sse", "{legacy}");
    assert_eq!(legacy["state"], "healthy", "{legacy}");

    // A second name for the same server, then a virtual server where a rename makes one
    // of its tools take a name the first already exposes: apply says so.
    apply(
        &admin,
        &upstream("twin", &sse.sse_url(), "").replace("    url: ", "    transport: sse\n    url: "),
    );
    let deadline = Instant::now() + WAIT;
    while upstream_status(&admin, "twin")["tools"]
        .as_u64()
        .unwrap_or(0)
        == 0
    {
        assert!(Instant::now() < deadline, "twin never discovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let twins = "apiVersion: switchboard.dev/v1\nkind: VirtualServer\nmetadata:\n  name: twins\nspec:\n  upstreams:\n    - upstream: legacy\n      prefix: legacy_\n    - upstream: twin\n      prefix: twin_\n      rename:\n        echo: legacy_echo\n";
    let (_, warnings) = apply(&admin, twins);
    assert!(
        warnings.contains("warning: virtual server `twins`: tool `legacy_echo` is offered by upstream `legacy` and by upstream `twin`"),
        "{warnings}"
    );
    let twin = upstream_status(&admin, "twin");
    assert!(
        !twin["conflicts"].as_array().expect("conflicts").is_empty(),
        "{twin}"
    );
    // The data plane resolves the clash the same way (first listed wins) instead of
    // rejecting the snapshot.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (code, planes, err) = cli(&["get", "dataplanes", "-o", "json", "--server", &admin]);
    assert_eq!(code, 0, "{err}");
    let planes: Value = serde_json::from_str(&planes).expect("JSON");
    assert_eq!(planes[0]["lastNack"], "", "{planes}");

    // The growing server adds a tool and says so: callable through the gateway within 2 s.
    let mut client = McpHttpClient::new(url.clone());
    client.initialize().await.expect("initialize");
    let added_at = Instant::now();
    let added = client
        .request(
            "tools/call",
            json!({"name": "grow_add_tool", "arguments": {"name": "fresh"}}),
        )
        .await
        .expect("add_tool");
    assert_eq!(added["content"][0]["text"], "added fresh", "{added}");
    let mut answered = None;
    while added_at.elapsed() < Duration::from_secs(2) {
        let mut c = McpHttpClient::new(url.clone());
        c.initialize().await.expect("initialize");
        if let Ok(r) = c
            .request(
                "tools/call",
                json!({"name": "grow_fresh", "arguments": {"text": "hi"}}),
            )
            .await
        {
            answered = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let answered = answered.unwrap_or_else(|| {
        panic!(
            "grow_fresh not callable 2 s after list_changed\n{}",
            cp.log_tail(30)
        )
    });
    assert_eq!(
        answered["content"][0]["text"], "fresh says hi",
        "{answered}"
    );
    println!("new tool callable {:?} after add_tool", added_at.elapsed());

    // get upstreams and refresh.
    let grow = upstream_status(&admin, "grow");
    assert_eq!(grow["state"], "healthy", "{grow}");
    assert_eq!(grow["tools"], 3, "{grow}"); // add_tool, touch and fresh
    assert_eq!(grow["listening"], true, "{grow}");
    let (code, out, err) = cli(&["get", "upstreams", "--server", &admin]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("grow") && out.contains("healthy") && out.contains("time"),
        "{out}"
    );
    let (code, out, err) = cli(&["refresh", "upstream", "time", "--server", &admin]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("healthy"), "{out}");
    let (code, _, err) = cli(&["refresh", "upstream", "nope", "--server", &admin]);
    assert_eq!(code, 1);
    assert!(err.contains("not found"), "{err}");

    // Kill the stdio server's bridge: marked unhealthy, calls fail fast with a clear error.
    time.kill();
    let deadline = Instant::now() + Duration::from_secs(10);
    while upstream_status(&admin, "time")["state"] != "unhealthy" {
        assert!(Instant::now() < deadline, "time never marked unhealthy");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let failure = loop {
        let started = Instant::now();
        let err = client
            .request(
                "tools/call",
                json!({"name": "get_current_time", "arguments": {"timezone": "UTC"}}),
            )
            .await
            .expect_err("a call to a dead upstream fails");
        let took = started.elapsed();
        let text = err.to_string();
        if text.contains("unhealthy") {
            assert!(
                took < Duration::from_millis(500),
                "fail fast, took {took:?}"
            );
            break text;
        }
        assert!(Instant::now() < deadline, "never failed fast: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        failure.contains("upstream `time` is unhealthy"),
        "{failure}"
    );
    let status = upstream_status(&admin, "time");
    assert!(
        !status["lastError"].as_str().unwrap_or("").is_empty(),
        "{status}"
    );
    // The other upstream is untouched.
    let echo = client
        .request(
            "tools/call",
            json!({"name": "grow_fresh", "arguments": {"text": "still"}}),
        )
        .await
        .expect("healthy upstream still served");
    assert_eq!(echo["content"][0]["text"], "fresh says still");

    // Restart it on the same address: recovery is automatic.
    let _time = time_bridge(&time_listen).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = client
            .request(
                "tools/call",
                json!({"name": "get_current_time", "arguments": {"timezone": "UTC"}}),
            )
            .await;
        match r {
            Ok(r) => {
                assert!(
                    r["content"][0]["text"]
                        .as_str()
                        .unwrap_or("")
                        .contains("UTC"),
                    "{r}"
                );
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "never recovered: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(upstream_status(&admin, "time")["state"], "healthy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leading_control_plane_hands_discovery_to_the_other() {
    let etcd = Etcd::start().await.expect("etcd");
    let grow_port = free_port();
    let _grow = growing_server(grow_port).await;
    let grow_url = format!("http://127.0.0.1:{grow_port}/mcp");
    let (mut first, admin_a, _a) = control_plane(Some(&etcd.endpoint())).await;
    // The first replica leads once it has campaigned; the second starts after it.
    let deadline = Instant::now() + WAIT;
    let leader_of = |admin: &str| {
        let (_, out, _) = cli(&["get", "upstreams", "--server", admin]);
        out.lines()
            .find_map(|l| l.strip_prefix("discovery leader: ").map(str::to_string))
    };
    apply(
        &admin_a,
        &format!(
            "{}{}",
            upstream("grow", &grow_url, ""),
            server(&[("grow", "")])
        ),
    );
    let leader_a = loop {
        if let Some(l) = leader_of(&admin_a) {
            break l;
        }
        assert!(
            Instant::now() < deadline,
            "no discovery leader\n{}",
            first.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (second, admin_b, _b) = control_plane(Some(&etcd.endpoint())).await;
    let (_dp, url, _state) = data_plane(admin_b.trim_start_matches("http://")).await;
    wait_for_tools(&url, WAIT, "discovered by the first replica", |t| {
        t.iter().any(|n| n == "add_tool")
    })
    .await;
    assert_eq!(leader_of(&admin_b).as_deref(), Some(leader_a.as_str()));

    first.kill();
    let killed = Instant::now();
    let deadline = killed + Duration::from_secs(15);
    loop {
        if let Some(l) = leader_of(&admin_b) {
            if l != leader_a {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no hand-over\n{}",
            second.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "discovery handed over {:?} after the leader was killed",
        killed.elapsed()
    );
    assert!(
        killed.elapsed() < Duration::from_secs(8),
        "{:?}",
        killed.elapsed()
    );

    // The new leader listens: a new tool still reaches the gateway, once.
    let mut client = McpHttpClient::new(url.clone());
    client.initialize().await.expect("initialize");
    client
        .request(
            "tools/call",
            json!({"name": "add_tool", "arguments": {"name": "after"}}),
        )
        .await
        .expect("add_tool");
    wait_for_tools(
        &url,
        Duration::from_secs(5),
        "the new leader's discovery",
        |t| t.iter().filter(|n| *n == "after").count() == 1,
    )
    .await;
    let status = upstream_status(&admin_b, "grow");
    assert_eq!(status["tools"], 3, "{status}"); // add_tool, touch and after
    assert_eq!(status["state"], "healthy", "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_credentials_are_sealed_at_rest_and_sent_upstream() {
    const TOKEN: &str = "bridge-token-5f3a9c";
    const ISSUED: &str = "oauth-issued-token-77e1";
    let key = "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq8M=";
    // Two bridges that refuse requests without their token; one token comes from an
    // OAuth2 client-credentials grant.
    let bearer_listen = format!("127.0.0.1:{}", free_port());
    let _bearer = time_bridge_with_token(&bearer_listen, Some(TOKEN)).await;
    let oauth_listen = format!("127.0.0.1:{}", free_port());
    let _oauth = time_bridge_with_token(&oauth_listen, Some(ISSUED)).await;
    let token_port = free_port();
    let mut cmd = Command::new(python_bin().expect("python"));
    cmd.arg(root().join("tests/peers/token_server.py")).args([
        &token_port.to_string(),
        "switchboard",
        "client-pw",
        ISSUED,
    ]);
    let _token_server = ManagedProcess::spawn(cmd).expect("token server");
    wait_for_tcp(&format!("127.0.0.1:{token_port}"), WAIT)
        .await
        .expect("token server up");
    let (_cp, admin, cp_data) = control_plane_with_key(None, Some(key)).await;
    let (_dp, url, _state) = data_plane(admin.trim_start_matches("http://")).await;

    let secrets = format!(
        "apiVersion: switchboard.dev/v1\nkind: Secret\nmetadata:\n  name: creds\nspec:\n  data:\n    token: {TOKEN}\n    client: client-pw\n    wrong: not-the-token\n---\n"
    );
    let bearer = upstream(
        "bearer",
        &format!("http://{bearer_listen}/mcp"),
        "  auth:\n    bearer: {secret: creds, key: token}\n",
    );
    let oauth = upstream(
        "oauth",
        &format!("http://{oauth_listen}/mcp"),
        &format!("  auth:\n    oauth2:\n      tokenUrl: http://127.0.0.1:{token_port}/token\n      clientId: switchboard\n      clientSecret: {{secret: creds, key: client}}\n      scopes: [mcp]\n"),
    );
    let wrong = upstream(
        "wrong",
        &format!("http://{bearer_listen}/mcp"),
        "  auth:\n    bearer: {secret: creds, key: wrong}\n",
    );
    apply(
        &admin,
        &format!(
            "{secrets}{bearer}{oauth}{wrong}{}",
            server(&[("bearer", "b_"), ("oauth", "o_")])
        ),
    );
    wait_for_tools(&url, WAIT, "tools behind credentials", |t| {
        t.iter().any(|n| n == "b_get_current_time") && t.iter().any(|n| n == "o_get_current_time")
    })
    .await;
    // The data plane authenticates its calls the same way.
    let mut client = McpHttpClient::new(url.clone());
    client.initialize().await.expect("initialize");
    for tool in ["b_get_current_time", "o_get_current_time"] {
        let r = client
            .request(
                "tools/call",
                json!({"name": tool, "arguments": {"timezone": "UTC"}}),
            )
            .await
            .unwrap_or_else(|e| panic!("{tool}: {e}"));
        assert!(
            r["content"][0]["text"]
                .as_str()
                .unwrap_or("")
                .contains("UTC"),
            "{r}"
        );
    }
    // A wrong token is an unhealthy upstream whose error says why.
    let deadline = Instant::now() + Duration::from_secs(10);
    let wrong = loop {
        let s = upstream_status(&admin, "wrong");
        if s["state"] == "unhealthy" {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "wrong token never unhealthy: {s}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        wrong["lastError"].as_str().unwrap_or("").contains("401"),
        "{wrong}"
    );
    // Tokens are fetched once per grant, not per request.
    let issued: Value = reqwest::get(format!("http://127.0.0.1:{token_port}/count"))
        .await
        .expect("count")
        .json()
        .await
        .expect("JSON");
    assert!(issued["issued"].as_u64().unwrap_or(0) <= 2, "{issued}");

    // Never printed, never stored in the clear.
    for args in [
        vec!["get", "secrets", "-o", "json"],
        vec!["get", "secret", "creds", "-o", "yaml"],
        vec!["get", "upstreams", "-o", "json"],
    ] {
        let mut full = args.clone();
        full.extend(["--server", admin.as_str()]);
        let (code, out, err) = cli(&full);
        assert_eq!(code, 0, "{err}");
        for secret in [TOKEN, "client-pw", "not-the-token"] {
            assert!(!out.contains(secret), "{args:?} printed a secret:\n{out}");
        }
    }
    let (_, shown, _) = cli(&["get", "secret", "creds", "-o", "json", "--server", &admin]);
    assert!(
        shown.contains("(redacted)") && shown.contains("token"),
        "{shown}"
    );
    for secret in [TOKEN, "client-pw"] {
        assert!(
            !any_file_contains(cp_data.path(), secret.as_bytes()),
            "the store holds `{secret}` in the clear"
        );
    }

    // A control plane without a key refuses Secrets, naming what to set.
    let (_cp2, admin2, _data2) = control_plane_with_key(None, None).await;
    let (code, out, err) = try_apply(&admin2, &secrets);
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("SWITCHBOARD_SECRET_KEY"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_plane_failures_trigger_a_health_check_and_hidden_tools_come_back() {
    // Active checks every minute: only the data plane's report can make this fast.
    let time_listen = format!("127.0.0.1:{}", free_port());
    let mut time = time_bridge(&time_listen).await;
    let grow_port = free_port();
    let _grow = growing_server(grow_port).await;
    let (cp, admin, _cp_data) = control_plane(None).await;
    let (_dp, url, _state) = data_plane(admin.trim_start_matches("http://")).await;
    let slow_checks =
        "  health:\n    interval: 60s\n    unhealthyThreshold: 1\n    whenUnhealthy: hide\n";
    let time_upstream = format!(
        "apiVersion: switchboard.dev/v1\nkind: Upstream\nmetadata:\n  name: time\nspec:\n  mcp:\n    url: http://{time_listen}/mcp\n{slow_checks}---\n"
    );
    apply(
        &admin,
        &format!(
            "{time_upstream}{}{}",
            upstream("grow", &format!("http://127.0.0.1:{grow_port}/mcp"), ""),
            server(&[("time", ""), ("grow", "grow_")])
        ),
    );
    wait_for_tools(&url, WAIT, "time's tools", |t| {
        t.iter().any(|n| n == "get_current_time")
    })
    .await;

    time.kill();
    let mut client = McpHttpClient::new(url.clone());
    client.initialize().await.expect("initialize");
    let failed_at = Instant::now();
    let err = client
        .request(
            "tools/call",
            json!({"name": "get_current_time", "arguments": {"timezone": "UTC"}}),
        )
        .await
        .expect_err("the bridge is gone");
    assert!(err.to_string().contains("time"), "{err}");
    // Reported on the discovery stream, checked by the leader at once, and hidden.
    wait_for_tools(
        &url,
        Duration::from_secs(10),
        "hidden once unhealthy",
        |t| !t.iter().any(|n| n == "get_current_time") && t.iter().any(|n| n == "grow_add_tool"),
    )
    .await;
    let took = failed_at.elapsed();
    println!("unhealthy and hidden {took:?} after the first failed call");
    assert!(
        took < Duration::from_secs(8),
        "{took:?}\n{}",
        cp.log_tail(30)
    );
    assert_eq!(upstream_status(&admin, "time")["state"], "unhealthy");

    // Back on the same address: an on-demand refresh brings it back without waiting.
    let _time = time_bridge(&time_listen).await;
    let (code, out, err) = cli(&["refresh", "upstream", "time", "--server", &admin]);
    assert_eq!(code, 0, "{out}\n{err}");
    wait_for_tools(&url, Duration::from_secs(10), "listed again", |t| {
        t.iter().any(|n| n == "get_current_time")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_comes_up_after_the_gateway_is_found_without_waiting_for_the_health_interval(
) {
    let (_cp, admin, _cp_data) = control_plane(None).await;
    let (_dp, url, _state) = data_plane(admin.trim_start_matches("http://")).await;
    let port = free_port();
    // A health interval longer than this test may wait: only the retry backoff finds it.
    let late = format!(
        "apiVersion: switchboard.dev/v1\nkind: Upstream\nmetadata:\n  name: late\nspec:\n  mcp:\n    url: http://127.0.0.1:{port}/mcp\n  health:\n    interval: 5m\n---\n"
    );
    apply(&admin, &format!("{late}{}", server(&[("late", "late_")])));
    let deadline = Instant::now() + WAIT;
    while upstream_status(&admin, "late")["consecutiveFailures"] == 0 {
        assert!(Instant::now() < deadline, "discovery never tried");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let down = upstream_status(&admin, "late");
    assert_ne!(down["lastError"], "", "{down}");

    let _everything = ServerEverything::start_on(port)
        .await
        .expect("server-everything");
    wait_for_tools(&url, WAIT, "the late upstream's tools", |names| {
        names.iter().any(|n| n == "late_echo")
    })
    .await;
    let up = upstream_status(&admin, "late");
    assert_eq!(up["state"], "healthy", "{up}");
    assert_eq!(up["lastError"], "", "only a current error is shown: {up}");
    let (code, table, err) = cli(&["get", "upstreams", "late", "--server", &admin]);
    assert_eq!(code, 0, "{err}");
    let row = table
        .lines()
        .find(|l| l.starts_with("late "))
        .expect("a row");
    assert!(row.trim_end().ends_with("ago"), "no LAST ERROR: {row}");
}
