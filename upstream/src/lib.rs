//! Talking MCP to upstream servers over streamable HTTP (and the legacy HTTP+SSE transport): opening sessions (initialize),
//! sending requests and reading their answer whether it comes as JSON or as an SSE stream,
//! and listing everything an upstream offers (its catalog). Used by the control plane to
//! discover catalogs and by the data plane to forward calls.

pub mod a2a;
pub mod backend;
pub mod body;
mod client;
mod connection;
mod credentials;
mod legacy;
pub mod rest;
mod sse;
pub mod tls;

pub use client::{
    describe, is_event_stream, McpHttp, StreamCursor, UpstreamError, UpstreamSession,
    CLIENT_PROTOCOL_VERSION,
};
pub use connection::{discovery_reply, is_list_changed, Connection, Messages};
pub use credentials::Credentials;
pub use legacy::LegacySession;
pub use sse::{json_events, SseEvent};
pub use tls::{TlsError, TlsSettings};
