//! `switchboard validate`: every error in the given files, at once, with positions.

use crate::cli::{Output, ValidateArgs};
use std::collections::BTreeMap;
use switchboard_config::{load_sources, read_sources, Diagnostics};

/// Exit code for input that does not validate (distinct from 2, clap's usage errors).
pub const INVALID: i32 = 1;

/// Prints a summary on success; prints every diagnostic and returns `INVALID` on failure.
pub fn run(args: &ValidateArgs) -> anyhow::Result<i32> {
    let result = read_sources(&args.files.files)
        .and_then(|sources| load_sources(&sources).map(|set| (sources.len(), set)));
    match result {
        Ok((files, set)) => {
            for caution in switchboard_config::cautions(&set) {
                eprintln!("warning: {caution}");
            }
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for item in set.iter() {
                *counts.entry(item.resource.kind().as_str()).or_default() += 1;
            }
            match args.output.output {
                Output::Json => println!(
                    "{}",
                    serde_json::json!({ "valid": true, "files": files, "resources": counts })
                ),
                _ => {
                    let summary: Vec<String> =
                        counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
                    println!(
                        "valid: {} resources in {files} file(s) ({})",
                        set.len(),
                        summary.join(", ")
                    );
                }
            }
            Ok(0)
        }
        Err(diagnostics) => {
            print_diagnostics(&diagnostics, args.output.output);
            Ok(INVALID)
        }
    }
}

/// Diagnostics for humans (stderr) or machines (stdout JSON).
pub fn print_diagnostics(diagnostics: &Diagnostics, output: Output) {
    match output {
        Output::Json => println!(
            "{}",
            serde_json::json!({ "valid": false, "errors": diagnostics.0 })
        ),
        _ => {
            eprintln!("{diagnostics}");
            eprintln!("{} error(s)", diagnostics.0.len());
        }
    }
}
