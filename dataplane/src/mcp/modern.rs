//! The stateless 2026-07-28 era: no handshake and no session; every request carries its
//! protocol version and client capabilities in `params._meta`, mirrored in the
//! `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name` headers, and every result says its
//! `resultType`. These helpers check that envelope and shape results; the gateway translates
//! to the session era for upstreams that only speak it.

use super::versions;
use crate::jsonrpc::{
    RpcError, FORBIDDEN, INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, PARSE_ERROR,
    RATE_LIMITED,
};
use base64::Engine;
use serde_json::{json, Map, Value};

/// `_meta` key of the request's protocol version.
pub const PROTOCOL_VERSION_KEY: &str = "io.modelcontextprotocol/protocolVersion";
/// `_meta` key of the client's capabilities.
pub const CLIENT_CAPABILITIES_KEY: &str = "io.modelcontextprotocol/clientCapabilities";
/// `_meta` key of the least severe log level the client wants during a request.
pub const LOG_LEVEL_KEY: &str = "io.modelcontextprotocol/logLevel";
/// `_meta` key of the result's server identity.
pub const SERVER_INFO_KEY: &str = "io.modelcontextprotocol/serverInfo";
/// Prefix of the `_meta` keys the protocol reserves (stripped before a session-era upstream).
const RESERVED_PREFIX: &str = "io.modelcontextprotocol/";

/// A routing header disagrees with the body.
pub const HEADER_MISMATCH: i64 = -32020;
/// The request's protocol version is not served here.
pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
/// The request needs a client capability the client did not declare.
pub const MISSING_REQUIRED_CLIENT_CAPABILITY: i64 = -32021;

/// What a stateless client's retry carries for a call the gateway holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Continuation {
    /// The `requestState` the gateway handed out, echoed.
    pub request_state: String,
    /// The client's answers, keyed as the `inputRequests` were.
    pub input_responses: Value,
}

/// The routing headers a 2026-07-28 request carries.
#[derive(Debug, Clone, Default)]
pub struct RoutingHeaders {
    pub protocol_version: Option<String>,
    pub method: Option<String>,
    pub name: Option<String>,
}

/// The HTTP status that carries a JSON-RPC error in this era (200 for anything else).
pub fn http_status(code: i64) -> u16 {
    match code {
        PARSE_ERROR
        | INVALID_REQUEST
        | INVALID_PARAMS
        | HEADER_MISMATCH
        | MISSING_REQUIRED_CLIENT_CAPABILITY
        | UNSUPPORTED_PROTOCOL_VERSION => 400,
        METHOD_NOT_FOUND => 404,
        FORBIDDEN => 403,
        RATE_LIMITED => 429,
        _ => 200,
    }
}

/// The stateless era's error for a version it does not serve: `supported` names the versions
/// served this way, the same list as `server/discover`'s `supportedVersions` (a client falls
/// back to `initialize` for the session-based ones on its own).
pub fn unsupported(requested: &str) -> RpcError {
    unsupported_among(requested, &versions::MODERN)
}

/// The same error naming `supported` (a session-era request names every version served).
pub fn unsupported_among(requested: &str, supported: &[&str]) -> RpcError {
    RpcError {
        code: UNSUPPORTED_PROTOCOL_VERSION,
        message: "Unsupported protocol version".into(),
        data: Some(json!({"supported": supported, "requested": requested})),
    }
}

/// The body param each name-bearing method mirrors in `Mcp-Name`.
fn name_param(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        "tasks/get" | "tasks/update" | "tasks/cancel" => Some("taskId"),
        _ => None,
    }
}

