//! Child processes that cannot outlive their test: own process group, killed on drop, output
//! captured to a log file that a failing test can print.

use anyhow::Context;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

/// A running child process (and everything it started), killed when dropped.
pub struct ManagedProcess {
    child: Option<Child>,
    pid: u32,
    log: tempfile::NamedTempFile,
    name: String,
}

/// The control token every test process shares: control planes started by tests let in
/// only callers that show it, as a real deployment does.
pub const TEST_CONTROL_TOKEN: &str = "switchboard-test-control-token";

/// A command for a Switchboard binary `bin` (control plane, data plane, CLI) that carries
/// the tests' control token.
pub fn switchboard(bin: &str) -> Command {
    let mut command = Command::new(bin);
    command
        .env("SWITCHBOARD_CONTROL_TOKEN", TEST_CONTROL_TOKEN)
        // The machine's own CLI contexts must not reach the tests.
        .env(
            "SWITCHBOARD_CONFIG",
            "/nonexistent/switchboard-test-contexts.yaml",
        );
    command
}

impl ManagedProcess {
    /// Starts `command` in its own process group with stdout and stderr sent to a log file.
    pub fn spawn(mut command: Command) -> anyhow::Result<ManagedProcess> {
        let name = format!("{:?}", command.get_program());
        let log = tempfile::NamedTempFile::new().context("creating a log file")?;
        let out = log.reopen().context("opening the log file")?;
        let err = log.reopen().context("opening the log file")?;
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .process_group(0);
        let child = command
            .spawn()
            .with_context(|| format!("starting {name} ({command:?})"))?;
        Ok(ManagedProcess {
            pid: child.id(),
            child: Some(child),
            log,
            name,
        })
    }

    /// The process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Kills the whole process group (SIGKILL) and reaps the child.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(pgid) = i32::try_from(self.pid) {
                // SAFETY: kill(2) with a negative pid signals our child's own process group.
                unsafe {
                    libc::kill(-pgid, libc::SIGKILL);
                }
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM to the process group (a graceful stop) and waits up to `timeout`.
    pub fn terminate(&mut self, timeout: std::time::Duration) {
        if let Ok(pgid) = i32::try_from(self.pid) {
            // SAFETY: as in `kill`.
            unsafe {
                libc::kill(-pgid, libc::SIGTERM);
            }
        }
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline && self.is_running() {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        self.kill();
    }

    /// The last `lines` lines of its output, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        format!(
            "--- {} (pid {}) ---\n{}",
            self.name,
            self.pid,
            tail_of_file(self.log.path(), lines)
        )
    }

    /// Where its output goes, so a test can read it later (e.g. from another object).
    pub fn log_path(&self) -> std::path::PathBuf {
        self.log.path().to_path_buf()
    }
}

/// The last `lines` lines of a log file ("" when unreadable).
pub fn tail_of_file(path: &std::path::Path, lines: usize) -> String {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    all[start..].join("\n")
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Resident memory of process `pid` in KiB (0 when it cannot be read), for benchmarks.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
