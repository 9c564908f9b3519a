//! Free loopback ports and readiness polling.

use std::net::TcpListener;
use std::time::Duration;

/// A port on 127.0.0.1 that was free a moment ago (bind port 0, read it, release it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free loopback port: {e}"))
}

/// Polls until `addr` accepts TCP connections; the error says what was tried.
pub async fn wait_for_tcp(addr: &str, timeout: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = String::from("never tried");
    while tokio::time::Instant::now() < deadline {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(_) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("{addr} did not accept connections within {timeout:?} (last error: {last})")
}

/// Polls until GET `url` answers 2xx; the error says what was tried.
pub async fn wait_for_http_ok(url: &str, timeout: Duration) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = String::from("never tried");
    while tokio::time::Instant::now() < deadline {
        match client.get(url).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => last = format!("status {}", r.status()),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("GET {url} did not succeed within {timeout:?} (last: {last})")
}
