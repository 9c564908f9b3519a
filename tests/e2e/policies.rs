//! Policies on the hot path end to end (issue 6): real control-plane and data-plane
//! processes, a real token issuer (PyJWT) and real upstreams (server-everything, a flaky
//! server on the official Python SDK), and real clients (the PyPI SDK, raw HTTP).

use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};
use switchboard_testkit::{free_port, python_bin, McpHttpClient, ServerEverything};

use crate::common::*;

const ISSUER: &str = "https://issuer.test";

/// A token from the test issuer (`query` as its /token endpoint takes it).
async fn token(issuer: &str, query: &str) -> String {
    let resp = reqwest::get(format!("{issuer}/token?{query}"))
        .await
        .expect("issuer answers");
    assert!(resp.status().is_success(), "issuer refused {query}");
    resp.text().await.expect("token")
}

fn challenge(headers: &reqwest::header::HeaderMap) -> String {
    headers
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// The PyPI SDK client with `headers`: lists tools and calls `tool`.
async fn py_tools(url: &str, tool: &str, args: Value, headers: &[(&str, &str)]) -> Value {
    let mut cmd = tokio::process::Command::new(python_bin().expect("python"));
    cmd.arg(root().join("tests/peers/py_tools.py"))
        .args([url, tool, &args.to_string()]);
    for (k, v) in headers {
        cmd.arg(format!("{k}={v}"));
    }
    let out = tokio::time::timeout(WAIT, cmd.output())
        .await
        .expect("py_tools finishes")
        .expect("py_tools runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "py_tools printed no JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn sha256_hex(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// An API-key provider: (principal, key, groups) each.
fn api_keys(name: &str, keys: &[(&str, &str, &str)]) -> String {
    let mut s = format!("apiVersion: switchboard.dev/v1\nkind: AuthProvider\nmetadata:\n  name: {name}\nspec:\n  apiKeys:\n    keys:\n");
    for (principal, key, groups) in keys {
        s.push_str(&format!(
            "      - principal: {principal}\n        sha256: {}\n        groups: [{groups}]\n",
            sha256_hex(key)
        ));
    }
    s.push_str("---\n");
    s
}

/// Virtual server `demo` over `everything` (prefix `ev_`) with `extra` spec lines.
fn guarded(extra: &str) -> String {
    format!("apiVersion: switchboard.dev/v1\nkind: VirtualServer\nmetadata:\n  name: demo\nspec:\n  upstreams:\n    - upstream: everything\n      prefix: ev_\n{extra}---\n")
}

fn tool_names(list: &Value) -> Vec<String> {
    list["tools"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_tokens_are_verified_and_a_jwks_rotation_needs_no_restart() {
    let everything = ServerEverything::start().await.expect("server-everything");
    let (_issuer, issuer) = peer("jwt_issuer.py", &[ISSUER]).await;
    let (_cp, admin, _data) = control_plane(None).await;
    let (_dp, url, _state) = data_plane(admin.trim_start_matches("http://")).await;
    let provider = format!("apiVersion: switchboard.dev/v1\nkind: AuthProvider\nmetadata:\n  name: issuer\nspec:\n  jwt:\n    issuer: {ISSUER}\n    audiences: [switchboard]\n    algorithms: [RS256, ES256, EdDSA]\n    jwksUrl: {issuer}/jwks\n    scopesSupported: [tools]\n---\n");
    apply(
        &admin,
        &format!(
            "{provider}{}{}",
            upstream("everything", &everything.url(), ""),
            guarded("  authProvider: issuer\n")
        ),
    );
    let bearer = format!("Bearer {}", token(&issuer, "aud=switchboard").await);
    wait_for_tools_as(
        &url,
        &[("authorization", &bearer)],
        WAIT,
        "tools behind JWT auth",
        |t| t.iter().any(|n| n == "ev_echo"),
    )
    .await;

    // No token: 401, and the challenge names the protected-resource metadata (RFC 9728).
    let (status, headers, body) = initialize_with(&url, &[]).await;
    assert_eq!(status, 401, "{body}");
    let challenge_text = challenge(&headers);
    let metadata_url = challenge_text
        .split("resource_metadata=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no resource_metadata in `{challenge_text}`"))
        .to_string();
    let metadata: Value = reqwest::get(&metadata_url)
        .await
        .expect("metadata")
        .json()
        .await
        .expect("metadata JSON");
    assert_eq!(metadata["resource"], url, "{metadata}");
    assert_eq!(
        metadata["authorization_servers"],
        json!([ISSUER]),
        "{metadata}"
    );
    assert_eq!(metadata["scopes_supported"], json!(["tools"]), "{metadata}");

    // A real client with a valid token lists and calls tools.
    let seen = py_tools(
        &url,
        "ev_echo",
        json!({"message": "signed"}),
        &[("Authorization", &bearer)],
    )
    .await;
    assert!(
        seen["text"].as_str().unwrap_or("").contains("signed"),
        "{seen}"
    );
    assert!(
        seen["tools"].as_array().is_some_and(|t| !t.is_empty()),
        "{seen}"
    );

    // Bad tokens: 401 with error="invalid_token" and the reason.
    let claims =
        json!({"iss": ISSUER, "sub": "mallory", "aud": "switchboard", "exp": 4_102_444_800u64});
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let none_alg = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims)
    );
    let cases = [
        (
            "expired",
            token(&issuer, "aud=switchboard&exp_in=-600").await,
            "expired",
        ),
        (
            "wrong audience",
            token(&issuer, "aud=someone-else").await,
            "audience",
        ),
        (
            "wrong issuer",
            token(&issuer, "aud=switchboard&iss=https://evil.test").await,
            "issuer",
        ),
        (
            "wrong algorithm",
            token(&issuer, "aud=switchboard&alg=HS256&secret=guessed").await,
            "algorithm",
        ),
        ("none algorithm", none_alg, "none"),
        ("garbage", "not.a.jwt".to_string(), "JWT"),
    ];
    for (what, bad, reason) in cases {
        let (status, headers, body) =
            initialize_with(&url, &[("authorization", &format!("Bearer {bad}"))]).await;
        assert_eq!(status, 401, "{what}: {body}");
        let c = challenge(&headers);
        assert!(c.contains("error=\"invalid_token\""), "{what}: {c}");
        assert!(c.contains(reason), "{what}: `{c}` should mention {reason}");
        assert!(body.contains("-32001"), "{what}: {body}");
    }

    // The other key types of the JWKS verify too.
    for alg in ["ES256", "EdDSA"] {
        let t = token(&issuer, &format!("aud=switchboard&alg={alg}")).await;
        let (status, _, body) =
            initialize_with(&url, &[("authorization", &format!("Bearer {t}"))]).await;
        assert_eq!(status, 200, "{alg}: {body}");
    }

    // Rotation: the issuer replaces its RSA key. A token with the new key works at once
    // (its unknown kid fetches the JWKS again), the retired key's tokens stop working.
    let retired = token(&issuer, "aud=switchboard").await;
    let rotated: Value = reqwest::Client::new()
        .post(format!("{issuer}/rotate"))
        .send()
        .await
        .expect("rotate")
        .json()
        .await
        .expect("rotate JSON");
    tokio::time::sleep(Duration::from_millis(1100)).await; // past the refetch guard
    let fresh = token(&issuer, "aud=switchboard").await;
    let (status, _, body) =
        initialize_with(&url, &[("authorization", &format!("Bearer {fresh}"))]).await;
    assert_eq!(status, 200, "new key {rotated}: {body}");
    let (status, headers, _) =
        initialize_with(&url, &[("authorization", &format!("Bearer {retired}"))]).await;
    assert_eq!(status, 401);
    assert!(
        challenge(&headers).contains("no key with kid"),
        "{}",
        challenge(&headers)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_rules_and_request_limits() {
    let everything = ServerEverything::start().await.expect("server-everything");
    let (_cp, admin, _data) = control_plane(None).await;
    let (_dp, url, _state) = data_plane(admin.trim_start_matches("http://")).await;
    let rules = "  authProvider: keys\n  authorization:\n    rules:\n      - action: allow\n        tools: ['ev_get-*']\n        groups: [admins]\n      - action: deny\n        tools: ['ev_get-*']\n  limits:\n    maxArgumentBytes: 200\n    maxJsonDepth: 20\n";
    apply(
        &admin,
        &format!(
            "{}{}{}",
            api_keys(
                "keys",
                &[("alice", "alice-key", "admins"), ("bob", "bob-key", "devs")]
            ),
            upstream("everything", &everything.url(), ""),
            guarded(rules)
        ),
    );
    wait_for_tools_as(
        &url,
        &[("x-api-key", "alice-key")],
        WAIT,
        "alice's tools",
        |t| t.iter().any(|n| n == "ev_get-sum"),
    )
    .await;

    // Missing and unknown keys.
    let (status, headers, _) = initialize_with(&url, &[]).await;
    assert_eq!(status, 401);
    assert!(
        challenge(&headers).starts_with("Bearer realm="),
        "{}",
        challenge(&headers)
    );
    let (status, headers, _) = initialize_with(&url, &[("x-api-key", "stolen")]).await;
    assert_eq!(status, 401);
    assert!(challenge(&headers).contains("unknown API key"));

    // A WebSocket upgrade is authenticated like any request to the server.
    let ws = url.replace("/mcp", "/ws");
    let upgrade = |key: Option<&'static str>| {
        let mut req = reqwest::Client::new()
            .get(&ws)
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("sec-websocket-protocol", "mcp");
        if let Some(k) = key {
            req = req.header("x-api-key", k);
        }
        req.send()
    };
    assert_eq!(upgrade(None).await.expect("upgrade").status().as_u16(), 401);
    let accepted = upgrade(Some("alice-key")).await.expect("upgrade");
    assert_eq!(accepted.status().as_u16(), 101);
    assert_eq!(
        accepted
            .headers()
            .get("sec-websocket-accept")
            .and_then(|v| v.to_str().ok()),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "RFC 6455's sample key and answer"
    );

    // bob is no admin: the get-* tools are hidden from him and refused when called.
    let mut bob = McpHttpClient::new(url.clone()).with_header("x-api-key", "bob-key");
    bob.initialize().await.expect("bob initializes");
    let bobs = tool_names(&bob.request("tools/list", json!({})).await.expect("list"));
    assert!(bobs.iter().any(|n| n == "ev_echo"), "{bobs:?}");
    assert!(!bobs.iter().any(|n| n.starts_with("ev_get-")), "{bobs:?}");
    let refused = bob
        .request(
            "tools/call",
            json!({"name": "ev_get-sum", "arguments": {"a": 1, "b": 2}}),
        )
        .await
        .expect_err("bob may not");
    let text = refused.to_string();
    assert!(
        text.contains("-32003") && text.contains("`bob` may not call tool `ev_get-sum`"),
        "{text}"
    );
    // alice is.
    let mut alice = McpHttpClient::new(url.clone()).with_header("x-api-key", "alice-key");
    alice.initialize().await.expect("alice initializes");
    let sum = alice
        .request(
            "tools/call",
            json!({"name": "ev_get-sum", "arguments": {"a": 1, "b": 2}}),
        )
        .await
        .expect("alice may");
    assert!(
        sum["content"][0]["text"]
            .as_str()
            .unwrap_or("")
            .contains('3'),
        "{sum}"
    );
    // A real client with the key as a bearer token.
    let seen = py_tools(
        &url,
        "ev_echo",
        json!({"message": "keyed"}),
        &[("Authorization", "Bearer bob-key")],
    )
    .await;
    assert!(
        seen["text"].as_str().unwrap_or("").contains("keyed"),
        "{seen}"
    );

    // Request limits: arguments over 200 bytes, JSON nested over 20, headers over 64 KiB.
    let long = "x".repeat(300);
    let big = alice
        .request(
            "tools/call",
            json!({"name": "ev_echo", "arguments": {"message": long}}),
        )
        .await
        .expect_err("arguments too large");
    assert!(
        big.to_string().contains("-32602") && big.to_string().contains("at most 200"),
        "{big}"
    );
    let deep = format!(
        r#"{{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{{"name":"ev_echo","arguments":{{"message":"a","x":{}1{}}}}}}}"#,
        "[".repeat(30),
        "]".repeat(30)
    );
    let resp = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .header("x-api-key", "alice-key")
        .header("mcp-session-id", alice.session_id().unwrap_or_default())
        .body(deep)
        .send()
        .await
        .expect("deep");
    assert_eq!(resp.status().as_u16(), 400);
    assert!(resp.text().await.unwrap_or_default().contains("at most 20"));
    let (status, _, body) = initialize_with(
        &url,
        &[
            ("x-api-key", "alice-key"),
            ("x-padding", &"p".repeat(70_000)),
        ],
    )
    .await;
    assert_eq!(status, 431, "{body}");
}

/// The acked version of every connected data plane.
fn acked_versions(admin: &str) -> Vec<String> {
    let (code, out, err) = cli(&["get", "dataplanes", "-o", "json", "--server", admin]);
    assert_eq!(code, 0, "{err}");
    let planes: Value = serde_json::from_str(&out).expect("JSON");
    planes
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| p["ackedVersion"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until `n` data planes are connected, agree on one version, and keep it for a
/// moment (so the replica count the control plane splits limits by has settled).
async fn settled(admin: &str, n: usize, not: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let v = acked_versions(admin);
        if v.len() == n && v.iter().all(|x| x == &v[0] && x != not && !x.is_empty()) {
            tokio::time::sleep(Duration::from_millis(700)).await;
            if acked_versions(admin) == v {
                return v[0].clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "data planes never settled: {v:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends `n` echo calls as `key`, round-robin over `urls`, one session per data plane;
/// returns how many were let through (every refusal must be a rate-limit error).
async fn calls_allowed(urls: &[String], key: &str, n: usize) -> usize {
    let mut clients = Vec::new();
    for u in urls {
        let mut c = McpHttpClient::new(u.clone()).with_header("x-api-key", key);
        c.initialize().await.expect("initialize");
        clients.push(c);
    }
    // Each initialize counted against the limit (it opens a session on every upstream).
    let mut allowed = urls.len();
    for i in 0..n {
        let c = &mut clients[i % urls.len()];
        match c
            .request(
                "tools/call",
                json!({"name": "ev_echo", "arguments": {"message": "hi"}}),
            )
            .await
        {
            Ok(_) => allowed += 1,
            Err(e) => assert!(e.to_string().contains("-32029"), "not a rate limit: {e}"),
        }
    }
    allowed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_rate_limit_holds_across_three_replicas_and_is_split_again() {
    let everything = ServerEverything::start().await.expect("server-everything");
    let (_cp, admin, _data) = control_plane(None).await;
    let cp_addr = admin.trim_start_matches("http://").to_string();
    let mut planes = Vec::new();
    for _ in 0..3 {
        planes.push(data_plane(&cp_addr).await);
    }
    let urls: Vec<String> = planes.iter().map(|(_, u, _)| u.clone()).collect();
    let limit = "apiVersion: switchboard.dev/v1\nkind: RateLimitPolicy\nmetadata:\n  name: per-principal\nspec:\n  requests: 90\n  per: 1h\n  key: [principal]\n  mode: cluster\n---\n";
    let keys = api_keys(
        "keys",
        &[
            ("alice", "alice-key", ""),
            ("bob", "bob-key", ""),
            ("carol", "carol-key", ""),
            ("dave", "dave-key", ""),
        ],
    );
    apply(
        &admin,
        &format!(
            "{keys}{limit}{}{}",
            upstream("everything", &everything.url(), ""),
            guarded("  authProvider: keys\n  rateLimits: [per-principal]\n")
        ),
    );
    let three = settled(&admin, 3, "").await;
    for u in &urls {
        wait_for_tools_as(u, &[("x-api-key", "dave-key")], WAIT, "tools", |t| {
            t.iter().any(|n| n == "ev_echo")
        })
        .await;
    }

    // One replica holds a third of the cluster-wide limit.
    let alone = calls_allowed(&urls[..1], "alice-key", 45).await;
    assert!(
        (30..=31).contains(&alone),
        "one replica let {alone} through"
    );
    // Spread over all three, the principal gets the whole limit, within 10%.
    let spread = calls_allowed(&urls, "bob-key", 150).await;
    println!("cluster limit 90/h over 3 replicas: {spread} of 150 let through");
    assert!((81..=99).contains(&spread), "{spread}");

    // Refusals: a JSON-RPC error with Retry-After, for initialize too (a new session is
    // no way around the limit); stateless, HTTP 429.
    let mut bob = McpHttpClient::new(urls[0].clone()).with_header("x-api-key", "bob-key");
    let refusal = bob.initialize().await.expect_err("limited");
    assert!(
        refusal.to_string().contains("retryAfterSeconds"),
        "{refusal}"
    );
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}});
    let resp = reqwest::Client::new()
        .post(&urls[1])
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("x-api-key", "bob-key")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "ev_echo")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "ev_echo", "arguments": {"message": "hi"}, "_meta": meta}}))
        .send()
        .await
        .expect("stateless call");
    assert_eq!(resp.status().as_u16(), 429);
    let retry_after: u64 = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!(retry_after >= 1, "{retry_after}");

    // A replica goes away: the two left split the limit in halves.
    let (mut gone, _, _) = planes.pop().expect("third plane");
    gone.kill();
    settled(&admin, 2, &three).await;
    let halves = calls_allowed(&urls[..2], "carol-key", 120).await;
    println!("after one replica left: {halves} of 120 let through");
    assert!((81..=99).contains(&halves), "{halves}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_timeouts_and_circuit_breaking_on_a_flaky_upstream() {
    let (_flaky, base) = peer("flaky_server.py", &[]).await;
    let mcp = format!("{base}/mcp");
    let (_cp, admin, _data) = control_plane(None).await;
    let (_dp, url, _state) = data_plane(admin.trim_start_matches("http://")).await;
    let vs = "apiVersion: switchboard.dev/v1\nkind: VirtualServer\nmetadata:\n  name: demo\nspec:\n  upstreams:\n    - upstream: flaky\n    - upstream: slow\n      prefix: slow_\n      timeouts: {request: 1s, idle: 1s}\n    - upstream: fragile\n      prefix: fragile_\n---\n";
    apply(
        &admin,
        &format!(
            "{}{}{}{vs}",
            upstream("flaky", &mcp, "  retries: {backoff: 20ms}\n"),
            upstream("slow", &mcp, ""),
            upstream("fragile", &mcp, "  retries: {attempts: 0}\n  circuitBreaker: {consecutiveFailures: 2, openFor: 30s}\n"),
        ),
    );
    wait_for_tools(&url, WAIT, "flaky tools", |t| {
        t.iter().any(|n| n == "read_config") && t.iter().any(|n| n == "fragile_write_record")
    })
    .await;
    let mut client = McpHttpClient::new(url.clone());
    client.initialize().await.expect("initialize");
    let attempts = |v: Value| -> Value {
        serde_json::from_str(v["content"][0]["text"].as_str().unwrap_or("{}")).unwrap_or_default()
    };

    // Read-only tool: its first attempt gets a 503, the retry succeeds.
    let read = client
        .request(
            "tools/call",
            json!({"name": "read_config", "arguments": {"key": "mode"}}),
        )
        .await
        .expect("retried into success");
    assert_eq!(read["content"][0]["text"], "mode=on", "{read}");
    // Tool without hints: not retried, the client gets the 503.
    let write = client
        .request(
            "tools/call",
            json!({"name": "write_record", "arguments": {"value": "x"}}),
        )
        .await
        .expect_err("not retried");
    assert!(write.to_string().contains("503"), "{write}");
    let counts = attempts(
        client
            .request(
                "tools/call",
                json!({"name": "attempts_so_far", "arguments": {}}),
            )
            .await
            .expect("attempts"),
    );
    assert_eq!(counts, json!({"read_config": 2, "write_record": 1}));

    // A hung tool is cut at the route's timeout.
    let started = Instant::now();
    let hung = client
        .request("tools/call", json!({"name": "slow_hang", "arguments": {}}))
        .await
        .expect_err("cut");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let text = hung.to_string();
    assert!(text.contains("1s"), "{text}");
    println!("hung upstream cut after {took:?}: {text}");

    // Two failures in a row open the fragile upstream's circuit: the third call fails at
    // once without reaching it.
    for _ in 0..2 {
        let e = client
            .request(
                "tools/call",
                json!({"name": "fragile_write_record", "arguments": {"value": "y"}}),
            )
            .await
            .expect_err("503");
        assert!(e.to_string().contains("503"), "{e}");
    }
    let started = Instant::now();
    let open = client
        .request(
            "tools/call",
            json!({"name": "fragile_write_record", "arguments": {"value": "z"}}),
        )
        .await
        .expect_err("circuit open");
    assert!(open.to_string().contains("circuit open"), "{open}");
    assert!(started.elapsed() < Duration::from_millis(500));
    let counts = attempts(
        client
            .request(
                "tools/call",
                json!({"name": "attempts_so_far", "arguments": {}}),
            )
            .await
            .expect("attempts"),
    );
    assert_eq!(
        counts["write_record"], 3,
        "the open circuit sent nothing: {counts}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_upstream_authorization_reaches_an_upstream_that_takes_it() {
    const TOKEN: &str = "upstream-token-81c2";
    let key = "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq8M=";
    let listen = format!("127.0.0.1:{}", free_port());
    let _bridge = time_bridge_with_token(&listen, Some(TOKEN)).await;
    let (_cp, admin, _data) = control_plane_with_key(None, Some(key)).await;
    let (_dp, url, _state) = data_plane(admin.trim_start_matches("http://")).await;
    let secret = format!("apiVersion: switchboard.dev/v1\nkind: Secret\nmetadata:\n  name: creds\nspec:\n  data:\n    token: {TOKEN}\n---\n");
    apply(
        &admin,
        &format!(
            "{secret}{}{}",
            upstream(
                "time",
                &format!("http://{listen}/mcp"),
                "  auth:\n    bearer: {secret: creds, key: token}\n    passthrough: true\n"
            ),
            server(&[("time", "")])
        ),
    );
    wait_for_tools(&url, WAIT, "time's tools", |t| {
        t.iter().any(|n| n == "get_current_time")
    })
    .await;
    let call = json!({"name": "get_current_time", "arguments": {"timezone": "UTC"}});
    // Without the header the upstream's own credentials serve the call.
    let mut plain = McpHttpClient::new(url.clone());
    plain.initialize().await.expect("initialize");
    plain
        .request("tools/call", call.clone())
        .await
        .expect("configured token");
    // A client's X-Upstream-Authorization replaces them, on every request of its session.
    let mut wrong =
        McpHttpClient::new(url.clone()).with_header("x-upstream-authorization", "Bearer not-it");
    wrong
        .initialize()
        .await
        .expect("initialize (its upstream session opens on first use)");
    let e = wrong
        .request("tools/call", call.clone())
        .await
        .expect_err("the upstream refuses");
    assert!(e.to_string().contains("401"), "{e}");
    let mut right = McpHttpClient::new(url.clone())
        .with_header("x-upstream-authorization", &format!("Bearer {TOKEN}"));
    right.initialize().await.expect("initialize");
    let got = right
        .request("tools/call", call)
        .await
        .expect("passed through");
    assert!(
        got["content"][0]["text"]
            .as_str()
            .unwrap_or("")
            .contains("UTC"),
        "{got}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pass_through_servers_apply_authorization_and_rate_limits_to_each_request() {
    let everything = ServerEverything::start().await.expect("server-everything");
    let (_cp, admin, _data) = control_plane(None).await;
    let (_dp, url, _state) = data_plane(admin.trim_start_matches("http://")).await;
    let limit = "apiVersion: switchboard.dev/v1\nkind: RateLimitPolicy\nmetadata:\n  name: few-echoes\nspec:\n  requests: 3\n  per: 1h\n  key: [principal, tool]\n  mode: local\n---\n";
    let raw = "apiVersion: switchboard.dev/v1\nkind: VirtualServer\nmetadata:\n  name: raw\nspec:\n  passthrough: everything\n  authProvider: keys\n  rateLimits: [few-echoes]\n  authorization:\n    rules:\n      - action: deny\n        tools: ['get-sum']\n        groups: [devs]\n---\n";
    apply(
        &admin,
        &format!(
            "{}{}{limit}{raw}",
            api_keys(
                "keys",
                &[("alice", "alice-key", "admins"), ("bob", "bob-key", "devs")]
            ),
            upstream("everything", &everything.url(), ""),
        ),
    );
    let raw_url = url.replace("/servers/demo/mcp", "/servers/raw/mcp");
    let deadline = std::time::Instant::now() + WAIT;
    while initialize_with(&raw_url, &[("x-api-key", "bob-key")])
        .await
        .0
        != 200
    {
        assert!(std::time::Instant::now() < deadline, "raw never served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The upstream's own session, through pingora; the gateway reads each call first.
    let mut bob = McpHttpClient::new(raw_url.clone()).with_header("x-api-key", "bob-key");
    bob.initialize().await.expect("bob initializes");
    let sum = json!({"name": "get-sum", "arguments": {"a": 1, "b": 2}});
    let refused = bob
        .request("tools/call", sum.clone())
        .await
        .expect_err("bob may not");
    assert!(refused.to_string().contains("-32003"), "{refused}");
    let mut alice = McpHttpClient::new(raw_url.clone()).with_header("x-api-key", "alice-key");
    alice.initialize().await.expect("alice initializes");
    let answered = alice.request("tools/call", sum).await.expect("alice may");
    assert!(answered.to_string().contains('3'), "{answered}");
    // Three echoes an hour per caller and tool; the fourth is refused with -32029.
    let echo = json!({"name": "echo", "arguments": {"message": "hi"}});
    for _ in 0..3 {
        bob.request("tools/call", echo.clone())
            .await
            .expect("within the limit");
    }
    let limited = bob
        .request("tools/call", echo)
        .await
        .expect_err("over the limit");
    assert!(limited.to_string().contains("-32029"), "{limited}");
    // What the gateway reads is bounded: a larger call is a clear 413.
    let big = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"message": "x".repeat(70 << 10)}}});
    let too_big = reqwest::Client::new()
        .post(&raw_url)
        .header("x-api-key", "alice-key")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .json(&big)
        .send()
        .await
        .expect("POST");
    assert_eq!(too_big.status().as_u16(), 413);
    // What cannot be screened is refused, not waved through: a batch hiding a denied call.
    let batch = reqwest::Client::new()
        .post(&raw_url)
        .header("x-api-key", "bob-key")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get-sum","arguments":{"a":1,"b":2}}}]"#)
        .send()
        .await
        .expect("POST");
    assert_eq!(batch.status().as_u16(), 400);
    assert!(batch.text().await.unwrap_or_default().contains("batches"));
}
