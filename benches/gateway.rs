//! Gateway benchmark: the same MCP requests sent straight to a near-free upstream
//! (`examples/bench-upstream`), through Switchboard (a control plane and a data plane,
//! release build) and through ContextForge (the upstream registered as a gateway, its tools
//! in one virtual server, rate limiting off), interleaved in one run so all see the same
//! machine. Prints, per scenario, requests/s, p50/p99/p99.9 latency and the serving
//! process's peak RSS, with the Switchboard/direct and Switchboard/ContextForge ratios, and
//! writes the same as JSON. A second data plane serves the same over TLS, so the cost of TLS
//! per call shows as `tls/plain` in the same run.
//!
//! Run: `make bench` (it builds the upstream example first). Options after `--`:
//! `--seconds N` per measurement (default 3), `--out FILE` (default
//! `target/bench-gateway.json` under the target directory). Loopback only; every loop is
//! bounded in time.

use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};
use switchboard_testkit::{free_port, rss_kib, wait_for_http_ok, wait_for_tcp, ManagedProcess};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");
const LIST_TOOLS: usize = 1000;
const STREAM_EVENTS: u64 = 100;
const IDLE_SESSIONS: usize = 10_000;
/// Idle GET streams held open at once for the per-stream memory figure (each holds a
/// connection to the gateway, and the gateway may hold one upstream, so this stays well
/// under the machine's 20 000 file descriptors per process).
const IDLE_STREAMS: usize = 5_000;

