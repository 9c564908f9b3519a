//! Tests of the gateway's request path, one phase at a time, with everything in this
//! process: the gateway served by pingora on a loopback port (`harness`) in front of an MCP
//! server written with the official Rust SDK (`upstream`). Each module exercises one part of
//! the path: `forward` (calls, streamed answers, failures), `held` (calls of stateless
//! clients that wait for their input), `listen` (a session's own stream), `passthrough`, and
//! `caps` (a client's share of the data plane's places) and `slow_clients`.

mod caps;
mod forward;
mod harness;
mod held;
mod listen;
mod passthrough;
mod slow_clients;
mod upstream;
