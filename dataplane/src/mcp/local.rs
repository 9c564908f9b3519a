//! Methods answered from memory: initialize, ping, the listings (with gateway-minted
//! cursors), and local prompts and resources.

use super::versions;
use crate::jsonrpc::{RpcError, INVALID_PARAMS, METHOD_NOT_FOUND, RESOURCE_NOT_FOUND};
use crate::policy::auth::Principal;
use crate::policy::authz::Target;
use crate::routes::ServerView;
use base64::Engine;
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::collections::BTreeMap;
use switchboard_config::kinds::prompt::{PromptSpec, Role};

/// Items per page of a listing.
pub const PAGE_SIZE: usize = 100;

/// Answers `method` for `server`, or says who else must (Err with -32601 when nobody).
/// Listings show `caller` only what the server's authorization rules let it use.
pub fn answer(
    server: &ServerView,
    method: &str,
    params: &Value,
    caller: &Principal,
) -> Result<Value, RpcError> {
    match method {
        "initialize" => Ok(initialize(server, params)),
        "server/discover" => Ok(discover(server)),
        "ping" => Ok(json!({})),
        "tools/list" => {
            let items = server.tools.iter().map(Cow::Borrowed).collect();
            let items = visible(server, caller, items, "name", Kind::Tool);
            page(server, "tools", items, params)
        }
        "prompts/list" => {
            let items = server
                .prompts
                .iter()
                .map(|(n, p)| Cow::Owned(prompt_entry(n, p)))
                .chain(server.upstream_prompts.iter().map(Cow::Borrowed))
                .collect();
            let items = visible(server, caller, items, "name", Kind::Prompt);
            page(server, "prompts", items, params)
        }
        "resources/list" => {
            let items = server
                .resources
                .values()
                .map(|r| {
                    let mut e = json!({"uri": r.uri, "name": r.title.clone().unwrap_or_else(|| r.uri.clone())});
                    if let Some(t) = &r.title {
                        e["title"] = json!(t);
                    }
                    if let Some(d) = &r.description {
                        e["description"] = json!(d);
                    }
                    if let Some(m) = &r.mime_type {
                        e["mimeType"] = json!(m);
                    }
                    Cow::Owned(e)
                })
                .chain(server.upstream_resources.iter().map(Cow::Borrowed))
                .collect();
            let items = visible(server, caller, items, "uri", Kind::Resource);
            page(server, "resources", items, params)
        }
        "resources/templates/list" => {
            let items = server
                .resource_templates
                .iter()
                .map(|(t, _)| Cow::Borrowed(t))
                .collect();
            page(server, "resourceTemplates", items, params)
        }
        "prompts/get" => get_prompt(server, params),
        "resources/read" => read_resource(server, params),
        "resources/subscribe" | "resources/unsubscribe" => {
            // Local resources change only with the snapshot; subscribing is allowed and
            // costs nothing. Upstream resources are routed before this.
            read_resource(server, params).map(|_| json!({}))
        }
        "tools/call" => {
            let name = params.get("name").and_then(Value::as_str).unwrap_or("");
            Err(RpcError::invalid_params(format!("unknown tool: {name}")))
        }
        "logging/setLevel" => Ok(json!({})),
        "completion/complete" => Ok(json!({"completion": {"values": [], "hasMore": false}})),
        other => Err(RpcError::new(
            METHOD_NOT_FOUND,
            format!("method not found: {other}"),
        )),
    }
}

/// What kind of item a listing holds.
#[derive(Clone, Copy)]
enum Kind {
    Tool,
    Prompt,
    Resource,
}

/// The items `caller` may use.
fn visible<'a>(
    server: &ServerView,
    caller: &Principal,
    items: Vec<Cow<'a, Value>>,
    key: &str,
    kind: Kind,
) -> Vec<Cow<'a, Value>> {
    if server.authz.is_open() {
        return items;
    }
    items
        .into_iter()
        .filter(|item| {
            let name = item.get(key).and_then(Value::as_str).unwrap_or("");
            let target = match kind {
                Kind::Tool => Target::Tool(name),
                Kind::Prompt => Target::Prompt(name),
                Kind::Resource => Target::Resource(name),
            };
            server.authz.shows(caller, target)
        })
        .collect()
}

