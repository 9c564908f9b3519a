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

/// `switchboard bridge` over tests/peers/pid_server.py (a Python SDK server whose
/// `ask_roots` asks its client whatever it declared), shared or one child per session.
async fn pid_bridge(listen: &str, per_session: bool) -> switchboard_testkit::ManagedProcess {
    let python = switchboard_testkit::python_bin().expect("PyPI mcp installed");
    let mut cmd = switchboard_testkit::switchboard(BIN);
    cmd.args(["bridge", "--listen", listen]);
    if per_session {
        cmd.arg("--per-session");
    }
    cmd.arg("--stdio")
        .arg(&python)
        .arg("--")
        .arg(crate::common::root().join("tests/peers/pid_server.py"));
    let p = switchboard_testkit::ManagedProcess::spawn(cmd).expect("bridge");
    if let Err(e) =
        switchboard_testkit::wait_for_http_ok(&format!("http://{listen}/healthz"), WAIT).await
    {
        panic!("bridge did not start: {e}\n{}", p.log_tail(20));
    }
    p
}

/// A session's GET stream on the bridge: its body, read as it comes.
async fn get_stream(
    url: &str,
    session: &str,
) -> impl futures::Stream<Item = reqwest::Result<axum::body::Bytes>> + Unpin {
    let resp = reqwest::Client::new()
        .get(url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", session)
        .send()
        .await
        .expect("GET stream");
    assert_eq!(resp.status().as_u16(), 200, "GET stream refused");
    Box::pin(resp.bytes_stream())
}

/// Reads `stream` until a message `stop` accepts; every message seen before it.
async fn read_until(
    stream: &mut (impl futures::Stream<Item = reqwest::Result<axum::body::Bytes>> + Unpin),
    stop: impl Fn(&serde_json::Value) -> bool,
) -> Vec<serde_json::Value> {
    use futures::StreamExt;
    let mut seen = String::new();
    let found = tokio::time::timeout(WAIT, async {
        while let Some(Ok(chunk)) = stream.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            let messages: Vec<serde_json::Value> = switchboard_testkit::parse_sse_events(&seen)
                .iter()
                .filter_map(|d| serde_json::from_str(d).ok())
                .collect();
            if messages.iter().any(&stop) {
                return Some(messages);
            }
        }
        None
    })
    .await;
    found
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("the stream never carried what was awaited; it carried: {seen}"))
}