/// The upstream example, built next to this benchmark (`make bench` builds it).
fn upstream_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("bench path");
    let release = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let bin = release.join("examples/bench-upstream");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --release --example bench-upstream` (make bench does)",
        bin.display()
    );
    bin
}

/// What one measurement sends.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// tools/call echo, in a session.
    Call,
    /// tools/list, every page, of a server with 1 000+ tools.
    List,
    /// tools/call stream: 100 SSE events then the result.
    Stream,
    /// initialize + notifications/initialized (a new session each time).
    Initialize,
    /// A REST tool: tools/call `rest_echo` through a gateway, `GET /rest/echo` directly.
    Rest,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Call => "tools/call",
            Kind::List => "tools/list (1000 tools)",
            Kind::Stream => "100-event SSE stream",
            Kind::Initialize => "session initialize",
            Kind::Rest => "REST tool call",
        }
    }
}

/// One place requests go: its MCP URL, the process that serves it, what every request
/// carries, and what it calls the upstream's tools.
#[derive(Clone)]
struct Target {
    name: &'static str,
    url: String,
    pid: u32,
    headers: Vec<(String, String)>,
    tool_prefix: String,
    /// The CA (PEM) an https target's certificate comes from.
    ca_pem: Option<String>,
}

impl Target {
    /// An HTTP client for this target (trusting its CA) with `builder`'s settings.
    fn client(&self, builder: reqwest::ClientBuilder) -> reqwest::Client {
        let builder = match &self.ca_pem {
            Some(pem) => builder.add_root_certificate(
                reqwest::Certificate::from_pem(pem.as_bytes()).expect("bench CA"),
            ),
            None => builder,
        };
        builder.build().expect("client")
    }
}

fn rpc(id: u64, method: &str, params: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()
}

async fn post(
    http: &reqwest::Client,
    target: &Target,
    session: Option<&str>,
    body: String,
) -> Result<reqwest::Response, String> {
    let mut req = http
        .post(&target.url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body);
    for (k, v) in &target.headers {
        req = req.header(k, v);
    }
    if let Some(s) = session {
        req = req
            .header("mcp-session-id", s)
            .header("mcp-protocol-version", "2025-06-18");
    }
    let resp = req.send().await.map_err(|e| e.to_string())?;
    if resp.status().is_success() {
        Ok(resp)
    } else {
        Err(format!("HTTP {}", resp.status()))
    }
}

/// Opens a session; returns its id (None from servers that keep no sessions).
async fn initialize(http: &reqwest::Client, target: &Target) -> Result<Option<String>, String> {
    let init = rpc(
        0,
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}}),
    );
    let resp = post(http, target, None, init).await?;
    let id = resp
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    resp.bytes().await.map_err(|e| e.to_string())?;
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string();
    post(http, target, id.as_deref(), note)
        .await?
        .bytes()
        .await
        .map_err(|e| e.to_string())?;
    Ok(id)
}

/// One operation of `kind`.
async fn once(
    http: &reqwest::Client,
    target: &Target,
    session: Option<&str>,
    kind: Kind,
    n: u64,
) -> Result<(), String> {
    let tool = |name: &str| format!("{}{name}", target.tool_prefix);
    match kind {
        Kind::Call => {
            let body = rpc(
                n,
                "tools/call",
                json!({"name": tool("echo"), "arguments": {"message": "hi"}}),
            );
            let text = post(http, target, session, body)
                .await?
                .text()
                .await
                .map_err(|e| e.to_string())?;
            if !text.contains("\"result\"") {
                return Err(format!("no result: {text}"));
            }
        }
        Kind::List => {
            let mut cursor: Option<String> = None;
            let mut tools = 0;
            loop {
                let params = match &cursor {
                    Some(c) => json!({"cursor": c}),
                    None => json!({}),
                };
                let text = post(http, target, session, rpc(n, "tools/list", params))
                    .await?
                    .text()
                    .await
                    .map_err(|e| e.to_string())?;
                let page: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
                tools += page["result"]["tools"].as_array().map_or(0, Vec::len);
                match page["result"]["nextCursor"].as_str() {
                    Some(c) => cursor = Some(c.to_string()),
                    None => break,
                }
            }
            if tools < LIST_TOOLS {
                return Err(format!("listed {tools} tools"));
            }
        }
        Kind::Stream => {
            let body = rpc(
                n,
                "tools/call",
                json!({"name": tool("stream"), "arguments": {"count": STREAM_EVENTS}, "_meta": {"progressToken": n}}),
            );
            let text = post(http, target, session, body)
                .await?
                .text()
                .await
                .map_err(|e| e.to_string())?;
            let events = text.matches("notifications/progress").count();
            if events as u64 != STREAM_EVENTS || !text.contains("\"result\"") {
                return Err(format!("{events} events"));
            }
        }
        Kind::Initialize => {
            initialize(http, target).await?;
        }
        Kind::Rest if target.name == "direct" => {
            // The REST API itself: what the tool call costs without a gateway.
            let url = target.url.replace("/mcp", "/rest/echo");
            let resp = http
                .get(&url)
                .query(&[("message", "hi")])
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let text = resp.text().await.map_err(|e| e.to_string())?;
            if !text.contains("\"hi\"") {
                return Err(format!("no echo: {text}"));
            }
        }
        Kind::Rest => {
            let body = rpc(
                n,
                "tools/call",
                json!({"name": tool("rest_echo"), "arguments": {"message": "hi"}}),
            );
            let text = post(http, target, session, body)
                .await?
                .text()
                .await
                .map_err(|e| e.to_string())?;
            if !text.contains("structuredContent") {
                return Err(format!("no result: {text}"));
            }
        }
    }
    Ok(())
}

/// What one measurement found.
#[derive(Debug, Clone)]
struct Stats {
    requests: usize,
    errors: usize,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    peak_rss_mib: f64,
}

fn percentile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    #[allow(clippy::cast_precision_loss)]
    let ms = sorted[i.min(sorted.len() - 1)] as f64 / 1000.0;
    ms
}

/// `concurrency` clients, each with its own session, sending `kind` for `duration`.
async fn measure(target: &Target, kind: Kind, concurrency: usize, duration: Duration) -> Stats {
    let http = target.client(
        reqwest::Client::builder()
            .pool_max_idle_per_host(concurrency)
            .timeout(Duration::from_secs(30)),
    );
    let deadline = Instant::now() + duration;
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(rss_kib(target.pid)));
    let sampler = {
        let (peak, pid) = (peak.clone(), target.pid);
        tokio::spawn(async move {
            while Instant::now() < deadline {
                peak.fetch_max(rss_kib(pid), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|w| {
            let (http, target) = (http.clone(), target.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut errors = 0;
                let session = match initialize(&http, &target).await {
                    Ok(s) => s,
                    Err(_) => return (lat, 1),
                };
                let mut n = (w as u64) << 32;
                while Instant::now() < deadline {
                    n += 1;
                    let t = Instant::now();
                    match once(&http, &target, session.as_deref(), kind, n).await {
                        Ok(()) => {
                            lat.push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX))
                        }
                        Err(_) => errors += 1,
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for w in workers {
        if let Ok((lat, e)) = w.await {
            all.extend(lat);
            errors += e;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let _ = sampler.await;
    all.sort_unstable();
    #[allow(clippy::cast_precision_loss)]
    Stats {
        requests: all.len(),
        errors,
        rps: all.len() as f64 / elapsed,
        p50_ms: percentile(&all, 0.5),
        p99_ms: percentile(&all, 0.99),
        p999_ms: percentile(&all, 0.999),
        peak_rss_mib: peak.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1024.0,
    }
}

/// Memory per idle session: RSS growth after opening `IDLE_SESSIONS` sessions.
async fn idle_sessions(target: &Target) -> (f64, usize) {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let before = rss_kib(target.pid);
    let deadline = Instant::now() + Duration::from_secs(120);
    let per = IDLE_SESSIONS / 64;
    let workers: Vec<_> = (0..64)
        .map(|_| {
            let (http, target) = (http.clone(), target.clone());
            tokio::spawn(async move {
                let mut opened = 0;
                for _ in 0..per {
                    if Instant::now() > deadline {
                        break;
                    }
                    if initialize(&http, &target).await.is_ok() {
                        opened += 1;
                    }
                }
                opened
            })
        })
        .collect();
    let mut opened = 0;
    for w in workers {
        opened += w.await.unwrap_or(0);
    }
    let after = rss_kib(target.pid);
    #[allow(clippy::cast_precision_loss)]
    let per_session = (after.saturating_sub(before) as f64 * 1024.0) / opened.max(1) as f64;
    (per_session, opened)
}

/// Memory per idle session stream: RSS growth while `IDLE_STREAMS` GET streams (each on a
/// session of its own) are held open. None when the target serves no such stream.
async fn idle_streams(target: &Target) -> Option<(f64, usize)> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .connect_timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let before = rss_kib(target.pid);
    let deadline = Instant::now() + Duration::from_secs(120);
    let per = IDLE_STREAMS / 64;
    let workers: Vec<_> = (0..64)
        .map(|_| {
            let (http, target) = (http.clone(), target.clone());
            tokio::spawn(async move {
                let mut open = Vec::new();
                for _ in 0..per {
                    if Instant::now() > deadline {
                        break;
                    }
                    let Ok(Some(session)) = initialize(&http, &target).await else {
                        continue;
                    };
                    let mut req = http
                        .get(&target.url)
                        .header("accept", "text/event-stream")
                        .header("mcp-session-id", &session)
                        .header("mcp-protocol-version", "2025-06-18");
                    for (k, v) in &target.headers {
                        req = req.header(k, v);
                    }
                    match req.send().await {
                        Ok(r) if r.status().is_success() => open.push(r),
                        _ => break, // no GET stream here
                    }
                }
                open
            })
        })
        .collect();
    let mut streams = Vec::new();
    for w in workers {
        streams.extend(w.await.unwrap_or_default());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(target.pid);
    let opened = streams.len();
    drop(streams);
    if opened == 0 {
        return None;
    }
    #[allow(clippy::cast_precision_loss)]
    let per_stream = (after.saturating_sub(before) as f64 * 1024.0) / opened as f64;
    Some((per_stream, opened))
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

#[tokio::main]
async fn main() {
    let seconds: u64 = arg("--seconds").and_then(|s| s.parse().ok()).unwrap_or(3);
    let duration = Duration::from_secs(seconds);
    let out_path = arg("--out").map(PathBuf::from).unwrap_or_else(|| {
        upstream_bin()
            .parent()
            .and_then(|p| p.parent())
            .map_or_else(
                || PathBuf::from("bench-gateway.json"),
                |t| t.join("bench-gateway.json"),
            )
    });

    // The upstream, then Switchboard in front of it.
    let up_addr = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(upstream_bin());
    cmd.args(["--listen", &up_addr, "--tools", &LIST_TOOLS.to_string()]);
    let upstream = ManagedProcess::spawn(cmd).expect("upstream");
    wait_for_tcp(&up_addr, Duration::from_secs(10))
        .await
        .expect("upstream up");
    let data = tempfile::tempdir().expect("tempdir");
    let cp_addr = format!("127.0.0.1:{}", free_port());
    let mut cmd = switchboard_testkit::switchboard(BIN);
    cmd.args(["controlplane", "--listen", &cp_addr, "--data-dir"])
        .arg(data.path())
        .env("SWITCHBOARD_LOG", "warn");
    let _cp = ManagedProcess::spawn(cmd).expect("control plane");
    wait_for_tcp(&cp_addr, Duration::from_secs(20))
        .await
        .expect("control plane up");
    let (dp, dp_addr, state) = data_plane(&cp_addr, &[]).await;
    wait_for_http_ok(&format!("http://{dp_addr}/readyz"), Duration::from_secs(20))
        .await
        .expect("data plane up");
    let config = data.path().join("bench.yaml");
    std::fs::write(
        &config,
        format!("apiVersion: switchboard.dev/v1\nkind: Upstream\nmetadata:\n  name: bench\nspec:\n  mcp:\n    url: http://{up_addr}/mcp\n---\napiVersion: switchboard.dev/v1\nkind: VirtualServer\nmetadata:\n  name: bench\nspec:\n  upstreams:\n    - upstream: bench\n    - upstream: bench-rest\n      prefix: rest_\n---\napiVersion: switchboard.dev/v1\nkind: Upstream\nmetadata:\n  name: bench-rest\nspec:\n  rest:\n    baseUrl: http://{up_addr}\n    tools:\n      - name: echo\n        method: GET\n        path: /rest/echo\n        inputSchema: {{type: object, properties: {{message: {{type: string}}}}, required: [message]}}\n"),
    )
    .expect("config");
    let applied = switchboard_testkit::switchboard(BIN)
        .args(["apply", "-f"])
        .arg(&config)
        .args(["--server", &format!("http://{cp_addr}")])
        .output()
        .expect("apply");
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let direct = Target {
        name: "direct",
        url: format!("http://{up_addr}/mcp"),
        pid: upstream.pid(),
        headers: Vec::new(),
        tool_prefix: String::new(),
        ca_pem: None,
    };
    let switchboard = Target {
        name: "switchboard",
        url: format!("http://{dp_addr}/servers/bench/mcp"),
        pid: dp.pid(),
        headers: Vec::new(),
        tool_prefix: String::new(),
        ca_pem: None,
    };
    // A second data plane, the same but serving its clients over TLS (HTTP/1.1, as the
    // others), to show what TLS costs per call.
    let ca = switchboard_testkit::TestCa::new("bench ca").expect("bench CA");
    let (cert, key) = ca
        .server(&["localhost"])
        .expect("bench certificate")
        .write(state.path(), "bench")
        .expect("write certificate");
    let tls_args = [
        "--tls-cert".to_string(),
        cert.display().to_string(),
        "--tls-key".to_string(),
        key.display().to_string(),
    ];
    let (tls_dp, tls_addr, _tls_state) = data_plane(&cp_addr, &tls_args).await;
    let tls_port = tls_addr.rsplit(':').next().unwrap_or_default();
    let switchboard_tls = Target {
        name: "sb+tls",
        url: format!("https://localhost:{tls_port}/servers/bench/mcp"),
        pid: tls_dp.pid(),
        headers: Vec::new(),
        tool_prefix: String::new(),
        ca_pem: Some(ca.cert_pem.clone()),
    };
    // Wait until both gateways list the upstream's tools.
    let ready_by = Instant::now() + Duration::from_secs(30);
    for gateway in [&switchboard, &switchboard_tls] {
        let http = gateway.client(reqwest::Client::builder());
        loop {
            let session = initialize(&http, gateway).await.ok().flatten();
            if once(&http, gateway, session.as_deref(), Kind::List, 1)
                .await
                .is_ok()
            {
                break;
            }
            assert!(
                Instant::now() < ready_by,
                "{} never listed the upstream's tools",
                gateway.name
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    let contextforge_dir = tempfile::tempdir().expect("tempdir");
    let contextforge = contextforge(&up_addr, contextforge_dir.path()).await;
    let mut targets = vec![direct.clone(), switchboard.clone(), switchboard_tls.clone()];
    match &contextforge {
        Ok((_, t)) => targets.push(t.clone()),
        Err(why) => println!("ContextForge is left out: {why}\n"),
    }
    let mut plan: Vec<(Kind, usize)> = [1, 16, 64, 256].iter().map(|c| (Kind::Call, *c)).collect();
    plan.extend([
        (Kind::List, 16),
        (Kind::Stream, 16),
        (Kind::Initialize, 16),
        (Kind::Rest, 16),
    ]);
    println!("{seconds}s per measurement, targets interleaved\n");
    println!(
        "{:<24} {:>5} {:<12} {:>10} {:>9} {:>9} {:>9} {:>9} {:>7}",
        "scenario", "conc", "target", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "RSS MiB", "errors"
    );
    let mut results = Vec::new();
    for (kind, concurrency) in plan {
        let mut row = serde_json::Map::new();
        row.insert("scenario".into(), json!(kind.name()));
        row.insert("concurrency".into(), json!(concurrency));
        let mut measured = Vec::new();
        for target in &targets {
            if matches!(kind, Kind::Rest) && target.name == "contextforge" {
                continue; // the REST row compares with the API itself
            }
            let s = measure(target, kind, concurrency, duration).await;
            println!(
                "{:<24} {:>5} {:<12} {:>10.0} {:>9.3} {:>9.3} {:>9.3} {:>9.1} {:>7}",
                kind.name(),
                concurrency,
                target.name,
                s.rps,
                s.p50_ms,
                s.p99_ms,
                s.p999_ms,
                s.peak_rss_mib,
                s.errors
            );
            row.insert(target.name.into(), stats_json(&s));
            measured.push(s);
        }
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        let mut ratios = serde_json::Map::new();
        // sb/direct, sb/contextforge, and TLS against plain text (the same gateway).
        for (mine, i, label, key) in [
            (1, 0, "sb/direct", "switchboard/direct"),
            (1, 3, "sb/contextforge", "switchboard/contextforge"),
            (2, 1, "tls/plain", "tls/plain"),
        ] {
            let (Some(sb), Some(other)) = (measured.get(mine), measured.get(i)) else {
                continue;
            };
            println!(
                "{:<24} {:>5} {:<12} {:>10.2}x {:>8.2}x {:>8.2}x {:>8.2}x",
                "",
                "",
                label,
                ratio(sb.rps, other.rps),
                ratio(sb.p50_ms, other.p50_ms),
                ratio(sb.p99_ms, other.p99_ms),
                ratio(sb.p999_ms, other.p999_ms)
            );
            ratios.insert(
                key.to_string(),
                json!({
                    "rps": ratio(sb.rps, other.rps),
                    "p50": ratio(sb.p50_ms, other.p50_ms),
                    "p99": ratio(sb.p99_ms, other.p99_ms),
                    "p999": ratio(sb.p999_ms, other.p999_ms),
                }),
            );
        }
        row.insert("ratios".into(), Value::Object(ratios));
        results.push(Value::Object(row));
    }
    println!();
    let mut idle = serde_json::Map::new();
    // Idle memory is measured on the plain-text targets (TLS adds its buffers per
    // connection; the per-call cost above is the figure that matters for it).
    let plain: Vec<&Target> = targets.iter().filter(|t| t.ca_pem.is_none()).collect();
    for target in &plain {
        let (bytes, opened) = idle_sessions(target).await;
        println!(
            "{opened} idle sessions via {}: {:.0} bytes of RSS each (serving process)",
            target.name, bytes
        );
        idle.insert(
            target.name.to_string(),
            json!({"sessions": opened, "bytes_per_session": bytes}),
        );
    }
    let mut streams = serde_json::Map::new();
    for target in &plain {
        match idle_streams(target).await {
            Some((bytes, opened)) => {
                println!(
                    "{opened} idle GET streams via {}: {:.0} bytes of RSS each (serving process)",
                    target.name, bytes
                );
                streams.insert(
                    target.name.to_string(),
                    json!({"streams": opened, "bytes_per_stream": bytes}),
                );
            }
            None => println!(
                "idle GET streams via {}: none (it serves no session stream)",
                target.name
            ),
        }
    }
    let report = json!({
        "seconds_per_measurement": seconds,
        "idle_streams": streams,
        "machine": {"cpus": std::thread::available_parallelism().map_or(0, |n| n.get())},
        "results": results,
        "idle_sessions": idle,
    });
    match std::fs::write(
        &out_path,
        serde_json::to_vec_pretty(&report).unwrap_or_default(),
    ) {
        Ok(()) => println!("\nwrote {}", out_path.display()),
        Err(e) => eprintln!("cannot write {}: {e}", out_path.display()),
    }
}

/// A data plane fed by the control plane at `cp_addr`, with `extra` flags, on a free port:
/// the process, its address and its state directory (listening, maybe not yet ready).
async fn data_plane(
    cp_addr: &str,
    extra: &[String],
) -> (ManagedProcess, String, tempfile::TempDir) {
    let addr = format!("127.0.0.1:{}", free_port());
    let state = tempfile::tempdir().expect("tempdir");
    let mut cmd = switchboard_testkit::switchboard(BIN);
    cmd.args(["dataplane", "--control-plane", cp_addr, "--listen", &addr])
        .arg("--state-dir")
        .arg(state.path())
        .args(extra)
        .env("SWITCHBOARD_LOG", "warn");
    let process = ManagedProcess::spawn(cmd).expect("data plane");
    wait_for_tcp(&addr, Duration::from_secs(20))
        .await
        .expect("data plane listening");
    (process, addr, state)
}

/// ContextForge (installed by `make bench` into .deps/contextforge) with the upstream
/// registered as a gateway and all of its tools in one virtual server, rate limiting off.
async fn contextforge(
    up_addr: &str,
    dir: &std::path::Path,
) -> Result<(ManagedProcess, Target), String> {
    let venv = switchboard_testkit::deps_dir().join("contextforge/bin");
    let gateway = venv.join("mcpgateway");
    if !gateway.exists() {
        return Err(format!(
            "{} is missing (make bench installs it)",
            gateway.display()
        ));
    }
    let addr = format!("127.0.0.1:{}", free_port());
    let port = addr.rsplit(':').next().unwrap_or_default().to_string();
    let env = [
        ("AUTH_REQUIRED", "false"),
        ("JWT_SECRET_KEY", "bench-secret-key-0123456789abcdefABCDEF"),
        (
            "AUTH_ENCRYPTION_SECRET",
            "bench-enc-secret-0123456789abcdefABCD",
        ),
        ("PLATFORM_ADMIN_PASSWORD", "Bench-Admin-Pass-123"),
        ("MCPGATEWAY_UI_ENABLED", "false"),
        ("MCPGATEWAY_ADMIN_API_ENABLED", "true"),
        ("SSRF_ALLOW_LOCALHOST", "true"),
        ("SSRF_ALLOW_PRIVATE_NETWORKS", "true"),
        ("RATE_LIMITING_ENABLED", "false"),
        ("LOG_LEVEL", "WARNING"),
    ];
    let db = format!("sqlite:///{}", dir.join("contextforge.db").display());
    let mut cmd = Command::new(&gateway);
    cmd.args(["--host", "127.0.0.1", "--port", &port])
        .current_dir(dir)
        .env("DATABASE_URL", &db)
        .envs(env);
    let process = ManagedProcess::spawn(cmd).map_err(|e| e.to_string())?;
    wait_for_http_ok(&format!("http://{addr}/health"), Duration::from_secs(90))
        .await
        .map_err(|e| format!("did not start: {e}\n{}", process.log_tail(20)))?;
    let token = Command::new(venv.join("python"))
        .args([
            "-m",
            "mcpgateway.utils.create_jwt_token",
            "-u",
            "admin@example.com",
            "--admin",
            "-e",
            "600",
        ])
        .env("DATABASE_URL", &db)
        .envs(env)
        .output()
        .map_err(|e| e.to_string())?;
    let token = String::from_utf8_lossy(&token.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string();
    let auth = format!("Bearer {token}");
    let http = reqwest::Client::new();
    let api = |path: &str| format!("http://{addr}{path}");
    let registered = http
        .post(api("/gateways"))
        .header("authorization", &auth)
        .json(&json!({"name": "bench", "url": format!("http://{up_addr}/mcp"), "transport": "STREAMABLEHTTP"}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !registered.status().is_success() {
        return Err(format!(
            "gateway registration: HTTP {}",
            registered.status()
        ));
    }
    let tools: Vec<Value> = http
        .get(api("/tools?limit=0"))
        .header("authorization", &auth)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let ids: Vec<&Value> = tools.iter().filter_map(|t| t.get("id")).collect();
    let created: Value = http
        .post(api("/servers"))
        .header("authorization", &auth)
        .json(&json!({"server": {"name": "bench", "associated_tools": ids}}))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let id = created["id"]
        .as_str()
        .ok_or(format!("no server id: {created}"))?;
    let target = Target {
        name: "contextforge",
        url: api(&format!("/servers/{id}/mcp")),
        pid: process.pid(),
        headers: vec![("authorization".into(), auth)],
        tool_prefix: "bench-".into(),
        ca_pem: None,
    };
    Ok((process, target))
}

fn stats_json(s: &Stats) -> Value {
    json!({
        "requests": s.requests,
        "errors": s.errors,
        "rps": s.rps,
        "p50_ms": s.p50_ms,
        "p99_ms": s.p99_ms,
        "p999_ms": s.p999_ms,
        "peak_rss_mib": s.peak_rss_mib,
    })
}
