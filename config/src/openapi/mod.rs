//! OpenAPI 3.0 and 3.1 documents as tools: one tool per operation, its arguments the
//! operation's path, query and header parameters and its request body, its calls the same
//! [`RestCall`]s as declared REST tools. Pure: the control plane fetches documents, `apply`
//! checks inline ones, `switchboard openapi` prints what a document would become; all
//! three run this. Errors name the place in the document (`paths./pets.get.parameters[0]`).
//!
//! The document is read as JSON values through small serde-free walks rather than a typed
//! model: `oas3` (the maintained typed crate) reads 3.1 only, and schemas must stay raw
//! JSON anyway, since they become the tools' input schemas.

mod schema;

use crate::kinds::rest::{is_tool_name, HttpMethod, RestBindings, RestCall};
use crate::kinds::upstream::OpenApiUpstream;
use schema::Resolver;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// What a document becomes.
#[derive(Debug, Clone, PartialEq)]
pub struct Converted {
    /// The tools as clients list them.
    pub tools: Vec<Value>,
    /// How each is called.
    pub bindings: RestBindings,
    /// `openapi 3.1.0`, for the upstream's health.
    pub version: String,
    /// Operations left out, and why (cookie parameters, bodies of no usable type).
    pub skipped: Vec<String>,
}

/// Why a document cannot be used, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{why}", if at.is_empty() { String::new() } else { format!("at {at}: ") })]
pub struct SpecError {
    /// Dotted path into the document (`paths./pets.get.requestBody`); empty for the whole.
    pub at: String,
    pub why: String,
}

impl SpecError {
    fn new(at: impl Into<String>, why: impl Into<String>) -> SpecError {
        SpecError {
            at: at.into(),
            why: why.into(),
        }
    }
}

/// The HTTP methods an operation may sit under, in the order tools are made.
const METHODS: [(&str, HttpMethod); 6] = [
    ("get", HttpMethod::Get),
    ("put", HttpMethod::Put),
    ("post", HttpMethod::Post),
    ("delete", HttpMethod::Delete),
    ("patch", HttpMethod::Patch),
    ("head", HttpMethod::Head),
];

/// Headers an OpenAPI parameter may not set (the spec says to ignore these).
const IGNORED_HEADERS: [&str; 3] = ["accept", "content-type", "authorization"];

/// Headers only the gateway sets (a parameter naming one would let clients choose them).
const GATEWAY_HEADERS: [&str; 4] = ["host", "content-length", "transfer-encoding", "connection"];

/// Whether `name` is a valid HTTP header name (an RFC 9110 token).
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c))
}

