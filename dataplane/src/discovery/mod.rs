//! The data plane's side of the discovery protocol: say who we are, receive snapshots, check
//! them, swap them in atomically, ACK or NACK, persist the last good one, and reconnect with
//! jittered backoff, serving the last good snapshot all along.

mod client;
mod persist;

pub use client::{ClientConfig, ClientStatus, ControlPlaneTls, DiscoveryClient};
pub use persist::{load_snapshot, save_snapshot, PersistError};
