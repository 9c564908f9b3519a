//! Switchboard's data plane. Today: the discovery client that receives, checks, applies and
//! persists snapshots from the control plane. The pingora MCP gateway that serves them is
//! built on top (issue #4).

pub mod discovery;
