//! `switchboard get upstreams` (state, tools, last refresh, last error) and
//! `switchboard refresh upstream NAME`.

use crate::cli::{Output, RefreshArgs};
use crate::commands::client::{connect, runtime};
use anyhow::Context;
use serde_json::{json, Value};
use switchboard_proto::v1::{ListUpstreamsRequest, RefreshUpstreamRequest, UpstreamStatus};

/// How long ago a Unix-milliseconds time was, for people ("-" for never).
fn ago(unix_ms: i64) -> String {
    if unix_ms <= 0 {
        return "-".into();
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let secs = (now - unix_ms).max(0) / 1000;
    match secs {
        0..=119 => format!("{secs}s ago"),
        120..=7199 => format!("{}m ago", secs / 60),
        _ => format!("{}h ago", secs / 3600),
    }
}

/// The status part of one row, as `-o json/yaml` shows it under `status`.
fn status_json(s: &UpstreamStatus) -> Value {
    json!({
        "state": s.state,
        "transport": s.transport,
        "consecutiveFailures": s.consecutive_failures,
        "lastError": s.last_error,
        "lastErrorUnixMs": s.last_error_unix_ms,
        "lastRefreshUnixMs": s.last_refresh_unix_ms,
        "sinceUnixMs": s.since_unix_ms,
        "tools": s.tools,
        "prompts": s.prompts,
        "resources": s.resources,
        "resourceTemplates": s.resource_templates,
        "catalogHash": s.catalog_hash,
        "protocolVersion": s.protocol_version,
        "listening": s.listening,
        "conflicts": s.conflicts,
    })
}

/// Prints rows as a table, or as resources with a `status` block.
pub fn print(rows: &[UpstreamStatus], leader: &str, output: Output) -> anyhow::Result<()> {
    let objects = || -> anyhow::Result<Vec<Value>> {
        rows.iter()
            .map(|s| {
                let mut v: Value =
                    serde_json::from_str(&s.json).context("the control plane sent invalid JSON")?;
                let Some(object) = v.as_object_mut() else {
                    anyhow::bail!("the control plane sent an upstream that is not a JSON object");
                };
                object.insert("status".into(), status_json(s));
                Ok(v)
            })
            .collect()
    };
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&objects()?)?),
        Output::Yaml => {
            for (i, v) in objects()?.iter().enumerate() {
                if i > 0 {
                    println!("---");
                }
                print!("{}", serde_yaml::to_string(v)?);
            }
        }
        Output::Text => {
            if rows.is_empty() {
                eprintln!("no upstreams found");
                return Ok(());
            }
            println!(
                "{:<20} {:<8} {:<10} {:>5} {:>7} {:>9} {:<12} LAST ERROR",
                "NAME", "KIND", "STATE", "TOOLS", "PROMPTS", "RESOURCES", "REFRESHED"
            );
            for s in rows {
                println!(
                    "{:<20} {:<8} {:<10} {:>5} {:>7} {:>9} {:<12} {}",
                    s.name,
                    s.transport,
                    s.state,
                    s.tools,
                    s.prompts,
                    s.resources,
                    ago(s.last_refresh_unix_ms),
                    // Only a current error: a healthy upstream's old failure is history.
                    if s.state == "healthy" {
                        ""
                    } else {
                        s.last_error.as_str()
                    }
                );
            }
            for s in rows {
                for c in &s.conflicts {
                    println!("warning: {c}");
                }
            }
            if !leader.is_empty() {
                // On stdout after the rows, so it never lands inside the table.
                println!("\ndiscovery leader: {leader}");
            }
        }
    }
    Ok(())
}

/// `get upstreams [NAME]`.
pub fn get(
    server: &crate::cli::ServerArgs,
    name: Option<&str>,
    output: Output,
) -> anyhow::Result<i32> {
    runtime()?.block_on(async {
        let mut client = connect(server).await?;
        let response = client
            .list_upstreams(ListUpstreamsRequest {
                name: name.unwrap_or_default().to_string(),
            })
            .await;
        match response {
            Ok(r) => {
                let r = r.into_inner();
                print(&r.upstreams, &r.discovery_leader, output)?;
                Ok(0)
            }
            Err(status) if status.code() == tonic::Code::NotFound => {
                eprintln!("error: {}", status.message());
                Ok(1)
            }
            Err(status) => anyhow::bail!("listing upstreams failed: {}", status.message()),
        }
    })
}

/// `refresh upstream NAME`: lists the catalog now and shows the result.
pub fn refresh(args: &RefreshArgs) -> anyhow::Result<i32> {
    let kind = args.kind.to_ascii_lowercase();
    if !matches!(kind.as_str(), "upstream" | "upstreams") {
        eprintln!("error: only upstreams can be refreshed (`switchboard refresh upstream NAME`)");
        return Ok(2);
    }
    runtime()?.block_on(async {
        let mut client = connect(&args.server).await?;
        let response = client
            .refresh_upstream(RefreshUpstreamRequest {
                name: args.name.clone(),
            })
            .await;
        match response {
            Ok(r) => {
                let Some(row) = r.into_inner().upstream else {
                    anyhow::bail!("the control plane answered without the upstream's status");
                };
                let failed = row.state != "healthy";
                print(std::slice::from_ref(&row), "", args.output.output)?;
                Ok(i32::from(failed))
            }
            Err(status) => {
                eprintln!("error: {}", status.message());
                Ok(1)
            }
        }
    })
}
