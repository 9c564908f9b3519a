//! `switchboard bridge`: a stdio MCP server served over streamable HTTP.

use crate::cli::BridgeArgs;
use crate::commands::controlplane::shutdown_signal;
use anyhow::Context;
use switchboard_bridge::{serve, BridgeConfig};

/// Runs until a signal, or until the stdio server exits (then exit code 1).
pub fn run(args: &BridgeArgs) -> anyhow::Result<i32> {
    if !args.path.starts_with('/') {
        anyhow::bail!("--path must start with `/` (got `{}`)", args.path);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let config = BridgeConfig {
            command: args.stdio.clone(),
            args: args.args.clone(),
            path: args.path.clone(),
            bearer: match &args.bearer_env {
                Some(var) => Some(
                    std::env::var(var)
                        .with_context(|| format!("--bearer-env {var}: the variable is not set"))?,
                ),
                None => None,
            },
        };
        serve(config, listener, shutdown_signal())
            .await
            .with_context(|| format!("bridging `{}`", args.stdio))?;
        Ok(0)
    })
}
