//! The `switchboard` binary: control plane, data plane, and the kubectl-style client.

mod cli;
mod commands;
mod telemetry;

use clap::Parser;
use cli::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let service = match &cli.command {
        Command::Controlplane(_) => "switchboard-controlplane",
        Command::Dataplane(_) => "switchboard-dataplane",
        Command::Bridge(_) => "switchboard-bridge",
        _ => "switchboard",
    };
    let _telemetry = telemetry::init(&cli.log, cli.log_format, &cli.otlp, service);
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
        Command::Preview(args) => commands::preview::run(&args),
        Command::Dataplane(args) => commands::dataplane::run_command(&args),
        Command::Up(args) => commands::up::run_command(&args),
        Command::Bridge(args) => commands::bridge::run(&args),
        Command::HashKey => commands::hash_key::run().map(|()| 0),
        Command::Connect(args) => commands::connect::run(&args).map(|()| 0),
        Command::Certs(args) => commands::certs::run(&args).map(|()| 0),
        Command::Token(args) => commands::operator_token::run(&args),
        Command::Context(args) => commands::context::run(&args),
    }
}
