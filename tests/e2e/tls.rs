//! https on the way out (issue 16): real TLS servers (the official Python SDK's MCP app
//! under uvicorn with a certificate of a CA made for the test, a JWKS issuer behind Python's
//! ssl) reached through real control-plane and data-plane processes.

use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};
use switchboard_testkit::{
    free_port, python_bin, wait_for_tcp, ManagedProcess, McpHttpClient, TestCa,
};

use crate::common::*;

/// `pem` as the lines of a YAML block scalar indented by `spaces`.
fn block(pem: &str, spaces: usize) -> String {
    let pad = " ".repeat(spaces);
    pem.lines().map(|l| format!("{pad}{l}\n")).collect()
}

/// The TLS MCP server (`examples/tls/server.py`) on a free port, requiring client
/// certificates from `client_ca` when given. Returns it and its port.
async fn tls_server(
    dir: &std::path::Path,
    name: &str,
    server: &switchboard_testkit::CertPair,
    client_ca: Option<&str>,
) -> (ManagedProcess, u16) {
    let (cert, key) = server.write(dir, name).expect("write server certificate");
    let port = free_port();
    let mut cmd = Command::new(python_bin().expect("PyPI mcp installed"));
    cmd.arg(root().join("examples/tls/server.py"))
        .arg(port.to_string())
        .arg(&cert)
        .arg(&key);
    if let Some(ca) = client_ca {
        let path = dir.join(format!("{name}-clients.crt"));
        std::fs::write(&path, ca).expect("write client CA");
        cmd.arg(&path);
    }
    let p = ManagedProcess::spawn(cmd).expect("tls server");
    if let Err(e) = wait_for_tcp(&format!("127.0.0.1:{port}"), WAIT).await {
        panic!("tls server did not start: {e}\n{}", p.log_tail(20));
    }
    (p, port)
}

/// An Upstream at `url` with `tls` (YAML lines under `tls:`, already indented).
fn tls_upstream(name: &str, url: &str, tls: &str) -> String {
    let block = if tls.is_empty() {
        String::new()
    } else {
        format!("  tls:\n{tls}")
    };
    upstream(name, url, &block)
}

