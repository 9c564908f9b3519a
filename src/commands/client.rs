//! `switchboard apply`, `get` and `delete`: a kubectl-style client of the admin API.

use crate::cli::{ApplyArgs, DeleteArgs, GetArgs, Output, ServerArgs};
use crate::commands::validate::{print_diagnostics, INVALID};
use anyhow::Context;
use switchboard_config::{read_sources, Diagnostics};
use switchboard_controlplane::convert::from_wire;
use switchboard_proto::v1::admin_client::AdminClient;
use switchboard_proto::v1::{
    ApplyRequest, DataPlaneStatus, DeleteRequest, GetRequest, ListDataPlanesRequest, SourceFile,
    ValidationError,
};
use tonic::transport::Channel;

/// A runtime for one command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Sends the control token (when there is one) with every admin call.
#[derive(Clone)]
pub struct WithToken(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for WithToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// An admin client, as [`connect`] makes it.
pub type Admin = AdminClient<tonic::service::interceptor::InterceptedService<Channel, WithToken>>;

/// An admin client of the control plane `server` names (flags and environment first, then
/// the current context): over TLS with its CA and client certificate when given, sending an
/// operator's token when there is one, else (without TLS) the control token.
pub async fn connect(server: &ServerArgs) -> anyhow::Result<Admin> {
    // A context's credentials go only to the context's own server.
    let context = match &server.server {
        Some(_) => crate::commands::context::Entry::default(),
        None => crate::commands::context::current()?.unwrap_or_default(),
    };
    let address = server
        .server
        .clone()
        .or_else(|| (!context.server.is_empty()).then(|| context.server.clone()))
        .unwrap_or_else(|| crate::cli::DEFAULT_SERVER.to_string());
    let mut endpoint = Channel::from_shared(address.clone())
        .with_context(|| format!("invalid control-plane address `{address}`"))?
        .connect_timeout(std::time::Duration::from_secs(5));
    let mut identity = server.identity.clone();
    if identity.ca.is_none() {
        identity.ca = context.ca.clone();
        if identity.cert.is_none() {
            identity.cert = context.cert.clone();
            identity.key = context.key.clone();
        }
    }
    let tls = identity.tls()?;
    let from_context = context
        .token_file
        .as_ref()
        .map(|p| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display())))
        .transpose()?;
    // An operator's own token first, then the context's; without TLS, else the control token.
    let operator = std::env::var("SWITCHBOARD_TOKEN")
        .ok()
        .or(from_context)
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    let token = match (operator, &tls) {
        (Some(t), _) => Some(t),
        (None, Some(_)) => None,
        (None, None) => crate::commands::token::find(),
    };
    let token = token
        .map(|t| format!("Bearer {t}").parse())
        .transpose()
        .context("the token is not a valid header value")?;
    if let Some(tls) = tls {
        // tonic speaks TLS to https:// addresses only: anything else would send the
        // credentials in the clear, unchecked.
        if !address.starts_with("https://") {
            anyhow::bail!("`{address}` is not https://, but TLS settings are given: use https://");
        }
        endpoint = endpoint
            .tls_config(tls.client_config())
            .with_context(|| format!("TLS settings for {address}"))?;
    }
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("cannot reach the control plane at {address}"))?;
    Ok(AdminClient::with_interceptor(channel, WithToken(token))
        .max_decoding_message_size(256 << 20))
}

fn print_wire_errors(errors: &[ValidationError]) {
    let diagnostics = Diagnostics(errors.iter().map(from_wire).collect());
    print_diagnostics(&diagnostics, Output::Text);
}

/// Sends every file in one request: all documents land or none.
pub fn apply(args: &ApplyArgs) -> anyhow::Result<i32> {
    let sources = match read_sources(&args.files.files) {
        Ok(s) => s,
        Err(d) => {
            print_diagnostics(&d, Output::Text);
            return Ok(INVALID);
        }
    };
    let request = ApplyRequest {
        files: sources
            .into_iter()
            .map(|s| SourceFile {
                name: s.name,
                content: s.text,
            })
            .collect(),
        dry_run: args.dry_run,
    };
    runtime()?.block_on(async {
        let mut client = connect(&args.server).await?;
        let response = client
            .apply(request)
            .await
            .context("apply failed")?
            .into_inner();
        if !response.errors.is_empty() {
            print_wire_errors(&response.errors);
            return Ok(INVALID);
        }
        let suffix = if args.dry_run { " (dry run)" } else { "" };
        for r in response.results {
            println!("{}/{} {}{suffix}", r.kind.to_lowercase(), r.name, r.action);
        }
        for w in response.warnings {
            eprintln!("warning: {w}");
        }
        Ok(0)
    })
}

