//! Hostile upstreams, as real HTTP servers on loopback. Redirects never carry an upstream's
//! credentials to another server. What an upstream sends is read within bounds: an
//! oversized body (with and without a length), an SSE event that never ends and an error
//! body that never finishes each fail cleanly and soon instead of growing or hanging.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{any, get, post};
use axum::Router;
use bytes::Bytes;
use futures::StreamExt;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_config::kinds::upstream::{McpTransport, McpUpstream};
use switchboard_upstream::body::{
    error_text, read_bounded, BodyError, ERROR_BODY_WAIT, MAX_ANSWER_BYTES, MAX_ERROR_BODY_BYTES,
};
use switchboard_upstream::{json_events, Credentials, McpHttp, UpstreamError};

/// Serves `app` on a loopback port; returns its base URL.
async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_redirect_to_another_origin_is_not_followed_and_leaks_nothing() {
    // The other server notes every Authorization header it is sent.
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let noted = seen.clone();
    let elsewhere = serve(Router::new().route(
        "/mcp",
        any(move |headers: HeaderMap| {
            let noted = noted.clone();
            async move {
                if let Some(v) = headers.get("authorization") {
                    noted
                        .lock()
                        .expect("lock")
                        .push(v.to_str().unwrap_or("").into());
                }
                StatusCode::OK
            }
        }),
    ))
    .await;
    let target = format!("{elsewhere}/mcp");
    let upstream = serve(Router::new().route(
        "/mcp",
        post(move || {
            let target = target.clone();
            async move { (StatusCode::TEMPORARY_REDIRECT, [("location", target)]) }
        }),
    ))
    .await;

    let creds = Credentials::from_headers(&BTreeMap::from([(
        "authorization".to_string(),
        "Bearer upstream-secret".to_string(),
    )]));
    let spec = McpUpstream {
        url: format!("{upstream}/mcp"),
        transport: McpTransport::StreamableHttp,
        protocol_version: None,
    };
    let err = McpHttp::new(Duration::from_secs(2))
        .initialize(&spec, &creds, Duration::from_secs(5))
        .await
        .expect_err("a redirect to another origin fails");
    assert!(err.to_string().contains("another origin"), "{err}");
    assert!(
        seen.lock().expect("lock").is_empty(),
        "the token reached the other server"
    );
}

