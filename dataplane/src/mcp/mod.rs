//! MCP semantics the gateway implements itself: version negotiation, the stateless era's
//! envelope, and the methods it answers from memory.

pub mod local;
pub mod modern;
pub mod relay;
pub mod versions;
