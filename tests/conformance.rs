//! The official MCP conformance suite (npm `@modelcontextprotocol/conformance`, on Node 22),
//! server scenarios, run differentially: against server-everything directly, then against
//! the same server behind a Switchboard virtual server. Every scenario that passes directly
//! must pass through the gateway. (Scenarios that need the suite's own fixture server fail
//! in both runs; npm does not ship that server.)

use std::collections::BTreeSet;

mod common;
use common::*;

/// Runs the server scenarios against `url`; returns (passed, failed) scenario names.
async fn conformance(url: &str, out_dir: &std::path::Path) -> (BTreeSet<String>, BTreeSet<String>) {
    let suite = switchboard_testkit::npm_module_dir("@modelcontextprotocol/conformance")
        .expect("conformance suite installed (make deps)")
        .join("dist/index.js");
    let run = tokio::process::Command::new(switchboard_testkit::node22_bin().expect("Node 22"))
        .arg(suite)
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
