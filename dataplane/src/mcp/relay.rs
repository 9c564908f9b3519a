//! Requests an upstream sends its client during a call (`sampling/createMessage`,
//! `elicitation/create`, `roots/list`) reach the client with an id that names the upstream,
//! so the client's answer, arriving at any replica, goes back to the right upstream session
//! with the upstream's own id. The client's session says which upstream session that is.

use base64::Engine;
use serde_json::Value;

const PREFIX: &str = "sb1.";

/// `prefix`, the upstream's name, and `original` in base64: an id that names its upstream.
fn tagged(prefix: &str, upstream: &str, original: &[u8]) -> String {
    let original = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(original);
    format!("{prefix}{upstream}.{original}")
}

/// The upstream and the original bytes of an id [`tagged`] with `prefix`.
fn untagged(prefix: &str, id: &str) -> Option<(String, Vec<u8>)> {
    let (upstream, original) = id.strip_prefix(prefix)?.split_once('.')?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(original)
        .ok()?;
    Some((upstream.to_string(), bytes))
}

/// The id the client sees for `upstream`'s request `id`.
pub fn wrap(upstream: &str, id: &Value) -> Value {
    Value::String(tagged(PREFIX, upstream, id.to_string().as_bytes()))
}

/// The upstream and its own id, if `id` came from [`wrap`].
pub fn unwrap(id: &Value) -> Option<(String, Value)> {
    let (upstream, bytes) = untagged(PREFIX, id.as_str()?)?;
    Some((upstream, serde_json::from_slice(&bytes).ok()?))
}

/// Prefix of the task ids session-era clients see.
const TASK_PREFIX: &str = "sbt0.";

/// `_meta` key that ties a message to a task (2025-11-25).
const RELATED_TASK: &str = "io.modelcontextprotocol/related-task";

/// The task id a session-era client sees for `upstream`'s task `id` (its session says
/// which upstream session the task belongs to, as for requests).
pub fn wrap_task(upstream: &str, id: &str) -> String {
    tagged(TASK_PREFIX, upstream, id.as_bytes())
}

/// The upstream and its own task id, if `id` came from [`wrap_task`].
pub fn unwrap_task(id: &str) -> Option<(String, String)> {
    let (upstream, bytes) = untagged(TASK_PREFIX, id)?;
    Some((upstream, String::from_utf8(bytes).ok()?))
}

/// Where a message's `_meta` may be: a request's or notification's, or a result's.
const META: [&str; 2] = ["/params/_meta", "/result/_meta"];

/// The task id of the related-task marker in the `_meta` at `at`, if there is one.
fn related_task<'m>(msg: &'m mut Value, at: &str) -> Option<&'m mut Value> {
    msg.pointer_mut(at)?
        .get_mut(RELATED_TASK)?
        .get_mut("taskId")
}

/// Rewrites the task ids in a message from `upstream` to a session-era client: a created
/// task (`result.task`), a task's own fields (`result` of `tasks/*`, listed tasks, status
/// notifications) and the related-task marker of any message. `tasks_result` says the
/// message answers a `tasks/*` request.
pub fn task_ids_out(upstream: &str, msg: &mut Value, tasks_result: bool) {
    let wrap = |v: &mut Value| {
        if let Some(id) = v.as_str() {
            *v = Value::String(wrap_task(upstream, id));
        }
    };
    for at in META {
        if let Some(id) = related_task(msg, at) {
            wrap(id);
        }
    }
    if msg.get("method").and_then(Value::as_str) == Some("notifications/tasks/status") {
        if let Some(id) = msg.pointer_mut("/params/taskId") {
            wrap(id);
        }
    }
    let Some(result) = msg.get_mut("result") else {
        return;
    };
    if let Some(id) = result.pointer_mut("/task/taskId") {
        wrap(id);
    }
    if tasks_result {
        if let Some(id) = result.get_mut("taskId") {
            wrap(id);
        }
        if let Some(tasks) = result.get_mut("tasks").and_then(Value::as_array_mut) {
            for t in tasks {
                if let Some(id) = t.get_mut("taskId") {
                    wrap(id);
                }
            }
        }
    }
}

/// Puts the upstream's own task id back into the related-task marker of a client's
/// message to it.
pub fn task_ids_in(msg: &mut Value) {
    for at in META {
        if let Some(id) = related_task(msg, at) {
            if let Some((_, original)) = id.as_str().and_then(unwrap_task) {
                *id = Value::String(original);
            }
        }
    }
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

    #[test]
    fn task_ids_are_rewritten_both_ways() {
        let wrapped = wrap_task("up", "t-1");
        assert_eq!(unwrap_task(&wrapped), Some(("up".into(), "t-1".into())));
        assert_eq!(unwrap_task("t-1"), None);
        let meta = json!({"io.modelcontextprotocol/related-task": {"taskId": "t-1"}});
        let mut created = json!({"id": 1, "result": {"task": {"taskId": "t-1"}}});
        task_ids_out("up", &mut created, false);
        assert_eq!(created["result"]["task"]["taskId"], json!(wrapped));
        let mut got = json!({"id": 1, "result": {"taskId": "t-1", "_meta": meta}});
        task_ids_out("up", &mut got, true);
        assert_eq!(got["result"]["taskId"], json!(wrapped));
        assert_eq!(
            got["result"]["_meta"]["io.modelcontextprotocol/related-task"]["taskId"],
            json!(wrapped)
        );
        let mut tool = json!({"id": 1, "result": {"taskId": "mine", "content": []}});
        task_ids_out("up", &mut tool, false);
        assert_eq!(
            tool["result"]["taskId"], "mine",
            "a tool's own fields are left alone"
        );
        let mut note = json!({"method": "notifications/tasks/status", "params": {"taskId": "t-1"}});
        task_ids_out("up", &mut note, false);
        assert_eq!(note["params"]["taskId"], json!(wrapped));
        let mut answer = json!({"id": 3, "result": {"action": "accept", "_meta": {"io.modelcontextprotocol/related-task": {"taskId": wrapped}}}});
        task_ids_in(&mut answer);
        assert_eq!(
            answer["result"]["_meta"]["io.modelcontextprotocol/related-task"]["taskId"],
            "t-1"
        );
    }
}
