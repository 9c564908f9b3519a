//! Observability end to end (issue 7): real control-plane and data-plane processes and
//! server-everything; after real traffic, both planes' /metrics moved and pass
//! `promtool check metrics`, health endpoints answer, and access logs keep secrets out.

use serde_json::json;
use std::process::{Command, Stdio};
use switchboard_testkit::{McpHttpClient, ServerEverything};

use crate::common::*;

/// `promtool check metrics` on `text`; Err with what it said.
fn promtool(text: &str) -> Result<(), String> {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!("promtool is not installed (make deps installs Debian `prometheus`): {e}")
        })?;
    child
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(text.as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

async fn get_text(url: &str) -> (u16, String) {
    let resp = reqwest::get(url).await.expect("GET");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

/// The value of the sample `name{labels}` (labels in Prometheus' sorted order), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_planes_expose_metrics_that_move_with_traffic_and_pass_promtool() {
    let everything = ServerEverything::start().await.expect("server-everything");
    let (cp, admin, _data) = control_plane(None).await;
    let (dp, url, _state) = data_plane(admin.trim_start_matches("http://")).await;
    let keys = format!(
        "apiVersion: switchboard.dev/v1\nkind: AuthProvider\nmetadata:\n  name: keys\nspec:\n  apiKeys:\n    keys:\n      - principal: alice\n        sha256: {}\n---\n",
        "f80024220afd493b4d9592af870de7afe98061992d28fdb75480c9b717783fa2"
    );
    let limit = "apiVersion: switchboard.dev/v1\nkind: RateLimitPolicy\nmetadata:\n  name: tight\nspec:\n  requests: 3\n  per: 1h\n  key: [principal]\n  tools: [ev_echo]\n  mode: local\n---\n";
    apply(
        &admin,
        &format!(
            "{keys}{limit}{}apiVersion: switchboard.dev/v1\nkind: VirtualServer\nmetadata:\n  name: demo\nspec:\n  upstreams:\n    - upstream: everything\n      prefix: ev_\n  authProvider: keys\n  rateLimits: [tight]\n",
            upstream("everything", &everything.url(), "")
        ),
    );
    let key = [("x-api-key", "demo-key-alice")];
    wait_for_tools_as(&url, &key, WAIT, "tools", |t| {
        t.iter().any(|n| n == "ev_echo")
    })
    .await;

    // Traffic: calls until the limit refuses one, a refused login, an unknown tool.
    let mut client = McpHttpClient::new(url.clone()).with_header("x-api-key", "demo-key-alice");
    client.initialize().await.expect("initialize");
    let mut refused = 0;
    for _ in 0..5 {
        if client
            .request(
                "tools/call",
                json!({"name": "ev_echo", "arguments": {"message": "m"}}),
            )
            .await
            .is_err()
        {
            refused += 1;
        }
    }
    assert_eq!(refused, 2, "3 of 5 let through");
    let _ = McpHttpClient::new(url.clone())
        .with_header("x-api-key", "wrong")
        .initialize()
        .await
        .expect_err("401");
    let _ = client
        .request(
            "tools/call",
            json!({"name": "no-such-tool", "arguments": {}}),
        )
        .await
        .expect_err("unknown tool");

    // Data plane.
    let base = url.trim_end_matches("/servers/demo/mcp");
    let (status, text) = get_text(&format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    promtool(&text).unwrap_or_else(|e| panic!("data-plane metrics: {e}\n{text}"));
    let ok = sample(
        &text,
        "switchboard_requests_total{method=\"tools/call\",outcome=\"ok\",server=\"demo\",tool=\"ev_echo\",upstream=\"everything\"}",
    );
    assert_eq!(ok, Some(3.0), "{text}");
    let limited = sample(
        &text,
        "switchboard_requests_total{method=\"tools/call\",outcome=\"rate_limited\",server=\"demo\",tool=\"ev_echo\",upstream=\"\"}",
    );
    assert_eq!(limited, Some(2.0), "{text}");
    assert_eq!(
        sample(
            &text,
            "switchboard_rate_limited_total{policy=\"tight\",server=\"demo\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &text,
            "switchboard_auth_rejected_total{reason=\"invalid\",server=\"demo\"}"
        ),
        Some(1.0)
    );
    // An unknown tool is counted without its name (labels only come from the snapshot).
    assert!(!text.contains("no-such-tool"), "{text}");
    assert!(
        sample(&text, "switchboard_upstream_duration_seconds_count{method=\"tools/call\",upstream=\"everything\"}")
            .is_some_and(|n| n >= 3.0),
        "{text}"
    );
    assert!(
        sample(&text, "switchboard_sessions_opened_total{server=\"demo\"}")
            .is_some_and(|n| n >= 2.0)
    );
    assert_eq!(
        sample(&text, "switchboard_snapshots_applied_total").map(|n| n >= 1.0),
        Some(true)
    );
    assert!(
        text.contains("switchboard_snapshot_info{version=\""),
        "{text}"
    );
    assert_eq!(get_text(&format!("{base}/healthz")).await.0, 200);
    assert_eq!(get_text(&format!("{base}/readyz")).await.0, 200);

    // Control plane: the same address as its gRPC services.
    let (status, text) = get_text(&format!("{admin}/metrics")).await;
    assert_eq!(status, 200);
    promtool(&text).unwrap_or_else(|e| panic!("control-plane metrics: {e}\n{text}"));
    assert!(
        sample(&text, "switchboard_cp_pushes_total").is_some_and(|n| n >= 2.0),
        "{text}"
    );
    assert!(
        sample(&text, "switchboard_cp_acks_total").is_some_and(|n| n >= 2.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "switchboard_cp_upstream_healthy{upstream=\"everything\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "switchboard_cp_discovery_leader"),
        Some(1.0),
        "{text}"
    );
    assert!(
        text.contains("switchboard_cp_dataplanes{group=\"cluster=default,zone=\""),
        "{text}"
    );
    assert!(
        sample(
            &text,
            "switchboard_cp_store_operations_total{op=\"write\",outcome=\"ok\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert!(
        sample(&text, "switchboard_cp_discovery_total{kind=\"refresh\",outcome=\"ok\",upstream=\"everything\"}")
            .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert_eq!(get_text(&format!("{admin}/healthz")).await.0, 200);
    assert_eq!(
        get_text(&format!("{admin}/readyz")).await,
        (200, "ready\n".to_string())
    );

    // deploy/: the scrape config is valid, and the dashboard charts only metrics the planes
    // export (every family shows once it has a sample; the traffic above gives most of them).
    let check = Command::new("promtool")
        .args(["check", "config"])
        .arg(root().join("deploy/prometheus.yml"))
        .output()
        .expect("promtool");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let dp_text = get_text(&format!("{base}/metrics")).await.1;
    let dashboard =
        std::fs::read_to_string(root().join("deploy/grafana-dashboard.json")).expect("dashboard");
    let _: serde_json::Value = serde_json::from_str(&dashboard).expect("dashboard is JSON");
    let mut charted = std::collections::BTreeSet::new();
    for (i, _) in dashboard.match_indices("switchboard_") {
        let name: String = dashboard[i..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        charted.insert(name.trim_end_matches("_bucket").to_string());
    }
    assert!(charted.len() > 20, "{charted:?}");
    let exported = |name: &str| {
        let family = format!("# TYPE {name} ");
        dp_text.contains(&family) || text.contains(&family)
    };
    let missing: Vec<&String> = charted.iter().filter(|n| !exported(n)).collect();
    assert!(
        missing.is_empty(),
        "the dashboard charts metrics neither plane exported: {missing:?}"
    );

    // One access-log line per request, with what was called and by whom, and no key.
    let log = std::fs::read_to_string(dp.log_path()).unwrap_or_default();
    let calls: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("switchboard::access") && l.contains("tool=ev_echo"))
        .collect();
    assert_eq!(calls.len(), 5, "{log}");
    assert!(calls
        .iter()
        .all(|l| l.contains("principal=alice") && l.contains("duration_ms=")));
    assert!(!log.contains("demo-key-alice"), "a key reached the log");
    drop(cp);
}

/// The spans the receiver has for `trace_id`, once `names` are all there.
async fn spans_of(receiver: &str, trace_id: &str, names: &[&str]) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let all: Vec<serde_json::Value> = reqwest::get(format!("{receiver}/spans"))
            .await
            .expect("receiver")
            .json()
            .await
            .expect("spans JSON");
        let ours: Vec<serde_json::Value> = all
            .into_iter()
            .filter(|s| s["trace_id"] == trace_id)
            .collect();
        if names.iter().all(|n| ours.iter().any(|s| s["name"] == *n)) {
            return ours;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "spans for {trace_id}: {ours:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_reach_an_otlp_receiver_over_http_and_grpc_with_the_client_trace_propagated() {
    let (_upstream, upstream_base) = peer("flaky_server.py", &[]).await;
    let grpc_port = switchboard_testkit::free_port();
    let (_receiver, receiver) = peer("otlp_receiver.py", &[&grpc_port.to_string()]).await;
    switchboard_testkit::wait_for_tcp(&format!("127.0.0.1:{grpc_port}"), WAIT)
        .await
        .expect("OTLP/gRPC receiver");
    let (_cp, admin, _data) = control_plane(None).await;
    let cp_addr = admin.trim_start_matches("http://").to_string();
    let grpc_endpoint = format!("http://127.0.0.1:{grpc_port}");
    let over_http = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let over_grpc = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", grpc_endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let (_dp1, url1, _s1) = data_plane_with(&cp_addr, &over_http).await;
    let (_dp2, url2, _s2) = data_plane_with(&cp_addr, &over_grpc).await;
    apply(
        &admin,
        &format!(
            "{}{}",
            upstream("traced", &format!("{upstream_base}/mcp"), ""),
            server(&[("traced", "")])
        ),
    );
    for (url, transport, trace_id, parent) in [
        (
            &url1,
            "http",
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "00f067aa0ba902b7",
        ),
        (
            &url2,
            "grpc",
            "0af7651916cd43dd8448eb211c80319c",
            "b7ad6b7169203331",
        ),
    ] {
        wait_for_tools(url, WAIT, "traced tools", |t| {
            t.iter().any(|n| n == "traceparents_seen")
        })
        .await;
        let mut client = McpHttpClient::new(url.clone())
            .with_header("traceparent", &format!("00-{trace_id}-{parent}-01"));
        client.initialize().await.expect("initialize");
        let seen = client
            .request(
                "tools/call",
                json!({"name": "traceparents_seen", "arguments": {}}),
            )
            .await
            .expect("call");
        let seen: Vec<String> =
            serde_json::from_str(seen["content"][0]["text"].as_str().unwrap_or("[]"))
                .expect("list");
        // The upstream got the client's trace, one hop further down.
        let upstream_saw = seen.last().cloned().unwrap_or_default();
        let parts: Vec<&str> = upstream_saw.split('-').collect();
        assert_eq!(parts.len(), 4, "{upstream_saw}");
        assert_eq!(parts[1], trace_id, "{upstream_saw}");

        let spans = spans_of(&receiver, trace_id, &["mcp.request", "mcp.upstream"]).await;
        let request = spans
            .iter()
            .find(|s| s["name"] == "mcp.request" && s["attributes"]["mcp.method"] == "tools/call")
            .expect("request span");
        let call = spans
            .iter()
            .find(|s| s["name"] == "mcp.upstream")
            .expect("upstream span");
        assert_eq!(
            request["parent_span_id"], parent,
            "the client's span is the parent: {request}"
        );
        assert_eq!(
            request["attributes"]["mcp.tool"], "traceparents_seen",
            "{request}"
        );
        assert_eq!(request["attributes"]["mcp.server"], "demo", "{request}");
        assert_eq!(
            call["parent_span_id"], request["span_id"],
            "upstream call is a child: {call}"
        );
        assert_eq!(call["attributes"]["mcp.upstream"], "traced", "{call}");
        assert_eq!(
            parts[2],
            call["span_id"].as_str().unwrap_or(""),
            "the upstream's parent is our upstream span"
        );
        assert_eq!(request["service"], "switchboard-dataplane");
        assert_eq!(request["transport"], transport, "{request}");
    }
}
