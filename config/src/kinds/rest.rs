//! REST upstreams: HTTP APIs whose endpoints become MCP tools, declared one by one (`rest:`)
//! or read from an OpenAPI document (`openapi:`, see `crate::openapi`). Both end as the same
//! [`RestCall`]s, which is all a data plane needs to turn a `tools/call` into a request.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// A REST API whose endpoints are declared as tools here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RestUpstream {
    /// Where requests go: each tool's `path` is appended to it.
    pub base_url: String,
    pub tools: Vec<RestTool>,
}

/// One endpoint as a tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RestTool {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub method: HttpMethod,
    /// Appended to the base URL; `{name}` is replaced by that argument, percent-encoded.
    pub path: String,
    /// The arguments' JSON Schema (an object schema), checked before any request leaves.
    /// Unset: every `{placeholder}` as a required string, and anything else allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Value>,
    /// The schema of the (filtered) JSON answer: the result then carries it as
    /// `structuredContent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Value>,
    /// Query parameters from arguments (parameter -> argument).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query: BTreeMap<String, String>,
    /// Request headers from arguments (header -> argument).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// The argument whose value is the whole JSON body. Unset: arguments placed nowhere
    /// else become the fields of a JSON object body (POST, PUT, PATCH) or query
    /// parameters (other methods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// A jq filter applied to a JSON answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// Longest the whole call may take, answer included (default: the upstream's
    /// `timeouts`).
    #[serde(
        default,
        with = "crate::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    /// MCP tool annotations; `readOnlyHint` (GET, HEAD) and `idempotentHint` (PUT,
    /// DELETE) default from the method, and decide retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Map<String, Value>>,
}

/// The HTTP methods a tool may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
}

impl HttpMethod {
    /// The method as sent.
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Head => "HEAD",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Patch => "PATCH",
            HttpMethod::Delete => "DELETE",
        }
    }

    /// Whether unplaced arguments go into a JSON object body (else into the query).
    pub fn takes_body(self) -> bool {
        matches!(self, HttpMethod::Post | HttpMethod::Put | HttpMethod::Patch)
    }

    /// The annotations this method implies: GET and HEAD read only, PUT and DELETE
    /// idempotent (RFC 9110), so retries follow the same rules as for MCP tools.
    pub fn annotations(self) -> Map<String, Value> {
        let mut out = Map::new();
        match self {
            HttpMethod::Get | HttpMethod::Head => {
                out.insert("readOnlyHint".into(), true.into());
            }
            HttpMethod::Put | HttpMethod::Delete => {
                out.insert("readOnlyHint".into(), false.into());
                out.insert("idempotentHint".into(), true.into());
            }
            HttpMethod::Post | HttpMethod::Patch => {
                out.insert("readOnlyHint".into(), false.into());
            }
        }
        out
    }
}

impl std::fmt::Display for HttpMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one tool's arguments become a request: what a data plane needs, carried in the
/// upstream's catalog (the listing's `tools` carry what clients see).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RestCall {
    pub method: HttpMethod,
    pub path: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The content type of the body (default `application/json`; also
    /// `application/x-www-form-urlencoded`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    #[serde(
        default,
        with = "crate::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    /// Where this call goes instead of the upstream's base URL (an OpenAPI operation or
    /// path item with `servers` of its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
}

impl RestCall {
    /// A call of `method` to `path` with nothing mapped yet.
    pub fn new(method: HttpMethod, path: &str) -> RestCall {
        RestCall {
            method,
            path: path.to_string(),
            query: BTreeMap::new(),
            headers: BTreeMap::new(),
            body: None,
            content_type: None,
            filter: None,
            timeout: None,
            base_url: None,
        }
    }
}

/// A REST upstream's calls, as its catalog carries them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RestBindings {
    /// Where every call's path is appended.
    pub base_url: String,
    /// Tool name -> how it is called.
    pub calls: BTreeMap<String, RestCall>,
    /// Credential headers the API wants as query parameters instead, spelled as the API
    /// spells the parameter (an OpenAPI `apiKey` scheme `in: query`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query_credentials: Vec<String>,
}

