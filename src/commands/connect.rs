//! `switchboard connect URL`: a stdio MCP server forwarding to a gateway.

use crate::cli::ConnectArgs;
use anyhow::{bail, Context};
use switchboard_bridge::connect::{run as forward, ConnectConfig};

/// Forwards stdin/stdout to `args.url` until stdin closes.
pub fn run(args: &ConnectArgs) -> anyhow::Result<()> {
    let mut headers = Vec::new();
    for h in &args.headers {
        let Some((name, value)) = h.split_once(':').or_else(|| h.split_once('=')) else {
            bail!("--header `{h}`: write it as `Name: value`");
        };
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    if let Some(var) = &args.bearer_env {
        let token = std::env::var(var)
            .with_context(|| format!("--bearer-env {var}: the variable is not set"))?;
        headers.push(("authorization".into(), format!("Bearer {token}")));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let config = ConnectConfig {
        url: args.url.clone(),
        headers,
    };
    runtime.block_on(async {
        let stdin = tokio::io::BufReader::new(tokio::io::stdin());
        forward(config, stdin, tokio::io::stdout()).await
    })?;
    Ok(())
}
