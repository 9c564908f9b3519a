//! The end-to-end tests, in one test binary (one link instead of one per file): our
//! binaries as real processes with real MCP servers and clients, etcd and TLS peers. Each
//! module says what it covers; `common` has what they share.

mod a2a;
mod cli_validate;
mod common;
mod conformance;
mod controlplane;
mod controlplane_tls;
mod dataplane;
mod discovery;
mod hardening;
mod mcp_full;
mod observability;
mod policies;
mod questions;
mod rest;
mod stdio;
mod tasks;
mod tls;
mod tls_listener;
