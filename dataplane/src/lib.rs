//! Switchboard dataplane (see DESIGN.md).
