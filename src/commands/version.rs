//! `switchboard version`.

use crate::cli::{Output, OutputArgs};

/// The build's version, for support requests and `get dataplanes`.
pub fn run(args: &OutputArgs) -> anyhow::Result<()> {
    let version = env!("CARGO_PKG_VERSION");
    match args.output {
        Output::Text => println!("switchboard {version}"),
        Output::Json => println!("{}", serde_json::json!({ "version": version })),
        Output::Yaml => println!("version: {version}"),
    }
    Ok(())
}
