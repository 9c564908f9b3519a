//! The control plane end to end, as users run it: real etcd, real `switchboard controlplane`
//! processes on loopback ports, the CLI, and data planes running the real discovery client.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;
use switchboard_dataplane::discovery::{ClientConfig, ClientStatus, DiscoveryClient};
use switchboard_proto::v1::Node;
use switchboard_testkit::{free_port, wait_for_tcp, Etcd, ManagedProcess};
use tokio::sync::watch;

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");
const WAIT: Duration = Duration::from_secs(20);

pub(crate) fn examples() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// One control-plane replica process.
pub(crate) struct ControlPlane {
    pub(crate) process: ManagedProcess,
    port: u16,
}

impl ControlPlane {
    pub(crate) async fn start(port: u16, store_args: &[&str]) -> ControlPlane {
        let mut cmd = switchboard_testkit::switchboard(BIN);
        cmd.args(["controlplane", "--listen", &format!("127.0.0.1:{port}")])
            .args(store_args)
            .env("SWITCHBOARD_LOG", "info,switchboard_controlplane=debug");
        let process = ManagedProcess::spawn(cmd).expect("spawn control plane");
        if let Err(e) = wait_for_tcp(&format!("127.0.0.1:{port}"), WAIT).await {
            panic!("control plane did not start: {e}\n{}", process.log_tail(40));
        }
        ControlPlane { process, port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Runs a CLI command against this replica.
    pub(crate) fn cli(&self, args: &[&str]) -> Output {
        let out = switchboard_testkit::switchboard(BIN)
            .args(args)
            .args(["--server", &self.url()])
            .output()
            .expect("run switchboard");
        out
    }

    pub(crate) fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "switchboard {args:?} failed:\n{}\n{}\ncontrol plane log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.process.log_tail(30)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn dataplanes(&self) -> Vec<serde_json::Value> {
        let out = self.cli_ok(&["get", "dataplanes", "-o", "json"]);
        serde_json::from_str(&out).expect("dataplanes JSON")
    }
}

/// A data plane's discovery client running in this test process.
struct DataPlane {
    /// The log of the control plane it talks to, printed when a wait fails.
    cp_log: std::path::PathBuf,
    task: tokio::task::JoinHandle<()>,
    status: watch::Receiver<ClientStatus>,
    current: Arc<arc_swap::ArcSwapOption<switchboard_config::Snapshot>>,
}

impl DataPlane {
    fn start(cp: &ControlPlane, config: ClientConfig) -> DataPlane {
        Self::start_with(cp, DiscoveryClient::new(config))
    }

    fn start_with(cp: &ControlPlane, client: DiscoveryClient) -> DataPlane {
        let status = client.status();
        let current = client.current();
        let task = tokio::spawn(client.run());
        DataPlane {
            cp_log: cp.process.log_path(),
            task,
            status,
            current,
        }
    }

    /// Waits until the status satisfies `pred`, failing with the last status seen.
    async fn wait(&mut self, what: &str, pred: impl Fn(&ClientStatus) -> bool) -> ClientStatus {
        let result = tokio::time::timeout(WAIT, self.status.wait_for(|s| pred(s)))
            .await
            .map(|r| r.map(|s| s.clone()));
        match result {
            Ok(Ok(s)) => s,
            _ => panic!(
                "data plane never got {what}; last status {:?}\ncontrol plane log:\n{}",
                *self.status.borrow(),
                switchboard_testkit::tail_of_file(&self.cp_log, 40)
            ),
        }
    }