/// The `{name}` placeholders of a path template, in order; an error for a brace that
/// opens no well-formed placeholder.
pub fn placeholders(path: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut rest = path;
    while let Some(open) = rest.find(['{', '}']) {
        if rest.as_bytes()[open] == b'}' {
            return Err(format!("`}}` without `{{` in `{path}`"));
        }
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("`{{` without `}}` in `{path}`"))?;
        let name = &after[..close];
        if name.is_empty() || name.contains('{') {
            return Err(format!("an empty or nested placeholder in `{path}`"));
        }
        out.push(name);
        rest = &after[close + 1..];
    }
    Ok(out)
}

/// `raw` (an operationId, a skill id) made a tool name MCP allows: other characters become
/// `_`, outer `_` go, at most 120 characters (`fallback` when nothing is left), then
/// `_2`, `_3`, … until `taken` says it is free.
pub fn unique_tool_name(raw: &str, fallback: &str, taken: &dyn Fn(&str) -> bool) -> String {
    let clean: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_-.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut base = clean.trim_matches('_').to_string();
    if base.is_empty() {
        base = fallback.to_string();
    }
    base.truncate(120);
    let mut name = base.clone();
    let mut n = 2;
    while taken(&name) {
        name = format!("{base}_{n}");
        n += 1;
    }
    name
}

/// Whether `name` is a tool name MCP allows (1–128 of `A-Za-z0-9_-.`).
pub fn is_tool_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"_-.".contains(&c))
}

impl RestTool {
    /// The input schema in force: the one given, or one built from the path's
    /// placeholders.
    pub fn schema(&self) -> Value {
        if let Some(s) = &self.input_schema {
            return s.clone();
        }
        let names = placeholders(&self.path).unwrap_or_default();
        let props: Map<String, Value> = names
            .iter()
            .map(|n| (n.to_string(), json!({"type": "string"})))
            .collect();
        json!({"type": "object", "properties": props, "required": names})
    }

    /// The tool as clients list it.
    pub fn listing(&self) -> Value {
        let mut annotations = self.method.annotations();
        if let Some(given) = &self.annotations {
            annotations.extend(given.clone());
        }
        let mut tool = json!({
            "name": self.name,
            "inputSchema": self.schema(),
            "annotations": annotations,
        });
        if let Some(d) = &self.description {
            tool["description"] = d.clone().into();
        }
        if let Some(o) = &self.output_schema {
            tool["outputSchema"] = o.clone();
        }
        tool
    }

    /// How the tool is called.
    pub fn call(&self) -> RestCall {
        RestCall {
            method: self.method,
            path: self.path.clone(),
            query: self.query.clone(),
            headers: self.headers.clone(),
            body: self.body.clone(),
            content_type: None,
            filter: self.filter.clone(),
            timeout: self.timeout,
            base_url: None,
        }
    }
}

impl RestUpstream {
    /// The catalog entries and bindings of the declared tools.
    pub fn bindings(&self) -> (Vec<Value>, RestBindings) {
        let tools = self.tools.iter().map(RestTool::listing).collect();
        let calls = self
            .tools
            .iter()
            .map(|t| (t.name.clone(), t.call()))
            .collect();
        (
            tools,
            RestBindings {
                base_url: self.base_url.clone(),
                calls,
                query_credentials: Vec::new(),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_read_and_malformed_templates_refused() {
        assert_eq!(
            placeholders("/users/{id}/posts/{post}"),
            Ok(vec!["id", "post"])
        );
        assert_eq!(placeholders("/plain"), Ok(vec![]));
        assert!(placeholders("/users/{id").is_err());
        assert!(placeholders("/users/id}").is_err());
        assert!(placeholders("/users/{}").is_err());
        assert!(placeholders("/users/{a{b}}").is_err());
    }

    #[test]
    fn listings_default_the_schema_and_annotations_from_the_declaration() {
        let tool: RestTool = serde_yaml::from_str(
            "name: get_user\nmethod: GET\npath: /users/{id}\nannotations: {title: User}\n",
        )
        .expect("parses");
        let listed = tool.listing();
        assert_eq!(listed["inputSchema"]["required"], json!(["id"]));
        assert_eq!(listed["annotations"]["readOnlyHint"], json!(true));
        assert_eq!(listed["annotations"]["title"], json!("User"));
        let put: RestTool =
            serde_yaml::from_str("name: p\nmethod: PUT\npath: /x\n").expect("parses");
        assert_eq!(put.listing()["annotations"]["idempotentHint"], json!(true));
        assert!(serde_yaml::from_str::<RestTool>("name: p\nmethod: TRACE\npath: /x\n").is_err());
    }
}
