//! The gateway's own refusals and failures, in one table: what each says, the JSON-RPC error
//! it becomes (with the HTTP status either era gives it, and the headers it needs), and how
//! metrics count it. Rows are grouped by where on the request path they arise: at the edge
//! (transport rules, origins, connections), in a request's checks, on a call's way to an
//! upstream, and around tasks and relayed answers. Errors an upstream answers itself pass
//! through unchanged, as do the JSON-RPC errors of a malformed message (`jsonrpc::RpcError`
//! from the parser) and the admission refusals of authentication (`admission`) and policy
//! (`transport::Refusal`), which carry their own codes.

use crate::jsonrpc::{self, RpcError};
use crate::metrics::Served;
use crate::reply::Reply;
use serde_json::{json, Value};
use std::time::Duration;
use switchboard_config::kinds::upstream::UpstreamKind;
use switchboard_upstream::backend::AnswerError;
use switchboard_upstream::UpstreamError;

/// Why the gateway refused a request or could not get a call answered.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GatewayError {
    // The edge: transport rules, origins and connections.
    #[error("no virtual server named `{0}`")]
    UnknownServer(String),
    #[error("this endpoint offers no server-initiated SSE stream; use POST")]
    NoServerStream,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("missing Mcp-Session-Id header: send initialize first")]
    MissingSession,
    #[error("unknown session: initialize a new one")]
    UnknownSession,
    #[error("this session has expired: initialize a new one")]
    SessionExpired,
    #[error("this session was ended (DELETE): initialize a new one")]
    SessionEnded,
    #[error("this session was opened by another principal: initialize your own")]
    SessionOfOther,
    #[error("Content-Type must be application/json")]
    NotJson,
    #[error("Accept must include application/json")]
    NotAcceptable,
    #[error("JSON nests {depth} levels deep; this server takes at most {max}")]
    TooDeep { depth: usize, max: usize },
    /// An `Origin` or `Host` the server does not accept (with why).
    #[error("{0}")]
    OriginRefused(String),
    #[error("unknown session: open GET /servers/{{name}}/sse on this data plane first")]
    UnknownLegacyClient,
    /// A WebSocket upgrade that cannot be accepted, with its status (426 asks for the
    /// upgrade).
    #[error("{why}")]
    UpgradeRefused { status: u16, why: String },
    #[error("too many WebSocket connections are open on this data plane")]
    TooManyWebSockets,
    #[error("too many legacy SSE streams are open on this data plane")]
    TooManyLegacyStreams,
    #[error("too many streams are open on this data plane; retry later")]
    TooManyStreams,
    /// One client holds its share of a cap of the data plane's (`what`: WebSocket
    /// connections, legacy streams, held calls), so others keep theirs.
    #[error(
        "this client has {max} {what} open on this data plane already (its share); end one first"
    )]
    ClientAtCap { what: &'static str, max: usize },
    #[error("this connection has its session already: open another connection for a new one")]
    ConnectionHasSession,
    #[error("this connection has {max} requests in flight already; retry when one is answered")]
    ConnectionBusy { max: usize },
    #[error("virtual server `{0}` is no longer served here")]
    ServerGone(String),

    // A request's checks against the protocol, before anything is called.
    /// A method the stateless era (2026-07-28) no longer has.
    #[error("method not found: {0} (not part of protocol version 2026-07-28)")]
    RemovedInEra(String),
    #[error("subscriptions/listen needs params.notifications, an object")]
    ListenWithoutFilter,
    /// A session-era task id that names none of the session's upstreams.
    #[error("unknown task")]
    UnknownSessionTask,

    // A call's way to an upstream.
    #[error("upstream `{0}` is not in this snapshot")]
    NotServed(String),
    #[error("{}", unhealthy_message(.upstream, .why))]
    Unhealthy { upstream: String, why: String },
    #[error("upstream `{upstream}` keeps failing on this gateway; not calling it for another {:.1}s (circuit open)", .left.as_secs_f64())]
    CircuitOpen { upstream: String, left: Duration },
    #[error("upstream `{upstream}` is {}", crate::backends::no_caller_message(*.kind))]
    KindNotCalled {
        upstream: String,
        kind: Option<UpstreamKind>,
    },
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
    #[error("upstream `{upstream}` sent an answer larger than {max} bytes")]
    AnswerTooLarge { upstream: String, max: usize },
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
    #[error("the request body did not arrive within {after:?}")]
    BodyTimeout { after: Duration },
    #[error("a pass-through server with authorization rules, argument limits or rate limits reads each request, and takes at most {limit} bytes")]
    PassThroughTooLarge { limit: usize },
    #[error("pass-through to `{upstream}`: {why}")]
    PassThroughFailed { upstream: String, why: String },
    #[error("this stream was opened by another principal")]
    OtherPrincipal,
    /// A call's stream that cannot be resumed (with why).
    #[error("{0}")]
    Unresumable(String),

    // Tasks and answers relayed to upstreams.
    #[error("too many tasks are open on this data plane")]
    TooManyTasks,
    #[error("upstream `{0}` opened no session")]
    NoSessionOpened(String),
    #[error("upstream `{0}` created a task without a taskId")]
    TaskWithoutId(String),
    #[error("upstream `{0}` answered neither a result nor an error")]
    NeitherResultNorError(String),
    /// A parameter a request needs (named with its type).
    #[error("{0} is required")]
    MissingParam(&'static str),
    #[error("unknown task `{0}`")]
    UnknownTask(String),
    #[error("the upstream of task `{task}` (`{upstream}`) is not in this snapshot")]
    TaskUpstreamGone { task: String, upstream: String },
    /// A client's answer to a question of an upstream the snapshot no longer has.
    #[error("upstream `{0}` is not in this snapshot")]
    AnswerForUnknown(String),
    #[error("could not deliver the answer to upstream `{upstream}`: {source}")]
    AnswerNotRelayed {
        upstream: String,
        source: UpstreamError,
    },
}

/// What a client is told when it calls an upstream the health checks found down.
pub(crate) fn unhealthy_message(upstream: &str, why: &str) -> String {
    if why.is_empty() {
        format!("upstream `{upstream}` is unhealthy; failing fast until it recovers")
    } else {
        format!("upstream `{upstream}` is unhealthy ({why}); failing fast until it recovers")
    }
}

impl GatewayError {
    /// An answer from `upstream` that could not be read.
    pub(crate) fn of_answer(upstream: &str, e: AnswerError) -> GatewayError {
        let upstream = upstream.to_string();
        match e {
            AnswerError::InvalidJson(source) => GatewayError::InvalidJson { upstream, source },
            AnswerError::BrokeOff(why) => GatewayError::BrokeOff { upstream, why },
            AnswerError::TooLarge { max } => GatewayError::AnswerTooLarge { upstream, max },
        }
    }

    /// The JSON-RPC error the client gets. Errors about an upstream name it in `data`,
    /// except where a stream already carried that upstream's events.
    pub(crate) fn rpc(&self) -> RpcError {
        let upstream = match self {
            GatewayError::NotServed(u) | GatewayError::NeitherResultNorError(u) => Some(u),
            GatewayError::Unhealthy { upstream, .. }
            | GatewayError::CircuitOpen { upstream, .. }
            | GatewayError::KindNotCalled { upstream, .. }
            | GatewayError::Failed { upstream, .. }
            | GatewayError::InvalidJson { upstream, .. }
            | GatewayError::BrokeOff { upstream, .. }
            | GatewayError::AnswerTooLarge { upstream, .. }
            | GatewayError::Silent { upstream, .. } => Some(upstream),
            _ => None,
        };
        use GatewayError as E;
        let code = match self {
            E::RemovedInEra(_) => jsonrpc::METHOD_NOT_FOUND,
            E::NoHeldCall(_)
            | E::ListenWithoutFilter
            | E::UnknownSessionTask
            | E::MissingParam(_)
            | E::UnknownTask(_)
            | E::TaskUpstreamGone { .. } => jsonrpc::INVALID_PARAMS,
            E::UnknownServer(_)
            | E::NoServerStream
            | E::MethodNotAllowed
            | E::MissingSession
            | E::UnknownSession
            | E::SessionExpired
            | E::SessionEnded
            | E::SessionOfOther
            | E::NotJson
            | E::NotAcceptable
            | E::TooDeep { .. }
            | E::OriginRefused(_)
            | E::UnknownLegacyClient
            | E::UpgradeRefused { .. }
            | E::ConnectionHasSession
            | E::ServerGone(_)
            | E::AnswerForUnknown(_)
            | E::BodyTooLarge { .. }
            | E::BodyTimeout { .. }
            | E::PassThroughTooLarge { .. }
            | E::OtherPrincipal
            | E::Unresumable(_) => jsonrpc::INVALID_REQUEST,
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
    pub(crate) fn status(&self, stateless: bool) -> u16 {
        use GatewayError as E;
        match self {
            E::NoServerStream | E::MethodNotAllowed => 405,
            E::MissingSession | E::TooDeep { .. } => 400,
            E::UnknownServer(_)
            | E::UnknownSession
            | E::SessionExpired
            | E::SessionEnded
            | E::UnknownLegacyClient
            | E::AnswerForUnknown(_) => 404,
            E::NotJson => 415,
            E::NotAcceptable => 406,
            E::OriginRefused(_) => 403,
            E::UpgradeRefused { status, .. } => *status,
            E::TooManyWebSockets | E::TooManyLegacyStreams | E::TooManyStreams => 503,
            E::ClientAtCap { .. } => 429,
            E::AnswerNotRelayed { .. } => 502,
            GatewayError::NoHeldCall(_) => 400,
            GatewayError::BodyTooLarge { .. } | GatewayError::PassThroughTooLarge { .. } => 413,
            GatewayError::BodyTimeout { .. } => 408,
            GatewayError::PassThroughFailed { .. } => 502,
            GatewayError::OtherPrincipal | GatewayError::SessionOfOther => 403,
            GatewayError::Unresumable(_) => 404,
            _ if stateless => crate::mcp::modern::http_status(self.rpc().code),
            _ => 200,
        }
    }

    /// How metrics and the access log count it.
    pub(crate) fn served(&self) -> Served {
        match self {
            GatewayError::NotServed(_)
            | GatewayError::Unhealthy { .. }
            | GatewayError::CircuitOpen { .. }
            | GatewayError::KindNotCalled { .. }
            | GatewayError::Failed { .. }
            | GatewayError::InvalidJson { .. }
            | GatewayError::BrokeOff { .. }
            | GatewayError::AnswerTooLarge { .. }
            | GatewayError::Silent { .. }
            | GatewayError::StreamEnded { .. }
            | GatewayError::AnswerNotDelivered { .. }
            | GatewayError::AnswerNotRelayed { .. }
            | GatewayError::NoSessionOpened(_)
            | GatewayError::TaskWithoutId(_)
            | GatewayError::NeitherResultNorError(_)
            | GatewayError::PassThroughFailed { .. } => Served::UpstreamError,
            GatewayError::OtherPrincipal
            | GatewayError::SessionOfOther
            | GatewayError::OriginRefused(_) => Served::Forbidden,
            _ => Served::Error,
        }
    }

    /// The JSON-RPC response to request `id`.
    pub(crate) fn response(&self, id: &Value) -> Value {
        jsonrpc::error_response(id, &self.rpc())
    }

    /// The whole answer to request `id`, with the HTTP status its era gives the error and
    /// the headers its status needs.
    pub(crate) fn reply(&self, id: &Value, stateless: bool) -> Reply {
        let mut reply = Reply::json(
            self.status(stateless),
            &jsonrpc::error_response(id, &self.rpc()),
        );
        match self {
            GatewayError::NoServerStream | GatewayError::MethodNotAllowed => {
                reply.headers.push(("allow", "POST, DELETE".into()));
            }
            GatewayError::UpgradeRefused { status: 426, .. } => {
                reply.headers.push(("upgrade", "websocket".into()));
            }
            _ => {}
        }
        reply
    }

    /// The answer to a request refused before its id was read.
    pub(crate) fn refusal(&self) -> Reply {
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
        let open = GatewayError::CircuitOpen {
            upstream: "up".into(),
            left: Duration::from_millis(1500),
        };
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

    /// Every refusal made at the edge or around tasks and relayed answers, with the status,
    /// code and words each had when it was written inline where it arises.
    #[test]
    fn refusals_keep_their_status_code_and_words() {
        use GatewayError as E;
        let up = || UpstreamError::Timeout {
            url: "http://u".into(),
            after: Duration::from_secs(1),
        };
        let rows: Vec<(E, u16, i64, &str)> = vec![
            (
                E::UnknownServer("x".into()),
                404,
                jsonrpc::INVALID_REQUEST,
                "no virtual server named `x`",
            ),
            (
                E::NoServerStream,
                405,
                jsonrpc::INVALID_REQUEST,
                "this endpoint offers no server-initiated SSE stream; use POST",
            ),
            (
                E::MethodNotAllowed,
                405,
                jsonrpc::INVALID_REQUEST,
                "method not allowed",
            ),
            (
                E::MissingSession,
                400,
                jsonrpc::INVALID_REQUEST,
                "missing Mcp-Session-Id header: send initialize first",
            ),
            (
                E::UnknownSession,
                404,
                jsonrpc::INVALID_REQUEST,
                "unknown session: initialize a new one",
            ),
            (
                E::SessionExpired,
                404,
                jsonrpc::INVALID_REQUEST,
                "this session has expired: initialize a new one",
            ),
            (
                E::SessionEnded,
                404,
                jsonrpc::INVALID_REQUEST,
                "this session was ended (DELETE): initialize a new one",
            ),
            (
                E::SessionOfOther,
                403,
                jsonrpc::INVALID_REQUEST,
                "this session was opened by another principal: initialize your own",
            ),
            (
                E::NotJson,
                415,
                jsonrpc::INVALID_REQUEST,
                "Content-Type must be application/json",
            ),
            (
                E::NotAcceptable,
                406,
                jsonrpc::INVALID_REQUEST,
                "Accept must include application/json",
            ),
            (
                E::TooDeep { depth: 70, max: 64 },
                400,
                jsonrpc::INVALID_REQUEST,
                "JSON nests 70 levels deep; this server takes at most 64",
            ),
            (
                E::OriginRefused("origin x".into()),
                403,
                jsonrpc::INVALID_REQUEST,
                "origin x",
            ),
            (
                E::UnknownLegacyClient,
                404,
                jsonrpc::INVALID_REQUEST,
                "unknown session: open GET /servers/{name}/sse on this data plane first",
            ),
            (
                E::UpgradeRefused {
                    status: 426,
                    why: "upgrade".into(),
                },
                426,
                jsonrpc::INVALID_REQUEST,
                "upgrade",
            ),
            (
                E::TooManyWebSockets,
                503,
                jsonrpc::INTERNAL_ERROR,
                "too many WebSocket connections are open on this data plane",
            ),
            (
                E::TooManyLegacyStreams,
                503,
                jsonrpc::INTERNAL_ERROR,
                "too many legacy SSE streams are open on this data plane",
            ),
            (
                E::BodyTimeout {
                    after: Duration::from_secs(30),
                },
                408,
                jsonrpc::INVALID_REQUEST,
                "the request body did not arrive within 30s",
            ),
            (
                E::ClientAtCap {
                    what: "WebSocket connections",
                    max: 1000,
                },
                429,
                jsonrpc::INTERNAL_ERROR,
                "this client has 1000 WebSocket connections open on this data plane already (its share); end one first",
            ),
            (
                E::ConnectionHasSession,
                200,
                jsonrpc::INVALID_REQUEST,
                "this connection has its session already: open another connection for a new one",
            ),
            (
                E::ConnectionBusy { max: 64 },
                200,
                jsonrpc::INTERNAL_ERROR,
                "this connection has 64 requests in flight already; retry when one is answered",
            ),
            (
                E::ServerGone("demo".into()),
                200,
                jsonrpc::INVALID_REQUEST,
                "virtual server `demo` is no longer served here",
            ),
            (
                E::AnswerForUnknown("up".into()),
                404,
                jsonrpc::INVALID_REQUEST,
                "upstream `up` is not in this snapshot",
            ),
            (
                E::AnswerNotRelayed {
                    upstream: "up".into(),
                    source: up(),
                },
                502,
                jsonrpc::INTERNAL_ERROR,
                "could not deliver the answer to upstream `up`: http://u did not answer within 1s",
            ),
            (
                E::RemovedInEra("ping".into()),
                200,
                jsonrpc::METHOD_NOT_FOUND,
                "method not found: ping (not part of protocol version 2026-07-28)",
            ),
            (
                E::ListenWithoutFilter,
                200,
                jsonrpc::INVALID_PARAMS,
                "subscriptions/listen needs params.notifications, an object",
            ),
            (
                E::UnknownSessionTask,
                200,
                jsonrpc::INVALID_PARAMS,
                "unknown task",
            ),
            (
                E::TooManyTasks,
                200,
                jsonrpc::INTERNAL_ERROR,
                "too many tasks are open on this data plane",
            ),
            (
                E::NoSessionOpened("up".into()),
                200,
                jsonrpc::INTERNAL_ERROR,
                "upstream `up` opened no session",
            ),
            (
                E::TaskWithoutId("up".into()),
                200,
                jsonrpc::INTERNAL_ERROR,
                "upstream `up` created a task without a taskId",
            ),
            (
                E::MissingParam("params.taskId (a string)"),
                200,
                jsonrpc::INVALID_PARAMS,
                "params.taskId (a string) is required",
            ),
            (
                E::UnknownTask("t".into()),
                200,
                jsonrpc::INVALID_PARAMS,
                "unknown task `t`",
            ),
            (
                E::TaskUpstreamGone {
                    task: "t".into(),
                    upstream: "up".into(),
                },
                200,
                jsonrpc::INVALID_PARAMS,
                "the upstream of task `t` (`up`) is not in this snapshot",
            ),
        ];
        for (e, status, code, words) in rows {
            let rpc = e.rpc();
            assert_eq!(
                (e.status(false), rpc.code, rpc.message.as_str()),
                (status, code, words),
                "{e:?}"
            );
            assert_eq!(
                rpc.data, None,
                "only call failures name their upstream: {e:?}"
            );
            let reply = e.reply(&json!(1), false);
            assert_eq!(reply.error_code, Some(code));
        }
        let has = |e: E, header: &str| e.refusal().headers.iter().any(|(h, _)| *h == header);
        assert!(has(E::NoServerStream, "allow") && has(E::MethodNotAllowed, "allow"));
        assert!(has(
            E::UpgradeRefused {
                status: 426,
                why: String::new()
            },
            "upgrade"
        ));
        assert!(!has(
            E::UpgradeRefused {
                status: 400,
                why: String::new()
            },
            "upgrade"
        ));
        // A stateless client gets the status its era gives the code.
        assert_eq!(E::UnknownTask("t".into()).status(true), 400);
        assert_eq!(E::TooManyTasks.status(true), 200);
        let kind = E::KindNotCalled {
            upstream: "svc".into(),
            kind: Some(UpstreamKind::Grpc),
        };
        assert_eq!(
            kind.to_string(),
            "upstream `svc` is of kind `grpc`, which this data plane cannot call"
        );
        assert_eq!(kind.rpc().data, Some(json!({"upstream": "svc"})));
        assert_eq!(kind.served(), Served::UpstreamError);
    }
}