    async fn wait_version(&mut self, version: &str) {
        let v = version.to_string();
        self.wait(&format!("version {version}"), move |s| s.version == v)
            .await;
    }
}

impl Drop for DataPlane {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn node(id: &str, cluster: &str) -> Node {
    Node {
        id: id.into(),
        cluster: cluster.into(),
        zone: "z1".into(),
        labels: Default::default(),
        build_version: "test".into(),
    }
}

fn config(cp: &ControlPlane, id: &str, cluster: &str) -> ClientConfig {
    let mut c = ClientConfig::new(cp.url(), node(id, cluster));
    c.token = Some(switchboard_testkit::TEST_CONTROL_TOKEN.into());
    c.min_backoff = Duration::from_millis(50);
    c.max_backoff = Duration::from_millis(500);
    c
}

/// The acked version of every data plane, by node id.
fn acked(cp: &ControlPlane) -> BTreeMap<String, String> {
    cp.dataplanes()
        .into_iter()
        .map(|d| {
            (
                d["node"].as_str().unwrap_or_default().to_string(),
                d["ackedVersion"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_reaches_every_data_plane_of_each_group() {
    let data = tempfile::tempdir().expect("tempdir");
    let cp = ControlPlane::start(
        free_port(),
        &["--data-dir", data.path().to_str().expect("utf-8")],
    )
    .await;
    let mut us1 = DataPlane::start(&cp, config(&cp, "us-1", "us-east"));
    let mut us2 = DataPlane::start(&cp, config(&cp, "us-2", "us-east"));
    let mut eu1 = DataPlane::start(&cp, config(&cp, "eu-1", "eu-west"));
    // An empty registry is a valid (empty) snapshot: every data plane acks it.
    for dp in [&mut us1, &mut us2, &mut eu1] {
        dp.wait("a first snapshot", |s| s.acks >= 1).await;
    }

    let out = cp.cli_ok(&["apply", "-f", examples().to_str().expect("utf-8")]);
    assert!(out.contains("virtualserver/guarded created"), "{out}");
    let us = us1
        .wait("the applied config", |s| s.acks >= 2)
        .await
        .version;
    us2.wait_version(&us).await;
    let eu = eu1
        .wait("the applied config", |s| s.acks >= 2)
        .await
        .version;
    assert_ne!(us, eu, "eu-west also gets the server placed there");
    let eu_snap = eu1.current.load_full().expect("eu snapshot");
    assert!(eu_snap.virtual_servers.contains_key("guarded"));
    let us_snap = us1.current.load_full().expect("us snapshot");
    assert_eq!(
        us_snap.virtual_servers.keys().collect::<Vec<_>>(),
        ["demo", "everything-raw"],
        "everything but the eu-only server"
    );

    let acked = acked(&cp);
    assert_eq!(acked.get("us-1"), Some(&us));
    assert_eq!(acked.get("us-2"), Some(&us));
    assert_eq!(acked.get("eu-1"), Some(&eu));
    let table = cp.cli_ok(&["get", "dataplanes"]);
    assert!(table.contains("cluster=eu-west,zone=z1"), "{table}");

    // Re-applying the same files changes nothing and pushes nothing.
    let pushes = us1.status.borrow().pushes;
    let out = cp.cli_ok(&["apply", "-f", examples().to_str().expect("utf-8")]);
    assert!(out.lines().all(|l| l.ends_with(" unchanged")), "{out}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(us1.status.borrow().pushes, pushes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_one_etcd_converge() {
    let etcd = Etcd::start().await.expect("etcd");
    let store = ["--etcd", &etcd.endpoint()];
    let a = ControlPlane::start(free_port(), &store).await;
    let b = ControlPlane::start(free_port(), &store).await;
    let mut on_a = DataPlane::start(&a, config(&a, "dp-a", "c1"));
    let mut on_b = DataPlane::start(&b, config(&b, "dp-b", "c1"));
    on_a.wait("a first snapshot", |s| s.acks >= 1).await;
    on_b.wait("a first snapshot", |s| s.acks >= 1).await;

    a.cli_ok(&[
        "apply",
        "-f",
        examples().join("quickstart.yaml").to_str().expect("utf-8"),
    ]);
    let v1 = on_b
        .wait("the write made through replica A", |s| s.acks >= 2)
        .await
        .version;
    on_a.wait_version(&v1).await;

    // And the other way round; both replicas compute the same content-hash version.
    let edited = std::fs::read_to_string(examples().join("quickstart.yaml"))
        .expect("quickstart")
        .replace("Everything and time", "Edited through B");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("edited.yaml");
    std::fs::write(&file, edited).expect("write");
    let out = b.cli_ok(&["apply", "-f", file.to_str().expect("utf-8")]);
    assert!(out.contains("virtualserver/demo configured"), "{out}");
    let v2 = on_a
        .wait("the write made through replica B", |s| s.version != v1)
        .await
        .version;
    on_b.wait_version(&v2).await;
    assert_eq!(acked(&a).get("dp-a"), Some(&v2));
    assert_eq!(acked(&b).get("dp-b"), Some(&v2));
    let yaml = a.cli_ok(&["get", "vs", "demo", "-o", "yaml"]);
    assert!(yaml.contains("Edited through B"), "{yaml}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_restart_loses_nothing_and_pushes_nothing_redundant() {
    let etcd = Etcd::start().await.expect("etcd");
    let port = free_port();
    let store = ["--etcd", &etcd.endpoint()];
    let mut cp = ControlPlane::start(port, &store).await;
    let state = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&cp, "dp", "c1");
    cfg.state_dir = Some(state.path().to_path_buf());
    let mut dp = DataPlane::start(&cp, cfg.clone());
    dp.wait("a first snapshot", |s| s.acks >= 1).await;
    cp.cli_ok(&["apply", "-f", examples().to_str().expect("utf-8")]);
    let v = dp.wait("the applied config", |s| s.acks >= 2).await.version;
    let pushes = dp.status.borrow().pushes;

    // Control plane gone: the data plane keeps serving what it has.
    cp.process.kill();
    dp.wait("the disconnect", |s| s.connected_to.is_none())
        .await;
    assert_eq!(
        dp.current.load_full().map(|s| s.version.clone()),
        Some(v.clone())
    );

    // Back on the same port and etcd: everything is there, and the data plane (already at
    // that version) gets no redundant push.
    cp = ControlPlane::start(port, &store).await;
    dp.wait("the reconnect", |s| s.connected_to.is_some()).await;
    let names = cp.cli_ok(&["get", "upstreams"]);
    for name in ["everything", "reference", "time"] {
        assert!(names.contains(name), "{names}");
    }
    tokio::time::timeout(WAIT, async {
        while acked(&cp).get("dp") != Some(&v) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the new replica lists the data plane at its version");
    assert_eq!(
        dp.status.borrow().pushes,
        pushes,
        "no redundant push after fail-over"
    );

    // A data plane restarted while no control plane answers serves its persisted snapshot.
    drop(dp);
    cp.process.kill();
    let restarted = DiscoveryClient::new(cfg);
    let served = restarted.current().load_full().expect("persisted snapshot");
    assert_eq!(served.version, v);
    assert!(served.virtual_servers.contains_key("demo"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_snapshot_is_nacked_reported_and_the_old_one_kept() {
    let data = tempfile::tempdir().expect("tempdir");
    let cp = ControlPlane::start(
        free_port(),
        &["--data-dir", data.path().to_str().expect("utf-8")],
    )
    .await;
    // This data plane cannot serve the `guarded` server (say, a feature it lacks).
    let client = DiscoveryClient::new(config(&cp, "picky", "eu-west")).with_check(Arc::new(|s| {
        if s.virtual_servers.contains_key("guarded") {
            Err("virtual server `guarded` needs a feature this build lacks".into())
        } else {
            Ok(())
        }
    }));
    let mut dp = DataPlane::start_with(&cp, client);
    dp.wait("a first snapshot", |s| s.acks >= 1).await;
    cp.cli_ok(&[
        "apply",
        "-f",
        examples().join("quickstart.yaml").to_str().expect("utf-8"),
    ]);
    let good = dp.wait("the quickstart", |s| s.acks >= 2).await.version;
    cp.cli_ok(&[
        "apply",
        "-f",
        examples().join("policies.yaml").to_str().expect("utf-8"),
    ]);
    let status = dp.wait("a NACK", |s| s.nacks >= 1).await;
    assert_eq!(status.version, good, "still serving the last good snapshot");
    assert_eq!(
        dp.current.load_full().map(|s| s.version.clone()),
        Some(good.clone())
    );
    let dps = cp.dataplanes();
    assert_eq!(dps[0]["ackedVersion"], good.as_str());
    assert!(
        dps[0]["lastNack"]
            .as_str()
            .unwrap_or_default()
            .contains("needs a feature"),
        "{dps:?}"
    );
    // Reverting what it rejects brings the group back to the version the data plane
    // serves: no push is needed, and the NACK is cleared.
    let out = cp.cli(&["delete", "vs", "guarded"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tokio::time::timeout(WAIT, async {
        while cp.dataplanes()[0]["lastNack"] != "" {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the NACK is cleared once the config is back in sync");
    assert_eq!(cp.dataplanes()[0]["ackedVersion"], good.as_str());
    assert_eq!(dp.status.borrow().version, good);
    // And a new, acceptable change is pushed and acked as usual.
    let edited = std::fs::read_to_string(examples().join("quickstart.yaml"))
        .expect("quickstart")
        .replace("Everything and time", "Edited");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("edited.yaml");
    std::fs::write(&file, edited).expect("write");
    cp.cli_ok(&["apply", "-f", file.to_str().expect("utf-8")]);
    let status = dp.wait("the next good config", |s| s.acks >= 3).await;
    assert_ne!(status.version, good);
    assert_eq!(cp.dataplanes()[0]["ackedVersion"], status.version.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_applies_is_coalesced_into_few_pushes_of_the_final_state() {
    let etcd = Etcd::start().await.expect("etcd");
    let cp = ControlPlane::start(free_port(), &["--etcd", &etcd.endpoint()]).await;
    let mut dp = DataPlane::start(&cp, config(&cp, "dp", "c1"));
    dp.wait("a first snapshot", |s| s.acks >= 1).await;
    const UPSTREAMS: usize = 10;
    const ROUNDS: usize = 10;
    let upstream = |i: usize, round: usize| {
        format!(
            "kind: Upstream\nmetadata:\n  name: u{i}\nspec:\n  description: round {round}\n  mcp:\n    url: http://127.0.0.1:9/mcp\n"
        )
    };
    let mut all = String::new();
    for i in 0..UPSTREAMS {
        all.push_str(&upstream(i, 0));
        all.push_str("---\n");
    }
    all.push_str("kind: VirtualServer\nmetadata:\n  name: burst\nspec:\n  upstreams:\n");
    for i in 0..UPSTREAMS {
        all.push_str(&format!("    - upstream: u{i}\n      prefix: u{i}_\n"));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().join("base.yaml");
    std::fs::write(&base, all).expect("write");
    cp.cli_ok(&["apply", "-f", base.to_str().expect("utf-8")]);
    dp.wait("the base config", |s| s.acks >= 2).await;
    let before = dp.status.borrow().pushes;

    // 100 applies from 10 concurrent writers, each on its own upstream, over the admin API.
    let mut writers = Vec::new();
    for i in 0..UPSTREAMS {
        let url = cp.url();
        writers.push(tokio::spawn(async move {
            let mut admin = switchboard_proto::v1::admin_client::AdminClient::connect(url)
                .await
                .expect("admin connect");
            for round in 1..=ROUNDS {
                let mut request = tonic::Request::new(switchboard_proto::v1::ApplyRequest {
                    files: vec![switchboard_proto::v1::SourceFile {
                        name: format!("u{i}.yaml"),
                        content: upstream(i, round),
                    }],
                    dry_run: false,
                });
                let bearer = format!("Bearer {}", switchboard_testkit::TEST_CONTROL_TOKEN);
                request
                    .metadata_mut()
                    .insert("authorization", bearer.parse().expect("header value"));
                let resp = admin.apply(request).await.expect("apply").into_inner();
                assert!(resp.errors.is_empty(), "{:?}", resp.errors);
            }
        }));
    }
    for w in writers {
        w.await.expect("writer");
    }
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(s) = dp.current.load_full() {
                if s.upstreams
                    .values()
                    .all(|u| u.description.as_deref() == Some("round 10"))
                {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the data plane converges on the final state");
    let pushes = dp.status.borrow().pushes - before;
    assert!(pushes <= 50, "100 applies caused {pushes} pushes");
    println!("100 applies from 10 writers -> {pushes} pushes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_plane_reports_only_on_upstreams_its_group_serves() {
    use switchboard_proto::v1::{DiscoveryRequest, StdioReport};
    let data = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let cp = ControlPlane::start(port, &["--data-dir", &data.path().display().to_string()]).await;
    let stdio = |name: &str, cluster: &str| {
        format!("apiVersion: switchboard.dev/v1\nkind: Upstream\nmetadata:\n  name: {name}\nspec:\n  stdio:\n    command: /bin/true\n---\napiVersion: switchboard.dev/v1\nkind: VirtualServer\nmetadata:\n  name: vs-{name}\nspec:\n  upstreams:\n    - upstream: {name}\n  placement:\n    clusters: [{cluster}]\n---\n")
    };
    let file = data.path().join("stdio.yaml");
    std::fs::write(
        &file,
        format!("{}{}", stdio("ours", "eu"), stdio("theirs", "us")),
    )
    .expect("write");
    cp.cli_ok(&["apply", "-f", &file.display().to_string()]);

    // A data plane of eu reports a catalog for both: its own, and another group's.
    let catalog = switchboard_config::Catalog {
        protocol_version: "2025-11-25".into(),
        tools: vec![serde_json::json!({"name": "forged", "inputSchema": {"type": "object"}})],
        ..Default::default()
    };
    let report = |upstream: &str| StdioReport {
        upstream: upstream.into(),
        healthy: true,
        catalog_json: serde_json::to_vec(&catalog).expect("JSON"),
        catalog_hash: catalog.content_hash(),
        protocol_version: catalog.protocol_version.clone(),
        ..Default::default()
    };
    let channel = tonic::transport::Endpoint::from_shared(cp.url())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut client = switchboard_proto::v1::discovery_client::DiscoveryClient::new(channel);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(DiscoveryRequest {
        node: Some(node("eu-1", "eu")),
        ..Default::default()
    })
    .await
    .expect("hello");
    let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    let bearer = format!("Bearer {}", switchboard_testkit::TEST_CONTROL_TOKEN);
    request
        .metadata_mut()
        .insert("authorization", bearer.parse().expect("header"));
    let mut pushes = client
        .stream_snapshots(request)
        .await
        .expect("stream")
        .into_inner();
    pushes.message().await.expect("push").expect("a snapshot");
    tx.send(DiscoveryRequest {
        stdio_reports: vec![report("theirs"), report("ours")],
        ..Default::default()
    })
    .await
    .expect("reports");

    // Its own upstream's catalog lands; the other group's does not.
    let tools = |name: &str| -> serde_json::Value {
        let out = cp.cli_ok(&["get", "upstreams", name, "-o", "json"]);
        let list: serde_json::Value = serde_json::from_str(&out).expect("JSON");
        list[0]["status"]["tools"].clone()
    };
    let deadline = std::time::Instant::now() + WAIT;
    while tools("ours") != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the eu report never landed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_ne!(tools("theirs"), 1, "a data plane of eu reported for us");
    assert!(cp.process.log_tail(200).contains("does not serve"));
    drop(tx);
}
