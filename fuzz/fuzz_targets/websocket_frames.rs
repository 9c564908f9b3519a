//! What a WebSocket client sends after the upgrade, read with the gateway's framing limits
//! (messages and frames no larger than a request body may be).
#![no_main]

use tokio_tungstenite::tungstenite::protocol::{Role, WebSocket, WebSocketConfig};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let config = WebSocketConfig::default()
        .max_message_size(Some(64 << 10))
        .max_frame_size(Some(64 << 10));
    let mut ws = WebSocket::from_raw_socket(
        std::io::Cursor::new(data.to_vec()),
        Role::Server,
        Some(config),
    );
    for _ in 0..64 {
        match ws.read() {
            Ok(message) => {
                if let Ok(text) = message.to_text() {
                    let _ = switchboard_dataplane::jsonrpc::parse(text.as_bytes());
                }
            }
            Err(_) => break,
        }
    }
});
