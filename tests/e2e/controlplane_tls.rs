//! The control plane over TLS (issue 16): certificates from `switchboard certs`, data
//! planes that may join only the cluster their certificate names, and operators whose role
//! decides what they may do. Real processes, real TLS, a real MCP upstream.

use std::path::Path;
use std::time::{Duration, Instant};
use switchboard_testkit::{
    free_port, wait_for_http_ok, wait_for_tcp, ManagedProcess, McpHttpClient, ServerEverything,
};

use crate::common::*;

const KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

fn certs(dir: &Path, args: &[&str]) {
    let (code, out, err) = cli(&[&["certs", "--dir", &dir.display().to_string()], args].concat());
    assert_eq!(code, 0, "certs {args:?}: {out}\n{err}");
}

/// The CLI as `who` (a certificate in `dir`), against the TLS control plane at `server`.
fn cli_as(dir: &Path, who: Option<&str>, server: &str, args: &[&str]) -> (i32, String, String) {
    let ca = dir.join("ca.crt").display().to_string();
    let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    all.extend(["--server".into(), server.into(), "--ca".into(), ca]);
    if let Some(who) = who {
        all.extend([
            "--cert".into(),
            dir.join(format!("{who}.crt")).display().to_string(),
            "--key".into(),
            dir.join(format!("{who}.key")).display().to_string(),
        ]);
    }
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    cli(&refs)
}

/// Runs the CLI with `env` (after dropping the tests' control token) in `dir`: (exit code,
/// stdout, stderr).
fn run_in(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let out = switchboard_testkit::switchboard(BIN)
        .env_remove("SWITCHBOARD_CONTROL_TOKEN")
        .envs(env.iter().copied())
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run switchboard");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn apply_as(dir: &Path, who: Option<&str>, server: &str, yaml: &str) -> (i32, String, String) {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), yaml).expect("write");
    cli_as(
        dir,
        who,
        server,
        &["apply", "-f", &file.path().display().to_string()],
    )
}

/// A data plane of `cluster` using `cert` (in `dir`) to reach the control plane at `cp`;
/// ready (it has a snapshot) when `joins`, else listening.
async fn data_plane_as(
    joins: bool,
    dir: &Path,
    cert: Option<&str>,
    cluster: &str,
    cp: &str,
) -> (ManagedProcess, String, tempfile::TempDir) {
    let state = tempfile::tempdir().expect("tempdir");
    let listen = format!("127.0.0.1:{}", free_port());
    let mut cmd = switchboard_testkit::switchboard(BIN);
    cmd.args([
        "dataplane",
        "--control-plane",
        cp,
        "--cluster",
        cluster,
        "--node-id",
    ])
    .arg(format!("dp-{cluster}-{}", cert.unwrap_or("none")))
    .args(["--listen", &listen, "--state-dir"])
    .arg(state.path())
    .arg("--ca")
    .arg(dir.join("ca.crt"));
    if let Some(cert) = cert {
        cmd.arg("--cert")
            .arg(dir.join(format!("{cert}.crt")))
            .arg("--key")
            .arg(dir.join(format!("{cert}.key")));
    }
    let p = ManagedProcess::spawn(cmd).expect("data plane");
    let started = if joins {
        wait_for_http_ok(&format!("http://{listen}/readyz"), WAIT).await
    } else {
        wait_for_tcp(&listen, WAIT).await
    };
    if let Err(e) = started {
        panic!("data plane did not start: {e}\n{}", p.log_tail(20));
    }
    (p, format!("http://{listen}/servers/demo/mcp"), state)
}

