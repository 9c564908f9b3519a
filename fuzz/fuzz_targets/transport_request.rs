//! A whole request to a virtual server as the transport rules decide it: method, headers
//! (session id, protocol version, `Mcp-Method`/`Mcp-Name`) and body, all from the input.
#![no_main]

use std::sync::{Arc, OnceLock};
use switchboard_dataplane::routes::ServerView;
use switchboard_dataplane::transport::{handle, AdmitAll, RequestInfo, Seen};

mod served;

const YAML: &str = "apiVersion: switchboard.dev/v1\nkind: Upstream\nmetadata:\n  name: up\nspec:\n  mcp:\n    url: http://127.0.0.1:9/mcp\n---\napiVersion: switchboard.dev/v1\nkind: Prompt\nmetadata:\n  name: hello\nspec:\n  arguments:\n    - name: name\n  template: \"hi {{ name }}\"\n---\napiVersion: switchboard.dev/v1\nkind: VirtualServer\nmetadata:\n  name: demo\nspec:\n  prompts: [hello]\n  upstreams:\n    - upstream: up\n      prefix: up_\n  limits:\n    maxArgumentBytes: 1000\n";

fn server() -> &'static Arc<ServerView> {
    static SERVER: OnceLock<Arc<ServerView>> = OnceLock::new();
    SERVER.get_or_init(|| served::demo(YAML))
}

/// The next line of `text` (up to `\n`), and the rest.
fn line(text: &str) -> (&str, &str) {
    text.split_once('\n').unwrap_or((text, ""))
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let server = server();
    let text = String::from_utf8_lossy(data);
    let (method, rest) = line(&text);
    let (session, rest) = line(rest);
    let (version, rest) = line(rest);
    let (mcp_method, body) = line(rest);
    let mut sealed_session = None;
    if session == "sealed" {
        // A real session of this server, so requests get past the session check.
        let s = switchboard_dataplane::session::Session::new("demo", "2025-11-25")
            .bound("", std::time::Duration::from_secs(3600));
        sealed_session = Some(server.sealer.seal(&s));
    }
    let info = RequestInfo {
        method: method.to_string(),
        content_type: Some("application/json".into()),
        accept: Some("application/json, text/event-stream".into()),
        session_id: sealed_session.or_else(|| (!session.is_empty()).then(|| session.to_string())),
        protocol_version: (!version.is_empty()).then(|| version.to_string()),
        mcp_method: (!mcp_method.is_empty()).then(|| mcp_method.to_string()),
        mcp_name: None,
        mcp_params: Vec::new(),
        ..RequestInfo::default()
    };
    let _ = handle(
        server,
        &info,
        body.as_bytes(),
        &AdmitAll,
        &mut Seen::default(),
    );
});
