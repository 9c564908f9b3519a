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

/// `validate` passes `dir` and its summary starts with `summary`.
#[track_caller]
fn example_validates(dir: &str, summary: &str) {
    let out = switchboard(&["validate", "-f", dir]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.starts_with(summary), "{stdout}");
}

#[test]
fn examples_kept_apart_validate() {
    // Kept apart from examples/ because applying a Secret needs SWITCHBOARD_SECRET_KEY
    // (credentials, rest, stdio), or a peer must run first (a2a).
    example_validates(
        "examples/credentials/",
        "valid: 3 resources in 1 file(s) (1 Secret, 1 Upstream, 1 VirtualServer)",
    );
    example_validates(
        "examples/rest/",
        "valid: 4 resources in 1 file(s) (1 Secret, 2 Upstream, 1 VirtualServer)",
    );
    example_validates(
        "examples/a2a/",
        "valid: 2 resources in 1 file(s) (1 Upstream, 1 VirtualServer)",
    );
    example_validates(
        "examples/stdio/",
        "valid: 4 resources in 1 file(s) (1 Secret, 2 Upstream, 1 VirtualServer)",
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

#[test]
fn preview_prints_the_tools_of_rest_and_openapi_upstreams_before_apply() {
    let dir = tempfile::tempdir().expect("tempdir");
    let doc = dir.path().join("api.yaml");
    std::fs::write(
        &doc,
        "openapi: 3.0.3\ninfo: {title: t, version: '1'}\nservers: [{url: 'http://api.test/v1'}]\npaths:\n  /pets/{id}:\n    get:\n      operationId: getPet\n      summary: One pet\n      parameters: [{name: id, in: path, required: true, schema: {type: integer}}]\n    delete:\n      operationId: deletePet\n      parameters: [{name: id, in: path, required: true, schema: {type: integer}}]\n      responses: {'204': {description: gone}}\n  /upload:\n    post:\n      operationId: upload\n      parameters: [{name: session, in: cookie, required: true, schema: {type: string}}]\n",
    )
    .expect("write");
    let config = dir.path().join("upstreams.yaml");
    std::fs::write(
        &config,
        format!("kind: Upstream\nmetadata:\n  name: pets\nspec:\n  openapi:\n    specUrl: file://{}\n---\nkind: Upstream\nmetadata:\n  name: missing\nspec:\n  openapi:\n    specUrl: file:///nonexistent/openapi.yaml\n", doc.display()),
    )
    .expect("write");
    let path = config.display().to_string();
    let out = switchboard(&["preview", "-f", &path, "--upstream", "pets"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("upstream pets (openapi 3.0.3, 2 tools) -> http://api.test/v1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("getPet") && stdout.contains("GET") && stdout.contains("(id) One pet"),
        "{stdout}"
    );
    assert!(
        stdout.contains("left out: POST /upload: required cookie parameter `session`"),
        "{stdout}"
    );
    // JSON carries each tool's schema and call; a document that cannot be read fails.
    let out = switchboard(&["preview", "-f", &path, "-o", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let of = |name: &str| {
        all.as_array()
            .and_then(|a| a.iter().find(|u| u["upstream"] == name))
            .cloned()
            .unwrap_or_default()
    };
    let pets = &of("pets")["preview"]["tools"][1];
    assert_eq!(pets["call"]["method"], "DELETE", "{all}");
    assert_eq!(pets["annotations"]["idempotentHint"], true, "{all}");
    let missing = of("missing")["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        missing,
        "file:///nonexistent/openapi.yaml: cannot read the OpenAPI document: No such file or directory (os error 2)"
    );
}
