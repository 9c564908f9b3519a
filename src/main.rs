//! The `switchboard` binary: control plane, data plane, and the kubectl-style client.

mod cli;
mod commands;

use clap::Parser;
use cli::{Cli, Command, LogFormat};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli.log, cli.log_format);
    match run(cli.command) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<i32> {
    match command {
        Command::Validate(args) => commands::validate::run(&args),
        Command::Version(args) => commands::version::run(&args).map(|()| 0),
        Command::Controlplane(args) => commands::controlplane::run(&args),
        Command::Apply(args) => commands::client::apply(&args),
        Command::Get(args) => commands::client::get(&args),
        Command::Delete(args) => commands::client::delete(&args),
        Command::Refresh(args) => commands::upstreams::refresh(&args),
        Command::Dataplane(args) => commands::dataplane::run_command(&args),
        Command::Up(args) => commands::up::run_command(&args),
        Command::Bridge(args) => commands::bridge::run(&args),
        Command::HashKey => commands::hash_key::run().map(|()| 0),
    }
}

fn init_tracing(filter: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