/// Lists resources (or data planes) in the chosen format.
pub fn get(args: &GetArgs) -> anyhow::Result<i32> {
    let wants_dataplanes = matches!(
        args.kind.to_ascii_lowercase().as_str(),
        "dataplanes" | "dataplane" | "dp"
    );
    if matches!(
        args.kind.to_ascii_lowercase().as_str(),
        "writes" | "write" | "history"
    ) {
        return writes(args);
    }
    if args.kind.parse::<switchboard_config::Kind>() == Ok(switchboard_config::Kind::Upstream) {
        return crate::commands::upstreams::get(
            &args.server,
            args.name.as_deref(),
            args.output.output,
        );
    }
    runtime()?.block_on(async {
        let mut client = connect(&args.server).await?;
        if wants_dataplanes {
            let list = client
                .list_data_planes(ListDataPlanesRequest {})
                .await
                .context("listing data planes failed")?
                .into_inner()
                .data_planes;
            print_dataplanes(&list, args.output.output)?;
            return Ok(0);
        }
        let response = client
            .get(GetRequest {
                kind: args.kind.clone(),
                name: args.name.clone().unwrap_or_default(),
            })
            .await;
        let resources = match response {
            Ok(r) => r.into_inner().resources,
            Err(status) if status.code() == tonic::Code::NotFound => {
                eprintln!("error: {}", status.message());
                return Ok(1);
            }
            Err(status) => anyhow::bail!("get failed: {}", status.message()),
        };
        let values = resources
            .iter()
            .map(|r| serde_json::from_str::<serde_json::Value>(&r.json))
            .collect::<Result<Vec<_>, _>>()
            .context("the control plane sent invalid JSON")?;
        match args.output.output {
            Output::Json => {
                let out = if args.name.is_some() && values.len() == 1 {
                    serde_json::to_string_pretty(&values[0])?
                } else {
                    serde_json::to_string_pretty(&values)?
                };
                println!("{out}");
            }
            Output::Yaml => {
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        println!("---");
                    }
                    print!("{}", serde_yaml::to_string(v)?);
                }
            }
            Output::Text => {
                if resources.is_empty() {
                    eprintln!("no resources found");
                    return Ok(0);
                }
                println!("{:<32} {:>10} {:>10}", "NAME", "GENERATION", "REVISION");
                for r in &resources {
                    println!(
                        "{:<32} {:>10} {:>10}",
                        r.name, r.generation, r.resource_version
                    );
                }
            }
        }
        Ok(0)
    })
}

fn print_dataplanes(list: &[DataPlaneStatus], output: Output) -> anyhow::Result<()> {
    let rows: Vec<serde_json::Value> = list
        .iter()
        .map(|s| {
            let node = s.node.clone().unwrap_or_default();
            serde_json::json!({
                "node": node.id,
                "cluster": node.cluster,
                "zone": node.zone,
                "group": s.group,
                "ackedVersion": s.acked_version,
                "lastPushedVersion": s.last_pushed_version,
                "lastNack": s.last_nack,
                "controlPlane": s.control_plane_id,
            })
        })
        .collect();
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        Output::Yaml => print!("{}", serde_yaml::to_string(&rows)?),
        Output::Text => {
            if list.is_empty() {
                eprintln!("no data planes connected");
                return Ok(());
            }
            println!(
                "{:<24} {:<28} {:<26} {:<26} LAST NACK",
                "NODE", "GROUP", "ACKED", "PUSHED"
            );
            for s in list {
                let id = s.node.as_ref().map(|n| n.id.as_str()).unwrap_or("");
                println!(
                    "{:<24} {:<28} {:<26} {:<26} {}",
                    id, s.group, s.acked_version, s.last_pushed_version, s.last_nack
                );
            }
        }
    }
    Ok(())
}

/// Deletes one resource (refused while others reference it).
pub fn delete(args: &DeleteArgs) -> anyhow::Result<i32> {
    runtime()?.block_on(async {
        let mut client = connect(&args.server).await?;
        let response = client
            .delete(DeleteRequest {
                kind: args.kind.clone(),
                name: args.name.clone(),
            })
            .await;
        match response {
            Ok(r) => {
                let r = r.into_inner();
                if !r.errors.is_empty() {
                    eprintln!("refusing to delete: still referenced");
                    print_wire_errors(&r.errors);
                    return Ok(INVALID);
                }
                println!("{}/{} deleted", args.kind.to_lowercase(), args.name);
                Ok(0)
            }
            Err(status) if status.code() == tonic::Code::NotFound => {
                eprintln!("error: {}", status.message());
                Ok(1)
            }
            Err(status) => anyhow::bail!("delete failed: {}", status.message()),
        }
    })
}

/// `get writes`: the record of writes, oldest first.
fn writes(args: &GetArgs) -> anyhow::Result<i32> {
    runtime()?.block_on(async {
        let mut client = connect(&args.server).await?;
        let writes = client
            .list_writes(switchboard_proto::v1::ListWritesRequest {})
            .await
            .map_err(|s| anyhow::anyhow!("listing writes failed: {}", s.message()))?
            .into_inner()
            .writes;
        if !matches!(args.output.output, Output::Text) {
            let list: Vec<serde_json::Value> = writes
                .iter()
                .map(|w| {
                    serde_json::json!({
                        "unixMs": w.unix_ms, "actor": w.actor, "kind": w.kind, "name": w.name,
                        "action": w.action, "generation": w.generation, "revision": w.revision,
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&list)?);
            return Ok(0);
        }
        println!(
            "{:<24} {:<28} {:<9} {:<32} {:>10} {:>9}",
            "WHEN (UTC)", "WHO", "ACTION", "RESOURCE", "GENERATION", "REVISION"
        );
        for w in writes {
            let when = std::time::UNIX_EPOCH
                + std::time::Duration::from_millis(u64::try_from(w.unix_ms).unwrap_or(0));
            println!(
                "{:<24} {:<28} {:<9} {:<32} {:>10} {:>9}",
                humantime::format_rfc3339_seconds(when).to_string(),
                w.actor,
                w.action,
                format!("{}/{}", w.kind.to_lowercase(), w.name),
                w.generation,
                w.revision
            );
        }
        Ok(0)
    })
}