/// Waits until `process`'s log says `needle`.
async fn log_says(process: &ManagedProcess, needle: &str) {
    let deadline = Instant::now() + WAIT;
    while !process.log_tail(100_000).contains(needle) {
        assert!(
            Instant::now() < deadline,
            "never logged {needle:?}:\n{}",
            process.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_known_callers_reach_the_control_plane_and_each_only_what_it_may() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    certs(d, &["controlplane"]);
    certs(d, &["dataplane", "edge-eu", "--cluster", "eu"]);
    certs(d, &["dataplane", "edge-us", "--cluster", "us"]);
    certs(
        d,
        &["dataplane", "old-eu", "--cluster", "eu", "--days", "-1"],
    );
    certs(d, &["operator", "vera", "--role", "viewer"]);
    certs(d, &["operator", "ed", "--role", "editor"]);
    certs(d, &["operator", "ada", "--role", "admin"]);
    // Names that would overwrite the CA or leave the directory are refused.
    for bad in [
        &["operator", "ca", "--role", "admin"][..],
        &["dataplane", "x", "--cluster", "../up"][..],
    ] {
        let (code, _, err) = cli(&[&["certs", "--dir", &d.display().to_string()], bad].concat());
        assert_ne!(code, 0, "certs {bad:?} was accepted");
        assert!(err.contains("`"), "{err}");
    }
    let other = tempfile::tempdir().expect("tempdir");
    certs(other.path(), &["dataplane", "edge-eu", "--cluster", "eu"]);
    std::fs::copy(other.path().join("edge-eu.crt"), d.join("stranger.crt")).expect("copy");
    std::fs::copy(other.path().join("edge-eu.key"), d.join("stranger.key")).expect("copy");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(d.join("ca.key"))
        .expect("ca.key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the CA key is readable by others");

    let everything = ServerEverything::start().await.expect("server-everything");
    let data = tempfile::tempdir().expect("tempdir");
    let addr = format!("127.0.0.1:{}", free_port());
    let mut cmd = switchboard_testkit::switchboard(BIN);
    cmd.args(["controlplane", "--listen", &addr, "--data-dir"])
        .arg(data.path())
        .arg("--tls-cert")
        .arg(d.join("controlplane.crt"))
        .arg("--tls-key")
        .arg(d.join("controlplane.key"))
        .arg("--client-ca")
        .arg(d.join("ca.crt"))
        .env("SWITCHBOARD_SECRET_KEY", KEY);
    let cp = ManagedProcess::spawn(cmd).expect("control plane");
    if let Err(e) = wait_for_tcp(&addr, WAIT).await {
        panic!("control plane did not start: {e}\n{}", cp.log_tail(20));
    }
    let server = format!(
        "https://localhost:{}",
        addr.rsplit(':').next().unwrap_or_default()
    );
    let config = format!(
        "{}{}",
        upstream("everything", &everything.url(), ""),
        server_yaml()
    );
    let secret = "apiVersion: switchboard.dev/v1\nkind: Secret\nmetadata:\n  name: token\nspec:\n  data:\n    value: hunter2\n";

    // Anonymous callers and viewers cannot write; an editor can, but not Secrets.
    let (code, out, err) = apply_as(d, None, &server, &config);
    assert_ne!(code, 0, "an anonymous apply went through: {out}");
    assert!(err.contains("operator's client certificate"), "{err}");
    let (code, _, err) = apply_as(d, Some("vera"), &server, &config);
    assert_ne!(code, 0);
    assert!(
        err.contains("vera (viewer)") || err.contains("is a viewer"),
        "{err}"
    );
    let (code, out, err) = apply_as(d, Some("ed"), &server, &config);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, _, err) = apply_as(d, Some("ed"), &server, secret);
    assert_ne!(code, 0);
    assert!(err.contains("cannot write Secrets"), "{err}");
    let (code, out, err) = apply_as(d, Some("ada"), &server, secret);
    assert_eq!(code, 0, "{out}\n{err}");
    // Nor may an editor point an upstream at a Secret (its value would go wherever the
    // editor says), nor add a stdio upstream (a command on every data plane).
    let reads = upstream(
        "thief",
        "http://127.0.0.1:9/mcp",
        "  auth:\n    bearer: {secret: token, key: value}\n",
    );
    let (code, _, err) = apply_as(d, Some("ed"), &server, &reads);
    assert_ne!(code, 0, "an editor aimed a Secret at a URL of its choosing");
    assert!(err.contains("which reads Secrets"), "{err}");
    let runs = "apiVersion: switchboard.dev/v1\nkind: Upstream\nmetadata:\n  name: shell\nspec:\n  stdio:\n    command: /bin/sh\n";
    let (code, _, err) = apply_as(d, Some("ed"), &server, runs);
    assert_ne!(code, 0, "an editor added a command");
    assert!(err.contains("runs a command"), "{err}");
    // TLS settings with a plain http:// address are refused, not sent in the clear.
    let plain = server.replace("https://", "http://");
    let (code, _, err) = cli_as(d, Some("ada"), &plain, &["get", "upstreams"]);
    assert_ne!(code, 0);
    assert!(err.contains("is not https://"), "{err}");
    // A viewer reads, and never a Secret's value; a data plane's certificate reads nothing.
    let (code, out, err) = cli_as(
        d,
        Some("vera"),
        &server,
        &["get", "secrets", "token", "-o", "yaml"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("hunter2"), "{out}");
    let (code, _, err) = cli_as(d, Some("edge-eu"), &server, &["get", "upstreams"]);
    assert_ne!(code, 0);
    assert!(err.contains("cannot make admin calls"), "{err}");
    // A context keeps the server and credentials, so commands need no flags.
    let contexts = d.join("contexts.yaml");
    let contexts_env = contexts.display().to_string();
    let with_contexts =
        |args: &[&str]| run_in(d, &[("SWITCHBOARD_CONFIG", contexts_env.as_str())], args);
    let file = |n: &str| d.join(n).display().to_string();
    let (code, _, err) = with_contexts(&[
        "context",
        "set",
        "prod",
        "--server",
        &server,
        "--ca",
        &file("ca.crt"),
        "--cert",
        &file("vera.crt"),
        "--key",
        &file("vera.key"),
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = with_contexts(&["get", "upstreams"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("everything"), "{out}");
    let (code, _, err) = with_contexts(&["apply", "-f", &file("ca.crt")]);
    assert_ne!(code, 0, "vera applied through her context");
    assert!(err.contains("is a viewer"), "{err}");
    let mode = std::fs::metadata(&contexts)
        .expect("contexts")
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "the contexts file is readable by others"
    );
    let (code, _, err) = with_contexts(&["context", "use", "nowhere"]);
    assert_ne!(code, 0);
    assert!(err.contains("no context `nowhere`"), "{err}");

    // Over TLS an operator may show a token instead of a certificate.
    let (code, token, err) = cli_as(
        d,
        Some("ada"),
        &server,
        &["token", "create", "tess", "--role", "viewer"],
    );
    assert_eq!(code, 0, "{err}");
    let out = switchboard_testkit::switchboard(BIN)
        .env("SWITCHBOARD_TOKEN", token.trim())
        .args(["get", "upstreams", "--server", &server, "--ca"])
        .arg(d.join("ca.crt"))
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every write is recorded with who made it, and a viewer can read the record.
    let (code, out, err) = cli_as(d, Some("vera"), &server, &["get", "writes", "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    let writes: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let has = |actor: &str, kind: &str, name: &str| {
        writes.as_array().is_some_and(|all| {
            all.iter().any(|w| {
                w["actor"] == actor
                    && w["kind"] == kind
                    && w["name"] == name
                    && w["action"] == "created"
            })
        })
    };
    assert!(has("ed (editor)", "Upstream", "everything"), "{writes}");
    assert!(has("ada (admin)", "Secret", "token"), "{writes}");
    assert!(has("ada (admin)", "OperatorToken", "tess"), "{writes}");
    let (code, _, _) = cli_as(d, None, &server, &["get", "writes"]);
    assert_ne!(code, 0, "an anonymous caller read the record");

    // The eu data plane joins eu and serves its tools.
    let (_eu, url, s1) = data_plane_as(true, d, Some("edge-eu"), "eu", &server).await;
    wait_for_tools(&url, WAIT, "tools on the eu data plane", |t| {
        t.iter().any(|n| n == "ev_echo")
    })
    .await;
    // The session key it received is sealed in the store, which only its owner may read.
    let snapshot: serde_json::Value = serde_json::from_slice(
        &std::fs::read(s1.path().join("snapshot.json")).expect("persisted snapshot"),
    )
    .expect("JSON");
    let key_b64 = snapshot["sessionKey"]
        .as_str()
        .expect("a session key")
        .to_string();
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&key_b64)
        .expect("base64");
    let store = std::fs::read(data.path().join("registry.redb")).expect("registry");
    for needle in [raw.as_slice(), key_b64.as_bytes()] {
        assert!(
            !store.windows(needle.len()).any(|w| w == needle),
            "the store holds the session key in the clear"
        );
    }
    let mode = std::fs::metadata(data.path().join("registry.redb"))
        .expect("registry")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the store is readable by others");

    // A certificate for us claiming eu, one from another CA, an expired one, or none: no
    // snapshot, and the reason in the data plane's log.
    let (wrong, wrong_url, _s2) = data_plane_as(false, d, Some("edge-us"), "eu", &server).await;
    log_says(&wrong, "not `eu`").await;
    let (stranger, _, _s3) = data_plane_as(false, d, Some("stranger"), "eu", &server).await;
    let (expired, _, _s4) = data_plane_as(false, d, Some("old-eu"), "eu", &server).await;
    let (nobody, _, _s5) = data_plane_as(false, d, None, "eu", &server).await;
    log_says(&nobody, "needs a data plane's client certificate").await;
    for (who, p) in [("stranger", &stranger), ("expired", &expired)] {
        log_says(p, "discovery stream failed").await;
        assert!(
            !p.log_tail(100_000).contains("applied snapshot"),
            "{who} got a snapshot"
        );
    }
    assert!(!wrong.log_tail(100_000).contains("applied snapshot"));
    assert!(!nobody.log_tail(100_000).contains("applied snapshot"));
    let mut client = McpHttpClient::new(wrong_url);
    assert!(
        client.initialize().await.is_err(),
        "the wrong cluster's data plane serves demo"
    );
    let (code, out, err) = cli_as(
        d,
        Some("vera"),
        &server,
        &["get", "dataplanes", "-o", "json"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("dp-eu-edge-eu"), "{out}");
    for refused in [
        "dp-eu-edge-us",
        "dp-eu-stranger",
        "dp-eu-old-eu",
        "dp-eu-none",
    ] {
        assert!(!out.contains(refused), "{refused} is connected: {out}");
    }
}

fn server_yaml() -> String {
    server(&[("everything", "ev_")])
}

/// Runs a control plane on `etcd` that should refuse to start; returns what it printed.
async fn refused_start(etcd: &str, extra: &[&str], password: &str) -> String {
    let data = tempfile::tempdir().expect("tempdir");
    let out = tokio::process::Command::from(switchboard_testkit::switchboard(BIN))
        .args([
            "controlplane",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .args(["--etcd", etcd, "--data-dir"])
        .arg(data.path())
        .args(extra)
        .env("SWITCHBOARD_ETCD_PASSWORD", password)
        .output();
    let out = tokio::time::timeout(WAIT, out)
        .await
        .expect("the control plane gave up in time")
        .expect("ran");
    assert!(!out.status.success(), "started anyway");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_plane_keeps_its_registry_in_an_etcd_with_tls_and_auth() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = switchboard_testkit::TestCa::new("etcd ca").expect("ca");
    let server = ca
        .server(&["127.0.0.1", "localhost"])
        .expect("etcd certificate");
    let etcd = switchboard_testkit::Etcd::start_secure(&server, &ca.cert_pem, "s3cret")
        .await
        .expect("etcd with TLS and auth");
    let ca_file = dir.path().join("etcd-ca.crt");
    std::fs::write(&ca_file, &ca.cert_pem).expect("write CA");
    let ca_path = ca_file.display().to_string();

    let data = tempfile::tempdir().expect("tempdir");
    let addr = format!("127.0.0.1:{}", free_port());
    let mut cmd = switchboard_testkit::switchboard(BIN);
    cmd.args(["controlplane", "--listen", &addr, "--data-dir"])
        .arg(data.path())
        .args([
            "--etcd",
            &etcd.endpoint(),
            "--etcd-ca",
            &ca_path,
            "--etcd-user",
            "root",
        ])
        .env("SWITCHBOARD_ETCD_PASSWORD", "s3cret");
    let cp = ManagedProcess::spawn(cmd).expect("control plane");
    if let Err(e) = wait_for_tcp(&addr, WAIT).await {
        panic!("control plane did not start: {e}\n{}", cp.log_tail(20));
    }
    let admin = format!("http://{addr}");
    apply(&admin, &upstream("far", "http://127.0.0.1:9/mcp", ""));
    let (code, out, err) = cli(&["get", "upstreams", "far", "--server", &admin]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("far"), "{out}");
    assert!(
        !cp.log_tail(100_000).contains("s3cret"),
        "the password was logged"
    );

    // A wrong password, or no CA for etcd's certificate: the control plane does not start,
    // and says why.
    let err = refused_start(
        &etcd.endpoint(),
        &["--etcd-ca", &ca_path, "--etcd-user", "root"],
        "wrong",
    )
    .await;
    assert!(
        err.to_ascii_lowercase().contains("authentication failed"),
        "{err}"
    );
    let err = refused_start(&etcd.endpoint(), &["--etcd-user", "root"], "s3cret").await;
    assert!(err.contains("store"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_control_plane_lets_in_only_holders_of_its_token() {
    // No token given: the control plane makes one, readable by its owner only.
    let data = tempfile::tempdir().expect("tempdir");
    let addr = format!("127.0.0.1:{}", free_port());
    let mut cmd = switchboard_testkit::switchboard(BIN);
    cmd.env_remove("SWITCHBOARD_CONTROL_TOKEN")
        .args(["controlplane", "--listen", &addr, "--data-dir"])
        .arg(data.path());
    let cp = ManagedProcess::spawn(cmd).expect("control plane");
    if let Err(e) = wait_for_tcp(&addr, WAIT).await {
        panic!("control plane did not start: {e}\n{}", cp.log_tail(20));
    }
    let file = data.path().join("control-token");
    let token = std::fs::read_to_string(&file).expect("the control token file");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file)
        .expect("token file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the token is readable by others");
    assert!(
        !cp.log_tail(100_000).contains(token.trim()),
        "the token was logged"
    );
    let server = format!("http://{addr}");

    // The CLI without the token (and no token file where it runs) gets nothing.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let run = |token: Option<&str>, args: &[&str]| {
        let env: Vec<(&str, &str)> = token
            .map(|t| ("SWITCHBOARD_CONTROL_TOKEN", t))
            .into_iter()
            .collect();
        run_in(
            elsewhere.path(),
            &env,
            &[args, &["--server", server.as_str()]].concat(),
        )
    };
    let (code, _, err) = run(None, &["get", "upstreams"]);
    assert_ne!(code, 0);
    assert!(err.contains("need the control token"), "{err}");
    let (code, _, err) = run(Some("a guess"), &["get", "dataplanes"]);
    assert_ne!(code, 0);
    assert!(err.contains("need the control token"), "{err}");
    let (code, out, err) = run(Some(token.trim()), &["get", "upstreams"]);
    assert_eq!(code, 0, "{out}\n{err}");

    // Operators get tokens of their own, with roles; only their SHA-256 is stored.
    let issue = |name: &str, role: &str| {
        let (code, out, err) = run(
            Some(token.trim()),
            &["token", "create", name, "--role", role],
        );
        assert_eq!(code, 0, "token create {name}: {out}\n{err}");
        out.trim().to_string()
    };
    let vera = issue("vera", "viewer");
    let ed = issue("ed", "editor");
    let as_operator = |t: &str, args: &[&str]| {
        run_in(
            elsewhere.path(),
            &[("SWITCHBOARD_TOKEN", t)],
            &[args, &["--server", server.as_str()]].concat(),
        )
    };
    let config = elsewhere.path().join("u.yaml");
    std::fs::write(&config, upstream("far", "http://127.0.0.1:9/mcp", "")).expect("write");
    let config = config.display().to_string();
    let (code, _, err) = as_operator(&vera, &["get", "upstreams"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = as_operator(&vera, &["apply", "-f", &config]);
    assert_ne!(code, 0);
    assert!(err.contains("`vera` is a viewer"), "{err}");
    let (code, out, err) = as_operator(&ed, &["apply", "-f", &config]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, _, err) = as_operator(&ed, &["token", "create", "eve", "--role", "admin"]);
    assert_ne!(code, 0);
    assert!(err.contains("write operator tokens"), "{err}");
    let (_, stored, _) = run(Some(token.trim()), &["get", "operatortokens", "-o", "yaml"]);
    assert!(
        !stored.contains(&vera) && !stored.contains(&ed),
        "a token is stored in the clear"
    );
    // Revoked: refused at once.
    let (code, out, err) = run(Some(token.trim()), &["token", "revoke", "vera"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, _, err) = as_operator(&vera, &["get", "upstreams"]);
    assert_ne!(code, 0, "a revoked token still works");
    assert!(err.contains("need the control token"), "{err}");

    // A data plane without it gets no snapshot; with it, it joins.
    let start = |token: Option<&str>| {
        let state = tempfile::tempdir().expect("tempdir");
        let listen = format!("127.0.0.1:{}", free_port());
        let mut cmd = switchboard_testkit::switchboard(BIN);
        cmd.env_remove("SWITCHBOARD_CONTROL_TOKEN")
            .current_dir(elsewhere.path())
            .args([
                "dataplane",
                "--control-plane",
                &addr,
                "--listen",
                &listen,
                "--state-dir",
            ])
            .arg(state.path());
        if let Some(t) = token {
            cmd.env("SWITCHBOARD_CONTROL_TOKEN", t);
        }
        (
            ManagedProcess::spawn(cmd).expect("data plane"),
            listen,
            state,
        )
    };
    let (stranger, _, _s1) = start(None);
    log_says(&stranger, "control token").await;
    assert!(!stranger.log_tail(100_000).contains("applied snapshot"));
    let (member, listen, _s2) = start(Some(token.trim()));
    if let Err(e) = wait_for_http_ok(&format!("http://{listen}/readyz"), WAIT).await {
        panic!(
            "the data plane with the token got no snapshot: {e}\n{}",
            member.log_tail(20)
        );
    }
}
