//! The gateway's own failures on a call's way to an upstream, in one table: what each says,
//! the JSON-RPC error it becomes (with the HTTP status either era gives it), and how metrics
//! count it. Errors an upstream answers itself pass through unchanged; these are the ones
//! the gateway makes.

use super::resilience::CallError;
use crate::jsonrpc::{self, RpcError};
use crate::metrics::Served;
use crate::transport::Reply;
use serde_json::{json, Value};
use std::time::Duration;
use switchboard_upstream::UpstreamError;

/// Why the gateway could not get a call answered.
#[derive(Debug, thiserror::Error)]
pub(super) enum GatewayError {
    #[error("upstream `{0}` is not in this snapshot")]
    NotServed(String),
    #[error("{}", unhealthy_message(.upstream, .why))]
    Unhealthy { upstream: String, why: String },
    #[error("upstream `{upstream}` keeps failing on this gateway; not calling it for another {:.1}s (circuit open)", .left.as_secs_f64())]
    CircuitOpen { upstream: String, left: Duration },
    #[error("upstream `{upstream}` failed: {source}")]
    Failed {
        upstream: String,
        source: UpstreamError,
    },
    #[error("upstream `{upstream}` sent invalid JSON: {source}")]
    InvalidJson {
        upstream: String,
        source: serde_json::Error,
    },
    #[error("upstream `{upstream}` broke off its answer: {why}")]
    BrokeOff { upstream: String, why: String },
    #[error("upstream `{upstream}` sent no more of its answer for {idle:?}")]
    Silent { upstream: String, idle: Duration },
    #[error("upstream `{upstream}`: {why}")]
    StreamEnded { upstream: String, why: String },
    #[error("too many calls wait for their clients' input on this data plane")]
    TooManyHeld,
    #[error("could not hand the answer to upstream `{upstream}`: {source}")]
    AnswerNotDelivered {
        upstream: String,
        source: UpstreamError,
    },
    /// A stateless client's retry whose `requestState` names no call held here.
    #[error("{0}")]
    NoHeldCall(String),
    #[error("request body is larger than {max} bytes")]
    BodyTooLarge { max: usize },
    #[error("a pass-through server with authorization rules, argument limits or rate limits reads each request, and takes at most {limit} bytes")]
    PassThroughTooLarge { limit: usize },
    #[error("pass-through to `{upstream}`: {why}")]
    PassThroughFailed { upstream: String, why: String },
    #[error("this stream was opened by another principal")]
    OtherPrincipal,
    /// A call's stream that cannot be resumed (with why).
    #[error("{0}")]
    Unresumable(String),
}

/// What a client is told when it calls an upstream the health checks found down.
pub(super) fn unhealthy_message(upstream: &str, why: &str) -> String {
    if why.is_empty() {
        format!("upstream `{upstream}` is unhealthy; failing fast until it recovers")
    } else {
        format!("upstream `{upstream}` is unhealthy ({why}); failing fast until it recovers")
    }
}

impl GatewayError {
    /// A call that got no answer from `upstream` (see `resilience`).
    pub(super) fn of_call(upstream: &str, e: CallError) -> GatewayError {
        let upstream = upstream.to_string();
        match e {
            CallError::CircuitOpen(left) => GatewayError::CircuitOpen { upstream, left },
            CallError::Upstream(source) => GatewayError::Failed { upstream, source },
        }
    }

    /// The JSON-RPC error the client gets. Errors about an upstream name it in `data`,
    /// except where a stream already carried that upstream's events.
    pub(super) fn rpc(&self) -> RpcError {
        let upstream = match self {
            GatewayError::NotServed(u) => Some(u),
            GatewayError::Unhealthy { upstream, .. }
            | GatewayError::CircuitOpen { upstream, .. }
            | GatewayError::Failed { upstream, .. }
            | GatewayError::InvalidJson { upstream, .. }
            | GatewayError::BrokeOff { upstream, .. }
            | GatewayError::Silent { upstream, .. } => Some(upstream),
            _ => None,
        };
        let code = match self {
            GatewayError::NoHeldCall(_) => jsonrpc::INVALID_PARAMS,
            GatewayError::BodyTooLarge { .. }
            | GatewayError::PassThroughTooLarge { .. }
            | GatewayError::OtherPrincipal
            | GatewayError::Unresumable(_) => jsonrpc::INVALID_REQUEST,
            _ => jsonrpc::INTERNAL_ERROR,
        };
        RpcError {
            code,
            message: self.to_string(),
            data: upstream.map(|u| json!({"upstream": u})),
        }
    }

