//! MCP semantics the gateway implements itself: version negotiation and the methods it
//! answers from memory.

pub mod local;
pub mod versions;
