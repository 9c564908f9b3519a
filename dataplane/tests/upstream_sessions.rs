//! Client upstream sessions against a real server-everything: opened by one replica's pool,
//! used by another's (as when a session hops replicas), and re-opened when the upstream
//! forgets them.

use serde_json::{json, Value};
use std::time::Duration;
use switchboard_config::kinds::upstream::{McpUpstream, UpstreamSpec};
use switchboard_dataplane::routes::UpstreamEntry;
use switchboard_dataplane::session::Session;
use switchboard_dataplane::upstreams::UpstreamPool;
use switchboard_testkit::ServerEverything;
use switchboard_upstream::is_event_stream;

fn spec(url: &str) -> UpstreamEntry {
    UpstreamEntry::plain(UpstreamSpec {
        mcp: Some(McpUpstream {
            url: url.to_string(),
            transport: Default::default(),
            protocol_version: None,
        }),
        ..UpstreamSpec::default()
    })
}

/// Calls `echo` through `pool` and returns the text it echoed.
async fn echo(pool: &UpstreamPool, spec: &UpstreamEntry, client: &Session, word: &str) -> String {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"message": word}}});
    let resp = pool
        .send("everything", spec, &body, Some(client), &Default::default())
        .await
        .expect("sent");
    let sse = is_event_stream(&resp);
    let text = resp.text().await.expect("body");
    let msg: Value = if sse {
        switchboard_testkit::parse_sse_events(&text)
            .iter()
            .filter_map(|e| serde_json::from_str::<Value>(e).ok())
            .find(|m| m.get("id") == Some(&json!(1)))
            .expect("a response event")
    } else {
        serde_json::from_str(&text).expect("json")
    };
    msg["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_session_opened_on_one_replica_is_used_and_renewed_on_another() {
    let server = ServerEverything::start().await.expect("server-everything");
    let spec = spec(&server.url());
    let (replica_a, replica_b) = (UpstreamPool::default(), UpstreamPool::default());

    let mut client = Session::new("demo", "2025-11-25");
    client.capabilities = json!({"roots": {"listChanged": true}});
    let opened = replica_a
        .open_for("everything", &spec, &client, &Default::default())
        .await
        .expect("open");
    assert!(opened.id.is_some(), "server-everything keeps sessions");
    client.upstreams.insert("everything".into(), opened);

    // Replica B uses the client's upstream session; it opens none of its own.
    assert_eq!(echo(&replica_b, &spec, &client, "hop").await, "Echo: hop");
    assert_eq!(replica_b.shared_sessions(), 0);

    // The upstream forgets the session: B opens a replacement and keeps using it.
    replica_a.close_for(&client, &|_| Some(std::sync::Arc::new(spec.clone())));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        echo(&replica_b, &spec, &client, "renewed").await,
        "Echo: renewed"
    );
    assert_eq!(
        echo(&replica_b, &spec, &client, "again").await,
        "Echo: again"
    );
    assert_eq!(replica_b.shared_sessions(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstreams_own_connect_timeout_bounds_its_calls() {
    // A listener that never accepts: once its backlog is full, connecting hangs.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let listener = socket.listen(0).expect("listen");
    let addr = listener.local_addr().expect("addr");
    let _filler = tokio::net::TcpStream::connect(addr)
        .await
        .expect("fills the backlog");
    let spec = UpstreamEntry::plain(UpstreamSpec {
        mcp: Some(McpUpstream {
            url: format!("http://{addr}/mcp"),
            transport: Default::default(),
            protocol_version: None,
        }),
        timeouts: switchboard_config::kinds::upstream::Timeouts {
            connect: Some(Duration::from_millis(300)),
            ..Default::default()
        },
        ..UpstreamSpec::default()
    });
    let pool = UpstreamPool::default();
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
    let started = std::time::Instant::now();
    let sent = pool
        .send("stuck", &spec, &body, None, &Default::default())
        .await;
    let took = started.elapsed();
    assert!(sent.is_err(), "nothing answers there");
    assert!(
        took < Duration::from_secs(3),
        "the 300ms connect timeout applies, not the 5s default: {took:?}"
    );
    drop(listener);
}

/// Status server-everything gives a `ping` in upstream session `id`.
async fn status_in(url: &str, id: &str) -> u16 {
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", id)
        .header("mcp-protocol-version", "2025-11-25")
        .body(r#"{"jsonrpc":"2.0","id":9,"method":"ping"}"#)
        .send()
        .await
        .expect("ping")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_client_upstream_session_is_ended_upstream_unless_it_is_listened_to() {
    // A client that initialized and walked away once left its upstream sessions open until
    // the upstream gave up: `initialize` in a loop filled upstreams with sessions.
    let server = ServerEverything::start().await.expect("server-everything");
    let spec = spec(&server.url());
    let pool = UpstreamPool::default();
    let mut client = Session::new("demo", "2025-11-25").bound("alice", Duration::from_secs(3600));
    client.capabilities = json!({});
    let opened = pool
        .open_for("everything", &spec, &client, &Default::default())
        .await
        .expect("open");
    let id = opened.id.clone().expect("server-everything keeps sessions");
    client.upstreams.insert("everything".into(), opened);
    assert_eq!(pool.followed_sessions(), 1);
    assert_eq!(status_in(&server.url(), &id).await, 200);

    // A GET stream open on it: not idle, however long since the last call.
    let stream = pool
        .listen("everything", &spec, &client, &Default::default())
        .await
        .expect("listen")
        .expect("server-everything offers a GET stream");
    assert_eq!(pool.end_idle(Duration::ZERO), 0);
    drop(stream);
    assert_eq!(pool.end_idle(Duration::ZERO), 1);
    assert_eq!(pool.followed_sessions(), 0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    // server-everything answers an unknown session with 400 or 404.
    while status_in(&server.url(), &id).await == 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the idle session was not ended upstream"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A call in it again opens a fresh one transparently, followed in turn.
    assert_eq!(echo(&pool, &spec, &client, "back").await, "Echo: back");
    assert_eq!(pool.followed_sessions(), 1);

    // Sessions the gateway opens for itself (no expiry) are not followed.
    let mut own = Session::new("demo", "2025-11-25");
    own.capabilities = json!({});
    pool.open_for("everything", &spec, &own, &Default::default())
        .await
        .expect("open");
    assert_eq!(pool.followed_sessions(), 1);
}