    /// The HTTP status: refusals carry their own; a call's failure is 200 for a session-era
    /// client and what its code maps to for a stateless one.
    pub(super) fn status(&self, stateless: bool) -> u16 {
        match self {
            GatewayError::NoHeldCall(_) => 400,
            GatewayError::BodyTooLarge { .. } | GatewayError::PassThroughTooLarge { .. } => 413,
            GatewayError::PassThroughFailed { .. } => 502,
            GatewayError::OtherPrincipal => 403,
            GatewayError::Unresumable(_) => 404,
            _ if stateless => crate::mcp::modern::http_status(self.rpc().code),
            _ => 200,
        }
    }

    /// How metrics and the access log count it.
    pub(super) fn served(&self) -> Served {
        match self {
            GatewayError::NotServed(_)
            | GatewayError::Unhealthy { .. }
            | GatewayError::CircuitOpen { .. }
            | GatewayError::Failed { .. }
            | GatewayError::InvalidJson { .. }
            | GatewayError::BrokeOff { .. }
            | GatewayError::Silent { .. }
            | GatewayError::StreamEnded { .. }
            | GatewayError::AnswerNotDelivered { .. }
            | GatewayError::PassThroughFailed { .. } => Served::UpstreamError,
            GatewayError::OtherPrincipal => Served::Forbidden,
            _ => Served::Error,
        }
    }

    /// The JSON-RPC response to request `id`.
    pub(super) fn response(&self, id: &Value) -> Value {
        jsonrpc::error_response(id, &self.rpc())
    }

    /// The whole answer to request `id`, with the HTTP status its era gives the error.
    pub(super) fn reply(&self, id: &Value, stateless: bool) -> Reply {
        Reply::json(
            self.status(stateless),
            &jsonrpc::error_response(id, &self.rpc()),
        )
    }

    /// The answer to a request refused before its id was read.
    pub(super) fn refusal(&self) -> Reply {
        self.reply(&Value::Null, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_says_what_happened_and_names_its_upstream() {
        let silent = GatewayError::Silent {
            upstream: "up".into(),
            idle: Duration::from_secs(5),
        };
        let rpc = silent.rpc();
        assert_eq!(rpc.code, jsonrpc::INTERNAL_ERROR);
        assert_eq!(
            rpc.message,
            "upstream `up` sent no more of its answer for 5s"
        );
        assert_eq!(rpc.data, Some(json!({"upstream": "up"})));
        assert_eq!(silent.served(), Served::UpstreamError);
        let open = GatewayError::of_call("up", CallError::CircuitOpen(Duration::from_millis(1500)));
        assert!(open.to_string().contains("another 1.5s (circuit open)"));
        let unhealthy = GatewayError::Unhealthy {
            upstream: "up".into(),
            why: String::new(),
        };
        assert_eq!(
            unhealthy.to_string(),
            "upstream `up` is unhealthy; failing fast until it recovers"
        );
        let held = GatewayError::TooManyHeld;
        assert_eq!(held.rpc().data, None);
        assert_eq!(held.served(), Served::Error);
        assert_eq!(held.reply(&json!(1), true).status, 200);
        let large = GatewayError::BodyTooLarge { max: 10 };
        assert_eq!(large.refusal().status, 413);
        assert_eq!(large.rpc().code, jsonrpc::INVALID_REQUEST);
        assert_eq!(large.to_string(), "request body is larger than 10 bytes");
        assert_eq!(GatewayError::OtherPrincipal.served(), Served::Forbidden);
        assert_eq!(
            GatewayError::NoHeldCall("x".into())
                .reply(&json!(2), true)
                .status,
            400
        );
    }
}
