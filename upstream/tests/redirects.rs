//! Redirects never carry an upstream's credentials to another server: two real HTTP servers
//! on loopback, one redirecting to the other.

use axum::http::{HeaderMap, StatusCode};
use axum::routing::{any, post};
use axum::Router;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_config::kinds::upstream::{McpTransport, McpUpstream};
use switchboard_upstream::{Credentials, McpHttp};

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