/// POSTs one raw message in `session`: (status, body).
async fn post_raw(url: &str, session: &str, msg: serde_json::Value) -> (u16, String) {
    let resp = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", session)
        .json(&msg)
        .send()
        .await
        .expect("POST");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_bridge_child_cannot_ask_one_session_and_be_answered_by_another() {
    // A shared child's question once went to every session's GET stream, and any session
    // could answer it: one client's roots (or an elicited secret) for another to read, or
    // to forge.
    let listen = format!("127.0.0.1:{}", free_port());
    let _bridge = pid_bridge(&listen, false).await;
    let url = format!("http://{listen}/mcp");
    let mut asker = McpHttpClient::new(&url);
    asker.initialize().await.expect("initialize the asker");
    let mut listener = McpHttpClient::new(&url);
    listener
        .initialize()
        .await
        .expect("initialize the listener");
    let listener_id = listener.session_id().expect("a session").to_string();
    let mut stream = get_stream(&url, &listener_id).await;

    // The SDK passes the bridge's refusal on as the call's error.
    let asked = asker
        .request("tools/call", json!({"name": "ask_roots", "arguments": {}}))
        .await
        .expect_err("no session may be asked");
    assert!(
        asked
            .to_string()
            .contains("shared by every session of the bridge"),
        "{asked}"
    );
    // Something every session hears, after the question would have been broadcast.
    asker
        .request(
            "tools/call",
            json!({"name": "say", "arguments": {"text": "marker"}}),
        )
        .await
        .expect("say");
    let heard = read_until(&mut stream, |m| m.to_string().contains("marker")).await;
    assert!(
        heard.iter().all(|m| m["method"] != "roots/list"),
        "another session heard the question: {heard:?}"
    );
    // An answer no one asked for is refused, not written to the child.
    let forged =
        json!({"jsonrpc": "2.0", "id": 0, "result": {"roots": [{"uri": "file:///forged"}]}});
    let (status, body) = post_raw(&url, &listener_id, forged).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("asked this session no question"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_session_child_asks_its_own_session_and_takes_only_answers_to_what_it_asked() {
    let listen = format!("127.0.0.1:{}", free_port());
    let _bridge = pid_bridge(&listen, true).await;
    let url = format!("http://{listen}/mcp");
    let mut client = McpHttpClient::new(&url);
    client.initialize().await.expect("initialize");
    let session = client.session_id().expect("a session").to_string();
    let mut stream = get_stream(&url, &session).await;
    let call = tokio::spawn(async move {
        client
            .request("tools/call", json!({"name": "ask_roots", "arguments": {}}))
            .await
    });
    let heard = read_until(&mut stream, |m| m["method"] == "roots/list").await;
    let question = heard
        .into_iter()
        .find(|m| m["method"] == "roots/list")
        .expect("the question");
    let wrong =
        json!({"jsonrpc": "2.0", "id": format!("not-{}", question["id"]), "result": {"roots": []}});
    let (status, body) = post_raw(&url, &session, wrong).await;
    assert_eq!(status, 400, "{body}");
    let answer = json!({"jsonrpc": "2.0", "id": question["id"], "result": {"roots": [{"uri": "file:///mine"}]}});
    let (status, body) = post_raw(&url, &session, answer.clone()).await;
    assert_eq!(status, 202, "{body}");
    let result = call.await.expect("join").expect("ask_roots answers");
    assert_eq!(result["content"][0]["text"], "file:///mine", "{result}");
    // The same answer twice is refused: the question is spent.
    let (status, body) = post_raw(&url, &session, answer).await;
    assert_eq!(status, 400, "{body}");
}

/// One raw request to an MCP endpoint as API-key holder `key`: (status, body).
async fn as_holder(
    method: reqwest::Method,
    url: &str,
    key: &str,
    session: &str,
    body: Option<serde_json::Value>,
) -> (u16, String) {
    let mut req = reqwest::Client::new()
        .request(method, url)
        .header("accept", "application/json, text/event-stream")
        .header("x-api-key", key)
        .header("mcp-session-id", session);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_serves_only_its_principal_and_a_delete_ends_it_on_every_replica() {
    // A session id was a bearer token for ever: anyone holding it (another principal of the
    // same server) could use it, and after DELETE any replica reopened it.
    let everything = switchboard_testkit::ServerEverything::start()
        .await
        .expect("server-everything");
    let (_cp, admin, _cp_data) = control_plane(None).await;
    let digest = |k: &str| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(k.as_bytes()))
    };
    let keys = format!(
        "apiVersion: switchboard.dev/v1\nkind: AuthProvider\nmetadata:\n  name: keys\nspec:\n  apiKeys:\n    keys:\n      - principal: alice\n        sha256: {}\n      - principal: bob\n        sha256: {}\n---\n",
        digest("alice-key"),
        digest("bob-key")
    );
    let demo = "apiVersion: switchboard.dev/v1\nkind: VirtualServer\nmetadata:\n  name: demo\nspec:\n  authProvider: keys\n  upstreams:\n    - upstream: everything\n      prefix: ev_\n---\n";
    apply(
        &admin,
        &format!(
            "{keys}{}{demo}",
            upstream("everything", &everything.url(), "")
        ),
    );
    let (_dp1, url1, _s1) = data_plane(&admin).await;
    let (_dp2, url2, _s2) = data_plane(&admin).await;
    let mut alice = McpHttpClient::new(&url1).with_header("x-api-key", "alice-key");
    let deadline = Instant::now() + WAIT;
    while let Err(e) = alice.initialize().await {
        assert!(Instant::now() < deadline, "demo never served: {e}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sid = alice.session_id().expect("a session").to_string();
    let ping = || Some(json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}));
    let post = reqwest::Method::POST;
    let (status, body) = as_holder(post.clone(), &url1, "alice-key", &sid, ping()).await;
    assert_eq!(status, 200, "{body}");
    // Bob holds a valid key of his own, and Alice's session id.
    let (status, body) = as_holder(post.clone(), &url1, "bob-key", &sid, ping()).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("opened by another principal"), "{body}");
    // Alice's session works on the other replica too, until she ends it.
    let (status, body) = as_holder(post.clone(), &url2, "alice-key", &sid, ping()).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = as_holder(reqwest::Method::DELETE, &url1, "alice-key", &sid, None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = as_holder(post.clone(), &url1, "alice-key", &sid, ping()).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("ended (DELETE)"), "{body}");
    // Waits (bounded) until the replica at `url` refuses the session as ended.
    let refused_as_ended = |url: String| {
        let (sid, ping) = (sid.clone(), ping());
        async move {
            let deadline = Instant::now() + WAIT;
            loop {
                let (status, body) =
                    as_holder(reqwest::Method::POST, &url, "alice-key", &sid, ping.clone()).await;
                if body.contains("ended (DELETE)") {
                    assert_eq!(status, 404, "{body}");
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "{url} still serves the ended session: {status} {body}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    // The other replica hears of it through the control plane.
    refused_as_ended(url2).await;
    // So does a replica that starts afterwards.
    let (_dp3, url3, _s3) = data_plane(&admin).await;
    refused_as_ended(url3).await;
}

/// A WebSocket client of `url`'s `/ws` endpoint, sending `header`, that has initialized.
async fn ws_initialized(
    url: &str,
    header: (&str, &str),
) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;
    let ws_url = url.replace("http://", "ws://").replace("/mcp", "/ws");
    let mut request = ws_url.as_str().into_client_request().expect("request");
    let headers = request.headers_mut();
    headers.insert("sec-websocket-protocol", "mcp".parse().expect("header"));
    headers.insert(
        reqwest::header::HeaderName::from_bytes(header.0.as_bytes()).expect("name"),
        header.1.parse().expect("value"),
    );
    let addr = ws_url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .expect("host")
        .to_string();
    let tcp = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let (mut ws, _) = tokio_tungstenite::client_async(request, tcp)
        .await
        .expect("upgrade");
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "ws", "version": "1"}}});
    ws.send(Message::text(init.to_string()))
        .await
        .expect("send");
    let answer = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("an answer in time")
        .expect("a frame")
        .expect("no error");
    assert!(answer.to_string().contains("\"result\""), "{answer}");
    ws
}

