//! Upstream discovery: what each MCP upstream offers and whether it is up.
//!
//! One replica at a time (the holder of the store's discovery lease, see
//! [`crate::store::status`]) runs a worker per upstream: it keeps a session open, lists the
//! catalog on an interval, on `list_changed` and on demand, checks health, and writes the
//! results to the store's status namespace. Every replica follows that namespace, so all of
//! them build the same snapshots; a deposed leader's writes are fenced off.

pub mod follow;
pub mod leader;
pub mod records;
pub mod report;
pub mod signals;
pub mod stdio;
mod worker;