/// Reads an `Mcp-Name` value, undoing the `=?base64?…?=` wrapping of values that are not
/// plain printable ASCII; None for a malformed wrapping.
fn decode_header(value: &str) -> Option<String> {
    let Some(payload) = value
        .strip_prefix("=?base64?")
        .and_then(|v| v.strip_suffix("?="))
    else {
        return Some(value.to_string());
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(payload)
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// Checks that a `tools/call` mirrors in `Mcp-Param-*` headers (`headers`: lowercase name
/// after the prefix, value) each argument its tool marks with `x-mcp-header` (`mirrored`:
/// argument, header name): present, well formed (a `=?base64?…?=` value must be valid
/// base64), and equal to the argument (SEP-2243).
pub fn check_mirrored(
    mirrored: &[(String, String)],
    params: &Value,
    headers: &[(String, String)],
) -> Result<(), RpcError> {
    let mismatch = |message: String| RpcError::new(HEADER_MISMATCH, message);
    for (argument, name) in mirrored {
        let expected = match params.pointer(&format!("/arguments/{argument}")) {
            None | Some(Value::Null) => continue,
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
        let Some((_, value)) = headers.iter().find(|(h, _)| h.eq_ignore_ascii_case(name)) else {
            return Err(mismatch(format!(
                "the Mcp-Param-{name} header is missing; it must carry argument `{argument}`"
            )));
        };
        let Some(decoded) = decode_header(value.trim()) else {
            return Err(mismatch(format!(
                "the Mcp-Param-{name} header is not valid base64"
            )));
        };
        if decoded != expected {
            return Err(mismatch(format!(
                "the Mcp-Param-{name} header does not match argument `{argument}`"
            )));
        }
    }
    Ok(())
}

/// Checks a request's envelope and headers, in the order the spec's reference SDK does
/// (envelope keys, then headers against the body, then the version).
pub fn check(method: &str, params: &Value, headers: &RoutingHeaders) -> Result<(), RpcError> {
    let Some(meta) = params.get("_meta").and_then(Value::as_object) else {
        return Err(RpcError::invalid_params(format!(
            "params._meta must be an object carrying `{PROTOCOL_VERSION_KEY}` and `{CLIENT_CAPABILITIES_KEY}`"
        )));
    };
    let missing: Vec<&str> = [PROTOCOL_VERSION_KEY, CLIENT_CAPABILITIES_KEY]
        .into_iter()
        .filter(|k| !meta.contains_key(*k))
        .collect();
    if !missing.is_empty() {
        return Err(RpcError::invalid_params(format!(
            "params._meta is missing {}",
            missing.join(", ")
        )));
    }
    let version = &meta[PROTOCOL_VERSION_KEY];
    let mismatch = |what: String| RpcError::new(HEADER_MISMATCH, what);
    if headers.protocol_version.as_deref() != version.as_str() {
        return Err(mismatch(
            "MCP-Protocol-Version header does not match params._meta's protocol version".into(),
        ));
    }
    if headers.method.as_deref() != Some(method) {
        return Err(mismatch(format!(
            "Mcp-Method header does not match the body's method `{method}`"
        )));
    }
    if let Some(key) = name_param(method) {
        if let Some(body) = params.get(key).and_then(Value::as_str) {
            if headers.name.as_deref().and_then(decode_header).as_deref() != Some(body) {
                return Err(mismatch(format!(
                    "Mcp-Name header does not match the body's `{key}`"
                )));
            }
        }
    }
    let Some(version) = version.as_str() else {
        return Err(RpcError::invalid_params(
            "the protocol version in params._meta must be a string",
        ));
    };
    if !versions::is_modern(version) {
        return Err(unsupported(version));
    }
    Ok(())
}

/// The identifier of the tasks extension.
pub const TASKS_EXTENSION: &str = "io.modelcontextprotocol/tasks";

/// Whether a stateless client's capabilities say it follows tasks (the tasks extension).
pub fn follows_tasks(capabilities: &Value) -> bool {
    capabilities
        .get("extensions")
        .and_then(|e| e.get(TASKS_EXTENSION))
        .is_some()
}

/// The error for a client that does not follow tasks and calls a tool that runs only as
/// one, or asks about a task.
pub fn task_capability_missing() -> RpcError {
    RpcError {
        code: MISSING_REQUIRED_CLIENT_CAPABILITY,
        message: "Missing required client capability: the tasks extension".into(),
        data: Some(json!({"requiredCapabilities": {"extensions": {TASKS_EXTENSION: {}}}})),
    }
}

/// Whether a log message (`notifications/message`) goes to a stateless client that asked
/// for `wanted` (None: it asked for none). Severities as in RFC 5424 (syslog).
pub fn log_wanted(message: &Value, wanted: Option<&str>) -> bool {
    const LEVELS: [&str; 8] = [
        "debug",
        "info",
        "notice",
        "warning",
        "error",
        "critical",
        "alert",
        "emergency",
    ];
    let Some(wanted) = wanted else {
        return false;
    };
    let rank = |l: &str| LEVELS.iter().position(|x| *x == l);
    let level = message
        .pointer("/params/level")
        .and_then(Value::as_str)
        .and_then(rank);
    match (level, rank(wanted)) {
        (Some(level), Some(wanted)) => level >= wanted,
        _ => true, // an unknown level is not ours to hide
    }
}

/// Params as a session-era upstream must see them: the reserved envelope keys removed
/// (other `_meta` entries, such as a progress token, stay).
pub fn strip_envelope(params: &mut Value) {
    let Some(meta) = params.get_mut("_meta").and_then(Value::as_object_mut) else {
        return;
    };
    meta.retain(|k, _| !k.starts_with(RESERVED_PREFIX));
    if meta.is_empty() {
        if let Some(p) = params.as_object_mut() {
            p.remove("_meta");
        }
    }
}

/// Marks a result as this era requires: `resultType`, the server's identity, and for
/// listings the caching hints (never cached: listings follow snapshots and policies).
pub fn shape_result(method: &str, result: &mut Value, server: &str) {
    let Some(obj) = result.as_object_mut() else {
        return;
    };
    obj.entry("resultType").or_insert_with(|| json!("complete"));
    if method.ends_with("/list") || method == "server/discover" || method == "resources/read" {
        obj.entry("ttlMs").or_insert_with(|| json!(0));
        obj.entry("cacheScope").or_insert_with(|| json!("private"));
    }
    let meta = obj
        .entry("_meta")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(meta) = meta.as_object_mut() {
        meta.insert(SERVER_INFO_KEY.into(), server_info(server));
    }
}

/// Takes a retry's `requestState` and `inputResponses` out of `params` (they are for the
/// gateway, which holds the call; the upstream never sees them).
pub fn take_continuation(params: &mut Value) -> Option<Continuation> {
    let obj = params.as_object_mut()?;
    let state = obj.remove("requestState");
    let responses = obj.remove("inputResponses");
    Some(Continuation {
        request_state: state?.as_str()?.to_string(),
        input_responses: responses.unwrap_or(Value::Null),
    })
}

/// How the gateway names itself for one virtual server.
pub fn server_info(server: &str) -> Value {
    json!({"name": format!("switchboard/{server}"), "version": env!("CARGO_PKG_VERSION")})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrored_arguments_must_match_their_headers() {
        let mirrored = vec![("region".to_string(), "Region".to_string())];
        let call = json!({"name": "t", "arguments": {"region": "Hello"}});
        let header = |v: &str| vec![("region".to_string(), v.to_string())];
        assert!(check_mirrored(&mirrored, &call, &header("Hello")).is_ok());
        assert!(check_mirrored(&mirrored, &call, &header(" Hello ")).is_ok());
        assert!(check_mirrored(&mirrored, &call, &header("=?base64?SGVsbG8=?=")).is_ok());
        for bad in ["=?base64?SGVsbG8?=", "=?base64?SGVs!!!bG8=?=", "Bye"] {
            let e = check_mirrored(&mirrored, &call, &header(bad)).expect_err(bad);
            assert_eq!(e.code, HEADER_MISMATCH, "{bad}");
        }
        assert!(check_mirrored(&mirrored, &call, &[]).is_err(), "missing");
        let without = json!({"name": "t", "arguments": {}});
        assert!(check_mirrored(&mirrored, &without, &[]).is_ok());
        let number = json!({"name": "t", "arguments": {"region": 7}});
        assert!(check_mirrored(&mirrored, &number, &header("7")).is_ok());
    }

    #[test]
    fn log_messages_reach_stateless_clients_only_at_the_level_they_asked_for() {
        let msg = |level: &str| json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": level, "data": "x"}});
        assert!(!log_wanted(&msg("emergency"), None));
        assert!(log_wanted(&msg("info"), Some("info")));
        assert!(log_wanted(&msg("error"), Some("warning")));
        assert!(!log_wanted(&msg("debug"), Some("info")));
        assert!(log_wanted(&msg("fancy"), Some("info")));
    }

    fn headers(method: &str, name: Option<&str>) -> RoutingHeaders {
        RoutingHeaders {
            protocol_version: Some("2026-07-28".into()),
            method: Some(method.into()),
            name: name.map(str::to_string),
        }
    }

    fn params(extra: Value) -> Value {
        let mut p =
            json!({"_meta": {PROTOCOL_VERSION_KEY: "2026-07-28", CLIENT_CAPABILITIES_KEY: {}}});
        if let (Some(p), Some(e)) = (p.as_object_mut(), extra.as_object()) {
            p.extend(e.clone());
        }
        p
    }

    #[test]
    fn envelope_and_headers_are_checked_in_order() {
        let e = check("tools/list", &json!({}), &headers("tools/list", None)).expect_err("no meta");
        assert_eq!(e.code, INVALID_PARAMS);
        let e = check(
            "tools/list",
            &json!({"_meta": {PROTOCOL_VERSION_KEY: "2026-07-28"}}),
            &headers("tools/list", None),
        )
        .expect_err("no capabilities");
        assert!(e.message.contains(CLIENT_CAPABILITIES_KEY), "{}", e.message);
        let e = check(
            "tools/list",
            &params(json!({})),
            &headers("tools/call", None),
        )
        .expect_err("method");
        assert_eq!(e.code, HEADER_MISMATCH);
        let call = params(json!({"name": "héllo"}));
        let e =
            check("tools/call", &call, &headers("tools/call", Some("hello"))).expect_err("name");
        assert_eq!(e.code, HEADER_MISMATCH);
        let wrapped = format!(
            "=?base64?{}?=",
            base64::engine::general_purpose::STANDARD.encode("héllo")
        );
        check("tools/call", &call, &headers("tools/call", Some(&wrapped))).expect("wrapped name");
        let mut old = params(json!({}));
        old["_meta"][PROTOCOL_VERSION_KEY] = json!("2030-01-01");
        let mut h = headers("tools/list", None);
        h.protocol_version = Some("2030-01-01".into());
        let e = check("tools/list", &old, &h).expect_err("unsupported");
        assert_eq!(
            (e.code, http_status(e.code)),
            (UNSUPPORTED_PROTOCOL_VERSION, 400)
        );
        // The same list as server/discover's supportedVersions.
        assert_eq!(
            e.data.expect("data"),
            json!({"supported": versions::MODERN, "requested": "2030-01-01"})
        );
    }

    #[test]
    fn reads_carry_the_caching_hints_the_era_requires() {
        let mut read = json!({"contents": []});
        shape_result("resources/read", &mut read, "demo");
        assert_eq!(
            (read["ttlMs"].clone(), read["cacheScope"].clone()),
            (json!(0), json!("private"))
        );
        let mut kept = json!({"contents": [], "ttlMs": 5000, "cacheScope": "public"});
        shape_result("resources/read", &mut kept, "demo");
        assert_eq!(
            (kept["ttlMs"].clone(), kept["cacheScope"].clone()),
            (json!(5000), json!("public"))
        );
    }

    #[test]
    fn envelope_is_stripped_and_results_shaped() {
        let mut p = params(json!({"name": "echo"}));
        p["_meta"]["progressToken"] = json!(7);
        strip_envelope(&mut p);
        assert_eq!(p, json!({"name": "echo", "_meta": {"progressToken": 7}}));
        let mut p = params(json!({}));
        strip_envelope(&mut p);
        assert_eq!(p, json!({}));
        let mut r = json!({"tools": []});
        shape_result("tools/list", &mut r, "demo");
        assert_eq!(r["resultType"], "complete");
        assert_eq!(r["ttlMs"], 0);
        assert_eq!(r["_meta"][SERVER_INFO_KEY]["name"], "switchboard/demo");
    }
}
