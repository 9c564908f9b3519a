//! TLS on the data plane's own listener (issue 16): real SDK clients over https (the PyPI
//! and TypeScript SDKs on HTTP/1.1, Node's nghttp2 on HTTP/2), certificates chosen by SNI
//! and reloaded without dropping connections, client certificates as an auth provider, and
//! no plain HTTP beyond loopback unless told.

use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use switchboard_testkit::{free_port, wait_for_tcp, ManagedProcess, TestCa};

use crate::common::*;

/// A standalone data plane (`-f config`) serving MCP over TLS with `pairs` on 127.0.0.1;
/// ready once /readyz answers over https.
struct TlsPlane {
    process: ManagedProcess,
    addr: String,
    _state: tempfile::TempDir,
}

async fn tls_plane(config: &Path, pairs: &[(PathBuf, PathBuf)], ca_pem: &str) -> TlsPlane {
    let state = tempfile::tempdir().expect("tempdir");
    let addr = format!("127.0.0.1:{}", free_port());
    let mut cmd = switchboard_testkit::switchboard(BIN);
    cmd.args(["dataplane", "-f"])
        .arg(config)
        .args(["--listen", &addr, "--state-dir"])
        .arg(state.path())
        .current_dir(root());
    for (cert, key) in pairs {
        cmd.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
    }
    let process = ManagedProcess::spawn(cmd).expect("data plane");
    if let Err(e) = wait_for_tcp(&addr, WAIT).await {
        panic!("data plane did not start: {e}\n{}", process.log_tail(20));
    }
    let http = trusting(ca_pem, None);
    let deadline = Instant::now() + WAIT;
    loop {
        let ready = http
            .get(format!("https://localhost:{}/readyz", port_of(&addr)))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not ready over https\n{}",
            process.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    TlsPlane {
        process,
        addr,
        _state: state,
    }
}

fn port_of(addr: &str) -> &str {
    addr.rsplit(':').next().unwrap_or_default()
}

/// `pem` as the lines of a YAML block scalar indented by `spaces`.
fn block(pem: &str, spaces: usize) -> String {
    let pad = " ".repeat(spaces);
    pem.lines().map(|l| format!("{pad}{l}\n")).collect()
}

fn write_config(dir: &Path, yaml: &str) -> PathBuf {
    let path = dir.join("config.yaml");
    std::fs::write(&path, yaml).expect("write config");
    path
}

/// Waits until `url` lists `tool` to a client of `http`.
async fn wait_for_tool(http: &reqwest::Client, url: &str, tool: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
        let (_, sid, _) = rpc(http, url, None, init).await;
        let (_, _, list) = rpc(
            http,
            url,
            sid.as_deref(),
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
        )
        .await;
        if list.to_string().contains(&format!("\"{tool}\"")) {
            return;
        }
        assert!(Instant::now() < deadline, "{tool} never listed: {list}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// server-everything as a stdio child of the data plane (which lists its catalog itself,
/// with no control plane), behind virtual server `demo`.
fn everything_server(extra: &str) -> String {
    format!("apiVersion: switchboard.dev/v1\nkind: Upstream\nmetadata:\n  name: everything\nspec:\n  stdio:\n    command: .deps/bin/server-everything\n    args: [stdio]\n---\napiVersion: switchboard.dev/v1\nkind: VirtualServer\nmetadata:\n  name: demo\nspec:\n  upstreams:\n    - upstream: everything\n      prefix: everything_\n{extra}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_clients_call_tools_over_https_on_http1_and_http2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new("listener ca").expect("ca");
    let pair = ca
        .server(&["localhost", "127.0.0.1"])
        .expect("certificate")
        .write(dir.path(), "listener")
        .expect("write");
    let ca_file = dir.path().join("ca.crt");
    std::fs::write(&ca_file, &ca.cert_pem).expect("write CA");
    let config = write_config(dir.path(), &everything_server(""));
    let plane = tls_plane(&config, &[pair], &ca.cert_pem).await;
    let url = format!(
        "https://localhost:{}/servers/demo/mcp",
        port_of(&plane.addr)
    );
    let ca_path = ca_file.display().to_string();
    wait_for_tool(&trusting(&ca.cert_pem, None), &url, "everything_echo").await;

    // The PyPI SDK (httpx, HTTP/1.1), trusting the CA through SSL_CERT_FILE.
    let py = python_peer_with_env(
        "py_tools.py",
        &[&url, "everything_echo", r#"{"message": "over https"}"#],
        &[("SSL_CERT_FILE", &ca_path)],
    )
    .await;
    assert_eq!(py["text"], "Echo: over https", "{py}");

    assert_eq!(py["http_versions"], json!(["HTTP/1.1"]), "{py}");
    // The same SDK over HTTP/2, negotiated by ALPN.
    let py2 = python_peer_with_env(
        "py_tools.py",
        &[&url, "everything_echo", r#"{"message": "over h2"}"#],
        &[("SSL_CERT_FILE", &ca_path), ("HTTP2", "1")],
    )
    .await;
    assert_eq!(py2["text"], "Echo: over h2", "{py2}");
    assert_eq!(py2["http_versions"], json!(["HTTP/2"]), "{py2}");

    // The TypeScript SDK (undici, HTTP/1.1), trusting it through NODE_EXTRA_CA_CERTS.
    let ts = node_peer_with_env(
        "ts_client.mjs",
        &[&url],
        false,
        &[("NODE_EXTRA_CA_CERTS", &ca_path)],
    )
    .await;
    assert_eq!(ts["echo"], "Echo: from ts", "{ts}");

    // The same SDK over HTTP/2 (undici with allowH2), negotiated by ALPN.
    let ts2 = node_peer_with_env(
        "ts_client.mjs",
        &[&url],
        false,
        &[("TS_HTTP2_CA", &ca_path)],
    )
    .await;
    assert_eq!(ts2["echo"], "Echo: from ts", "{ts2}");
    let alpn = ts2["alpn"].as_array().cloned().unwrap_or_default();
    assert!(!alpn.is_empty() && alpn.iter().all(|p| p == "h2"), "{ts2}");

    // HTTP/2, negotiated by ALPN (Node's http2 refuses a server that does not offer it).
    let h2 = node_peer_with_env(
        "h2_client.mjs",
        &[
            &url,
            &ca_path,
            "everything_echo",
            r#"{"message": "over h2"}"#,
        ],
        false,
        &[],
    )
    .await;
    assert_eq!(h2["alpn"], "h2", "{h2}");
    assert_eq!(h2["text"], "Echo: over h2", "{h2}");

    // A client that does not trust the CA gets nowhere.
    let stranger = reqwest::Client::new()
        .get(format!("https://localhost:{}/readyz", port_of(&plane.addr)))
        .send()
        .await;
    assert!(stranger.is_err(), "an untrusted certificate was accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_chosen_by_name_and_reloaded_without_dropping_connections() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new("listener ca").expect("ca");
    let a = ca
        .server(&["a.test", "localhost"])
        .expect("a")
        .write(dir.path(), "a")
        .expect("write");
    let b = ca
        .server(&["b.test"])
        .expect("b")
        .write(dir.path(), "b")
        .expect("write");
    let config = write_config(dir.path(), &everything_server(""));
    let plane = tls_plane(&config, &[a.clone(), b], &ca.cert_pem).await;
    let addr: std::net::SocketAddr = plane.addr.parse().expect("addr");
    let port = addr.port();
    let by_name = |ca_pem: &str| {
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA"))
            .resolve("a.test", addr)
            .resolve("b.test", addr)
            .resolve("c.test", addr)
            .build()
            .expect("client")
    };
    let http = by_name(&ca.cert_pem);
    for name in ["a.test", "b.test"] {
        let r = http
            .get(format!("https://{name}:{port}/readyz"))
            .send()
            .await;
        assert!(
            r.is_ok_and(|r| r.status().is_success()),
            "{name}: its own certificate"
        );
    }
    // An unknown name gets the first certificate, which is not valid for it.
    assert!(http
        .get(format!("https://c.test:{port}/readyz"))
        .send()
        .await
        .is_err());

    // `kept` holds a connection made with the old certificate.
    let kept = by_name(&ca.cert_pem);
    let r = kept
        .get(format!("https://a.test:{port}/readyz"))
        .send()
        .await
        .expect("first");
    assert!(r.status().is_success());
    // A new CA's certificate replaces `a` on disk.
    let renewed = TestCa::new("renewed ca").expect("ca");
    let pair = renewed.server(&["a.test", "localhost"]).expect("renewed");
    std::fs::write(&a.1, &pair.key_pem).expect("write key");
    std::fs::write(&a.0, &pair.cert_pem).expect("write cert");
    let fresh = by_name(&renewed.cert_pem);
    let deadline = Instant::now() + WAIT;
    loop {
        let r = by_name(&renewed.cert_pem)
            .get(format!("https://a.test:{port}/readyz"))
            .send()
            .await;
        if r.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was never served\n{}",
            plane.process.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(fresh
        .get(format!("https://a.test:{port}/readyz"))
        .send()
        .await
        .is_ok());
    // The old connection still works: a new one would meet the renewed certificate, which
    // `kept` does not trust.
    let r = kept
        .get(format!("https://a.test:{port}/readyz"))
        .send()
        .await;
    assert!(
        r.is_ok_and(|r| r.status().is_success()),
        "the open connection was dropped"
    );
    assert!(by_name(&ca.cert_pem)
        .get(format!("https://a.test:{port}/readyz"))
        .send()
        .await
        .is_err());
    // A broken file is logged and the last good certificate keeps serving.
    let refusals = || {
        plane
            .process
            .log_tail(100_000)
            .matches("do not load")
            .count()
    };
    let before = refusals();
    std::fs::write(&a.0, "not a certificate").expect("break");
    let deadline = Instant::now() + WAIT;
    while refusals() == before {
        assert!(
            Instant::now() < deadline,
            "the broken file was never noticed\n{}",
            plane.process.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(by_name(&renewed.cert_pem)
        .get(format!("https://a.test:{port}/readyz"))
        .send()
        .await
        .is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_authenticate_and_their_identities_drive_authorization() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new("listener ca").expect("ca");
    let clients = TestCa::new("client ca").expect("client ca");
    let strangers = TestCa::new("someone else").expect("other ca");
    let pair = ca
        .server(&["localhost"])
        .expect("certificate")
        .write(dir.path(), "listener")
        .expect("write");
    let alice = clients
        .client("alice", &["spiffe://example.org/ns/prod/sa/alice"])
        .expect("alice");
    let bob = clients.client("bob", &[]).expect("bob");
    let mallory = strangers
        .client("alice", &["spiffe://example.org/ns/prod/sa/alice"])
        .expect("mallory");
    let provider = format!(
        "---\napiVersion: switchboard.dev/v1\nkind: AuthProvider\nmetadata:\n  name: mtls\nspec:\n  clientCertificate:\n    caCert: |\n{}",
        block(&clients.cert_pem, 6)
    );
    let rules = "  authProvider: mtls\n  authorization:\n    defaultAction: deny\n    rules:\n      - action: allow\n        subjects: [\"spiffe://example.org/ns/prod/*\"]\n      - action: allow\n        subjects: [bob]\n        methods: [initialize, \"notifications/*\", tools/list]\n";
    let config = write_config(
        dir.path(),
        &format!("{}{rules}{provider}", everything_server("")),
    );
    let plane = tls_plane(&config, &[pair], &ca.cert_pem).await;
    let url = format!(
        "https://localhost:{}/servers/demo/mcp",
        port_of(&plane.addr)
    );
    wait_for_tool(
        &trusting(&ca.cert_pem, Some(&alice)),
        &url,
        "everything_echo",
    )
    .await;
    let echo = json!({"message": "mtls"});

    // Alice's SPIFFE id is allowed to call.
    let (status, body) = call_as(
        &trusting(&ca.cert_pem, Some(&alice)),
        &url,
        "everything_echo",
        echo.clone(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["content"][0]["text"], "Echo: mtls", "{body}");
    // Bob (common name, no SPIFFE id) may list but not call.
    let (_, body) = call_as(
        &trusting(&ca.cert_pem, Some(&bob)),
        &url,
        "everything_echo",
        echo.clone(),
    )
    .await;
    assert!(
        body["error"].is_object() && body["result"].is_null(),
        "bob called a tool: {body}"
    );
    // No certificate, or one from another CA naming the same SPIFFE id: 401.
    let (status, body) = call_as(
        &trusting(&ca.cert_pem, None),
        &url,
        "everything_echo",
        echo.clone(),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = call_as(
        &trusting(&ca.cert_pem, Some(&mallory)),
        &url,
        "everything_echo",
        echo,
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert!(body.to_string().contains("not accepted"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_beyond_loopback_refuses_to_start_unless_told() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), &everything_server(""));
    let port = free_port();
    let out = switchboard_testkit::switchboard(BIN)
        .args(["dataplane", "-f"])
        .arg(&config)
        .args(["--listen", &format!("0.0.0.0:{port}"), "--state-dir"])
        .arg(dir.path())
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to serve MCP clients without TLS"),
        "{err}"
    );
    assert!(err.contains("--insecure"), "{err}");

    let out = switchboard_testkit::switchboard(BIN)
        .args([
            "controlplane",
            "--listen",
            &format!("0.0.0.0:{port}"),
            "--data-dir",
        ])
        .arg(dir.path().join("cp"))
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to serve the admin and discovery API"),
        "{err}"
    );

    // A certificate file that is not one stops the start and names the file.
    let bad = dir.path().join("bad.crt");
    std::fs::write(&bad, "nope").expect("write");
    let out = switchboard_testkit::switchboard(BIN)
        .args(["dataplane", "-f"])
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--state-dir"])
        .arg(dir.path())
        .arg("--tls-cert")
        .arg(&bad)
        .arg("--tls-key")
        .arg(&bad)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.crt"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_certificate_from_a_secret_reaches_only_its_group_and_follows_changes() {
    let ca = TestCa::new("listener ca").expect("ca");
    let first = ca.server(&["localhost"]).expect("certificate");
    let renewed_ca = TestCa::new("renewed ca").expect("ca");
    let renewed = renewed_ca.server(&["localhost"]).expect("certificate");
    let key = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
    let (_cp, admin, _data) = control_plane_with_key(None, Some(key)).await;
    let secret = |pair: &switchboard_testkit::CertPair| {
        format!(
            "apiVersion: switchboard.dev/v1\nkind: Secret\nmetadata:\n  name: edge-cert\nspec:\n  servedBy:\n    clusters: [eu]\n  data:\n    tls.crt: |\n{}    tls.key: |\n{}",
            block(&pair.cert_pem, 6),
            block(&pair.key_pem, 6)
        )
    };
    apply(&admin, &secret(&first));

    let start = |cluster: &str| {
        let state = tempfile::tempdir().expect("tempdir");
        let listen = format!("127.0.0.1:{}", free_port());
        let mut cmd = switchboard_testkit::switchboard(BIN);
        cmd.args([
            "dataplane",
            "--control-plane",
            admin.trim_start_matches("http://"),
        ])
        .args([
            "--cluster",
            cluster,
            "--tls-secret",
            "edge-cert",
            "--listen",
            &listen,
        ])
        .arg("--state-dir")
        .arg(state.path());
        (
            ManagedProcess::spawn(cmd).expect("data plane"),
            listen,
            state,
        )
    };
    let ready = |ca_pem: String, listen: String| async move {
        let port = listen.rsplit(':').next().unwrap_or_default().to_string();
        trusting(&ca_pem, None)
            .get(format!("https://localhost:{port}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    };
    let (eu, eu_listen, _s1) = start("eu");
    let (us, us_listen, us_state) = start("us");
    let deadline = Instant::now() + WAIT;
    while !ready(ca.cert_pem.clone(), eu_listen.clone()).await {
        assert!(
            Instant::now() < deadline,
            "eu never served the Secret's certificate\n{}",
            eu.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The us data plane never receives the Secret: it has no certificate to serve.
    let deadline = Instant::now() + WAIT;
    while !us
        .log_tail(100_000)
        .contains("carries no certificate for --tls-secret")
    {
        assert!(Instant::now() < deadline, "{}", us.log_tail(20));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!ready(ca.cert_pem.clone(), us_listen.clone()).await);
    let persisted =
        std::fs::read_to_string(us_state.path().join("snapshot.json")).unwrap_or_default();
    let key_line = first.key_pem.lines().nth(1).expect("key body");
    assert!(
        !persisted.contains(key_line),
        "the us data plane holds the key"
    );

    // A new certificate in the Secret: served without a restart.
    apply(&admin, &secret(&renewed));
    let deadline = Instant::now() + WAIT;
    while !ready(renewed_ca.cert_pem.clone(), eu_listen.clone()).await {
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was never served\n{}",
            eu.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
