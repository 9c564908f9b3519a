//! The gateway in this process: pingora serving `Gateway` on a loopback port, over routes
//! compiled from YAML and the catalogs its upstreams list (through their kind's discovery,
//! as the control plane lists them); stopped when dropped. Clients speak HTTP to it as to
//! the real binary, so a test of one phase of the request path (forward, held calls, listen,
//! pass-through) runs in seconds without starting processes.

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_config::{load_sources, Discovered, Kind, NodeGroup, Resource, Snapshot, Source};
use switchboard_dataplane::gateway::Gateway;
use switchboard_dataplane::policy::origin::OriginPolicy;
use switchboard_dataplane::routes::Routes;
use switchboard_upstream::backend::discovery_for;
use switchboard_upstream::{Credentials, McpHttp};
use tokio::sync::oneshot;

/// How long anything in these tests may take.
pub const WAIT: Duration = Duration::from_secs(20);

/// The stop of the in-process server (pingora waits for it as for a signal).
struct Stop(Mutex<Option<oneshot::Receiver<()>>>);

#[async_trait]
impl ShutdownSignalWatch for Stop {
    async fn recv(&self) -> ShutdownSignal {
        let rx = self.0.lock().ok().and_then(|mut r| r.take());
        if let Some(rx) = rx {
            let _ = rx.await;
        }
        ShutdownSignal::FastShutdown
    }
}

/// A gateway serving in this process.
pub struct InProcessGateway {
    /// `http://127.0.0.1:{port}`
    pub base: String,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl InProcessGateway {
    /// Serves the resources in `yaml` (one document each), with every MCP upstream's
    /// catalog listed first.
    pub async fn start(yaml: &str) -> InProcessGateway {
        Self::start_with(yaml, |g| g).await
    }

    /// The same, with the gateway set up further by `tune` (a smaller cap, say).
    pub async fn start_with(yaml: &str, tune: impl FnOnce(Gateway) -> Gateway) -> InProcessGateway {
        let source = Source {
            name: "test.yaml".into(),
            text: yaml.to_string(),
        };
        let set = load_sources(&[source]).unwrap_or_else(|d| panic!("invalid YAML: {d:?}"));
        let mut discovered = Discovered::default();
        let http = McpHttp::new(Duration::from_secs(2));
        for item in set.of_kind(Kind::Upstream) {
            let Resource::Upstream(u) = &item.resource else {
                continue;
            };
            let creds = Credentials::from_headers(&u.spec.headers);
            if let Some(mut discovery) = discovery_for(&u.spec, creds, &http, WAIT) {
                let listing = discovery.list().await.expect("the upstream lists");
                discovered
                    .catalogs
                    .insert(item.resource.name().to_string(), listing.catalog);
                discovery.reset();
            }
        }
        let snapshot = Snapshot::build(&set, &NodeGroup::default(), &discovered);
        let routes = Routes::compile(&snapshot).expect("the routes compile");
        let gateway = tune(
            Gateway::new(Arc::new(ArcSwap::from_pointee(routes)), 1 << 20).with_origin_policy(
                OriginPolicy {
                    allowed_origins: Vec::new(),
                    loopback: true,
                },
            ),
        );
        let addr = format!("127.0.0.1:{}", switchboard_testkit::free_port());
        let dir = tempfile::tempdir().expect("a state directory");
        let conf = ServerConf {
            threads: 1,
            grace_period_seconds: Some(0),
            graceful_shutdown_timeout_seconds: Some(1),
            pid_file: dir.path().join("pid").display().to_string(),
            upgrade_sock: dir.path().join("upgrade.sock").display().to_string(),
            ..ServerConf::default()
        };
        let (stop, stopped) = oneshot::channel();
        let listen = addr.clone();
        let thread = std::thread::spawn(move || {
            let mut server = Server::new_with_opt_and_conf(None, conf);
            let mut proxy = pingora::proxy::http_proxy_service(&server.configuration, gateway);
            proxy.add_tcp(&listen);
            server.add_service(proxy);
            server.run(RunArgs {
                shutdown_signal: Box::new(Stop(Mutex::new(Some(stopped)))),
            });
        });
        switchboard_testkit::wait_for_tcp(&addr, WAIT)
            .await
            .expect("the gateway listens");
        InProcessGateway {
            base: format!("http://{addr}"),
            stop: Some(stop),
            thread: Some(thread),
            _dir: dir,
        }
    }

    /// The MCP endpoint of virtual server `name`.
    pub fn url(&self, server: &str) -> String {
        format!("{}/servers/{server}/mcp", self.base)
    }
}

impl Drop for InProcessGateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The YAML of one MCP upstream at `url` behind virtual server `demo`, its tools prefixed
/// `rs_`.
pub fn federated(url: &str) -> String {
    format!(
        "apiVersion: switchboard.dev/v1\nkind: Upstream\nmetadata:\n  name: rust\nspec:\n  mcp:\n    url: {url}\n---\napiVersion: switchboard.dev/v1\nkind: VirtualServer\nmetadata:\n  name: demo\nspec:\n  upstreams:\n    - upstream: rust\n      prefix: rs_\n"
    )
}

/// Every JSON message of an SSE body, or the one JSON body, in order.
pub fn messages_of(content_type: &str, body: &str) -> Vec<Value> {
    if content_type.starts_with("text/event-stream") {
        switchboard_testkit::parse_sse_events(body)
            .iter()
            .filter_map(|data| serde_json::from_str(data).ok())
            .collect()
    } else {
        vec![serde_json::from_str(body).unwrap_or_else(|_| json!({"unparsed": body}))]
    }
}

/// What the gateway answered: status, headers, and every message in order.
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub messages: Vec<Value>,
}

