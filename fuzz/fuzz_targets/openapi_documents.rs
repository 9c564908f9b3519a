//! An OpenAPI document as the control plane fetches it (and `preview` reads it): converted
//! into tools, `$ref`s followed and expanded, every input schema compiled.
#![no_main]

use switchboard_config::kinds::upstream::OpenApiUpstream;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let api = OpenApiUpstream::default();
    if let Ok(converted) =
        switchboard_config::openapi::convert(&doc, &api, Some("http://api.test/spec.json"))
    {
        for tool in &converted.tools {
            let _ = switchboard_config::schema::Schema::compile(&tool["inputSchema"]);
        }
    }
});