/// What every virtual server offers, in both eras.
fn capabilities() -> Value {
    // list_changed notifications go to sessions that keep a GET stream open.
    json!({
        "tools": {"listChanged": true},
        "prompts": {"listChanged": true},
        "resources": {"listChanged": true, "subscribe": true},
        "logging": {},
        "completions": {},
    })
}

/// The stateless era's replacement for `initialize`; it names the tasks extension when a
/// tool of the server runs as a task upstream (the gateway translates those tasks).
fn discover(server: &ServerView) -> Value {
    let mut capabilities = capabilities();
    if runs_tasks(server) {
        capabilities["extensions"] = json!({super::modern::TASKS_EXTENSION: {}});
    }
    let mut result = json!({
        "supportedVersions": versions::MODERN,
        "capabilities": capabilities,
    });
    if let Some(d) = &server.description {
        result["instructions"] = json!(d);
    }
    result
}

/// Whether a tool of `server` runs as a task upstream.
fn runs_tasks(server: &ServerView) -> bool {
    server
        .tool_routes
        .values()
        .any(|r| r.task_support != crate::routes::TaskSupport::Forbidden)
}

fn initialize(server: &ServerView, params: &Value) -> Value {
    let requested = params.get("protocolVersion").and_then(Value::as_str);
    let mut capabilities = capabilities();
    if runs_tasks(server) {
        // The session era's tasks, relayed with their ids rewritten (see `mcp::relay`).
        capabilities["tasks"] =
            json!({"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}});
    }
    let mut result = json!({
        "protocolVersion": versions::negotiate(requested),
        "capabilities": capabilities,
        "serverInfo": super::modern::server_info(&server.name),
    });
    if let Some(d) = &server.description {
        result["instructions"] = json!(d);
    }
    result
}

fn prompt_entry(name: &str, p: &PromptSpec) -> Value {
    let mut e = json!({"name": name});
    if let Some(t) = &p.title {
        e["title"] = json!(t);
    }
    if let Some(d) = &p.description {
        e["description"] = json!(d);
    }
    if !p.arguments.is_empty() {
        e["arguments"] = Value::Array(
            p.arguments
                .iter()
                .map(|a| {
                    let mut arg = json!({"name": a.name, "required": a.required});
                    if let Some(d) = &a.description {
                        arg["description"] = json!(d);
                    }
                    arg
                })
                .collect(),
        );
    }
    e
}

/// Cursors encode the snapshot version and an offset, so a cursor from an older snapshot
/// is refused instead of silently skipping or repeating items.
fn cursor(version: &str, offset: usize) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{version}:{offset}"))
}

fn offset_of(server: &ServerView, params: &Value) -> Result<usize, RpcError> {
    let Some(c) = params.get("cursor") else {
        return Ok(0);
    };
    let invalid =
        || RpcError::invalid_params("invalid or expired cursor; list again from the start");
    let c = c.as_str().ok_or_else(invalid)?;
    let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .map_err(|_| invalid())?;
    let text = String::from_utf8(decoded).map_err(|_| invalid())?;
    let (version, offset) = text.rsplit_once(':').ok_or_else(invalid)?;
    if version != server.version {
        return Err(invalid());
    }
    offset.parse().map_err(|_| invalid())
}

/// One page of `items`; only the page's items are copied (listings can be long, and are
/// asked for on every session).
fn page(
    server: &ServerView,
    key: &str,
    items: Vec<Cow<'_, Value>>,
    params: &Value,
) -> Result<Value, RpcError> {
    let offset = offset_of(server, params)?;
    if offset > items.len() {
        return Err(RpcError::invalid_params(
            "invalid or expired cursor; list again from the start",
        ));
    }
    let end = (offset + PAGE_SIZE).min(items.len());
    let mut result = Map::new();
    let page = items[offset..end]
        .iter()
        .map(|v| v.as_ref().clone())
        .collect();
    result.insert(key.to_string(), Value::Array(page));
    if end < items.len() {
        result.insert("nextCursor".into(), json!(cursor(&server.version, end)));
    }
    Ok(Value::Object(result))
}

fn get_prompt(server: &ServerView, params: &Value) -> Result<Value, RpcError> {
    let name = params
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::invalid_params("prompts/get needs a string `name`"))?;
    let prompt = server
        .prompts
        .get(name)
        .ok_or_else(|| RpcError::invalid_params(format!("unknown prompt: {name}")))?;
    let args = match params.get("arguments") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(RpcError::invalid_params("`arguments` must be an object")),
    };
    for a in &prompt.arguments {
        if a.required && !args.contains_key(&a.name) {
            return Err(RpcError::invalid_params(format!(
                "prompt `{name}` needs argument `{}`",
                a.name
            )));
        }
    }
    // MCP prompt arguments are strings; anything else is passed as its JSON text, and a
    // missing optional argument is `none` (so `{{ x or "default" }}` works).
    let mut context: BTreeMap<String, minijinja::Value> = BTreeMap::new();
    for a in &prompt.arguments {
        let v = match args.get(&a.name) {
            None | Some(Value::Null) => minijinja::Value::from(()),
            Some(Value::String(s)) => minijinja::Value::from(s.clone()),
            Some(other) => minijinja::Value::from(other.to_string()),
        };
        context.insert(a.name.clone(), v);
    }
    let env = minijinja::Environment::new();
    let render = |template: &str| {
        env.render_str(template, context.clone()).map_err(|e| {
            RpcError::new(
                INVALID_PARAMS,
                format!("prompt `{name}` did not render: {e}"),
            )
        })
    };
    let mut messages = Vec::new();
    if let Some(t) = &prompt.template {
        messages.push(message(Role::User, render(t)?));
    }
    for m in prompt.messages.iter().flatten() {
        messages.push(message(m.role, render(&m.template)?));
    }
    let mut result = json!({"messages": messages});
    if let Some(d) = &prompt.description {
        result["description"] = json!(d);
    }
    Ok(result)
}

