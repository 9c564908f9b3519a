//! An A2A agent's card as a catalog: one tool per skill (its id made a valid tool name; its
//! name, description and examples as the description), each taking a `message` and optional
//! `data`, and the bindings a data plane needs (the JSON-RPC endpoint and protocol version
//! the card names, whether the agent streams, which skill each tool is).

use crate::backend::{Changes, Checked, Discovery, Listing};
use crate::body::{success_body, within};
use crate::client::{McpHttp, UpstreamError};
use crate::credentials::Credentials;
use async_trait::async_trait;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use switchboard_config::kinds::upstream::{A2aBindings, A2aUpstream};
use switchboard_config::Catalog;

/// Largest agent card read.
const MAX_CARD_BYTES: usize = 1 << 20;
/// Most skills made tools (a card is a description, not a catalog of thousands).
const MAX_SKILLS: usize = 1000;

/// Where an agent's card is, below its URL.
pub fn card_url(base: &str) -> String {
    format!("{}/.well-known/agent-card.json", base.trim_end_matches('/'))
}

/// The tools and bindings of `card`, fetched from below `base`.
pub fn tools_from_card(card: &Value, base: &str) -> Result<(Vec<Value>, A2aBindings), String> {
    let skills = card
        .get("skills")
        .and_then(Value::as_array)
        .filter(|s| !s.is_empty())
        .ok_or("the agent card lists no skills")?;
    if skills.len() > MAX_SKILLS {
        return Err(format!(
            "the agent card lists {} skills; at most {MAX_SKILLS} become tools",
            skills.len()
        ));
    }
    // The 1.0 JSON-RPC interface if the card names one, else the 0.3 `url`.
    let interfaces = card
        .get("supportedInterfaces")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let jsonrpc = |version: &str| {
        interfaces.iter().find(|i| {
            i.get("protocolBinding").and_then(Value::as_str) == Some("JSONRPC")
                && i.get("protocolVersion")
                    .and_then(Value::as_str)
                    .is_some_and(|v| v.starts_with(version))
        })
    };
    // A 0.3 card: its `url` speaks `preferredTransport` (JSON-RPC by default); other
    // transports are in `additionalInterfaces`.
    let legacy_url = || {
        let preferred = card
            .get("preferredTransport")
            .and_then(Value::as_str)
            .unwrap_or("JSONRPC");
        if preferred == "JSONRPC" {
            return card.get("url").and_then(Value::as_str);
        }
        card.get("additionalInterfaces")
            .and_then(Value::as_array)?
            .iter()
            .find(|i| i.get("transport").and_then(Value::as_str) == Some("JSONRPC"))?
            .get("url")
            .and_then(Value::as_str)
    };
    let (endpoint, version) = match (jsonrpc("1."), jsonrpc("0.3")) {
        (Some(i), _) => (i.get("url").and_then(Value::as_str), "1.0"),
        (None, Some(i)) => (i.get("url").and_then(Value::as_str), "0.3"),
        (None, None) if interfaces.is_empty() => (legacy_url(), "0.3"),
        (None, None) => (None, ""),
    };
    let endpoint = endpoint
        .ok_or("the agent card names no JSON-RPC interface (the only binding served)")?
        .to_string();
    let url = url::Url::parse(&endpoint)
        .map_err(|e| format!("the agent card's endpoint `{endpoint}` is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "the agent card's endpoint `{endpoint}` is not http or https"
        ));
    }
    // The upstream's credentials go only where the operator pointed them.
    let configured = url::Url::parse(base).map_err(|e| format!("invalid agent URL: {e}"))?;
    if url.origin() != configured.origin() {
        return Err(format!(
            "the agent card names its endpoint `{endpoint}` on another origin than the Upstream's url `{base}`; set the url to that origin if it is the agent's"
        ));
    }
    let streaming = card.pointer("/capabilities/streaming") == Some(&Value::Bool(true));
    let mut bindings = A2aBindings {
        endpoint,
        protocol_version: version.into(),
        streaming,
        skills: BTreeMap::new(),
    };
    let mut tools = Vec::new();
    for (i, skill) in skills.iter().enumerate() {
        let id = skill
            .get("id")
            .and_then(Value::as_str)
            .ok_or(format!("skill {i} of the agent card has no id"))?;
        let name = switchboard_config::kinds::rest::unique_tool_name(id, "skill", &|n| {
            bindings.skills.contains_key(n)
        });
        let title = skill.get("name").and_then(Value::as_str).unwrap_or(id);
        let mut description = title.to_string();
        if let Some(d) = skill.get("description").and_then(Value::as_str) {
            description.push_str(": ");
            description.push_str(d);
        }
        let examples: Vec<&str> = skill
            .get("examples")
            .and_then(Value::as_array)
            .map(|e| e.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if !examples.is_empty() {
            description.push_str(&format!("\nExamples: {}", examples.join("; ")));
        }
        tools.push(json!({
            "name": name,
            "title": title,
            "description": description,
            "inputSchema": {
                "type": "object",
                "properties": {
                    "message": {"type": "string", "description": "What to ask the agent"},
                    "data": {"type": "object", "description": "Structured input, sent as a data part"},
                },
                "required": ["message"],
            },
        }));
        bindings.skills.insert(name, id.to_string());
    }
    Ok((tools, bindings))
}

