//! Policies the data plane enforces on the hot path: who is calling (`auth`, with `jwks`),
//! what they may do (`authz`), how often (`ratelimit`), and how calls to a failing upstream
//! are cut short (`circuit`) or retried (`retry`).

pub mod auth;
pub mod authz;
pub mod circuit;
pub mod client_cert;
pub mod jwks;
/// Origin and Host checks, shared with the stdio bridge (which serves MCP too).
pub use switchboard_bridge::origin;
pub mod ratelimit;
pub mod retry;