/// Converts `doc` for `api`; `spec_url` resolves relative server URLs.
pub fn convert(
    doc: &Value,
    api: &OpenApiUpstream,
    spec_url: Option<&str>,
) -> Result<Converted, SpecError> {
    let version = match doc.get("openapi").and_then(Value::as_str) {
        Some(v) if v.starts_with("3.0") || v.starts_with("3.1") => v.to_string(),
        Some(v) => {
            return Err(SpecError::new(
                "openapi",
                format!("OpenAPI {v} is not supported: use 3.0 or 3.1"),
            ))
        }
        None if doc.get("swagger").is_some() => {
            return Err(SpecError::new(
                "swagger",
                "Swagger 2.0 is not supported: convert the document to OpenAPI 3 first",
            ))
        }
        None => {
            return Err(SpecError::new(
                "",
                "not an OpenAPI document (no `openapi` version field)",
            ))
        }
    };
    let legacy = version.starts_with("3.0");
    let base_url = base_url(doc, api, spec_url)?;
    let paths = doc
        .get("paths")
        .and_then(Value::as_object)
        .ok_or_else(|| SpecError::new("paths", "the document has no `paths` object"))?;
    let resolver = Resolver::new(doc, legacy);
    let query_credentials = query_credentials(doc);
    let mut out = Converted {
        tools: Vec::new(),
        bindings: RestBindings {
            base_url,
            calls: BTreeMap::new(),
            query_credentials,
        },
        version: format!("openapi {version}"),
        skipped: Vec::new(),
    };
    let mut names = BTreeSet::new();
    for (path, item) in paths {
        let at_path = format!("paths.{path}");
        let item = resolver.follow(item, &at_path)?;
        if !path.starts_with('/') {
            return Err(SpecError::new(at_path, "a path must start with `/`"));
        }
        crate::kinds::rest::placeholders(path).map_err(|e| SpecError::new(&at_path, e))?;
        let shared = item.get("parameters");
        for (key, method) in METHODS {
            let Some(op) = item.get(key) else { continue };
            let at = format!("{at_path}.{key}");
            let tags: Vec<String> = op
                .get("tags")
                .and_then(Value::as_array)
                .map(|t| {
                    t.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let op_id = op.get("operationId").and_then(Value::as_str);
            let included = api.include.is_empty() || api.include.matches(&tags, op_id, path);
            if !included || api.exclude.matches(&tags, op_id, path) {
                continue;
            }
            let skipped = |why: String| format!("{} {path}: {why}", method.as_str());
            let (schema, mut call) = match operation(&resolver, op, shared, method, path, &at)? {
                Ok(made) => made,
                Err(why) => {
                    out.skipped.push(skipped(why));
                    continue;
                }
            };
            // A schema no validator accepts would make a tool that refuses every call.
            if let Err(e) = crate::schema::Schema::compile(&schema) {
                out.skipped.push(skipped(format!("its input schema: {e}")));
                continue;
            }
            // Servers of the operation's own, or of its path, unless the operator chose.
            if api.base_url.is_none() {
                let own = [(op, at.as_str()), (item, at_path.as_str())]
                    .into_iter()
                    .find_map(|(o, w)| o.pointer("/servers/0").map(|s| (s, w)));
                if let Some((server, w)) = own {
                    call.base_url = Some(server_url(server, spec_url, &format!("{w}.servers[0]"))?);
                }
            }
            let name = unique_name(&mut names, op_id, key, path);
            out.tools
                .push(listing(&name, op, method, schema, &resolver, &at)?);
            out.bindings.calls.insert(name, call);
        }
    }
    if out.tools.is_empty() {
        let why = if api.include.is_empty() && api.exclude.is_empty() {
            "the document has no operations that can be tools"
        } else {
            "no operation is left after include and exclude"
        };
        return Err(SpecError::new("paths", why));
    }
    Ok(out)
}

/// The URL calls go to: the override, or the first server (variables at their defaults).
fn base_url(
    doc: &Value,
    api: &OpenApiUpstream,
    spec_url: Option<&str>,
) -> Result<String, SpecError> {
    if let Some(b) = &api.base_url {
        return Ok(b.trim_end_matches('/').to_string());
    }
    match doc.pointer("/servers/0") {
        Some(server) => server_url(server, spec_url, "servers[0]"),
        None => match spec_url {
            // The spec says: no servers means the document's own location.
            Some(u) if !u.starts_with("file:") => origin_of(u),
            _ => Err(SpecError::new(
                "servers",
                "the document names no server: set spec.openapi.baseUrl",
            )),
        },
    }
}

/// A Server Object's URL, its variables at their defaults, made absolute against the
/// document's own URL.
fn server_url(server: &Value, spec_url: Option<&str>, at: &str) -> Result<String, SpecError> {
    let at = format!("{at}.url");
    let raw = server
        .get("url")
        .and_then(Value::as_str)
        .ok_or_else(|| SpecError::new(&at, "a server needs a `url`"))?;
    let mut url = raw.to_string();
    if let Some(vars) = server.get("variables").and_then(Value::as_object) {
        for (name, var) in vars {
            let default = var.get("default").and_then(Value::as_str).unwrap_or("");
            url = url.replace(&format!("{{{name}}}"), default);
        }
    }
    let absolute = match url::Url::parse(&url) {
        Ok(u) => u,
        Err(url::ParseError::RelativeUrlWithoutBase) => {
            let base = spec_url
                .filter(|u| !u.starts_with("file:"))
                .and_then(|u| url::Url::parse(u).ok())
                .ok_or_else(|| {
                    SpecError::new(
                        &at,
                        format!("`{raw}` is relative and there is no document URL to resolve it against: set spec.openapi.baseUrl"),
                    )
                })?;
            base.join(&url)
                .map_err(|e| SpecError::new(&at, format!("cannot resolve `{raw}`: {e}")))?
        }
        Err(e) => return Err(SpecError::new(&at, format!("invalid URL `{raw}`: {e}"))),
    };
    if !matches!(absolute.scheme(), "http" | "https") {
        return Err(SpecError::new(
            &at,
            format!("`{absolute}` is not an http or https URL: set spec.openapi.baseUrl"),
        ));
    }
    Ok(absolute.as_str().trim_end_matches('/').to_string())
}

fn origin_of(u: &str) -> Result<String, SpecError> {
    let url = url::Url::parse(u)
        .map_err(|e| SpecError::new("servers", format!("invalid document URL: {e}")))?;
    Ok(url.origin().ascii_serialization())
}

/// Names of API keys the document wants in the query (`in: query` security schemes): the
/// upstream's credential headers of these names are sent as query parameters instead.
fn query_credentials(doc: &Value) -> Vec<String> {
    let Some(schemes) = doc
        .pointer("/components/securitySchemes")
        .and_then(Value::as_object)
    else {
        return Vec::new();
    };
    schemes
        .values()
        .filter(|s| s.get("type").and_then(Value::as_str) == Some("apiKey"))
        .filter(|s| s.get("in").and_then(Value::as_str) == Some("query"))
        .filter_map(|s| s.get("name").and_then(Value::as_str))
        .map(str::to_string)
        .collect()
}

/// The tool name: the operationId, else method and path, made valid and unique.
fn unique_name(
    taken: &mut BTreeSet<String>,
    op_id: Option<&str>,
    method: &str,
    path: &str,
) -> String {
    let raw = match op_id {
        Some(id) if !id.trim().is_empty() => id.to_string(),
        _ => format!("{method}{path}"),
    };
    let name = crate::kinds::rest::unique_tool_name(&raw, method, &|n| taken.contains(n));
    debug_assert!(is_tool_name(&name));
    taken.insert(name.clone());
    name
}

/// One operation's input schema and call, or why it cannot be a tool.
fn operation(
    resolver: &Resolver,
    op: &Value,
    shared: Option<&Value>,
    method: HttpMethod,
    path: &str,
    at: &str,
) -> Result<Result<(Value, RestCall), String>, SpecError> {
    let mut params: Vec<(String, Value, String)> = Vec::new(); // (in, param, where)
    let lists = [
        (
            shared,
            at.rsplit_once('.').map_or(at, |(p, _)| p).to_string(),
        ),
        (op.get("parameters"), at.to_string()),
    ];
    for (list, base) in lists {
        let Some(list) = list else { continue };
        let list = list.as_array().ok_or_else(|| {
            SpecError::new(format!("{base}.parameters"), "`parameters` must be a list")
        })?;
        for (i, p) in list.iter().enumerate() {
            let where_ = format!("{base}.parameters[{i}]");
            let p = resolver.follow(p, &where_)?;
            let name = p.get("name").and_then(Value::as_str);
            let loc = p.get("in").and_then(Value::as_str);
            let (Some(name), Some(loc)) = (name, loc) else {
                return Err(SpecError::new(where_, "a parameter needs `name` and `in`"));
            };
            // An operation's parameter replaces a path item's of the same name and place.
            params.retain(|(l, q, _)| {
                !(l == loc && q.get("name").and_then(Value::as_str) == Some(name))
            });
            params.push((loc.to_string(), p.clone(), where_));
        }
    }
    let mut props = Map::new();
    let mut required = Vec::new();
    let mut call = RestCall::new(method, path);
    let mut path_names: BTreeMap<String, String> = BTreeMap::new();
    for (loc, p, where_) in &params {
        let name = p["name"].as_str().unwrap_or_default();
        let lower = name.to_ascii_lowercase();
        if loc == "header" && IGNORED_HEADERS.contains(&lower.as_str()) {
            continue;
        }
        if loc == "header" && (GATEWAY_HEADERS.contains(&lower.as_str()) || !is_header_name(name)) {
            if p.get("required") == Some(&Value::Bool(true)) {
                return Ok(Err(format!(
                    "required header parameter `{name}`, which the gateway cannot send"
                )));
            }
            continue;
        }
        if loc == "cookie" {
            if p.get("required") == Some(&Value::Bool(true)) {
                return Ok(Err(format!("required cookie parameter `{name}`")));
            }
            continue;
        }
        let mut arg = name.to_string();
        if props.contains_key(&arg) {
            arg = format!("{loc}_{name}");
        }
        let mut schema = match (p.get("schema"), p.get("content")) {
            (Some(s), _) => resolver.schema(s, &format!("{where_}.schema"))?,
            (None, Some(c)) => match c.as_object().and_then(|m| m.values().next()) {
                Some(media) => resolver.schema(
                    media.get("schema").unwrap_or(&json!({})),
                    &format!("{where_}.content"),
                )?,
                None => json!({}),
            },
            (None, None) => json!({}),
        };
        if let (Some(d), Some(obj)) = (p.get("description"), schema.as_object_mut()) {
            obj.entry("description").or_insert(d.clone());
        }
        let needed = loc == "path" || p.get("required") == Some(&Value::Bool(true));
        match loc.as_str() {
            "path" => {
                path_names.insert(name.to_string(), arg.clone());
            }
            "query" => {
                call.query.insert(name.to_string(), arg.clone());
            }
            "header" => {
                call.headers.insert(name.to_string(), arg.clone());
            }
            other => {
                return Err(SpecError::new(
                    format!("{where_}.in"),
                    format!("unknown parameter location `{other}`"),
                ))
            }
        }
        if needed {
            required.push(Value::String(arg.clone()));
        }
        props.insert(arg, schema);
    }
    // The template names arguments: a path parameter renamed for a clash is renamed in it.
    for name in crate::kinds::rest::placeholders(path).unwrap_or_default() {
        match path_names.get(name) {
            Some(arg) if arg != name => {
                call.path = call
                    .path
                    .replace(&format!("{{{name}}}"), &format!("{{{arg}}}"));
            }
            Some(_) => {}
            None => {
                props.insert(name.to_string(), json!({"type": "string"}));
                required.push(Value::String(name.to_string()));
            }
        }
    }
    if let Some(body) = op.get("requestBody") {
        let where_ = format!("{at}.requestBody");
        let body = resolver.follow(body, &where_)?;
        let content = body.get("content").and_then(Value::as_object);
        let pick = content.and_then(|c| {
            c.iter().find(|(t, _)| is_json(t)).or_else(|| {
                c.iter()
                    .find(|(t, _)| *t == "application/x-www-form-urlencoded")
            })
        });
        let Some((media_type, media)) = pick else {
            let types: Vec<&String> = content.map(|c| c.keys().collect()).unwrap_or_default();
            return Ok(Err(format!(
                "a request body of no JSON or form type ({types:?})"
            )));
        };
        let schema = resolver.schema(
            media.get("schema").unwrap_or(&json!({})),
            &format!("{where_}.content.{media_type}.schema"),
        )?;
        if media_type != "application/json" {
            call.content_type = Some(media_type.clone());
        }
        let body_required = body.get("required") == Some(&Value::Bool(true));
        let fields = schema.get("properties").and_then(Value::as_object);
        let flat = method.takes_body()
            && schema.get("type").and_then(Value::as_str) == Some("object")
            && fields.is_some_and(|f| f.keys().all(|k| !props.contains_key(k)));
        if let (true, Some(fields)) = (flat, fields) {
            // The body's fields are the tool's arguments (what is placed nowhere else
            // becomes the body).
            for (k, v) in fields {
                props.insert(k.clone(), v.clone());
            }
            if body_required {
                if let Some(req) = schema.get("required").and_then(Value::as_array) {
                    required.extend(req.iter().cloned());
                }
            }
        } else {
            let arg = if props.contains_key("body") {
                "requestBody"
            } else {
                "body"
            };
            let mut schema = schema;
            if let (Some(d), Some(obj)) = (body.get("description"), schema.as_object_mut()) {
                obj.entry("description").or_insert(d.clone());
            }
            props.insert(arg.to_string(), schema);
            if body_required {
                required.push(Value::String(arg.to_string()));
            }
            call.body = Some(arg.to_string());
        }
    }
    let mut input = json!({"type": "object", "properties": props});
    if !required.is_empty() {
        input["required"] = Value::Array(required);
    }
    Ok(Ok((input, call)))
}

fn is_json(media_type: &str) -> bool {
    let t = media_type.split(';').next().unwrap_or("").trim();
    t == "application/json" || t.ends_with("+json")
}

/// The tool as clients list it.
fn listing(
    name: &str,
    op: &Value,
    method: HttpMethod,
    input: Value,
    resolver: &Resolver,
    at: &str,
) -> Result<Value, SpecError> {
    let summary = op.get("summary").and_then(Value::as_str);
    let details = op.get("description").and_then(Value::as_str);
    let description = match (summary, details) {
        (Some(s), Some(d)) if !d.is_empty() => format!("{s}\n\n{d}"),
        (Some(s), _) => s.to_string(),
        (None, Some(d)) => d.to_string(),
        (None, None) => String::new(),
    };
    let mut annotations = method.annotations();
    if let Some(s) = summary {
        annotations.insert("title".into(), s.into());
    }
    let mut tool = json!({
        "name": name,
        "inputSchema": input,
        "annotations": annotations,
    });
    if !description.is_empty() {
        tool["description"] = description.into();
    }
    if let Some(s) = summary {
        tool["title"] = s.into();
    }
    if let Some(out) = output_schema(op, resolver, at)? {
        tool["outputSchema"] = out;
    }
    Ok(tool)
}

/// The JSON object schema of the operation's success answer, if it has one.
fn output_schema(op: &Value, resolver: &Resolver, at: &str) -> Result<Option<Value>, SpecError> {
    let Some(responses) = op.get("responses").and_then(Value::as_object) else {
        return Ok(None);
    };
    let success = ["200", "201", "2XX", "2xx"]
        .iter()
        .find_map(|code| responses.get(*code).map(|r| (*code, r)));
    let Some((code, response)) = success else {
        return Ok(None);
    };
    let where_ = format!("{at}.responses.{code}");
    let response = resolver.follow(response, &where_)?;
    let media = response
        .get("content")
        .and_then(Value::as_object)
        .and_then(|c| c.iter().find(|(t, _)| is_json(t)));
    let Some((t, media)) = media else {
        return Ok(None);
    };
    let Some(schema) = media.get("schema") else {
        return Ok(None);
    };
    let schema = resolver.schema(schema, &format!("{where_}.content.{t}.schema"))?;
    let object = schema.get("type").and_then(Value::as_str) == Some("object");
    let usable = crate::schema::Schema::compile(&schema).is_ok();
    Ok((object && usable).then_some(schema))
}

#[cfg(test)]
mod tests;