/// Keeps an A2A agent's catalog: its card, read again at every listing and check.
pub struct A2aDiscovery {
    http: McpHttp,
    agent: A2aUpstream,
    creds: Credentials,
    timeout: Duration,
}

impl A2aDiscovery {
    pub fn new(http: McpHttp, agent: A2aUpstream, creds: Credentials, timeout: Duration) -> Self {
        A2aDiscovery {
            http,
            agent,
            creds,
            timeout,
        }
    }

    async fn card(&self, limit: Duration) -> Result<Value, UpstreamError> {
        let url = card_url(&self.agent.url);
        let http = self.http.http_for(&self.creds)?;
        let bytes = within(&url, limit, async {
            let req = self.creds.apply(&http, http.get(&url)).await?;
            let resp = req
                .send()
                .await
                .map_err(|e| UpstreamError::unreachable(&url, &e))?;
            success_body(resp, &url, MAX_CARD_BYTES).await
        })
        .await?;
        serde_json::from_slice::<Value>(&bytes).map_err(|e| UpstreamError::Unusable {
            url: url.clone(),
            reason: format!("the agent card is not JSON: {e}"),
        })
    }
}

#[async_trait]
impl Discovery for A2aDiscovery {
    async fn list(&mut self) -> Result<Listing, UpstreamError> {
        let card = self.card(self.timeout).await?;
        let (tools, bindings) = tools_from_card(&card, &self.agent.url)
            .map_err(|reason| UpstreamError::CatalogRefused { reason })?;
        let protocol_version = format!("a2a {}", bindings.protocol_version);
        Listing {
            catalog: Catalog {
                protocol_version: protocol_version.clone(),
                tools,
                a2a: Some(bindings),
                ..Catalog::default()
            },
            protocol_version,
        }
        .checked()
    }

    async fn check(&mut self, limit: Duration) -> Result<Checked, UpstreamError> {
        self.card(limit).await.map(|_| Checked::Alive)
    }

    fn changes(&mut self) -> Option<Changes> {
        None
    }

    fn reset(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skills_become_tools_and_the_card_names_the_endpoint() {
        let card = json!({
            "name": "demo",
            "supportedInterfaces": [
                {"url": "http://127.0.0.1:9/v03", "protocolBinding": "JSONRPC", "protocolVersion": "0.3"},
                {"url": "http://127.0.0.1:9/", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
            ],
            "capabilities": {"streaming": true},
            "skills": [
                {"id": "echo", "name": "Echo", "description": "Returns the text", "examples": ["echo hi"]},
                {"id": "echo", "name": "Echo again"},
                {"id": "web search!"},
            ],
        });
        let (tools, b) = tools_from_card(&card, "http://127.0.0.1:9").expect("card");
        assert_eq!(b.endpoint, "http://127.0.0.1:9/");
        assert_eq!(b.protocol_version, "1.0");
        assert!(b.streaming);
        let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
        assert_eq!(names, ["echo", "echo_2", "web_search"]);
        assert_eq!(b.skills["echo_2"], "echo");
        assert_eq!(
            tools[0]["description"],
            json!("Echo: Returns the text\nExamples: echo hi")
        );
        let old = json!({"url": "http://a.test/rpc", "skills": [{"id": "x"}]});
        let (_, b) = tools_from_card(&old, "http://a.test").expect("0.3 card");
        assert_eq!(
            (b.endpoint.as_str(), b.protocol_version.as_str()),
            ("http://a.test/rpc", "0.3")
        );
        let grpc_first = json!({"url": "http://a.test:1/grpc", "preferredTransport": "GRPC",
            "additionalInterfaces": [{"url": "http://a.test/jsonrpc", "transport": "JSONRPC"}],
            "skills": [{"id": "x"}]});
        let (_, b) = tools_from_card(&grpc_first, "http://a.test").expect("0.3 card");
        assert_eq!(b.endpoint, "http://a.test/jsonrpc");
        assert!(tools_from_card(&json!({"skills": []}), "http://a").is_err());
        let file = json!({"url": "file:///x", "skills": [{"id": "x"}]});
        assert!(tools_from_card(&file, "http://a").is_err());
        // Credentials never follow a card to another origin.
        let elsewhere = json!({"url": "http://169.254.169.254/", "skills": [{"id": "x"}]});
        let err = tools_from_card(&elsewhere, "http://a.test").expect_err("another origin");
        assert!(err.contains("another origin"), "{err}");
        let rest_only = json!({"supportedInterfaces": [{"url": "http://a.test/",
            "protocolBinding": "HTTP+JSON", "protocolVersion": "1.0"}], "skills": [{"id": "x"}]});
        assert!(tools_from_card(&rest_only, "http://a.test").is_err());
        let many: Vec<Value> = (0..1001).map(|i| json!({"id": format!("s{i}")})).collect();
        let big = json!({"url": "http://a.test/", "skills": many});
        assert!(tools_from_card(&big, "http://a.test").is_err());
    }
}
