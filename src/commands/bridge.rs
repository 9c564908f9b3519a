//! `switchboard bridge`: a stdio MCP server served over streamable HTTP.

use crate::cli::BridgeArgs;
use crate::commands::controlplane::shutdown_signal;
use anyhow::Context;
use switchboard_bridge::child::{ChildSpec, Environment};
use switchboard_bridge::origin::OriginPolicy;
use switchboard_bridge::sessions::Isolation;
use switchboard_bridge::{serve, BridgeConfig};

/// Runs until a signal; the stdio server is restarted whenever it exits.
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
        let mut child = ChildSpec::command(&args.stdio, &args.args);
        // The token guards the bridge; the child has no business with it.
        child.environment = Environment::InheritExcept(args.bearer_env.iter().cloned().collect());
        let config = BridgeConfig {
            child,
            isolation: if args.per_session {
                Isolation::PerSession {
                    max: args.max_sessions,
                    idle: args.idle_timeout.into(),
                }
            } else {
                Isolation::Shared
            },
            path: args.path.clone(),
            bearer: match &args.bearer_env {
                Some(var) => Some(
                    std::env::var(var)
                        .with_context(|| format!("--bearer-env {var}: the variable is not set"))?,
                ),
                None => None,
            },
            origins: OriginPolicy {
                allowed_origins: args.allowed_origins.clone(),
                loopback: switchboard_dataplane::server::is_loopback(&args.listen),
            },
        };
        serve(config, listener, shutdown_signal())
            .await
            .with_context(|| format!("bridging `{}`", args.stdio))?;
        Ok(0)
    })
}
