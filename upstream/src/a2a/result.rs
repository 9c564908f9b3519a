//! A2A answers (a task, or a message, in the 1.0 or 0.3 shape) as MCP tool results:
//! text parts as text, data parts as JSON text (one data object also as
//! `structuredContent`), files as embedded resources or resource links; a task that
//! failed, was rejected or cancelled, or needs input, as an `isError` result.

use serde_json::{json, Value};

/// The task in an answer (1.0 wraps it as `{"task": …}`; 0.3 sends it with `kind: task`).
pub(super) fn task_of(answer: &Value) -> Option<Value> {
    if let Some(t) = answer.get("task") {
        return Some(t.clone());
    }
    let is_task = answer.get("kind").and_then(Value::as_str) == Some("task")
        || (answer.get("status").is_some() && answer.get("id").is_some());
    is_task.then(|| answer.clone())
}

/// A task state without its era's spelling: `TASK_STATE_COMPLETED` and `completed` are
/// both `completed`.
pub(super) fn state(task: &Value) -> String {
    let raw = task
        .pointer("/status/state")
        .and_then(Value::as_str)
        .unwrap_or("");
    raw.trim_start_matches("TASK_STATE_")
        .to_ascii_lowercase()
        .replace('_', "-")
}

/// Whether the task has ended (or waits on the client, which an MCP call cannot give).
pub(super) fn is_final(task: &Value) -> bool {
    matches!(
        state(task).as_str(),
        "completed"
            | "failed"
            | "canceled"
            | "cancelled"
            | "rejected"
            | "input-required"
            | "auth-required"
    )
}

/// MCP content for A2A parts (either era's shape).
pub(super) fn content(parts: &[Value], out: &mut Vec<Value>, data: &mut Vec<Value>) {
    for part in parts {
        if let Some(text) = part.get("text").and_then(Value::as_str) {
            out.push(json!({"type": "text", "text": text}));
        } else if let Some(d) = part.get("data") {
            out.push(json!({"type": "text", "text": d.to_string()}));
            data.push(d.clone());
        } else {
            // 1.0: url / raw beside mediaType; 0.3: file { uri | bytes, mimeType, name }.
            let file = part.get("file").unwrap_or(part);
            let mime = file
                .get("mediaType")
                .or_else(|| file.get("mimeType"))
                .and_then(Value::as_str)
                .unwrap_or("application/octet-stream");
            let name = file
                .get("filename")
                .or_else(|| file.get("name"))
                .and_then(Value::as_str)
                .unwrap_or("file");
            if let Some(uri) = file.get("url").or_else(|| file.get("uri")) {
                out.push(
                    json!({"type": "resource_link", "uri": uri, "name": name, "mimeType": mime}),
                );
            } else if let Some(blob) = file.get("raw").or_else(|| file.get("bytes")) {
                out.push(json!({"type": "resource", "resource": {"uri": format!("a2a:file/{name}"), "mimeType": mime, "blob": blob}}));
            }
        }
    }
}

/// The tool result for an agent's final answer.
pub(super) fn tool_result(answer: &Value) -> Value {
    let mut out = Vec::new();
    let mut data = Vec::new();
    let Some(task) = task_of(answer) else {
        // A plain message.
        let msg = answer.get("message").unwrap_or(answer);
        let parts = msg
            .get("parts")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        content(&parts, &mut out, &mut data);
        return finish(out, data, false);
    };
    let state = state(&task);
    for artifact in task
        .get("artifacts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let parts = artifact
            .get("parts")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        content(&parts, &mut out, &mut data);
    }
    let status_parts = task
        .pointer("/status/message/parts")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if state == "completed" {
        if out.is_empty() {
            content(&status_parts, &mut out, &mut data);
        }
        return finish(out, data, false);
    }
    let mut why = Vec::new();
    let mut ignored = Vec::new();
    content(&status_parts, &mut why, &mut ignored);
    let said: Vec<&str> = why
        .iter()
        .filter_map(|c| c.get("text").and_then(Value::as_str))
        .collect();
    let text = match said.as_slice() {
        [] => format!("the agent's task ended {state}"),
        _ => format!("the agent's task ended {state}: {}", said.join(" ")),
    };
    let mut all = vec![json!({"type": "text", "text": text})];
    all.extend(out);
    finish(all, Vec::new(), true)
}

fn finish(content: Vec<Value>, data: Vec<Value>, is_error: bool) -> Value {
    let mut result = json!({"content": content});
    if is_error {
        result["isError"] = true.into();
    }
    if let [one @ Value::Object(_)] = data.as_slice() {
        result["structuredContent"] = one.clone();
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_of_both_eras_become_results() {
        let v1 = json!({"task": {"id": "t", "status": {"state": "TASK_STATE_COMPLETED"},
            "artifacts": [{"parts": [{"text": "hi"}, {"data": {"n": 1}}]}]}});
        let r = tool_result(&v1);
        assert_eq!(r["content"][0], json!({"type": "text", "text": "hi"}));
        assert_eq!(r["structuredContent"], json!({"n": 1}));
        assert!(r.get("isError").is_none());
        let v03 = json!({"kind": "task", "id": "t", "status": {"state": "failed",
            "message": {"parts": [{"kind": "text", "text": "no luck"}]}}});
        let r = tool_result(&v03);
        assert_eq!(r["isError"], json!(true));
        assert_eq!(
            r["content"][0]["text"],
            json!("the agent's task ended failed: no luck")
        );
        assert!(!is_final(
            &json!({"status": {"state": "TASK_STATE_WORKING"}})
        ));
        assert!(is_final(&json!({"status": {"state": "input-required"}})));
        let file = json!({"message": {"parts": [{"url": "https://x/a.pdf", "mediaType": "application/pdf", "filename": "a.pdf"}]}});
        assert_eq!(
            tool_result(&file)["content"][0]["type"],
            json!("resource_link")
        );
    }
}
