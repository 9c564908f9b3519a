//! Loopback ports for test peers, and readiness polling.
//!
//! A port handed to a child process must not be taken by anyone else before the child binds
//! it. Binding port 0 and closing it is not enough: the kernel hands the same ephemeral
//! ports to other processes' connections and port-0 binds. So [`free_port`] picks from a
//! range outside the kernel's ephemeral range (which it never assigns on its own) and
//! reserves each port with an exclusive lock file that this process holds until it exits,
//! so parallel tests in this process and other test processes never get the same port.

use std::collections::HashSet;
use std::fs::File;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

/// Ports this process holds, with the lock files that reserve them.
static HELD: Mutex<Vec<(u16, File)>> = Mutex::new(Vec::new());

/// The kernel's ephemeral range (`ip_local_port_range`), which reserved ports avoid.
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|p| p.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999))
}

/// Where the reservation files live (shared by every test process on the machine).
fn lock_dir() -> PathBuf {
    std::env::temp_dir().join("switchboard-test-ports")
}

/// Takes an exclusive, non-blocking lock on `file`; false when another holder has it.
fn try_lock(file: &File) -> bool {
    // SAFETY: flock(2) on a file descriptor we own; no memory is shared.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// A port on 127.0.0.1 reserved for this test process: outside the ephemeral range, free
/// when checked, and never handed out again while this process runs (here or in another
/// test process using this function). Panics only when no port at all can be had.
pub fn free_port() -> u16 {
    let (eph_lo, eph_hi) = ephemeral_range();
    // Prefer the registered range below the ephemeral one; use the one above it otherwise.
    let mut ranges = Vec::new();
    if eph_lo > 10_000 {
        ranges.push(10_000..eph_lo);
    }
    if eph_hi < 65_000 {
        ranges.push(eph_hi + 1..65_000);
    }
    let dir = lock_dir();
    let _ = std::fs::create_dir_all(&dir);
    let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
    let taken: HashSet<u16> = held.iter().map(|(p, _)| *p).collect();
    for range in ranges {
        let len = u32::from(range.end - range.start);
        if len == 0 {
            continue;
        }
        let offset = fastrand::u32(..len);
        for i in 0..len {
            let port = range.start + ((offset + i) % len) as u16;
            if taken.contains(&port) {
                continue;
            }
            let Ok(file) = File::create(dir.join(format!("{port}.lock"))) else {
                continue;
            };
            if !try_lock(&file) {
                continue; // another test process holds it
            }
            if TcpListener::bind(("127.0.0.1", port)).is_err() {
                continue; // something outside the tests listens there
            }
            held.push((port, file));
            return port;
        }
    }
    panic!("no free loopback port outside the ephemeral range {eph_lo}-{eph_hi}")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_ports_are_unique_and_outside_the_ephemeral_range() {
        let (lo, hi) = ephemeral_range();
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let unique: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(unique.len(), ports.len(), "a port was handed out twice");
        assert!(
            ports.iter().all(|p| *p < lo || *p > hi),
            "{ports:?} vs {lo}-{hi}"
        );
        // Another process (here: another open file description) cannot take a held port.
        let again = File::create(lock_dir().join(format!("{}.lock", ports[0]))).unwrap();
        assert!(!try_lock(&again));
    }
}
