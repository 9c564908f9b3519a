//! Control-plane fan-out benchmark: N simulated data planes (100, 1 000, 10 000 by default)
//! hold discovery streams to one `switchboard controlplane` process; one `apply` changes the
//! config; we print the time from the apply to the last data plane's ACK, and the control
//! plane's resident memory idle, with N streams, and after the push.
//!
//! Run: `cargo bench --bench cp_fanout` (or `-- 100 1000` for other sizes).
//! Loopback only; every wait is bounded.

use std::time::{Duration, Instant};
use switchboard_proto::v1::admin_client::AdminClient;
use switchboard_proto::v1::discovery_client::DiscoveryClient;
use switchboard_proto::v1::{ApplyRequest, DiscoveryRequest, Node, SourceFile};
use switchboard_testkit::{free_port, rss_kib, wait_for_tcp, ManagedProcess};
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint};

/// Streams per HTTP/2 connection (below the server's concurrent-stream limit).
const STREAMS_PER_CONNECTION: usize = 100;
const LIMIT: Duration = Duration::from_secs(120);

/// One simulated data plane: hello, then ACK every push (reporting when it did).
async fn simulate(
    channel: Channel,
    id: usize,
    acks: mpsc::UnboundedSender<(usize, String, Instant)>,
) {
    let mut client = DiscoveryClient::new(channel).max_decoding_message_size(64 << 20);
    let (tx, rx) = mpsc::channel(4);
    let hello = DiscoveryRequest {
        node: Some(Node {
            id: format!("sim-{id}"),
            cluster: "bench".into(),
            zone: "z1".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    if tx.send(hello).await.is_err() {
        return;
    }
    let Ok(response) = client
        .stream_snapshots(with_token(tokio_stream::wrappers::ReceiverStream::new(rx)))
        .await
    else {
        return;
    };
    let mut stream = response.into_inner();
    while let Ok(Some(push)) = stream.message().await {
        let ack = DiscoveryRequest {
            version_info: push.version_info.clone(),
            response_nonce: push.nonce,
            ..Default::default()
        };
        if tx.send(ack).await.is_err() {
            return;
        }
        let _ = acks.send((id, push.version_info, Instant::now()));
    }
}

/// Waits until every simulator acked `version`; returns the ACK instants.
async fn wait_all(
    acks: &mut mpsc::UnboundedReceiver<(usize, String, Instant)>,
    n: usize,
    version: Option<&str>,
) -> anyhow::Result<(String, Vec<Instant>)> {
    let mut seen = std::collections::HashMap::new();
    let mut target = version.map(str::to_string);
    let deadline = tokio::time::Instant::now() + LIMIT;
    while seen.len() < n {
        let (id, v, at) = tokio::time::timeout_at(deadline, acks.recv())
            .await
            .map_err(|_| anyhow::anyhow!("only {} of {n} data planes acked in time", seen.len()))?
            .ok_or_else(|| anyhow::anyhow!("simulators stopped"))?;
        let want = target.get_or_insert_with(|| v.clone());
        if &v == want {
            seen.insert(id, at);
        }
    }
    Ok((target.unwrap_or_default(), seen.into_values().collect()))
}

async fn run(n: usize, example: &str) -> anyhow::Result<serde_json::Value> {
    let data = tempfile::tempdir()?;
    let port = free_port();
    let mut cmd = switchboard_testkit::switchboard(env!("CARGO_BIN_EXE_switchboard"));
    cmd.args(["controlplane", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--data-dir", &data.path().display().to_string()])
        .env("SWITCHBOARD_LOG", "warn");
    let cp = ManagedProcess::spawn(cmd)?;
    wait_for_tcp(&format!("127.0.0.1:{port}"), Duration::from_secs(20)).await?;
    let pid = cp.pid();
    let url = format!("http://127.0.0.1:{port}");
    let rss_idle = rss_kib(pid);

    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel();
    let connections = n.div_ceil(STREAMS_PER_CONNECTION);
    let mut channels = Vec::new();
    for _ in 0..connections {
        channels.push(Endpoint::from_shared(url.clone())?.connect().await?);
    }
    let started = Instant::now();
    let mut sims = Vec::new();
    for id in 0..n {
        let channel = channels[id % connections].clone();
        sims.push(tokio::spawn(simulate(channel, id, ack_tx.clone())));
    }
    let (initial, _) = wait_all(&mut ack_rx, n, None).await?;
    let connect_all = started.elapsed();
    let rss_connected = rss_kib(pid);

    let mut admin = AdminClient::connect(url).await?;
    let t0 = Instant::now();
    let resp = admin
        .apply(with_token(ApplyRequest {
            files: vec![SourceFile {
                name: "quickstart.yaml".into(),
                content: example.to_string(),
            }],
            dry_run: false,
        }))
        .await?
        .into_inner();
    anyhow::ensure!(resp.errors.is_empty(), "apply failed: {:?}", resp.errors);
    // The new version is whichever differs from the initial one.
    let mut times = Vec::with_capacity(n);
    let mut seen = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + LIMIT;
    while seen.len() < n {
        let (id, v, at) = tokio::time::timeout_at(deadline, ack_rx.recv())
            .await
            .map_err(|_| anyhow::anyhow!("only {} of {n} acked the new version", seen.len()))?
            .ok_or_else(|| anyhow::anyhow!("simulators stopped"))?;
        if v != initial && seen.insert(id) {
            times.push(at.duration_since(t0));
        }
    }
    times.sort();
    let rss_after = rss_kib(pid);
    for s in sims {
        s.abort();
    }
    drop(cp);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Ok(serde_json::json!({
        "data_planes": n,
        "connect_all_ms": ms(connect_all),
        "apply_to_first_ack_ms": ms(times[0]),
        "apply_to_median_ack_ms": ms(times[n / 2]),
        "apply_to_last_ack_ms": ms(times[n - 1]),
        "cp_rss_idle_mib": rss_idle as f64 / 1024.0,
        "cp_rss_connected_mib": rss_connected as f64 / 1024.0,
        "cp_rss_after_push_mib": rss_after as f64 / 1024.0,
        "cp_kib_per_data_plane": (rss_connected.saturating_sub(rss_idle)) as f64 / n as f64,
    }))
}

fn main() -> anyhow::Result<()> {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![100, 1_000, 10_000]
    } else {
        sizes
    };
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart.yaml"),
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let rows = runtime.block_on(async {
        let mut rows = Vec::new();
        for n in sizes {
            rows.push(run(n, &example).await?);
        }
        anyhow::Ok(rows)
    })?;
    println!(
        "{:>11} {:>12} {:>12} {:>12} {:>12} {:>10} {:>12} {:>12}",
        "data planes",
        "connect ms",
        "first ack",
        "median ack",
        "last ack",
        "idle MiB",
        "conn'd MiB",
        "KiB per DP"
    );
    for r in &rows {
        println!(
            "{:>11} {:>12.1} {:>12.1} {:>12.1} {:>12.1} {:>10.1} {:>12.1} {:>12.1}",
            r["data_planes"],
            r["connect_all_ms"].as_f64().unwrap_or(0.0),
            r["apply_to_first_ack_ms"].as_f64().unwrap_or(0.0),
            r["apply_to_median_ack_ms"].as_f64().unwrap_or(0.0),
            r["apply_to_last_ack_ms"].as_f64().unwrap_or(0.0),
            r["cp_rss_idle_mib"].as_f64().unwrap_or(0.0),
            r["cp_rss_connected_mib"].as_f64().unwrap_or(0.0),
            r["cp_kib_per_data_plane"].as_f64().unwrap_or(0.0),
        );
    }
    let out = std::env::temp_dir().join("switchboard-bench-cp-fanout.json");
    std::fs::write(&out, serde_json::to_string_pretty(&rows)?)?;
    println!("(JSON written to {})", out.display());
    Ok(())
}

/// `message` carrying the tests' control token, as every caller of a control plane must.
fn with_token<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let bearer = format!("Bearer {}", switchboard_testkit::TEST_CONTROL_TOKEN);
    if let Ok(value) = bearer.parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}