/// 1 MiB chunks of `x`, `n` of them, then (when `hang`) nothing more and no end.
fn chunks(n: usize, hang: bool) -> Body {
    let chunk = Bytes::from(vec![b'x'; 1 << 20]);
    let body = futures::stream::iter((0..n).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    if hang {
        Body::from_stream(body.chain(futures::stream::pending()))
    } else {
        Body::from_stream(body)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_answers_endless_events_and_stalled_error_bodies_are_cut_off() {
    let over = MAX_ANSWER_BYTES / (1 << 20) + 1;
    let base = serve(
        Router::new()
            .route(
                "/sized",
                get(|| async { vec![b' '; MAX_ANSWER_BYTES + 1].into_response() }),
            )
            .route("/chunked", get(move || async move { chunks(over, false) }))
            .route(
                "/endless-event",
                get(move || async move {
                    let head = futures::stream::once(async {
                        Ok::<_, std::io::Error>(Bytes::from_static(b"data: "))
                    });
                    let rest = chunks(over, true)
                        .into_data_stream()
                        .map(|c| c.map_err(std::io::Error::other));
                    (
                        [("content-type", "text/event-stream")],
                        Body::from_stream(head.chain(rest)),
                    )
                }),
            )
            .route(
                "/stalled-error",
                get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, chunks(1, true)) }),
            ),
    )
    .await;
    let http = reqwest::Client::new();
    let fetch = |path: &str| http.get(format!("{base}{path}")).send();

    let sized = read_bounded(fetch("/sized").await.expect("GET"), MAX_ANSWER_BYTES).await;
    assert_eq!(
        sized,
        Err(BodyError::TooLarge {
            max: MAX_ANSWER_BYTES
        })
    );
    let chunked = read_bounded(fetch("/chunked").await.expect("GET"), MAX_ANSWER_BYTES).await;
    assert_eq!(
        chunked,
        Err(BodyError::TooLarge {
            max: MAX_ANSWER_BYTES
        })
    );

    let resp = fetch("/endless-event").await.expect("GET");
    let mut events = Box::pin(json_events(resp.bytes_stream()));
    let first = tokio::time::timeout(Duration::from_secs(20), events.next())
        .await
        .expect("the event is cut off, not waited for");
    assert!(
        matches!(&first, Some(Err(e)) if e.contains("larger than")),
        "{first:?}"
    );
    assert!(events.next().await.is_none(), "the stream ends there");

    let text = error_text(fetch("/stalled-error").await.expect("GET")).await;
    assert_eq!(text.len(), MAX_ERROR_BODY_BYTES, "the start of it, bounded");

    // Through the MCP client: an error body that stops coming ends the call with its
    // status and what came, once ERROR_BODY_WAIT is over.
    let mcp_base = serve(Router::new().route(
        "/mcp",
        post(|| async {
            let said = futures::stream::once(async {
                Ok::<_, std::io::Error>(Bytes::from_static(b"upstream down"))
            });
            (
                StatusCode::BAD_GATEWAY,
                Body::from_stream(said.chain(futures::stream::pending())),
            )
        }),
    ))
    .await;
    let started = std::time::Instant::now();
    let spec = McpUpstream {
        url: format!("{mcp_base}/mcp"),
        transport: McpTransport::StreamableHttp,
        protocol_version: None,
    };
    let mcp = McpHttp::new(Duration::from_secs(2));
    let refused = tokio::time::timeout(
        Duration::from_secs(20),
        mcp.initialize(&spec, &Credentials::default(), Duration::from_secs(10)),
    )
    .await
    .expect("no hang");
    assert!(
        matches!(&refused, Err(UpstreamError::Status { status: 502, body, .. }) if body == "upstream down"),
        "{:?}",
        refused.err()
    );
    assert!(started.elapsed() >= ERROR_BODY_WAIT);
    assert!(started.elapsed() < ERROR_BODY_WAIT + Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_fetched_anew_and_concurrent_requests_fetch_it_once() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use switchboard_config::kinds::upstream::OAuth2Grant;
    // The token endpoint hands out t1, t2, ... and counts the fetches; the upstream takes
    // only t2 (t1 was revoked).
    let fetched = Arc::new(AtomicUsize::new(0));
    let count = fetched.clone();
    let issuer = serve(Router::new().route(
        "/token",
        post(move || {
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                // Slow enough that every concurrent request arrives while it runs.
                tokio::time::sleep(Duration::from_millis(200)).await;
                axum::Json(serde_json::json!({
                    "access_token": format!("t{n}"), "token_type": "Bearer", "expires_in": 3600}))
            }
        }),
    ))
    .await;
    let upstream = serve(Router::new().route(
        "/mcp",
        post(|headers: HeaderMap| async move {
            match headers.get("authorization").and_then(|v| v.to_str().ok()) {
                Some("Bearer t2") => (StatusCode::OK, "{}"),
                _ => (StatusCode::UNAUTHORIZED, "token revoked"),
            }
        }),
    ))
    .await;
    let creds = Credentials {
        oauth2: Some(OAuth2Grant {
            token_url: format!("{issuer}/token"),
            // A grant of its own: the token cache is per process.
            client_id: format!("single-flight-{}", std::process::id()),
            client_secret: "secret".into(),
            scopes: vec![],
            audience: None,
        }),
        ..Credentials::default()
    };
    let http = reqwest::Client::new();
    let all = futures::future::join_all((0..10).map(|_| creds.current(&http))).await;
    assert!(all.iter().all(|h| h
        .as_ref()
        .ok()
        .and_then(|h| h.get("authorization"))
        .map(String::as_str)
        == Some("Bearer t1")));
    assert_eq!(
        fetched.load(Ordering::SeqCst),
        1,
        "one fetch for ten requests"
    );

    let spec = McpUpstream {
        url: format!("{upstream}/mcp"),
        transport: McpTransport::StreamableHttp,
        protocol_version: None,
    };
    let mcp = McpHttp::new(Duration::from_secs(2));
    let refused = mcp
        .initialize(&spec, &creds, Duration::from_secs(10))
        .await
        .expect_err("t1 is refused");
    assert!(
        matches!(refused, UpstreamError::Status { status: 401, .. }),
        "{refused}"
    );
    let now = creds.current(&http).await.expect("a new token");
    assert_eq!(
        now.get("authorization").map(String::as_str),
        Some("Bearer t2")
    );
    assert_eq!(
        fetched.load(Ordering::SeqCst),
        2,
        "fetched again after the refusal"
    );
}
