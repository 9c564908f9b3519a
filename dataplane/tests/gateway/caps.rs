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
