//! A tool's arguments as an HTTP request: `{placeholders}` in the path (each value one
//! percent-encoded segment, never `.` or `..`), mapped query parameters and headers, the
//! body, and what is placed nowhere else as the fields of a JSON object body (POST, PUT,
//! PATCH) or as query parameters (other methods). Then the upstream's credentials.

use crate::backend::CallOptions;
use crate::{Credentials, UpstreamError};
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use switchboard_config::kinds::rest::{HttpMethod, RestCall};

/// A request before credentials.
pub(super) struct Built {
    pub method: HttpMethod,
    pub url: url::Url,
    pub headers: Vec<(String, String)>,
    /// Content type and bytes.
    pub body: Option<(String, Vec<u8>)>,
}

/// An argument as text (query parameters, headers, path segments): strings as they are,
/// numbers and booleans printed, anything else as JSON.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The request for `args` (already checked against the tool's schema).
pub(super) fn build(
    base_url: &str,
    call: &RestCall,
    args: &Map<String, Value>,
) -> Result<Built, String> {
    let mut placed: BTreeSet<&str> = BTreeSet::new();
    let base_url = call.base_url.as_deref().unwrap_or(base_url);
    let mut url = url::Url::parse(base_url).map_err(|e| format!("base URL: {e}"))?;
    {
        let mut segments = url
            .path_segments_mut()
            .map_err(|()| "the base URL cannot take a path".to_string())?;
        segments.pop_if_empty();
        for raw in call.path.split('/').filter(|s| !s.is_empty()) {
            let mut segment = raw.to_string();
            for name in switchboard_config::kinds::rest::placeholders(raw).unwrap_or_default() {
                let value = args
                    .get(name)
                    .filter(|v| !v.is_null())
                    .ok_or_else(|| format!("`{name}` is required (it is part of the path)"))?;
                let value = text(value);
                // The URL parser drops tabs and line breaks from a path, so `.\t.` would be
                // `..` once sent: control characters are refused outright.
                if value.is_empty() || value.chars().any(char::is_control) {
                    return Err(format!(
                        "`{name}` cannot be empty or hold control characters (it is part of the path)"
                    ));
                }
                segment = segment.replace(&format!("{{{name}}}"), &value);
                placed.insert(name);
            }
            if segment == "." || segment == ".." {
                return Err(format!(
                    "the path segment `{raw}` cannot become `{segment}`"
                ));
            }
            segments.push(&segment);
        }
    }
    let mut query: Vec<(String, String)> = Vec::new();
    let mut add_query = |key: &str, v: &Value| match v {
        Value::Null => {}
        Value::Array(items) => {
            for item in items {
                query.push((key.to_string(), text(item)));
            }
        }
        other => query.push((key.to_string(), text(other))),
    };
    for (param, arg) in &call.query {
        if let Some(v) = args.get(arg) {
            add_query(param, v);
        }
        placed.insert(arg);
    }
    let mut headers = Vec::new();
    for (header, arg) in &call.headers {
        placed.insert(arg);
        let Some(v) = args.get(arg).filter(|v| !v.is_null()) else {
            continue;
        };
        let value = text(v);
        if reqwest::header::HeaderValue::from_str(&value).is_err() {
            return Err(format!(
                "`{arg}` cannot be sent as header {header} (control characters)"
            ));
        }
        headers.push((header.clone(), value));
    }
    let content_type = call
        .content_type
        .clone()
        .unwrap_or_else(|| "application/json".to_string());
    let mut body = None;
    if let Some(arg) = &call.body {
        placed.insert(arg);
        if let Some(v) = args.get(arg) {
            body = Some(encode(&content_type, v)?);
        }
    }
    let rest: Map<String, Value> = args
        .iter()
        .filter(|(k, _)| !placed.contains(k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !rest.is_empty() {
        if call.body.is_none() && call.method.takes_body() {
            body = Some(encode(&content_type, &Value::Object(rest))?);
        } else {
            for (k, v) in &rest {
                add_query(k, v);
            }
        }
    }
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    Ok(Built {
        method: call.method,
        url,
        headers,
        body: body.map(|b| (content_type, b)),
    })
}

/// A body in its content type: JSON, or form fields.
fn encode(content_type: &str, v: &Value) -> Result<Vec<u8>, String> {
    if content_type == "application/x-www-form-urlencoded" {
        let Value::Object(fields) = v else {
            return Err("a form body must be an object".into());
        };
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in fields {
            if !v.is_null() {
                form.append_pair(k, &text(v));
            }
        }
        return Ok(form.finish().into_bytes());
    }
    serde_json::to_vec(v).map_err(|e| e.to_string())
}

/// The request with the upstream's credentials (API keys the API wants in the query moved
/// there) and the call's own headers (a client's forwarded token, trace context) on top.
pub(super) async fn prepare(
    http: &reqwest::Client,
    built: Built,
    creds: &Credentials,
    query_credentials: &[String],
    options: &CallOptions,
) -> Result<reqwest::RequestBuilder, UpstreamError> {
    let mut url = built.url;
    let mut sent = Vec::new();
    for (k, v) in creds.current(http).await? {
        // Sent under the API's own spelling: query parameter names are case-sensitive.
        match query_credentials
            .iter()
            .find(|q| q.eq_ignore_ascii_case(&k))
        {
            Some(name) => {
                url.query_pairs_mut().append_pair(name, &v);
            }
            None => sent.push((k, v)),
        }
    }
    let method = reqwest::Method::from_bytes(built.method.as_str().as_bytes())
        .unwrap_or(reqwest::Method::GET);
    // Later sources win: the tool's own headers over the credentials, the call's (a
    // client's forwarded token) over both; one value per header.
    let mut headers: Vec<(String, String)> = Vec::new();
    for (k, v) in sent
        .into_iter()
        .chain(built.headers)
        .chain(options.headers.iter().cloned())
    {
        headers.retain(|(h, _)| !h.eq_ignore_ascii_case(&k));
        headers.push((k, v));
    }
    let mut req = http.request(method, url).header(
        "accept",
        "application/json, text/event-stream;q=0.9, */*;q=0.8",
    );
    for (k, v) in headers {
        req = req.header(k, v);
    }
    if let Some((content_type, bytes)) = built.body {
        req = req.header("content-type", content_type).body(bytes);
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(method: HttpMethod, path: &str) -> RestCall {
        RestCall::new(method, path)
    }

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn arguments_land_in_path_query_headers_and_body() {
        let mut c = call(HttpMethod::Get, "/users/{id}/posts");
        c.query.insert("colour".into(), "color".into());
        c.headers.insert("X-Trace".into(), "trace".into());
        let b = build(
            "http://api.test/v1/",
            &c,
            &args(json!({"id": "a b/c", "color": "red", "trace": 7, "tags": ["x", "y"], "skip": null})),
        )
        .expect("builds");
        assert_eq!(
            b.url.as_str(),
            "http://api.test/v1/users/a%20b%2Fc/posts?colour=red&tags=x&tags=y"
        );
        assert_eq!(b.headers, vec![("X-Trace".to_string(), "7".to_string())]);
        assert!(b.body.is_none());

        let post = call(HttpMethod::Post, "/items");
        let b = build(
            "http://api.test",
            &post,
            &args(json!({"name": "pen", "n": 2})),
        )
        .expect("builds");
        let (ct, body) = b.body.expect("a body");
        assert_eq!(ct, "application/json");
        assert_eq!(
            serde_json::from_slice::<Value>(&body).ok(),
            Some(json!({"name": "pen", "n": 2}))
        );

        let mut whole = call(HttpMethod::Put, "/items/{id}");
        whole.body = Some("item".into());
        let b = build(
            "http://api.test",
            &whole,
            &args(json!({"id": 1, "item": [1, 2], "dry": true})),
        )
        .expect("builds");
        assert_eq!(b.url.as_str(), "http://api.test/items/1?dry=true");
        assert_eq!(b.body.map(|(_, b)| b), Some(b"[1,2]".to_vec()));

        let mut form = call(HttpMethod::Post, "/login");
        form.content_type = Some("application/x-www-form-urlencoded".into());
        let b = build(
            "http://api.test",
            &form,
            &args(json!({"user": "a&b", "n": 1})),
        )
        .expect("builds");
        assert_eq!(b.body.map(|(_, b)| b), Some(b"n=1&user=a%26b".to_vec()));
    }

    #[test]
    fn path_arguments_cannot_escape_their_segment() {
        let c = call(HttpMethod::Get, "/files/{name}");
        for bad in ["..", ".", "", ".\t.", ".\n.", "a\rb"] {
            let err = build("http://api.test", &c, &args(json!({"name": bad})))
                .err()
                .expect("refused");
            assert!(
                err.contains("part of the path") || err.contains("cannot become"),
                "{err}"
            );
        }
        let two = call(HttpMethod::Get, "/files/{a}{b}");
        assert!(build("http://api.test", &two, &args(json!({"a": ".", "b": "."}))).is_err());
        let b =
            build("http://api.test", &c, &args(json!({"name": "../../admin"}))).expect("builds");
        assert_eq!(b.url.as_str(), "http://api.test/files/..%2F..%2Fadmin");
        let err = build("http://api.test", &c, &args(json!({})))
            .err()
            .expect("missing");
        assert!(err.contains("`name` is required"), "{err}");
        let mut h = call(HttpMethod::Get, "/x");
        h.headers.insert("X-A".into(), "a".into());
        assert!(build(
            "http://api.test",
            &h,
            &args(json!({"a": "x\r\nInjected: 1"}))
        )
        .is_err());
    }
}
