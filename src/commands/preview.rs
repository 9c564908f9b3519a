//! `switchboard preview`: the tools REST and OpenAPI Upstreams would become, before they are
//! applied. Declared tools are printed as the control plane would list them; OpenAPI
//! documents are fetched (or read from `file://` URLs, or taken inline) and converted the
//! way the control plane converts them, with the operations left out and why.

use crate::cli::{Output, PreviewArgs};
use crate::commands::validate::INVALID;
use serde_json::{json, Value};
use std::time::Duration;
use switchboard_config::kinds::rest::RestBindings;
use switchboard_config::{load_sources, read_sources, Resource};
use switchboard_upstream::backend::rest::fetch_document;

/// Longest wait for one OpenAPI document.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// What one Upstream would serve, or why it cannot.
fn preview(
    spec: &switchboard_config::kinds::upstream::UpstreamSpec,
    http: &reqwest::Client,
) -> Result<Value, String> {
    let (tools, bindings, protocol, skipped): (Vec<Value>, RestBindings, String, Vec<String>) =
        if let Some(rest) = &spec.rest {
            let (tools, bindings) = rest.bindings();
            (tools, bindings, "rest".into(), Vec::new())
        } else if let Some(api) = &spec.openapi {
            let doc = match (&api.spec, &api.spec_url) {
                (Some(doc), _) => doc.clone(),
                (None, Some(url)) => crate::commands::client::runtime()
                    .map_err(|e| e.to_string())?
                    .block_on(fetch_document(http, url, FETCH_TIMEOUT))
                    .map_err(|e| e.to_string())?,
                (None, None) => return Err("no OpenAPI document".into()),
            };
            let c = switchboard_config::openapi::convert(&doc, api, api.spec_url.as_deref())
                .map_err(|e| format!("the OpenAPI document cannot be used: {e}"))?;
            (c.tools, c.bindings, c.version, c.skipped)
        } else {
            return Err("not a REST or OpenAPI upstream".into());
        };
    let tools: Vec<Value> = tools
        .into_iter()
        .map(|mut t| {
            let name = t["name"].as_str().unwrap_or_default().to_string();
            if let Some(call) = bindings.calls.get(&name) {
                t["call"] = serde_json::to_value(call).unwrap_or(Value::Null);
            }
            t
        })
        .collect();
    Ok(json!({
        "protocol": protocol,
        "baseUrl": bindings.base_url,
        "tools": tools,
        "skipped": skipped,
    }))
}

/// The first line of a description, shortened for a table.
fn headline(tool: &Value) -> String {
    let d = tool["description"].as_str().unwrap_or_default();
    let line = d.lines().next().unwrap_or_default();
    let mut short: String = line.chars().take(60).collect();
    if short.len() < line.len() {
        short.push('…');
    }
    short
}

/// Prints each REST and OpenAPI Upstream's tools; `INVALID` when any cannot be used.
pub fn run(args: &PreviewArgs) -> anyhow::Result<i32> {
    let sources = read_sources(&args.files.files).map_err(|d| anyhow::anyhow!("{d}"))?;
    let set = match load_sources(&sources) {
        Ok(set) => set,
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            return Ok(INVALID);
        }
    };
    let http = switchboard_upstream::tls::default_http_client();
    let mut out = Vec::new();
    let mut failed = false;
    for item in set.iter() {
        let Resource::Upstream(u) = &item.resource else {
            continue;
        };
        if u.spec.rest.is_none() && u.spec.openapi.is_none() {
            continue;
        }
        if args
            .upstream
            .as_ref()
            .is_some_and(|n| n != &u.metadata.name)
        {
            continue;
        }
        let result = preview(&u.spec, &http);
        failed |= result.is_err();
        out.push((u.metadata.name.clone(), result));
    }
    if out.is_empty() {
        anyhow::bail!("no REST or OpenAPI Upstream in the given files");
    }
    match args.output.output {
        Output::Text => {
            for (name, result) in &out {
                match result {
                    Err(why) => println!("upstream {name}: {why}\n"),
                    Ok(p) => {
                        let tools = p["tools"].as_array().cloned().unwrap_or_default();
                        println!(
                            "upstream {name} ({}, {} tools) -> {}",
                            p["protocol"].as_str().unwrap_or_default(),
                            tools.len(),
                            p["baseUrl"].as_str().unwrap_or_default()
                        );
                        for t in &tools {
                            let required: Vec<&str> = t["inputSchema"]["required"]
                                .as_array()
                                .map(|r| r.iter().filter_map(Value::as_str).collect())
                                .unwrap_or_default();
                            println!(
                                "  {:<28} {:<6} {:<28} ({}) {}",
                                t["name"].as_str().unwrap_or_default(),
                                t["call"]["method"].as_str().unwrap_or_default(),
                                t["call"]["path"].as_str().unwrap_or_default(),
                                required.join(", "),
                                headline(t)
                            );
                        }
                        for s in p["skipped"].as_array().into_iter().flatten() {
                            println!("  left out: {}", s.as_str().unwrap_or_default());
                        }
                        println!();
                    }
                }
            }
        }
        Output::Json | Output::Yaml => {
            let all: Vec<Value> = out
                .iter()
                .map(|(name, r)| match r {
                    Ok(p) => json!({"upstream": name, "preview": p}),
                    Err(why) => json!({"upstream": name, "error": why}),
                })
                .collect();
            if args.output.output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                print!("{}", serde_yaml::to_string(&all)?);
            }
        }
    }
    Ok(if failed { INVALID } else { 0 })
}
