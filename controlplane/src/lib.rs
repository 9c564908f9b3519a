//! Switchboard's control plane: the source of truth. It keeps resources in a store (etcd or
//! embedded), validates what users apply, builds one snapshot per data-plane group and pushes
//! it to every connected data plane over the discovery stream.

pub mod admin;
pub mod audit;
pub mod convert;
pub mod dataplanes;
pub mod discovery;
pub mod ended_sessions;
pub mod identity;
pub mod metrics;
pub mod registry;
pub mod replicas;
pub mod secrets;
pub mod server;
pub mod session_keys;
pub mod snapshots;
pub mod state;
pub mod store;
pub mod upstreams;
