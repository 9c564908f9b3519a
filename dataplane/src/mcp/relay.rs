//! Requests an upstream sends its client during a call (`sampling/createMessage`,
//! `elicitation/create`, `roots/list`) reach the client with an id that names the upstream,
//! so the client's answer, arriving at any replica, goes back to the right upstream session
//! with the upstream's own id. The client's session says which upstream session that is.

use base64::Engine;
use serde_json::Value;

const PREFIX: &str = "sb1.";

/// The id the client sees for `upstream`'s request `id`.
pub fn wrap(upstream: &str, id: &Value) -> Value {
    let original = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.to_string());
    Value::String(format!("{PREFIX}{upstream}.{original}"))
}

/// The upstream and its own id, if `id` came from [`wrap`].
pub fn unwrap(id: &Value) -> Option<(String, Value)> {
    let rest = id.as_str()?.strip_prefix(PREFIX)?;
    let (upstream, original) = rest.split_once('.')?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(original)
        .ok()?;
    let id = serde_json::from_slice(&bytes).ok()?;
    Some((upstream.to_string(), id))
}

/// Whether `msg` is a request (as opposed to a response or notification).
pub fn is_request(msg: &Value) -> bool {
    msg.get("method").is_some() && msg.get("id").is_some_and(|id| !id.is_null())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_round_trip_and_foreign_ids_are_left_alone() {
        for id in [json!(0), json!("abc.def"), json!(12345678901u64)] {
            let wrapped = wrap("everything", &id);
            assert_eq!(unwrap(&wrapped), Some(("everything".to_string(), id)));
        }
        assert_eq!(unwrap(&json!(7)), None);
        assert_eq!(unwrap(&json!("sb1.x.!!")), None);
        assert_eq!(unwrap(&json!("client-id")), None);
        assert!(is_request(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "roots/list"})
        ));
        assert!(!is_request(
            &json!({"jsonrpc": "2.0", "method": "notifications/progress"})
        ));
    }
}
