//! Attacks on the gateway and its control plane, each performed for real against our
//! binaries (the hardening issue's findings): every one must be refused cleanly, and what
//! was attacked must keep serving.

use crate::controlplane::{examples, ControlPlane};
use std::time::Duration;
use switchboard_testkit::free_port;

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
