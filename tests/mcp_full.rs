//! The rest of MCP through the gateway (issue 8): requests upstreams send their clients
//! (sampling, elicitation, roots; during a call or on the session's GET stream) reach the
//! right client, and its answers go back to the right upstream session, with real peers
//! (server-everything and the TypeScript SDK).

use serde_json::Value;
use switchboard_testkit::ServerEverything;

mod common;
use common::*;

/// The TypeScript SDK client that answers sampling and roots requests with `tag` in them.
async fn ts_sampling_client(url: &str, prefix: &str, tag: &str) -> Value {
    let modules = switchboard_testkit::deps_dir().join("npm/node_modules");
    let out = tokio::process::Command::new(switchboard_testkit::node_bin().expect("node"))
        .arg(root().join("tests/peers/ts_sampling_client.mjs"))
        .arg(&modules)
        .args([url, prefix, tag])
        .output();
    let out = tokio::time::timeout(WAIT, out)
        .await
        .expect("client finished")
        .expect("ran");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from the TypeScript client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_elicitation_and_roots_requests_reach_their_own_client_and_come_back() {
    let everything = ServerEverything::start().await.expect("server-everything");
    let (_cp, admin, _data) = control_plane(None).await;
    let (_dp, url, _state) = data_plane(admin.trim_start_matches("http://")).await;
    apply(
        &admin,
        &format!(
            "{}{}",
            upstream("everything", &everything.url(), ""),
            server(&[("everything", "ev_")])
        ),
    );
    // Discovery offers the client capabilities, so the tools server-everything registers
    // only for clients with sampling and roots are listed.
    wait_for_tools(&url, WAIT, "sampling and roots tools", |t| {
        t.iter().any(|n| n == "ev_trigger-sampling-request")
            && t.iter().any(|n| n == "ev_get-roots-list")
    })
    .await;

    // Two clients at once: each gets only its own requests, and each result carries only
    // its own answers.
    let (alpha, beta) = tokio::join!(
        ts_sampling_client(&url, "ev_", "alpha"),
        ts_sampling_client(&url, "ev_", "beta")
    );
    for (seen, me, other) in [(&alpha, "alpha", "beta"), (&beta, "beta", "alpha")] {
        let sampling = seen["sampling"].as_str().unwrap_or_default();
        assert!(
            sampling.contains(&format!("sampled by {me}: "))
                && sampling.contains(&format!("question from {me}")),
            "{me}: {seen}"
        );
        assert!(sampling.contains(&format!("model-{me}")), "{me}: {seen}");
        assert!(
            !sampling.contains(other),
            "{me} got {other}'s sampling: {seen}"
        );
        let roots = seen["roots"].as_str().unwrap_or_default();
        assert!(roots.contains(&format!("root-{me}")), "{me}: {seen}");
        assert!(!roots.contains(other), "{me} got {other}'s roots: {seen}");
        assert!(seen["sampling_requests"].as_u64() >= Some(1), "{seen}");
        let elicitation = seen["elicitation"].as_str().unwrap_or_default();
        assert!(elicitation.contains("declined"), "{me}: {seen}");
        assert_eq!(seen["elicitation_requests"], 1, "{seen}");
    }
}
