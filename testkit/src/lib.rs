//! Test harness shared by every test and benchmark: real etcd, real MCP peers we did not
//! write (npm server-everything, PyPI mcp-server-time), and our own binaries, each on free
//! loopback ports, killed when dropped. A missing dependency is a loud failure that says how
//! to install it, never a silent skip.

mod certs;
mod deps;
mod etcd;
mod mcp;
mod ports;
mod process;

pub use certs::{CertPair, TestCa};
pub use deps::{deps_dir, node22_bin, node_bin, npm_module_dir, python_bin, venv_bin};
pub use etcd::Etcd;
pub use mcp::{parse_sse_events, McpHttpClient, ServerEverything, StdioMcpPeer};
pub use ports::{free_port, wait_for_http_ok, wait_for_tcp};
pub use process::{rss_kib, switchboard, tail_of_file, ManagedProcess, TEST_CONTROL_TOKEN};
