//! Switchboard's data plane: the MCP gateway and the discovery client that feeds it
//! snapshots from the control plane.

pub mod backends;
pub mod connections;
pub mod discovery;
pub mod ended_sessions;
mod errors;
pub mod gateway;
pub mod idle_sessions;
pub mod jsonrpc;
pub mod listener_tls;
pub mod mcp;
pub mod metrics;
pub mod policy;
pub mod reply;
pub mod routes;
pub mod server;
pub mod session;
pub mod signals;
pub mod stdio;
pub mod tracecontext;
pub mod transport;
pub mod upstreams;