fn message(role: Role, text: String) -> Value {
    let role = match role {
        Role::User => "user",
        Role::Assistant => "assistant",
    };
    json!({"role": role, "content": {"type": "text", "text": text}})
}

fn read_resource(server: &ServerView, params: &Value) -> Result<Value, RpcError> {
    let uri = params
        .get("uri")
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::invalid_params("resources/read needs a string `uri`"))?;
    let r = server.resources.get(uri).ok_or_else(|| RpcError {
        code: RESOURCE_NOT_FOUND,
        message: format!("resource not found: {uri}"),
        data: Some(json!({"uri": uri})),
    })?;
    let mut content = json!({"uri": r.uri});
    if let Some(m) = &r.mime_type {
        content["mimeType"] = json!(m);
    }
    match (&r.text, &r.blob) {
        (Some(t), _) => content["text"] = json!(t),
        (None, Some(b)) => content["blob"] = json!(b.trim()),
        (None, None) => content["text"] = json!(""),
    }
    Ok(json!({"contents": [content]}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::Routes;

    fn answer(server: &ServerView, method: &str, params: &Value) -> Result<Value, RpcError> {
        super::answer(server, method, params, &Principal::anonymous())
    }
    use switchboard_config::{load_sources, NodeGroup, Snapshot, Source};

    fn demo() -> std::sync::Arc<ServerView> {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/quickstart.yaml"
        ))
        .expect("quickstart");
        let set = load_sources(&[Source {
            name: "q.yaml".into(),
            text,
        }])
        .expect("valid");
        let snap = Snapshot::build(&set, &NodeGroup::default(), &Default::default());
        Routes::compile(&snap)
            .expect("compiles")
            .server("demo")
            .expect("demo")
    }

    #[test]
    fn initialize_negotiates_and_describes() {
        let r = answer(
            &demo(),
            "initialize",
            &json!({"protocolVersion": "2025-03-26"}),
        )
        .expect("ok");
        assert_eq!(r["protocolVersion"], "2025-03-26");
        assert_eq!(r["serverInfo"]["name"], "switchboard/demo");
        assert!(r["capabilities"]["prompts"].is_object());
    }

    #[test]
    fn prompts_render_and_check_arguments() {
        let s = demo();
        let list = answer(&s, "prompts/list", &json!({})).expect("list");
        assert_eq!(list["prompts"][0]["name"], "summarize");
        assert_eq!(list["prompts"][0]["arguments"][0]["required"], true);
        let got = answer(
            &s,
            "prompts/get",
            &json!({"name": "summarize", "arguments": {"text": "Rust is fast."}}),
        )
        .expect("get");
        let text = got["messages"][0]["content"]["text"]
            .as_str()
            .expect("text");
        assert!(
            text.contains("a general reader") && text.contains("Rust is fast."),
            "{text}"
        );
        let e = answer(&s, "prompts/get", &json!({"name": "summarize"})).expect_err("missing arg");
        assert_eq!(e.code, INVALID_PARAMS);
        assert!(e.message.contains("needs argument `text`"));
        let e = answer(&s, "prompts/get", &json!({"name": "nope"})).expect_err("unknown");
        assert_eq!(e.message, "unknown prompt: nope");
    }

    #[test]
    fn resources_read_and_not_found() {
        let s = demo();
        let r = answer(
            &s,
            "resources/read",
            &json!({"uri": "docs://switchboard/handbook"}),
        )
        .expect("read");
        assert!(r["contents"][0]["text"]
            .as_str()
            .expect("text")
            .starts_with("# Handbook"));
        let e = answer(&s, "resources/read", &json!({"uri": "docs://nope"})).expect_err("missing");
        assert_eq!(e.code, RESOURCE_NOT_FOUND);
    }

    #[test]
    fn pagination_with_gateway_cursors() {
        let mut view = ServerView {
            name: "big".into(),
            version: "v1".into(),
            ..ServerView::default()
        };
        view.tools = (0..250).map(|i| json!({"name": format!("t{i}")})).collect();
        let p1 = answer(&view, "tools/list", &json!({})).expect("page 1");
        assert_eq!(p1["tools"].as_array().map(Vec::len), Some(100));
        let c = p1["nextCursor"].clone();
        let p2 = answer(&view, "tools/list", &json!({"cursor": c})).expect("page 2");
        assert_eq!(p2["tools"][0]["name"], "t100");
        let p3 = answer(&view, "tools/list", &json!({"cursor": p2["nextCursor"]})).expect("page 3");
        assert_eq!(p3["tools"].as_array().map(Vec::len), Some(50));
        assert!(p3.get("nextCursor").is_none());
        // A cursor from another snapshot version, or garbage, is refused.
        view.version = "v2".into();
        let e = answer(&view, "tools/list", &json!({"cursor": c})).expect_err("stale");
        assert_eq!(e.code, INVALID_PARAMS);
        assert!(answer(&view, "tools/list", &json!({"cursor": "%%%"})).is_err());
    }

    #[test]
    fn unknown_tool_and_method() {
        let s = demo();
        let e = answer(&s, "tools/call", &json!({"name": "nope"})).expect_err("unknown tool");
        assert_eq!(
            (e.code, e.message.as_str()),
            (INVALID_PARAMS, "unknown tool: nope")
        );
        let e = answer(&s, "does/not/exist", &json!({})).expect_err("unknown method");
        assert_eq!(e.code, METHOD_NOT_FOUND);
    }
}
