use std::process::ExitCode;

use crate::manifest::manifest_schema;

/// .what = `declastruct schema`: prints the manifest's JSON Schema
/// .why = editors and CI validate manifests with it; identical to `schemas/declastruct.schema.json`
pub fn run() -> ExitCode {
    print!("{}", manifest_schema());
    ExitCode::SUCCESS
}
