//! A snapshot as a data plane receives it: decoded, then compiled into routes (a bad one is
//! NACKed; nothing may panic).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(snapshot) = switchboard_config::Snapshot::decode(data) {
        let _ = switchboard_dataplane::routes::Routes::compile(&snapshot);
    }
});
