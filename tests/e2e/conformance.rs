//! The official MCP conformance suite (npm `@modelcontextprotocol/conformance`, on Node 22),
//! run differentially. Server scenarios: against server-everything directly, then against
//! the same server behind a Switchboard virtual server; every scenario that passes directly
//! must pass through the gateway. (Scenarios that need the suite's own fixture server fail
//! in both runs; npm does not ship that server.) Client scenarios: a TypeScript SDK client
//! talks to each scenario's server directly, then through `switchboard connect`; every
//! scenario that passes directly must pass through `connect`. (The `auth/*` scenarios test
//! a client's OAuth flows, which `connect` leaves to the client: it passes static
//! credentials only.)

use std::collections::BTreeSet;

use crate::common::*;

fn suite() -> std::path::PathBuf {
    switchboard_testkit::npm_module_dir("@modelcontextprotocol/conformance")
        .expect("conformance suite installed (make deps)")
        .join("dist/index.js")
}

/// The client scenarios the suite lists, without the OAuth ones.
fn client_scenarios() -> Vec<String> {
    let out = std::process::Command::new(switchboard_testkit::node22_bin().expect("Node 22"))
        .arg(suite())
        .arg("list")
        .output()
        .expect("the suite lists its scenarios");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let clients = text.split("Client scenarios").nth(1).unwrap_or_default();
    clients
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| !name.starts_with("auth/"))
        .map(str::to_string)
        .collect()
}

/// Whether the client scenario `scenario` passes with our client in `mode`.
async fn client_passes(scenario: &str, mode: &str, out_dir: &std::path::Path) -> bool {
    let node = switchboard_testkit::node22_bin().expect("Node 22");
    let command = format!(
        "{} {} {} {mode}",
        node.display(),
        root().join("tests/peers/conformance_client.mjs").display(),
        switchboard_testkit::deps_dir()
            .join("npm/node_modules")
            .display()
    );
    let run = tokio::process::Command::new(&node)
        .arg(suite())
        .args([
            "client",
            "--scenario",
            scenario,
            "--command",
            &command,
            "-o",
        ])
        .arg(out_dir)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(120), run)
        .await
        .expect("the scenario finishes")
        .expect("the suite runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let tail: Vec<&str> = text.lines().rev().take(4).collect();
    println!("{scenario} ({mode}): {}", tail.join(" | "));
    out.status.success() && text.contains("OVERALL: PASSED")
}

/// Runs the server scenarios against `url`; returns (passed, failed) scenario names.
async fn conformance(url: &str, out_dir: &std::path::Path) -> (BTreeSet<String>, BTreeSet<String>) {
    let run = tokio::process::Command::new(switchboard_testkit::node22_bin().expect("Node 22"))
        .arg(suite())
        .args(["server", "--url", url, "-o"])
        .arg(out_dir)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(300), run)
        .await
        .expect("the suite finishes")
        .expect("the suite runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let summary = text.split("=== SUMMARY ===").nth(1).unwrap_or_else(|| {
        panic!(
            "no summary in:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let (mut passed, mut failed) = (BTreeSet::new(), BTreeSet::new());
    for line in summary.lines() {
        let name = |l: &str| l.split(':').next().unwrap_or("").trim().to_string();
        if let Some(rest) = line.strip_prefix("✓ ") {
            passed.insert(name(rest));
        } else if let Some(rest) = line.strip_prefix("✗ ") {
            failed.insert(name(rest));
        }
    }
    (passed, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_conformance_scenario_is_lost_through_the_gateway() {
    let stack = everything_stack("", "echo").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (direct, direct_failed) = conformance(&stack.direct, &dir.path().join("direct")).await;
    let (through, through_failed) = conformance(&stack.url, &dir.path().join("gateway")).await;
    println!(
        "direct:  {} passed {direct:?}\n         {} failed {direct_failed:?}",
        direct.len(),
        direct_failed.len()
    );
    println!(
        "gateway: {} passed {through:?}\n         {} failed {through_failed:?}",
        through.len(),
        through_failed.len()
    );
    assert!(direct.len() >= 10, "the direct run hardly ran: {direct:?}");
    let lost: Vec<&String> = direct.difference(&through).collect();
    assert!(
        lost.is_empty(),
        "scenarios lost through the gateway: {lost:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_client_scenario_is_lost_through_switchboard_connect() {
    let scenarios = client_scenarios();
    assert!(
        scenarios.iter().any(|s| s == "sse-retry") && scenarios.len() >= 4,
        "the suite lists its client scenarios: {scenarios:?}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let connect = format!("connect={BIN}");
    let (mut direct, mut lost) = (Vec::new(), Vec::new());
    for scenario in &scenarios {
        let out = dir.path().join(scenario.replace('/', "_"));
        if !client_passes(scenario, "direct", &out.join("direct")).await {
            continue;
        }
        direct.push(scenario.clone());
        if !client_passes(scenario, &connect, &out.join("connect")).await {
            lost.push(scenario.clone());
        }
    }
    println!("passed directly and through connect: {direct:?}; lost: {lost:?}");
    assert!(direct.len() >= 4, "the direct run hardly ran: {direct:?}");
    assert!(
        lost.is_empty(),
        "client scenarios lost through connect: {lost:?}"
    );
}

/// The pre-release suite (npm `@modelcontextprotocol/conformance` 0.2.0-alpha, in its own
/// prefix), which checks the 2026-07-28 requirements.
fn pre_release_suite() -> std::path::PathBuf {
    let path = switchboard_testkit::deps_dir()
        .join("npm-pre/node_modules/@modelcontextprotocol/conformance/dist/index.js");
    assert!(
        path.exists(),
        "{} is missing: run make deps",
        path.display()
    );
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_2026_07_28_requirements_fail_only_where_the_upstream_lacks_the_fixture() {
    // Every failing check is named in the baseline with the reason it is not the gateway's;
    // the suite fails on any other failure, and on a baselined check that now passes.
    let stack = everything_stack("", "echo").await;
    pre_release_run(
        &stack.url,
        "tests/fixtures/conformance-2026-07-28-baseline.yml",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_2026_07_28_requirements_through_a_session_era_fixture_server() {
    // The suite's fixture tools, prompts and resources on a session-era server of our own
    // (tests/peers/conformance_fixture_server.mjs): what fails is named in its baseline.
    let (_fixture, url) = fixture_server().await;
    let stack = gateway_stack("fixture", &url, "", "test_simple_text").await;
    pre_release_run(
        &stack.url,
        "tests/fixtures/conformance-2026-07-28-fixture-baseline.yml",
    )
    .await;
}

/// Runs the pre-release suite's 2026-07-28 server scenarios against `url`, expecting
/// exactly the failures `baseline` (a path under the repository) names.
async fn pre_release_run(url: &str, baseline: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let baseline = root().join(baseline);
    let run = tokio::process::Command::new(switchboard_testkit::node22_bin().expect("Node 22"))
        .arg(pre_release_suite())
        .args(["server", "--url", url, "--requirements", "2026-07-28"])
        .arg("--expected-failures")
        .arg(&baseline)
        .arg("-o")
        .arg(dir.path())
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(300), run)
        .await
        .expect("the suite finishes")
        .expect("the suite runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let summary = text.split("=== SUMMARY ===").nth(1).unwrap_or(&text);
    assert!(
        out.status.success(),
        "unexpected results against {}:\n{summary}\n{}",
        baseline.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(summary.contains("passed"), "the suite hardly ran:\n{text}");
}
