//! `switchboard validate` as users run it: exit codes and positioned messages.

use std::process::Command;

fn switchboard(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run switchboard")
}

#[test]
fn examples_validate() {
    let out = switchboard(&["validate", "-f", "examples/"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("valid: 12 resources in 3 file(s)"),
        "{stdout}"
    );
}

#[test]
fn hash_key_prints_the_sha256_of_stdin_without_its_newline() {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("hash-key")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run switchboard");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"demo-key-alice\n")
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    // The hash examples/policies.yaml stores for this key.
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "f80024220afd493b4d9592af870de7afe98061992d28fdb75480c9b717783fa2"
    );
}

#[test]
fn credentials_example_validates() {
    // Kept apart from examples/ because applying a Secret needs SWITCHBOARD_SECRET_KEY.
    let out = switchboard(&["validate", "-f", "examples/credentials/"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout
            .starts_with("valid: 3 resources in 1 file(s) (1 Secret, 1 Upstream, 1 VirtualServer)"),
        "{stdout}"
    );
}

#[test]
fn stdio_example_validates() {
    let out = switchboard(&["validate", "-f", "examples/stdio/"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout
            .starts_with("valid: 4 resources in 1 file(s) (1 Secret, 2 Upstream, 1 VirtualServer)"),
        "{stdout}"
    );
}

#[test]
fn broken_file_reports_every_error_with_positions_and_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("broken.yaml");
    std::fs::write(
        &path,
        "kind: Upstream\nmetadata:\n  name: ok\nspec:\n  mcp:\n    url: http://127.0.0.1:1/mcp\n---\nkind: VirtualServer\nmetadata:\n  name: vs\nspec:\n  upstreams:\n    - upstream: missing\n  colour: blue\n",
    )
    .expect("write");
    let file = path.to_str().expect("utf-8 path");
    let out = switchboard(&["validate", "-f", file]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{file}:14:3 (document 1): spec.colour: unknown field `colour`"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("1 error(s)"), "{stderr}");

    let out = switchboard(&["validate", "-f", file, "-o", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json output");
    assert_eq!(v["valid"], false);
    assert_eq!(v["errors"][0]["line"], 14);
    assert_eq!(v["errors"][0]["field"], "spec.colour");
}

#[test]
fn unreadable_file_is_an_error_not_a_crash() {
    let out = switchboard(&["validate", "-f", "does/not/exist.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("does/not/exist.yaml: cannot read"),
        "{stderr}"
    );
}
