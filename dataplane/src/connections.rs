//! A cap on the connections one client address keeps open. pingora hands each accepted
//! connection (after TLS) to its app and calls the app again for every request a kept-alive
//! connection carries, so the connections an address has open are the app calls running
//! for it: [`PerAddress`] wraps the gateway's app and counts them. Past the cap a connection
//! gets `503` and is closed, so one address (a slow-client flood, say) cannot hold every
//! socket and buffer of the data plane. Trusted proxies (`--trusted-proxies`) are exempt:
//! every client behind a load balancer shares its address.

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;

/// What a connection past the cap is told before it is closed.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\nconnection: close\r\ncontent-length: 58\r\n\r\ntoo many connections from this address; close some first\n";

/// `app`, with at most `max` connections open per client address.
pub struct PerAddress<A> {
    app: Arc<A>,
    max: usize,
    trusted: Vec<ipnet::IpNet>,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl<A> PerAddress<A> {
    /// Wraps `app`; `max` 0 means no cap.
    pub fn new(app: A, max: usize, trusted: Vec<ipnet::IpNet>) -> Self {
        PerAddress {
            app: Arc::new(app),
            max,
            trusted,
            open: Arc::default(),
        }
    }

    /// A place for a connection from `ip`, or None when the address is at its cap.
    fn take(&self, ip: IpAddr) -> Option<Open> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Open {
            open: self.open.clone(),
            ip,
        })
    }
}

/// A connection counted against its address while it is being served.
struct Open {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl Drop for Open {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for PerAddress<A> {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let ip = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let counted = match ip {
            Some(ip) if self.max > 0 && !self.trusted.iter().any(|n| n.contains(&ip)) => {
                match self.take(ip) {
                    Some(place) => Some(place),
                    None => {
                        tracing::info!(%ip, max = self.max, "connection refused: the address has too many open");
                        crate::metrics::metrics()
                            .connections_refused
                            .with_label_values(&["per_address"])
                            .inc();
                        let _ = tokio::time::timeout(
                            std::time::Duration::from_secs(1),
                            stream.write_all(REFUSAL),
                        )
                        .await;
                        return None;
                    }
                }
            }
            _ => None,
        };
        let reused = self.app.process_new(stream, shutdown).await;
        drop(counted);
        reused
    }

    async fn cleanup(&self) {
        self.app.cleanup().await;
    }
}
