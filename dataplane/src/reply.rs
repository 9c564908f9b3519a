//! A complete HTTP answer the gateway makes itself (a JSON-RPC response or error, or an
//! empty status), and how metrics count it. Kept apart from `transport`, which decides
//! answers, and `errors`, which words the gateway's failures, so both can use it.

use crate::jsonrpc::{self, RpcError};
use crate::metrics::Served;
use serde_json::Value;

/// A complete HTTP answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// The JSON-RPC error code the body carries, if any (for metrics and logs).
    pub error_code: Option<i64>,
}

impl Reply {
    /// A JSON body with a status.
    pub fn json(status: u16, body: &Value) -> Reply {
        Reply {
            status,
            headers: vec![("content-type", "application/json".into())],
            body: body.to_string().into_bytes(),
            error_code: body.pointer("/error/code").and_then(Value::as_i64),
        }
    }

    /// A status with no body.
    pub fn empty(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            error_code: None,
        }
    }

    /// How this answer reads in metrics and the access log.
    pub fn outcome(&self) -> Served {
        match (self.status, self.error_code) {
            (401, _) => Served::Unauthorized,
            (429, _) | (_, Some(jsonrpc::RATE_LIMITED)) => Served::RateLimited,
            (403, _) | (_, Some(jsonrpc::FORBIDDEN)) => Served::Forbidden,
            // The gateway answers 502 only when an upstream failed it (see `errors`).
            (502, _) => Served::UpstreamError,
            (_, Some(_)) => Served::Error,
            (s, None) if s >= 400 => Served::Error,
            _ => Served::Ok,
        }
    }

    /// A JSON-RPC error carried with an HTTP error status (for transport-level failures).
    pub fn rpc_error(status: u16, code: i64, message: impl Into<String>) -> Reply {
        Reply::json(
            status,
            &jsonrpc::error_response(&Value::Null, &RpcError::new(code, message)),
        )
    }
}
