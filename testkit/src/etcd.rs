//! A real etcd (Debian `etcd-server`) on free loopback ports with a temporary data dir.

use crate::deps::etcd_bin;
use crate::ports::free_port;
use crate::process::ManagedProcess;
use std::process::Command;
use std::time::Duration;

/// A running single-member etcd cluster, killed (and its data removed) on drop.
pub struct Etcd {
    process: Option<ManagedProcess>,
    data: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
    /// Serves clients over TLS with this certificate (files) and its CA (PEM).
    tls: Option<(std::path::PathBuf, std::path::PathBuf, String)>,
}

impl Etcd {
    /// Starts etcd and waits until it reports healthy.
    pub async fn start() -> anyhow::Result<Etcd> {
        let mut etcd = Etcd {
            process: None,
            data: tempfile::tempdir()?,
            client_port: free_port(),
            peer_port: free_port(),
            tls: None,
        };
        etcd.launch().await?;
        Ok(etcd)
    }

    /// Starts etcd serving clients over TLS with `server` (a certificate for 127.0.0.1 and
    /// localhost from the CA `ca_pem`), with authentication on and user `root` holding
    /// `password`.
    pub async fn start_secure(
        server: &crate::CertPair,
        ca_pem: &str,
        password: &str,
    ) -> anyhow::Result<Etcd> {
        let data = tempfile::tempdir()?;
        let (cert, key) = server.write(data.path(), "etcd-server")?;
        let mut etcd = Etcd {
            process: None,
            data,
            client_port: free_port(),
            peer_port: free_port(),
            tls: Some((cert, key, ca_pem.to_string())),
        };
        etcd.launch().await?;
        let tls = etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(ca_pem));
        let options = etcd_client::ConnectOptions::new().with_tls(tls);
        let mut client = etcd_client::Client::connect([etcd.endpoint()], Some(options)).await?;
        client.user_add("root", password, None).await?;
        client.user_grant_role("root", "root").await?;
        client.auth_enable().await?;
        Ok(etcd)
    }

    async fn launch(&mut self) -> anyhow::Result<()> {
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let mut cmd = Command::new(etcd_bin()?);
        cmd.args(["--name", "default", "--data-dir"])
            .arg(self.data.path().join("member-data"))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &format!("default={peer}")])
            .args(["--log-level", "warn"]);
        let mut http = reqwest::Client::builder().timeout(Duration::from_secs(2));
        if let Some((cert, key, ca)) = &self.tls {
            cmd.arg("--cert-file").arg(cert).arg("--key-file").arg(key);
            http = http.add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes())?);
        }
        let process = ManagedProcess::spawn(cmd)?;
        let health = format!("{client}/health");
        let http = http.build()?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut last = String::from("never answered");
        while tokio::time::Instant::now() < deadline {
            match http.get(&health).send().await {
                Ok(r) => {
                    let body = r.text().await.unwrap_or_default();
                    if body.contains("\"health\":\"true\"") {
                        self.process = Some(process);
                        return Ok(());
                    }
                    last = body;
                }
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!(
            "etcd did not become healthy at {health} within 20 s (last: {last})\n{}",
            process.log_tail(30)
        )
    }

    /// The client URL, e.g. `http://127.0.0.1:23791`.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// Kills etcd, keeping its data dir and ports.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
    }

    /// Starts etcd again on the same ports and data (after `stop`).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.launch().await
    }

    /// The last lines of etcd's log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process
            .as_ref()
            .map(|p| p.log_tail(lines))
            .unwrap_or_else(|| "etcd is not running".into())
    }
}
