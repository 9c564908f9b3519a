//! Ids clients send back: sealed session ids, task ids, relayed request and task ids, and
//! `Last-Event-ID`s. None may open unless the gateway minted it.
#![no_main]

use std::sync::OnceLock;
use switchboard_dataplane::session::Sealer;

fn sealer() -> &'static Sealer {
    static SEALER: OnceLock<Sealer> = OnceLock::new();
    SEALER.get_or_init(|| {
        Sealer::from_keys(
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            &["Hx4dHBsaGRgXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA=".to_string()],
        )
        .expect("32-byte keys")
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    assert!(sealer().open(&text).is_none(), "a forged session id opened");
    let _ = sealer().open_as::<serde_json::Value>("sbt1.", &text);
    let _ = switchboard_dataplane::mcp::relay::unwrap_task(&text);
    let _ = switchboard_dataplane::mcp::relay::unwrap(&serde_json::Value::String(text.to_string()));
    if let Ok(id) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = switchboard_dataplane::mcp::relay::unwrap(&id);
        let mut msg =
            serde_json::json!({"result": {"taskId": id.clone(), "tasks": [{"taskId": id}]}});
        switchboard_dataplane::mcp::relay::task_ids_in(&mut msg);
    }
    let _ = switchboard_dataplane::gateway::fuzz_last_event_id(&text);
    let _ = switchboard_dataplane::session::digest(&text);
});
