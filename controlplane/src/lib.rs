//! Switchboard controlplane (see DESIGN.md).
