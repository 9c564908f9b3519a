//! The data plane's caps on long-lived things (here WebSocket connections) give any one
//! client a share only: one principal cannot take every place and lock the others out.

use crate::harness::{federated, InProcessGateway};
use crate::upstream::RustUpstream;
use sha2::Digest;

/// An API-key provider for `who` (key `{who}-key` each), and `federated`'s server behind it.
fn keyed(upstream: &str, who: &[&str]) -> String {
    let mut keys = "apiVersion: switchboard.dev/v1\nkind: AuthProvider\nmetadata:\n  name: keys\nspec:\n  apiKeys:\n    keys:\n".to_string();
    for w in who {
        let digest = hex::encode(sha2::Sha256::digest(format!("{w}-key").as_bytes()));
        keys.push_str(&format!(
            "      - principal: {w}\n        sha256: {digest}\n"
        ));
    }
    keys.push_str("---\n");
    keys + &federated(upstream).replace(
        "spec:\n  upstreams:",
        "spec:\n  authProvider: keys\n  upstreams:",
    )
}

/// The status of a WebSocket upgrade as `who`; the connection, when one opened.
async fn upgrade(
    base: &str,
    who: &str,
) -> (
    u16,
    Option<tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>>,
) {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = format!("{}/servers/demo/ws", base.replace("http://", "ws://"));
    let mut request = url.as_str().into_client_request().expect("a request");
    let headers = request.headers_mut();
    headers.insert("sec-websocket-protocol", "mcp".parse().expect("a header"));
    headers.insert("x-api-key", format!("{who}-key").parse().expect("a header"));
    let tcp = tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .expect("connects");
    match tokio_tungstenite::client_async(request, tcp).await {
        Ok((ws, resp)) => (resp.status().as_u16(), Some(ws)),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => (resp.status().as_u16(), None),
        Err(e) => panic!("the upgrade failed: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_principal_cannot_take_every_websocket_place() {
    let upstream = RustUpstream::start().await;
    let yaml = keyed(&upstream.url, &["mallory", "alice"]);
    // 20 places: 2 for any one client.
    let gateway = InProcessGateway::start_with(&yaml, |g| g.with_max_websockets(20)).await;
    let mut mallorys = Vec::new();
    for _ in 0..2 {
        let (status, ws) = upgrade(&gateway.base, "mallory").await;
        assert_eq!(status, 101);
        mallorys.push(ws);
    }
    let (status, _) = upgrade(&gateway.base, "mallory").await;
    assert_eq!(status, 429, "past mallory's share");
    let (status, _alice) = upgrade(&gateway.base, "alice").await;
    assert_eq!(status, 101, "alice still gets in");
    // A place comes back when its connection ends.
    drop(mallorys.pop());
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (status, ws) = upgrade(&gateway.base, "mallory").await;
        if status == 101 {
            drop(ws);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the place never came back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A session of `who`'s: its id.
async fn session_of(url: &str, who: &str) -> String {
    let key = vec![("x-api-key".to_string(), format!("{who}-key"))];
    let answer = crate::harness::post(
        url,
        &key,
        &serde_json::json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "caps", "version": "1"}}}),
    )
    .await;
    assert_eq!(answer.status, 200, "{:?}", answer.messages);
    answer
        .header("mcp-session-id")
        .expect("a session")
        .to_string()
}

/// Opens `who`'s GET stream on `session`: the response (kept open while it lives).
async fn get_stream(url: &str, who: &str, session: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(url)
        .header("accept", "text/event-stream")
        .header("x-api-key", format!("{who}-key"))
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .expect("GET")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_principal_cannot_take_every_get_stream_place() {
    let upstream = RustUpstream::start().await;
    let yaml = keyed(&upstream.url, &["mallory", "alice"]);
    let gateway = InProcessGateway::start_with(&yaml, |g| g.with_max_streams(20)).await;
    let url = gateway.url("demo");
    let session = session_of(&url, "mallory").await;
    let mut open = Vec::new();
    for _ in 0..2 {
        let stream = get_stream(&url, "mallory", &session).await;
        assert_eq!(stream.status().as_u16(), 200);
        open.push(stream);
    }
    let refused = get_stream(&url, "mallory", &session).await;
    assert_eq!(refused.status().as_u16(), 429);
    let why = refused.text().await.unwrap_or_default();
    assert!(
        why.contains("GET streams open on this data plane already"),
        "{why}"
    );
    let alices = session_of(&url, "alice").await;
    let alice = get_stream(&url, "alice", &alices).await;
    assert_eq!(alice.status().as_u16(), 200, "alice still gets in");
}
