//! JSON-RPC 2.0 as MCP uses it: one message per HTTP body, ids that are strings or numbers,
//! params that are objects. Bad input gets the right error code and never a panic.

use serde_json::{json, Map, Value};

/// Invalid JSON.
pub const PARSE_ERROR: i64 = -32700;
/// JSON that is not a valid JSON-RPC message.
pub const INVALID_REQUEST: i64 = -32600;
/// A method nobody serves.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// Arguments that do not fit the method (unknown tool, missing argument, bad cursor...).
pub const INVALID_PARAMS: i64 = -32602;
/// Our fault, or an upstream's.
pub const INTERNAL_ERROR: i64 = -32603;
/// MCP: the requested resource does not exist.
pub const RESOURCE_NOT_FOUND: i64 = -32002;
/// Switchboard: the request carries no valid credentials (with HTTP 401).
pub const UNAUTHORIZED: i64 = -32001;
/// Switchboard: the caller may not do this (authorization rules).
pub const FORBIDDEN: i64 = -32003;
/// Switchboard: a rate limit refused the request; `data.retryAfterSeconds` says when to retry.
pub const RATE_LIMITED: i64 = -32029;

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    pub data: Option<Value>,
}

impl RpcError {
    /// An error with no extra data.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// `-32602` with a message.
    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(INVALID_PARAMS, message)
    }

    /// The error as a JSON object.
    pub fn to_json(&self) -> Value {
        let mut e = json!({"code": self.code, "message": self.message});
        if let Some(d) = &self.data {
            e["data"] = d.clone();
        }
        e
    }
}

/// One message from a client.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// Expects a response with the same id.
    Request {
        id: Value,
        method: String,
        params: Value,
    },
    /// Expects nothing back.
    Notification { method: String, params: Value },
    /// The client's answer to a request the server sent it.
    Response { id: Value, body: Value },
}

/// A message that could not be accepted, with the id to answer to (null when unknown).
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    pub id: Value,
    pub error: RpcError,
}

impl Rejected {
    /// The error response to send back.
    pub fn to_response(&self) -> Value {
        error_response(&self.id, &self.error)
    }
}

fn reject(id: Value, code: i64, message: impl Into<String>) -> Rejected {
    Rejected {
        id,
        error: RpcError::new(code, message),
    }
}

/// Parses one HTTP body into a message.
pub fn parse(body: &[u8]) -> Result<Message, Rejected> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| reject(Value::Null, PARSE_ERROR, format!("parse error: {e}")))?;
    let obj = match value {
        Value::Object(o) => o,
        Value::Array(_) => {
            return Err(reject(
                Value::Null,
                INVALID_REQUEST,
                "JSON-RPC batches are not supported; send one message per request",
            ))
        }
        _ => {
            return Err(reject(
                Value::Null,
                INVALID_REQUEST,
                "a JSON-RPC message must be an object",
            ))
        }
    };
    from_object(obj)
}

fn from_object(mut obj: Map<String, Value>) -> Result<Message, Rejected> {
    let id = obj.remove("id");
    let answer_id = match &id {
        Some(v @ (Value::String(_) | Value::Number(_))) => v.clone(),
        _ => Value::Null,
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(reject(
            answer_id,
            INVALID_REQUEST,
            "`jsonrpc` must be \"2.0\"",
        ));
    }
    if let Some(id) = &id {
        if !matches!(id, Value::String(_) | Value::Number(_)) {
            return Err(reject(
                Value::Null,
                INVALID_REQUEST,
                "`id` must be a string or a number",
            ));
        }
    }
    match obj.remove("method") {
        Some(Value::String(method)) => {
            let params = match obj.remove("params") {
                None | Some(Value::Null) => Value::Object(Map::new()),
                Some(p @ Value::Object(_)) => p,
                Some(_) => {
                    return Err(reject(
                        answer_id,
                        INVALID_REQUEST,
                        "`params` must be an object",
                    ))
                }
            };
            Ok(match id {
                Some(id) => Message::Request { id, method, params },
                None => Message::Notification { method, params },
            })
        }
        Some(_) => Err(reject(
            answer_id,
            INVALID_REQUEST,
            "`method` must be a string",
        )),
        None => match id {
            Some(id) if obj.contains_key("result") || obj.contains_key("error") => {
                Ok(Message::Response {
                    id,
                    body: Value::Object(obj),
                })
            }
            _ => Err(reject(
                answer_id,
                INVALID_REQUEST,
                "not a JSON-RPC request, notification or response",
            )),
        },
    }
}

/// A success response.
pub fn result_response(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// An error response.
pub fn error_response(id: &Value, error: &RpcError) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": error.to_json()})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(body: &str) -> (Value, i64) {
        let r = parse(body.as_bytes()).expect_err("rejected");
        (r.id, r.error.code)
    }

    #[test]
    fn bad_input_gets_the_right_code() {
        assert_eq!(code("{not json"), (Value::Null, PARSE_ERROR));
        assert_eq!(code(""), (Value::Null, PARSE_ERROR));
        assert_eq!(code("[]"), (Value::Null, INVALID_REQUEST));
        assert_eq!(code("42"), (Value::Null, INVALID_REQUEST));
        assert_eq!(
            code(r#"{"id":1,"method":"ping"}"#),
            (json!(1), INVALID_REQUEST)
        );
        assert_eq!(
            code(r#"{"jsonrpc":"2.0","id":"a","method":7}"#),
            (json!("a"), INVALID_REQUEST)
        );
        assert_eq!(
            code(r#"{"jsonrpc":"2.0","id":{"x":1},"method":"ping"}"#),
            (Value::Null, INVALID_REQUEST)
        );
        assert_eq!(
            code(r#"{"jsonrpc":"2.0","id":2,"method":"ping","params":[1]}"#),
            (json!(2), INVALID_REQUEST)
        );
        assert_eq!(
            code(r#"{"jsonrpc":"2.0","id":3}"#),
            (json!(3), INVALID_REQUEST)
        );
    }

    #[test]
    fn requests_notifications_and_responses() {
        assert_eq!(
            parse(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#),
            Ok(Message::Request {
                id: json!(1),
                method: "ping".into(),
                params: json!({})
            })
        );
        assert!(matches!(
            parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            Ok(Message::Notification { .. })
        ));
        assert!(matches!(
            parse(br#"{"jsonrpc":"2.0","id":"s-1","result":{}}"#),
            Ok(Message::Response { .. })
        ));
        let err = error_response(&json!(9), &RpcError::invalid_params("unknown tool: x"));
        assert_eq!(err["error"]["code"], INVALID_PARAMS);
        assert_eq!(err["id"], 9);
    }
}

/// How deeply arrays and objects nest in a JSON text (strings are skipped), read without
/// parsing so an over-deep request is refused before it costs anything.
pub fn nesting_depth(text: &[u8]) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in text {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

#[cfg(test)]
mod depth_tests {
    #[test]
    fn nesting_depth_skips_strings() {
        assert_eq!(super::nesting_depth(br#"{"a":[1,{"b":"[[[{"}]}"#), 3);
        assert_eq!(super::nesting_depth(br#"{"a":"\"{"}"#), 1);
        assert_eq!(super::nesting_depth(b"1"), 0);
    }
}