impl Answer {
    /// The last message (the response, when there is one).
    pub fn last(&self) -> &Value {
        self.messages.last().expect("at least one message")
    }

    /// The names a `tools/list` answer lists, in order.
    pub fn tool_names(&self) -> Vec<&str> {
        self.last()["result"]["tools"]
            .as_array()
            .map(|t| t.iter().filter_map(|t| t["name"].as_str()).collect())
            .unwrap_or_default()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A POST of `body` to `url` with the headers of a streamable-HTTP client (and `extra`).
pub async fn post(url: &str, extra: &[(String, String)], body: &Value) -> Answer {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .json(body);
    for (k, v) in extra {
        req = req.header(k.as_str(), v.as_str());
    }
    let resp = tokio::time::timeout(WAIT, req.send())
        .await
        .expect("answered in time")
        .expect("POST");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = tokio::time::timeout(WAIT, resp.text())
        .await
        .expect("the whole answer in time")
        .expect("a body");
    Answer {
        status,
        headers,
        messages: messages_of(&content_type, &body),
    }
}

/// Opens a session-era (2025-11-25) session on `url`; its id.
pub async fn initialize(url: &str) -> String {
    let answer = post(
        url,
        &[],
        &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "gateway-tests", "version": "1"}}}),
    )
    .await;
    assert_eq!(answer.status, 200, "{:?}", answer.messages);
    let session = answer
        .header("mcp-session-id")
        .expect("a session id")
        .to_string();
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let done = post(url, &in_session(&session), &initialized).await;
    assert_eq!(done.status, 202);
    session
}

/// The headers of a request in session `id`.
pub fn in_session(id: &str) -> Vec<(String, String)> {
    vec![
        ("mcp-session-id".to_string(), id.to_string()),
        ("mcp-protocol-version".to_string(), "2025-11-25".to_string()),
    ]
}

/// The `_meta` and headers of a stateless (2026-07-28) request for `method` on `name`.
pub fn stateless(method: &str, name: &str, capabilities: Value) -> (Value, Vec<(String, String)>) {
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": capabilities,
    });
    let headers = vec![
        ("mcp-protocol-version".to_string(), "2026-07-28".to_string()),
        ("mcp-method".to_string(), method.to_string()),
        ("mcp-name".to_string(), name.to_string()),
    ];
    (meta, headers)
}
