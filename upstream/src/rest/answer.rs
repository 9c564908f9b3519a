//! An HTTP answer as a `CallToolResult`: JSON as text plus `structuredContent` (after the
//! tool's jq filter), other text as text, images and audio as such, anything else as an
//! embedded resource with its MIME type; an HTTP error as an `isError` result carrying the
//! status and the start of the body.

use base64::Engine;
use serde_json::{json, Value};
use switchboard_config::jq::Filter;

/// Most of an error body put in a result.
const MAX_ERROR_TEXT: usize = 4 << 10;

/// What came back.
pub(super) struct Http<'a> {
    pub url: &'a str,
    pub status: reqwest::StatusCode,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
}

fn is_json(media_type: &str) -> bool {
    media_type == "application/json" || media_type.ends_with("+json")
}

fn is_text(media_type: &str) -> bool {
    media_type.starts_with("text/")
        || matches!(
            media_type,
            "application/xml" | "application/yaml" | "application/javascript"
        )
        || media_type.ends_with("+xml")
}

fn error_result(text: String) -> Value {
    json!({"content": [{"type": "text", "text": text}], "isError": true})
}

/// The result for `http`; `structured`: the tool declares an output schema.
pub(super) fn result(http: &Http<'_>, filter: Option<&Filter>, structured: bool) -> Value {
    let status = http.status;
    let media_type = http
        .content_type
        .and_then(|t| t.split(';').next())
        .map(|t| t.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if !status.is_success() {
        let body = String::from_utf8_lossy(http.body);
        let mut text: String = body.chars().take(MAX_ERROR_TEXT).collect();
        if text.len() < body.len() {
            text.push('…');
        }
        let reason = status.canonical_reason().unwrap_or("");
        let mut result = error_result(format!("HTTP {} {reason}: {text}", status.as_u16()));
        result["_meta"] = json!({"httpStatus": status.as_u16()});
        return result;
    }
    if http.body.is_empty() {
        let reason = status.canonical_reason().unwrap_or("");
        return json!({"content": [{"type": "text", "text": format!("HTTP {} {reason}", status.as_u16())}]});
    }
    let sniffed_json = media_type.is_empty() && serde_json::from_slice::<Value>(http.body).is_ok();
    if is_json(&media_type) || sniffed_json {
        let value: Value = match serde_json::from_slice(http.body) {
            Ok(v) => v,
            Err(e) => return error_result(format!("the API answered invalid JSON: {e}")),
        };
        let value = match filter {
            Some(f) => match f.run(&value) {
                Ok(v) => v,
                Err(e) => return error_result(format!("the tool's filter `{}`: {e}", f.source())),
            },
            None => value,
        };
        let text = match &value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let mut result = json!({"content": [{"type": "text", "text": text}]});
        match value {
            Value::Object(_) => result["structuredContent"] = value,
            _ if structured => {
                return error_result(format!(
                    "the tool declares an output schema, but the API answered {text:.200}, which is not an object"
                ))
            }
            _ => {}
        }
        return result;
    }
    if is_text(&media_type) || media_type.is_empty() {
        return json!({"content": [{"type": "text", "text": String::from_utf8_lossy(http.body)}]});
    }
    let data = base64::engine::general_purpose::STANDARD.encode(http.body);
    let kind = media_type.split('/').next().unwrap_or("");
    let content = match kind {
        "image" | "audio" => json!({"type": kind, "data": data, "mimeType": media_type}),
        _ => json!({
            "type": "resource",
            "resource": {"uri": http.url, "mimeType": media_type, "blob": data},
        }),
    };
    json!({"content": [content]})
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    fn http<'a>(status: u16, content_type: Option<&'a str>, body: &'a [u8]) -> Http<'a> {
        Http {
            url: "http://api.test/x",
            status: StatusCode::from_u16(status).expect("status"),
            content_type,
            body,
        }
    }

    #[test]
    fn json_answers_are_structured_and_filtered() {
        let r = result(
            &http(200, Some("application/json; charset=utf-8"), br#"{"a":1}"#),
            None,
            true,
        );
        assert_eq!(r["structuredContent"], json!({"a": 1}));
        assert_eq!(r["content"][0]["text"], json!(r#"{"a":1}"#));
        let f = Filter::compile(".a").expect("filter");
        let r = result(
            &http(200, Some("application/json"), br#"{"a":"x"}"#),
            Some(&f),
            false,
        );
        assert_eq!(r["content"][0]["text"], json!("x"));
        assert!(r.get("structuredContent").is_none());
        let r = result(&http(200, Some("application/json"), b"[1]"), None, true);
        assert_eq!(r["isError"], json!(true));
    }

    #[test]
    fn errors_and_other_types_keep_what_the_api_said() {
        let r = result(
            &http(404, Some("application/json"), br#"{"detail":"Not Found"}"#),
            None,
            false,
        );
        assert_eq!(r["isError"], json!(true));
        assert_eq!(
            r["content"][0]["text"],
            json!(r#"HTTP 404 Not Found: {"detail":"Not Found"}"#)
        );
        assert_eq!(r["_meta"]["httpStatus"], json!(404));
        let big = vec![b'x'; 10_000];
        let r = result(&http(500, None, &big), None, false);
        assert!(r["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.len() < 4200));
        let r = result(&http(200, Some("text/html"), b"<p>hi</p>"), None, false);
        assert_eq!(r["content"][0]["text"], json!("<p>hi</p>"));
        let r = result(&http(200, Some("image/png"), b"\x89PNG"), None, false);
        assert_eq!(r["content"][0]["type"], json!("image"));
        assert_eq!(r["content"][0]["mimeType"], json!("image/png"));
        let r = result(&http(200, Some("application/pdf"), b"%PDF"), None, false);
        assert_eq!(
            r["content"][0]["resource"]["mimeType"],
            json!("application/pdf")
        );
        let r = result(&http(204, None, b""), None, false);
        assert_eq!(r["content"][0]["text"], json!("HTTP 204 No Content"));
    }
}