/// The upstream's status from `get upstreams NAME -o json` once `pred` holds.
async fn status_when(admin: &str, name: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let (code, out, err) = cli(&["get", "upstreams", name, "-o", "json", "--server", admin]);
        assert_eq!(code, 0, "{out}\n{err}");
        let list: Value = serde_json::from_str(&out).expect("JSON");
        let status = list[0]["status"].clone();
        if pred(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "{what}: still {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn call_hello(url: &str, tool: &str) -> String {
    let mut client = McpHttpClient::new(url);
    client.initialize().await.expect("initialize");
    let result = client
        .request(
            "tools/call",
            json!({"name": tool, "arguments": {"name": "switchboard"}}),
        )
        .await
        .unwrap_or_else(|e| panic!("{tool}: {e}"));
    result["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstreams_are_called_with_their_ca_and_name_and_refused_without() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new("upstream ca").expect("ca");
    // Valid for names only: reached by IP address, it needs `serverName`.
    let cert = ca
        .server(&["localhost", "mcp.test"])
        .expect("server certificate");
    let (_server, port) = tls_server(dir.path(), "server", &cert, None).await;
    let (_cp, admin, _data) = control_plane(None).await;
    let (_dp, url, _state) = data_plane(admin.trim_start_matches("http://")).await;

    let with_ca = format!("    caCert: |\n{}", block(&ca.cert_pem, 6));
    let by_name = format!("https://localhost:{port}/mcp");
    let by_ip = format!("https://127.0.0.1:{port}/mcp");
    let (_, warnings) = apply(
        &admin,
        &format!(
            "{}{}{}{}{}",
            tls_upstream("trusted", &by_name, &with_ca),
            tls_upstream(
                "named",
                &by_ip,
                &format!("{with_ca}    serverName: mcp.test\n")
            ),
            tls_upstream("untrusted", &by_name, ""),
            tls_upstream("misnamed", &by_ip, &with_ca),
            server(&[("trusted", "t_"), ("named", "n_")]),
        ),
    );
    assert!(!warnings.contains("insecureSkipVerify"), "{warnings}");

    wait_for_tools(&url, WAIT, "tools over https", |t| {
        t.iter().any(|n| n == "t_hello") && t.iter().any(|n| n == "n_hello")
    })
    .await;
    assert_eq!(
        call_hello(&url, "t_hello").await,
        "hello switchboard, over TLS"
    );
    assert_eq!(
        call_hello(&url, "n_hello").await,
        "hello switchboard, over TLS"
    );

    // Without the CA, or checked against the wrong name, the handshake fails and says why.
    let untrusted = status_when(&admin, "untrusted", "an unknown issuer", |s| {
        !s["lastError"].as_str().unwrap_or("").is_empty()
    })
    .await;
    let why = untrusted["lastError"].as_str().unwrap_or_default();
    assert!(why.contains("UnknownIssuer"), "{untrusted}");
    assert_ne!(untrusted["state"], "healthy", "{untrusted}");
    let misnamed = status_when(&admin, "misnamed", "a name mismatch", |s| {
        !s["lastError"].as_str().unwrap_or("").is_empty()
    })
    .await;
    let why = misnamed["lastError"].as_str().unwrap_or_default();
    assert!(why.contains("not valid for name"), "{misnamed}");

    // insecureSkipVerify works, and apply says what it costs.
    let (_, warnings) = apply(
        &admin,
        &tls_upstream("untrusted", &by_name, "    insecureSkipVerify: true\n"),
    );
    assert!(
        warnings.contains("upstream/untrusted: spec.tls.insecureSkipVerify"),
        "{warnings}"
    );
    status_when(&admin, "untrusted", "healthy when unchecked", |s| {
        s["state"] == "healthy"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_to_an_upstream_needs_the_right_client_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new("upstream ca").expect("ca");
    let clients = TestCa::new("gateway clients").expect("client ca");
    let strangers = TestCa::new("someone else").expect("other ca");
    let cert = ca.server(&["localhost"]).expect("server certificate");
    let (_server, port) = tls_server(dir.path(), "mtls", &cert, Some(&clients.cert_pem)).await;
    let good = clients
        .client("switchboard", &[])
        .expect("client certificate");
    let bad = strangers
        .client("switchboard", &[])
        .expect("stranger's certificate");
    let key = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc="; // 32 bytes, base64
    let (cp, admin, _data) = control_plane_with_key(None, Some(key)).await;
    let (dp, url, _state) = data_plane(admin.trim_start_matches("http://")).await;

    let secret = format!(
        "apiVersion: switchboard.dev/v1\nkind: Secret\nmetadata:\n  name: gateway-cert\nspec:\n  data:\n    tls.crt: |\n{}    tls.key: |\n{}    wrong.crt: |\n{}    wrong.key: |\n{}---\n",
        block(&good.cert_pem, 6),
        block(&good.key_pem, 6),
        block(&bad.cert_pem, 6),
        block(&bad.key_pem, 6),
    );
    let tls = |cert: &str, key: &str| {
        format!(
            "    caCert: |\n{}    clientCert: {{secret: gateway-cert, key: {cert}}}\n    clientKey: {{secret: gateway-cert, key: {key}}}\n",
            block(&ca.cert_pem, 6)
        )
    };
    let at = format!("https://localhost:{port}/mcp");
    let passthrough = "apiVersion: switchboard.dev/v1\nkind: VirtualServer\nmetadata:\n  name: raw\nspec:\n  passthrough: mutual\n---\n";
    apply(
        &admin,
        &format!(
            "{secret}{}{}{passthrough}{}",
            tls_upstream("mutual", &at, &tls("tls.crt", "tls.key")),
            tls_upstream("stranger", &at, &tls("wrong.crt", "wrong.key")),
            server(&[("mutual", "m_")]),
        ),
    );
    wait_for_tools(&url, WAIT, "tools over mutual TLS", |t| {
        t.iter().any(|n| n == "m_hello")
    })
    .await;
    assert_eq!(
        call_hello(&url, "m_hello").await,
        "hello switchboard, over TLS"
    );

    // pingora's pass-through presents the same certificate and trusts the same CA.
    let raw = url.replace("/servers/demo/", "/servers/raw/");
    assert_eq!(
        call_hello(&raw, "hello").await,
        "hello switchboard, over TLS"
    );

    // A certificate from another CA is refused by the server: the upstream stays down.
    let stranger = status_when(&admin, "stranger", "a refused client certificate", |s| {
        !s["lastError"].as_str().unwrap_or("").is_empty()
    })
    .await;
    assert_ne!(stranger["state"], "healthy", "{stranger}");

    // The key never shows in `get`, nor in either process's log.
    let (_, out, _) = cli(&[
        "get",
        "secrets",
        "gateway-cert",
        "-o",
        "yaml",
        "--server",
        &admin,
    ]);
    assert!(!out.contains("PRIVATE KEY"), "{out}");
    let key_line = good.key_pem.lines().nth(1).expect("key body");
    for (who, log) in [
        ("control plane", cp.log_tail(100_000)),
        ("data plane", dp.log_tail(100_000)),
    ] {
        assert!(!log.contains(key_line), "the {who} logged the client key");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_document_over_https_verifies_tokens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new("issuer ca").expect("ca");
    let (cert, key) = ca
        .server(&["localhost"])
        .expect("issuer certificate")
        .write(dir.path(), "issuer")
        .expect("write");
    let port = free_port();
    let mut cmd = Command::new(python_bin().expect("PyPI mcp installed"));
    cmd.arg(root().join("tests/peers/jwt_issuer.py"))
        .arg(port.to_string())
        .arg("https://issuer.test")
        .env("TLS_CERT", &cert)
        .env("TLS_KEY", &key);
    let issuer = ManagedProcess::spawn(cmd).expect("issuer");
    if let Err(e) = wait_for_tcp(&format!("127.0.0.1:{port}"), WAIT).await {
        panic!("issuer did not start: {e}\n{}", issuer.log_tail(20));
    }
    let everything = switchboard_testkit::ServerEverything::start()
        .await
        .expect("server-everything");
    let (_cp, admin, _data) = control_plane(None).await;
    let (_dp, url, _state) = data_plane(admin.trim_start_matches("http://")).await;

    let provider = |name: &str, tls: &str| {
        format!("apiVersion: switchboard.dev/v1\nkind: AuthProvider\nmetadata:\n  name: {name}\nspec:\n  jwt:\n    issuer: https://issuer.test\n    audiences: [switchboard]\n    jwksUrl: https://localhost:{port}/jwks\n{tls}---\n")
    };
    let guarded = |name: &str, provider: &str| {
        format!("apiVersion: switchboard.dev/v1\nkind: VirtualServer\nmetadata:\n  name: {name}\nspec:\n  upstreams:\n    - upstream: everything\n      prefix: ev_\n  authProvider: {provider}\n---\n")
    };
    apply(
        &admin,
        &format!(
            "{}{}{}{}{}",
            provider(
                "trusting",
                &format!("    tls:\n      caCert: |\n{}", block(&ca.cert_pem, 8))
            ),
            provider("doubting", ""),
            upstream("everything", &everything.url(), ""),
            guarded("demo", "trusting"),
            guarded("doubt", "doubting"),
        ),
    );
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.cert_pem.as_bytes()).expect("CA"))
        .build()
        .expect("client");
    let token = http
        .get(format!("https://localhost:{port}/token?aud=switchboard"))
        .send()
        .await
        .expect("issuer answers")
        .text()
        .await
        .expect("token");
    let bearer = format!("Bearer {token}");
    wait_for_tools_as(
        &url,
        &[("authorization", &bearer)],
        WAIT,
        "tools behind a JWKS over https",
        |t| t.iter().any(|n| n == "ev_echo"),
    )
    .await;

    // The provider without the CA cannot fetch the keys: the same token gets nothing, and
    // the error (503: the gateway's fault, not the client's) says why.
    let doubt = url.replace("/servers/demo/", "/servers/doubt/");
    let (status, _, body) = initialize_with(&doubt, &[("authorization", &bearer)]).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("UnknownIssuer"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tls_example_serves_a_private_mutual_tls_upstream() {
    // As the README runs it: make the certificates and YAML, start the server, apply.
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let made = Command::new(python_bin().expect("PyPI mcp installed"))
        .arg(root().join("examples/tls/make_certs.py"))
        .arg(dir.path())
        .arg(port.to_string())
        .output()
        .expect("make_certs.py runs");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let file = |name: &str| dir.path().join(name);
    let mut cmd = Command::new(python_bin().expect("PyPI mcp installed"));
    cmd.arg(root().join("examples/tls/server.py"))
        .arg(port.to_string())
        .arg(file("server.crt"))
        .arg(file("server.key"))
        .arg(file("ca.crt"));
    let server = ManagedProcess::spawn(cmd).expect("example server");
    if let Err(e) = wait_for_tcp(&format!("127.0.0.1:{port}"), WAIT).await {
        panic!("example server did not start: {e}\n{}", server.log_tail(20));
    }
    let key = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
    let (_cp, admin, _data) = control_plane_with_key(None, Some(key)).await;
    let (_dp, url, _state) = data_plane(admin.trim_start_matches("http://")).await;
    for yaml in ["upstreams.yaml", "clients.yaml"] {
        apply(
            &admin,
            &std::fs::read_to_string(file(yaml)).expect("example YAML"),
        );
    }
    let secure = url.replace("/servers/demo/", "/servers/secure/");
    wait_for_tools(&secure, WAIT, "the example's tools", |t| {
        t.iter().any(|n| n == "private_hello")
    })
    .await;
    assert_eq!(
        call_hello(&secure, "private_hello").await,
        "hello switchboard, over TLS"
    );

    // A data plane serving TLS with the example's certificate: `mtls` takes clients that
    // show the example's client certificate, and no one else.
    let listen = format!("127.0.0.1:{}", free_port());
    let state = tempfile::tempdir().expect("tempdir");
    let mut cmd = switchboard_testkit::switchboard(BIN);
    cmd.args([
        "dataplane",
        "--control-plane",
        admin.trim_start_matches("http://"),
    ])
    .args(["--listen", &listen, "--state-dir"])
    .arg(state.path())
    .arg("--tls-cert")
    .arg(file("server.crt"))
    .arg("--tls-key")
    .arg(file("server.key"));
    let tls_plane = ManagedProcess::spawn(cmd).expect("TLS data plane");
    if let Err(e) = wait_for_tcp(&listen, WAIT).await {
        panic!(
            "TLS data plane did not start: {e}\n{}",
            tls_plane.log_tail(20)
        );
    }
    let ca_pem = std::fs::read_to_string(file("ca.crt")).expect("ca.crt");
    let client = switchboard_testkit::CertPair {
        cert_pem: std::fs::read_to_string(file("gateway.crt")).expect("gateway.crt"),
        key_pem: std::fs::read_to_string(file("gateway.key")).expect("gateway.key"),
    };
    let port = listen.rsplit(':').next().unwrap_or_default();
    let mtls = format!("https://localhost:{port}/servers/mtls/mcp");
    let with_cert = trusting(&ca_pem, Some(&client));
    let deadline = Instant::now() + WAIT;
    let body = loop {
        let (status, body) = call_as(
            &with_cert,
            &mtls,
            "private_hello",
            json!({"name": "switchboard"}),
        )
        .await;
        if status == 200 && body["result"].is_object() {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "mtls never served: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        body["result"]["content"][0]["text"], "hello switchboard, over TLS",
        "{body}"
    );
    let (status, body) = call_as(
        &trusting(&ca_pem, None),
        &mtls,
        "private_hello",
        json!({"name": "x"}),
    )
    .await;
    assert_eq!(status, 401, "{body}");
}
