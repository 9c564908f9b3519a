//! Slow clients cannot hold a connection for ever: a body that does not arrive in time gets
//! 408, and an idle keep-alive connection is closed.

use crate::harness::{federated, InProcessGateway};
use crate::upstream::RustUpstream;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Everything the gateway writes on `tcp` until it closes the connection (bounded wait).
async fn until_closed(tcp: &mut tokio::net::TcpStream) -> String {
    let mut seen = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut seen)).await;
    assert!(
        read.is_ok(),
        "the connection was not closed: {}",
        String::from_utf8_lossy(&seen)
    );
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_gets_408_and_an_idle_connection_is_closed() {
    let upstream = RustUpstream::start().await;
    let gateway = InProcessGateway::start_with(&federated(&upstream.url), |g| {
        g.with_client_timeouts(Duration::from_secs(1), Duration::from_secs(1))
    })
    .await;
    let addr = gateway.base.trim_start_matches("http://").to_string();

    // Ten bytes of a hundred announced, then nothing.
    let mut tcp = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connects");
    let head = "POST /servers/demo/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\naccept: application/json\r\ncontent-length: 100\r\n\r\n{\"jsonrpc\"";
    tcp.write_all(head.as_bytes()).await.expect("writes");
    let answer = until_closed(&mut tcp).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("did not arrive within 1s"), "{answer}");

    // A whole request, answered; then the connection idles and is closed.
    let mut tcp = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connects");
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let request = format!("POST /servers/demo/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\naccept: application/json\r\nmcp-protocol-version: 2025-11-25\r\ncontent-length: {}\r\n\r\n{ping}", ping.len());
    tcp.write_all(request.as_bytes()).await.expect("writes");
    let answer = until_closed(&mut tcp).await;
    assert!(answer.starts_with("HTTP/1.1 "), "{answer}");
    assert!(!answer.contains("408"), "{answer}");
}
