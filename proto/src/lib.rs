//! The wire contract between Switchboard's control plane, its data planes and the CLI.
//!
//! Generated from `proto/switchboard/v1/*.proto`. Snapshot payloads are opaque bytes here:
//! their schema belongs to `switchboard-config`.

/// Version 1 of the discovery and admin protocols.
pub mod v1 {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("switchboard.v1");
}

/// The `Snapshot.format` value for JSON-encoded `switchboard_config::Snapshot` payloads.
pub const SNAPSHOT_FORMAT_JSON_V1: &str = "application/json; schema=switchboard.snapshot.v1";
