//! A request body as the gateway reads it: JSON-RPC envelopes and batches, and the nesting
//! check that runs before any parse.
#![no_main]

libfuzzer_sys::fuzz_target!(|body: &[u8]| {
    let _ = switchboard_dataplane::jsonrpc::nesting_depth(body);
    if let Ok(message) = switchboard_dataplane::jsonrpc::parse(body) {
        let _ = format!("{message:?}");
    }
});