/// Reads frames until the server closes the connection: the close frame's code and reason.
async fn ws_closed(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
) -> (u16, String) {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let closed = tokio::time::timeout(WAIT, async {
        while let Some(frame) = ws.next().await {
            if let Ok(Message::Close(Some(c))) = frame {
                return Some((u16::from(c.code), c.reason.to_string()));
            }
        }
        None
    })
    .await;
    closed
        .ok()
        .flatten()
        .expect("the server closes the connection with a close frame")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_ends_when_its_key_is_removed_or_its_token_expires() {
    // A WebSocket authenticated at its upgrade once went on working after its API key was
    // removed or its JWT expired.
    let everything = switchboard_testkit::ServerEverything::start()
        .await
        .expect("server-everything");
    let (_issuer_p, issuer) = peer("jwt_issuer.py", &["https://issuer.test"]).await;
    let (_cp, admin, _cp_data) = control_plane(None).await;
    let digest = |k: &str| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(k.as_bytes()))
    };
    let keys = |who: &[&str]| {
        let mut s = "apiVersion: switchboard.dev/v1\nkind: AuthProvider\nmetadata:\n  name: keys\nspec:\n  apiKeys:\n    keys:\n".to_string();
        for w in who {
            s.push_str(&format!(
                "      - principal: {w}\n        sha256: {}\n",
                digest(&format!("{w}-key"))
            ));
        }
        s + "---\n"
    };
    let jwt = format!("apiVersion: switchboard.dev/v1\nkind: AuthProvider\nmetadata:\n  name: tokens\nspec:\n  jwt:\n    issuer: https://issuer.test\n    audiences: [switchboard]\n    jwksUrl: {issuer}/jwks\n    clockSkew: 0s\n---\n");
    let servers = "apiVersion: switchboard.dev/v1\nkind: VirtualServer\nmetadata:\n  name: demo\nspec:\n  authProvider: keys\n  upstreams:\n    - upstream: everything\n---\napiVersion: switchboard.dev/v1\nkind: VirtualServer\nmetadata:\n  name: signed\nspec:\n  authProvider: tokens\n  upstreams:\n    - upstream: everything\n---\n";
    let everything_up = upstream("everything", &everything.url(), "");
    apply(
        &admin,
        &format!("{}{jwt}{everything_up}{servers}", keys(&["alice", "bob"])),
    );
    let (_dp, url, _state) = data_plane(&admin).await;
    let mut probe = McpHttpClient::new(&url).with_header("x-api-key", "alice-key");
    let deadline = Instant::now() + WAIT;
    while let Err(e) = probe.initialize().await {
        assert!(Instant::now() < deadline, "demo never served: {e}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut alice = ws_initialized(&url, ("x-api-key", "alice-key")).await;
    let mut bob = ws_initialized(&url, ("x-api-key", "bob-key")).await;
    apply(
        &admin,
        &format!("{}{jwt}{everything_up}{servers}", keys(&["bob"])),
    );
    let (code, reason) = ws_closed(&mut alice).await;
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("unknown API key"), "{reason}");
    // Bob's key stays: his connection still serves.
    {
        use futures::{SinkExt, StreamExt};
        let ping = json!({"jsonrpc": "2.0", "id": 2, "method": "ping"}).to_string();
        bob.send(tokio_tungstenite::tungstenite::Message::text(ping))
            .await
            .expect("send");
        let pong = tokio::time::timeout(WAIT, bob.next())
            .await
            .expect("in time")
            .expect("a frame")
            .expect("no error");
        assert!(pong.to_string().contains("\"id\":2"), "{pong}");
    }
    // A token that expires in two seconds: the connection ends then.
    let resp = reqwest::get(format!("{issuer}/token?aud=switchboard&exp_in=2"))
        .await
        .expect("issuer");
    let token = resp.text().await.expect("token");
    let signed = url.replace("/servers/demo/", "/servers/signed/");
    let mut carol = ws_initialized(&signed, ("authorization", &format!("Bearer {token}"))).await;
    let (code, reason) = ws_closed(&mut carol).await;
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("expired"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_own_upstream_credentials_open_the_shared_sessions_its_calls_use() {
    // Calls of stateless clients ran in one shared upstream session opened with the
    // gateway's credentials (an upstream that binds sessions to who opened them refused the
    // client's own token in it), and a legacy SSE upstream's shared session silently
    // dropped the client's token for the gateway's.
    let (_peer, base) = peer("bound_session_server.py", &["gateway-token,alice-token"]).await;
    let key = "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq8M=";
    let (_cp, admin, _data) = crate::common::control_plane_with_key(None, Some(key)).await;
    let secret = "apiVersion: switchboard.dev/v1\nkind: Secret\nmetadata:\n  name: creds\nspec:\n  data:\n    token: gateway-token\n---\n";
    let auth = "  auth:\n    bearer: {secret: creds, key: token}\n    passthrough: true\n";
    apply(
        &admin,
        &format!(
            "{secret}{}{}{}",
            upstream("bound", &format!("{base}/mcp"), auth),
            upstream("legacy", &format!("{base}/sse"), auth)
                .replace("    url: ", "    transport: sse\n    url: "),
            server(&[("bound", "s_"), ("legacy", "l_")])
        ),
    );
    let (_dp, url, _state) = data_plane(&admin).await;
    let deadline = Instant::now() + WAIT;
    let mut plain = McpHttpClient::new(&url);
    plain.initialize().await.expect("initialize");
    loop {
        let listed = plain.request("tools/list", json!({})).await.expect("list");
        let names = listed.to_string();
        if names.contains("s_whoami") && names.contains("l_whoami") {
            break;
        }
        assert!(Instant::now() < deadline, "tools never listed: {names}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let whoami = |tool: &str| json!({"name": tool, "arguments": {}});
    let text = |r: serde_json::Value| r["content"][0]["text"].as_str().unwrap_or("").to_string();
    // Without a token of its own a client is served with the gateway's.
    let got = plain
        .request("tools/call", whoami("l_whoami"))
        .await
        .expect("call");
    assert_eq!(text(got), "Bearer gateway-token");
    // With its own, the legacy upstream sees the client's token.
    let mut alice =
        McpHttpClient::new(&url).with_header("x-upstream-authorization", "Bearer alice-token");
    alice.initialize().await.expect("initialize");
    let got = alice
        .request("tools/call", whoami("l_whoami"))
        .await
        .expect("call");
    assert_eq!(
        text(got),
        "Bearer alice-token",
        "the client's token was dropped"
    );
    // A stateless client's call runs in a session its own token opened.
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}});
    let resp = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "s_whoami")
        .header("x-upstream-authorization", "Bearer alice-token")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "s_whoami", "arguments": {}, "_meta": meta}}))
        .send()
        .await
        .expect("stateless call");
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Bearer alice-token"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_listener_refuses_rebound_pages_and_keeps_metrics_to_itself() {
    // Beyond loopback, `Origin` equal to `Host` once passed: under DNS rebinding the
    // attacker's page names its own domain in both. And /metrics on the MCP port named
    // every tool, hidden ones too, to anyone who could reach it.
    let port = free_port();
    let (_dp, _state) = standalone_data_plane(
        &format!("0.0.0.0:{port}"),
        &format!("127.0.0.1:{port}"),
        &["--insecure"],
    )
    .await;
    let base = format!("http://127.0.0.1:{port}");
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "page", "version": "1"}}});
    let post = |origin: Option<String>, host: String| {
        let mut req = reqwest::Client::new()
            .post(format!("{base}/servers/demo/mcp"))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("host", host)
            .json(&initialize);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        async move {
            let resp = req.send().await.expect("POST");
            (
                resp.status().as_u16(),
                resp.text().await.unwrap_or_default(),
            )
        }
    };
    let rebound = format!("rebound.example:{port}");
    let (status, body) = post(Some(format!("http://{rebound}")), rebound.clone()).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("--allowed-origins"), "{body}");
    // Clients that are not browsers send no Origin, and any Host a public address gets.
    let (status, body) = post(None, rebound).await;
    assert_eq!(status, 200, "{body}");
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("GET /metrics");
    assert_eq!(metrics.status().as_u16(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_whose_initialize_result_is_no_object_is_refused_not_a_panic() {
    // The bridge wrote the protocol version into the child's initialize result, which
    // panicked on a result that is a string.
    let listen = format!("127.0.0.1:{}", free_port());
    let python = switchboard_testkit::python_bin().expect("python");
    let mut cmd = switchboard_testkit::switchboard(BIN);
    cmd.args(["bridge", "--listen", &listen, "--stdio"])
        .arg(&python)
        .arg("--")
        .arg(crate::common::root().join("tests/peers/odd_init_server.py"));
    let bridge = switchboard_testkit::ManagedProcess::spawn(cmd).expect("bridge");
    switchboard_testkit::wait_for_tcp(&listen, WAIT)
        .await
        .expect("the bridge listens");
    let health = format!("http://{listen}/healthz");
    let deadline = Instant::now() + WAIT;
    loop {
        let resp = reqwest::get(&health).await.expect("healthz");
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        if body.contains("not an object") {
            assert_eq!(status, 503, "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never said why: {status} {body}\n{}",
            bridge.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut client = McpHttpClient::new(format!("http://{listen}/mcp"));
    let refused = client
        .initialize()
        .await
        .expect_err("no session over a broken child");
    assert!(refused.to_string().contains("503"), "{refused}");
    assert!(
        !bridge.log_tail(50).contains("panicked"),
        "{}",
        bridge.log_tail(50)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_hold_more_connections_than_its_cap() {
    // Nothing limited the connections one address kept open: a slow-client flood from one
    // host could hold every socket and buffer of the data plane.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = format!("127.0.0.1:{}", free_port());
    let (_dp, _state) =
        standalone_data_plane(&addr, &addr, &["--max-connections-per-address", "3"]).await;
    // Three connections kept open (each served once, so surely counted), as a slow
    // client's would be.
    // (The readiness probe's own connection may still be counted for a moment: a
    // connection refused meanwhile is opened again.)
    let mut held = Vec::new();
    let deadline = Instant::now() + WAIT;
    while held.len() < 3 {
        assert!(Instant::now() < deadline, "three connections never held");
        let mut c = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connects");
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("writes");
        let mut seen = Vec::new();
        let mut buf = [0u8; 512];
        let served = loop {
            let text = String::from_utf8_lossy(&seen).into_owned();
            if text.ends_with("ok\n") {
                break true;
            }
            let n = tokio::time::timeout(WAIT, c.read(&mut buf))
                .await
                .expect("answered in time")
                .unwrap_or(0);
            if n == 0 {
                assert!(text.starts_with("HTTP/1.1 503"), "closed: {text}");
                break false;
            }
            seen.extend_from_slice(&buf[..n]);
        };
        if served {
            held.push(c);
        }
    }
    // The fourth is told why and closed.
    let mut fourth = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connects");
    let _ = fourth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, fourth.read_to_end(&mut answer)).await;
    let refused = String::from_utf8_lossy(&answer).into_owned();
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(
        refused.contains("too many connections from this address"),
        "{refused}"
    );
    // One closes: there is room again.
    drop(held.pop());
    let deadline = Instant::now() + WAIT;
    loop {
        let resp = reqwest::Client::new()
            .get(format!("http://{addr}/healthz"))
            .send()
            .await;
        if resp.is_ok_and(|r| r.status().as_u16() == 200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no room after a connection closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A standalone data plane (`dataplane -f`) serving one prompt on `listen` with `extra`
/// flags, ready at `http://{ready}`: the process and its state directory.
async fn standalone_data_plane(
    listen: &str,
    ready: &str,
    extra: &[&str],
) -> (switchboard_testkit::ManagedProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = dir.path().join("min.yaml");
    std::fs::write(
        &yaml,
        "apiVersion: switchboard.dev/v1\nkind: Prompt\nmetadata:\n  name: hello\nspec:\n  template: hi\n---\napiVersion: switchboard.dev/v1\nkind: VirtualServer\nmetadata:\n  name: demo\nspec:\n  prompts: [hello]\n",
    )
    .expect("write");
    let mut cmd = switchboard_testkit::switchboard(BIN);
    cmd.args(["dataplane", "-f"])
        .arg(&yaml)
        .args(["--listen", listen])
        .args(extra)
        .arg("--state-dir")
        .arg(dir.path());
    let dp = switchboard_testkit::ManagedProcess::spawn(cmd).expect("data plane");
    if let Err(e) =
        switchboard_testkit::wait_for_http_ok(&format!("http://{ready}/readyz"), WAIT).await
    {
        panic!("data plane did not start: {e}\n{}", dp.log_tail(20));
    }
    (dp, dir)
}
